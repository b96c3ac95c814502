package klaviyotest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	return readAnswer(t, resp, err)
}

// TestSandboxShowsWhatArrived posts through the client, then reads the same on the page and
// in its JSON.
func TestSandboxShowsWhatArrived(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	sim.AddAccount("pk_idle_account")
	c, err := klaviyo.NewClient(slog.New(slog.DiscardHandler), klaviyo.ClientConfig{BaseURL: sim.URL, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)
	var bulk []klaviyo.Event
	for i := range 250 {
		bulk = append(bulk, klaviyo.Event{Metric: "Opened Ticket", Profile: klaviyo.Profile{Email: fmt.Sprintf("c%d@example.com", i)},
			Properties: map[string]any{"ticket_id": fmt.Sprint(i)}, Time: at, UniqueID: fmt.Sprintf("bulk:%d", i)})
	}
	if err := c.BulkCreateEvents(ctx, bulk); err != nil {
		t.Fatalf("BulkCreateEvents: %v", err)
	}
	value := 9.99
	last := klaviyo.Event{
		Metric:     "Resolved <b>Ticket</b>",
		Profile:    klaviyo.Profile{PhoneNumber: "+15005550006"},
		Properties: map[string]any{"subject": "<script>alert(1)</script>", "ticket_id": "7"},
		Time:       at.Add(time.Minute),
		UniqueID:   "zendesk:7:resolved",
		Value:      &value,
	}
	if err := c.CreateEvent(ctx, last); err != nil {
		t.Fatalf("CreateEvent: %v", err)
	}
	if err := c.BulkImportProfiles(ctx, []klaviyo.ProfileUpdate{{Profile: klaviyo.Profile{Email: "ann@example.com"}, Properties: map[string]any{"open_ticket_count": 2}}}); err != nil {
		t.Fatalf("BulkImportProfiles: %v", err)
	}
	// One refusal (a profile without identifier) and one throttle, for the counters.
	if resp, body := do(t, sim, request{body: strings.Replace(validEvent, `"email":"a@example.com"`, `"first_name":"Ann"`, 1)}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("event without identifier: status %d: %s", resp.StatusCode, body)
	}
	sim.FailNext(1, http.StatusTooManyRequests)
	if err := c.CreateEvent(ctx, last); zenklav.RetryAfter(err) == 0 {
		t.Fatalf("CreateEvent with a 429 injected: %v", err)
	}

	resp, body := get(t, sim.URL+"/sandbox/events.json")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("events.json: status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var view struct {
		Accounts []struct {
			Account string
			Answers struct{ Accepted, Refused, Throttled, Failed int }
			Events  []struct {
				Time       time.Time
				Metric     string
				Profile    string
				UniqueID   string `json:"unique_id"`
				Properties map[string]any
			}
			EventsTotal int `json:"events_total"`
			Profiles    []struct {
				Identity   string
				Properties map[string]any
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &view); err != nil {
		t.Fatalf("events.json %s: %v", body, err)
	}
	if len(view.Accounts) != 2 {
		t.Fatalf("events.json has %d accounts, want 2", len(view.Accounts))
	}
	var a = view.Accounts[1] // sorted by key: pk_idle… first
	if !strings.HasPrefix(a.Account, key[:6]+"…") || strings.Contains(body, key) || strings.Contains(body, "pk_idle_account") {
		t.Errorf("account shown as %q; want the first 6 characters and never a whole key", a.Account)
	}
	if view.Accounts[0].Account == a.Account {
		t.Errorf("two accounts both shown as %q", a.Account)
	}
	if want := (struct{ Accepted, Refused, Throttled, Failed int }{3, 1, 1, 0}); a.Answers != want {
		t.Errorf("answers %+v, want %+v", a.Answers, want)
	}
	if len(a.Events) != 200 || a.EventsTotal != 251 {
		t.Fatalf("%d events of %d shown, want the newest 200 of 251", len(a.Events), a.EventsTotal)
	}
	if e := a.Events[0]; e.Metric != last.Metric || e.Profile != "+15005550006" || e.UniqueID != last.UniqueID ||
		!e.Time.Equal(last.Time) || e.Properties["subject"] != "<script>alert(1)</script>" {
		t.Errorf("newest event %+v, want %+v", e, last)
	}
	if e := a.Events[199]; e.UniqueID != "bulk:51" || e.Profile != "c51@example.com" {
		t.Errorf("oldest event shown %+v, want bulk:51", e)
	}
	if len(a.Profiles) != 1 || a.Profiles[0].Identity != "ann@example.com" || a.Profiles[0].Properties["open_ticket_count"] != float64(2) {
		t.Errorf("profiles %+v, want ann@example.com with open_ticket_count 2", a.Profiles)
	}

	resp, page := get(t, sim.URL+"/sandbox")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<meta http-equiv="refresh" content="2">`,
		a.Account,
		"Resolved &lt;b&gt;Ticket&lt;/b&gt;", // escaped, not markup
		"zendesk:7:resolved", "15005550006", "bulk:249", "bulk:51",
		"202 accepted: <b>3</b>", "4xx refused: <b>1</b>", "429 throttled: <b>1</b>",
		"ann@example.com", "open_ticket_count", "value 9.99",
		"&lt;script&gt;alert(1)&lt;/script&gt;", // in the properties' JSON, escaped once
		"<details>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{key, "<script", "<b>Ticket", "bulk:50<", "src=", "<link", "@import"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	// The sandbox's own requests are not API answers.
	if _, body := get(t, sim.URL+"/sandbox/events.json"); !strings.Contains(body, `"accepted":3,`) {
		t.Errorf("reading the sandbox changed the counters: %s", body)
	}
	sim.AssertNoViolations(t)
}

func TestSandboxRefuses(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	tests := []struct {
		method, path string
		status       int
	}{
		{http.MethodPost, "/sandbox", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/sandbox/events.json", http.StatusMethodNotAllowed},
		{http.MethodGet, "/sandbox/other", http.StatusNotFound},
		{http.MethodGet, "/sandbox/", http.StatusOK},
		{http.MethodHead, "/sandbox/events.json", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, sim.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
	if v := sim.Violations(); len(v) != 0 {
		t.Errorf("sandbox requests were validated as API requests: %v", v)
	}
}
