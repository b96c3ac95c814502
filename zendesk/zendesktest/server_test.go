package zendesktest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// sharedSpec is the contract the embedded copy must equal, relative to this directory.
const sharedSpec = "../../../shared/contracts/zendesk/oas.yaml"

func TestEmbeddedSpecMatchesContract(t *testing.T) {
	want, err := os.ReadFile(sharedSpec)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("read the shared contract: %v", err)
		}
		t.Skipf("shared contract not found (%v); CI makes this a failure", err)
	}
	if !bytes.Equal(zendesktest.EmbeddedSpec, want) {
		t.Errorf("zendesktest/oas.yaml (%d bytes) differs from %s (%d bytes): copy the contract again", len(zendesktest.EmbeddedSpec), sharedSpec, len(want))
	}
}

// do sends one request to the simulator with the default credentials unless auth is
// given ("-" for none).
func do(t *testing.T, sim *zendesktest.Server, method, path, body, auth string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, sim.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	switch auth {
	case "":
		req.SetBasicAuth(zendesktest.DefaultEmail+"/token", zendesktest.DefaultAPIToken)
	case "-":
	default:
		user, pass, _ := strings.Cut(auth, ":")
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRequestsAreValidated(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		path      string
		body      string
		auth      string
		status    int
		violation string // part of the recorded violation; "" when none may be recorded
	}{
		{name: "conforming ticket read", method: "GET", path: "/api/v2/tickets/1", status: 200},
		{name: "conforming show many", method: "GET", path: "/api/v2/users/show_many?ids=360000000001,2", status: 200},
		{name: "unknown path", method: "GET", path: "/api/v2/no_such_thing", status: 400, violation: "no matching operation"},
		{name: "method the path lacks", method: "PATCH", path: "/api/v2/brands", status: 400, violation: "method not allowed"},
		{name: "ticket id not an integer", method: "GET", path: "/api/v2/tickets/abc", status: 400, violation: `parameter "ticket_id"`},
		{name: "json suffix the spec does not list", method: "GET", path: "/api/v2/groups/7.json", status: 400, violation: `parameter "group_id"`},
		{name: "user id not an integer", method: "GET", path: "/api/v2/users/me2", status: 400, violation: `parameter "user_id"`},
		{name: "status outside the enum", method: "PUT", path: "/api/v2/tickets/1", body: `{"ticket":{"status":"resolved"}}`, status: 400, violation: `"/ticket/status"`},
		{name: "subject not a string", method: "POST", path: "/api/v2/tickets", body: `{"ticket":{"subject":42,"comment":{"body":"hi"}}}`, status: 400, violation: `"/subject": value must be a string`},
		{name: "no credentials", method: "GET", path: "/api/v2/tickets/1", auth: "-", status: 401, violation: "basicAuth"},
		// The spec cannot know the account's token: refused like Zendesk does, not a violation.
		{name: "wrong token", method: "GET", path: "/api/v2/tickets/1", auth: zendesktest.DefaultEmail + "/token:nope", status: 401},
		{name: "password instead of token", method: "GET", path: "/api/v2/tickets/1", auth: zendesktest.DefaultEmail + ":" + zendesktest.DefaultAPIToken, status: 401},
		// The spec types ids as a plain string, so this conforms; the simulator refuses it
		// as Zendesk's own validation would.
		{name: "show many with a non-numeric id", method: "GET", path: "/api/v2/users/show_many?ids=abc", status: 400},
		{name: "conforming but not simulated", method: "GET", path: "/api/v2/tickets", status: 501},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := zendesktest.NewServer()
			defer sim.Close()
			u := sim.AddUser(zendesk.User{Name: "Jo", Email: "jo@example.com"})
			sim.AddTicket(zendesk.Ticket{ID: 1, Subject: "Hi", RequesterID: u.ID})

			status, body := do(t, sim, tt.method, tt.path, tt.body, tt.auth)
			if status != tt.status {
				t.Errorf("status = %d, want %d; body %s", status, tt.status, body)
			}
			var shape map[string]any
			if err := json.Unmarshal([]byte(body), &shape); err != nil || shape["error"] == nil && status >= 400 {
				t.Errorf("body = %s, want Zendesk's JSON error shape", body)
			}
			got := sim.Violations()
			switch {
			case tt.violation == "" && len(got) > 0:
				t.Errorf("violations = %v, want none", got)
			case tt.violation != "" && len(got) != 1:
				t.Errorf("violations = %v, want one", got)
			case tt.violation != "":
				v := got[0]
				if v.Response || v.Method != tt.method || !strings.HasPrefix(v.Path, strings.Split(tt.path, "?")[0]) || !strings.Contains(v.Err, tt.violation) {
					t.Errorf("violation = %+v, want a request violation of %s %s mentioning %q", v, tt.method, tt.path, tt.violation)
				}
				if status == 400 && !strings.Contains(body, "OpenAPI spec") {
					t.Errorf("body = %s, want it to say the request breaks the spec", body)
				}
			}
		})
	}
}

func TestAnswersAreValidated(t *testing.T) {
	tests := []struct {
		name      string
		ticket    zendesk.Ticket
		violation string
	}{
		{
			name:      "checkbox custom field",
			ticket:    zendesk.Ticket{RequesterID: 5, CustomFields: []zendesk.CustomField{{ID: 1, Value: true}}},
			violation: "custom_fields",
		},
		{
			name:      "no requester",
			ticket:    zendesk.Ticket{Subject: "orphan"},
			violation: "requester_id",
		},
		{
			name:      "status outside the enum",
			ticket:    zendesk.Ticket{RequesterID: 5, Status: "resolved"},
			violation: "status",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := zendesktest.NewServer()
			defer sim.Close()
			tk := sim.AddTicket(tt.ticket)
			status, body := do(t, sim, "GET", fmt.Sprintf("/api/v2/tickets/%d", tk.ID), "", "")
			if status != http.StatusInternalServerError {
				t.Errorf("status = %d, want 500; body %s", status, body)
			}
			got := sim.Violations()
			if len(got) != 1 || !got[0].Response || !strings.Contains(got[0].Err, tt.violation) {
				t.Errorf("violations = %v, want one response violation mentioning %q", got, tt.violation)
			}
		})
	}
}

// failures records what AssertNoViolations reports instead of failing the real test.
type failures struct {
	testing.TB
	errs []string
}

func (f *failures) Helper() {}

func (f *failures) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func TestAssertNoViolations(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()

	clean := &failures{TB: t}
	sim.AssertNoViolations(clean)
	if len(clean.errs) != 0 {
		t.Errorf("with no violations it reported %q", clean.errs)
	}

	do(t, sim, "GET", "/api/v2/tickets/abc", "", "")
	do(t, sim, "DELETE", "/api/v2/users/show_many", "", "")
	dirty := &failures{TB: t}
	sim.AssertNoViolations(dirty)
	if len(dirty.errs) != 2 || !strings.Contains(dirty.errs[0], "GET /api/v2/tickets/abc") {
		t.Errorf("reported %q, want one failure per violation naming the request", dirty.errs)
	}
}

func TestRateLimitHeaders(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	sim.SetRateLimit(2)
	var remaining []string
	for range 3 {
		req, _ := http.NewRequest("GET", sim.URL+"/api/v2/brands", nil)
		req.SetBasicAuth(zendesktest.DefaultEmail+"/token", zendesktest.DefaultAPIToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		remaining = append(remaining, fmt.Sprintf("%d:%s:%s", resp.StatusCode, resp.Header.Get("X-Rate-Limit-Remaining"), resp.Header.Get("Retry-After")))
	}
	if got := strings.Join(remaining, " "); !strings.HasPrefix(got, "200:1: 200:0: 429:0:") || strings.HasSuffix(got, ":") {
		t.Errorf("status:remaining:retry-after = %s, want 200:1: 200:0: 429:0:<seconds>", got)
	}
	sim.AssertNoViolations(t)
}

// TestConcurrentUse runs many requests and store changes at once, for the race detector.
func TestConcurrentUse(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	sample := sim.Seed()
	c, err := zendesk.NewClient(discard(), zendesk.ClientConfig{BaseURL: sim.URL, Email: zendesktest.DefaultEmail, APIToken: zendesktest.DefaultAPIToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			tk := sample.Tickets[i%len(sample.Tickets)]
			if _, err := c.Ticket(ctx, tk.ID); err != nil {
				t.Errorf("Ticket: %v", err)
			}
			if _, err := c.UsersMany(ctx, []int64{tk.RequesterID, sample.Agents[0].ID}); err != nil {
				t.Errorf("UsersMany: %v", err)
			}
			if _, err := c.Brands(ctx); err != nil {
				t.Errorf("Brands: %v", err)
			}
			if _, err := sim.UpdateTicket(tk.ID, func(t *zendesk.Ticket) { t.Tags = append(t.Tags, "touched") }); err != nil {
				t.Errorf("UpdateTicket: %v", err)
			}
			if _, err := sim.TicketCreated(tk.ID, zendesktest.EventMeta{}); err != nil {
				t.Errorf("TicketCreated: %v", err)
			}
		})
	}
	wg.Wait()
	sim.AssertNoViolations(t)
}
