package klaviyotest_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

// sharedSpec is the contract the embedded copy must equal, relative to this directory.
const sharedSpec = "../../../shared/contracts/klaviyo/stable.json"

const key = "pk_test_simulator"

func TestEmbeddedSpecMatchesContract(t *testing.T) {
	want, err := os.ReadFile(sharedSpec)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("read the shared contract: %v", err)
		}
		t.Skipf("shared contract not found (%v); CI makes this a failure", err)
	}
	if !bytes.Equal(klaviyotest.EmbeddedSpec, want) {
		t.Errorf("klaviyotest/stable.json (%d bytes) differs from %s (%d bytes): copy the contract again", len(klaviyotest.EmbeddedSpec), sharedSpec, len(want))
	}
}

const validEvent = `{"data":{"type":"event","attributes":{"properties":{},"unique_id":"u1",
	"metric":{"data":{"type":"metric","attributes":{"name":"Opened Ticket"}}},
	"profile":{"data":{"type":"profile","attributes":{"email":"a@example.com"}}}}}}`

// request is one raw request to the simulator; zero fields get what Klaviyo expects.
type request struct {
	method, path, body string
	auth               string // "-" for none
	contentType        string
	noRevision         bool
}

func do(t *testing.T, sim *klaviyotest.Server, r request) (*http.Response, string) {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.path == "" {
		r.path = "/api/events"
	}
	req, err := http.NewRequest(r.method, sim.URL+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	switch r.auth {
	case "":
		req.Header.Set("Authorization", "Klaviyo-API-Key "+key)
	case "-":
	default:
		req.Header.Set("Authorization", r.auth)
	}
	if r.contentType == "" {
		r.contentType = "application/vnd.api+json"
	}
	req.Header.Set("Content-Type", r.contentType)
	if !r.noRevision {
		req.Header.Set("revision", "2026-07-15")
	}
	resp, err := http.DefaultClient.Do(req)
	return readAnswer(t, resp, err)
}

// readAnswer reads and closes an answer's body.
func readAnswer(t *testing.T, resp *http.Response, err error) (*http.Response, string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestRequests(t *testing.T) {
	tests := []struct {
		name          string
		req           request
		wantStatus    int
		wantViolation bool
		wantCode      string // code of the first JSON:API error
	}{
		{name: "valid", req: request{body: validEvent}, wantStatus: http.StatusAccepted},
		{name: "no revision header", req: request{body: validEvent, noRevision: true}, wantStatus: http.StatusBadRequest, wantViolation: true, wantCode: "invalid"},
		{name: "plain json content type", req: request{body: validEvent, contentType: "application/json"}, wantStatus: http.StatusBadRequest, wantViolation: true, wantCode: "invalid"},
		{name: "no properties", req: request{body: strings.Replace(validEvent, `"properties":{},`, "", 1)}, wantStatus: http.StatusBadRequest, wantViolation: true, wantCode: "invalid"},
		{name: "wrong type", req: request{body: strings.Replace(validEvent, `"type":"event"`, `"type":"events"`, 1)}, wantStatus: http.StatusBadRequest, wantViolation: true, wantCode: "invalid"},
		{name: "time not a date-time", req: request{body: strings.Replace(validEvent, `"unique_id":"u1"`, `"time":"yesterday"`, 1)}, wantStatus: http.StatusBadRequest, wantViolation: true, wantCode: "invalid"},
		{name: "time before 1990", req: request{body: strings.Replace(validEvent, `"unique_id":"u1"`, `"time":"1989-12-31T23:59:59Z"`, 1)}, wantStatus: http.StatusBadRequest, wantCode: "invalid"},
		{name: "trailing slash", req: request{path: "/api/events/", body: validEvent}, wantStatus: http.StatusBadRequest, wantViolation: true, wantCode: "invalid"},
		{name: "no authorization", req: request{body: validEvent, auth: "-"}, wantStatus: http.StatusUnauthorized, wantViolation: true, wantCode: "authentication_failed"},
		{name: "bearer instead of api key", req: request{body: validEvent, auth: "Bearer " + key}, wantStatus: http.StatusUnauthorized, wantViolation: true, wantCode: "authentication_failed"},
		// A key no account has is a valid request Klaviyo refuses, not a violation.
		{name: "unknown key", req: request{body: validEvent, auth: "Klaviyo-API-Key pk_other"}, wantStatus: http.StatusUnauthorized, wantCode: "authentication_failed"},
		{name: "no profile identifier", req: request{body: strings.Replace(validEvent, `"email":"a@example.com"`, `"first_name":"Ann"`, 1)}, wantStatus: http.StatusBadRequest, wantCode: "invalid"},
		{name: "operation not simulated", req: request{method: http.MethodGet, path: "/api/metrics"}, wantStatus: http.StatusNotImplemented, wantCode: "not_simulated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := klaviyotest.NewServer()
			defer sim.Close()
			sim.AddAccount(key)
			resp, body := do(t, sim, tt.req)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if got := len(sim.Violations()); (got > 0) != tt.wantViolation {
				t.Errorf("violations %v, want some: %v", sim.Violations(), tt.wantViolation)
			}
			for _, v := range sim.Violations() {
				if v.Response {
					t.Errorf("the simulator's own answer broke the spec: %s", v)
				}
			}
			if tt.wantCode == "" {
				if body != "" {
					t.Errorf("body %q, want none", body)
				}
				return
			}
			var e struct {
				Errors []struct {
					ID, Code, Title, Detail string
					Status                  int
				}
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) == 0 {
				t.Fatalf("body %q is not a JSON:API error list: %v", body, err)
			}
			if got := e.Errors[0]; got.Code != tt.wantCode || got.ID == "" || got.Status != tt.wantStatus {
				t.Errorf("error %+v, want code %q with an id and status %d", got, tt.wantCode, tt.wantStatus)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.api+json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

func TestAccountsAreSeparate(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	sim.AddAccount("pk_other")
	if resp, body := do(t, sim, request{body: validEvent}); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if n := len(sim.Events(key)); n != 1 {
		t.Errorf("account holds %d events, want 1", n)
	}
	if n := len(sim.Events("pk_other")); n != 0 {
		t.Errorf("other account holds %d events, want 0", n)
	}
	if got := sim.Events("pk_none"); got != nil {
		t.Errorf("unknown account holds %v", got)
	}
	sim.AssertNoViolations(t)
}

func TestOnAcceptSeesWhatIsKept(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	var mu sync.Mutex
	var got []string
	sim.OnAccept(func(k string, events []klaviyo.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			got = append(got, k+" "+e.UniqueID)
		}
	})
	second := strings.Replace(validEvent, `"unique_id":"u1"`, `"unique_id":"u2"`, 1)
	for _, b := range []string{validEvent, validEvent, second} { // the repeat is dropped
		if resp, body := do(t, sim, request{body: b}); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	}
	sim.OnAccept(nil)
	third := strings.Replace(validEvent, `"unique_id":"u1"`, `"unique_id":"u3"`, 1)
	if resp, body := do(t, sim, request{body: third}); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{key + " u1", key + " u2"}; !slices.Equal(got, want) {
		t.Errorf("hook saw %q, want %q", got, want)
	}
	sim.AssertNoViolations(t)
}

func TestDedupWithoutUniqueIDUsesTheSecond(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	body := strings.Replace(validEvent, `"unique_id":"u1"`, `"time":"2026-07-20T12:00:00.100Z"`, 1)
	sameSecond := strings.Replace(validEvent, `"unique_id":"u1"`, `"time":"2026-07-20T12:00:00.900Z"`, 1)
	nextSecond := strings.Replace(validEvent, `"unique_id":"u1"`, `"time":"2026-07-20T12:00:01Z"`, 1)
	for _, b := range []string{body, sameSecond, nextSecond} {
		if resp, answer := do(t, sim, request{body: b}); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d: %s", resp.StatusCode, answer)
		}
	}
	if n := len(sim.Events(key)); n != 2 {
		t.Errorf("account holds %d events, want 2: %+v", n, sim.Events(key))
	}
	sim.AssertNoViolations(t)
}

func TestInjectedThrottle(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	sim.FailNext(1, http.StatusTooManyRequests)
	resp, body := do(t, sim, request{body: validEvent})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q (%s), want 429 and 1", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp, body := do(t, sim, request{body: validEvent}); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("after the injected 429: status %d: %s", resp.StatusCode, body)
	}
	sim.AssertNoViolations(t)
}

func TestSteadyLimit(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	now := time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)
	sim.SetClock(func() time.Time { return now })
	bulk := `{"data":{"type":"event-bulk-create-job","attributes":{"events-bulk-create":{"data":[]}}}}`
	// 150 a minute, 10 a second: fifteen seconds of full bursts use the minute up.
	for sec := range 15 {
		for i := range 10 {
			if resp, body := do(t, sim, request{path: "/api/event-bulk-create-jobs", body: bulk}); resp.StatusCode != http.StatusAccepted {
				t.Fatalf("second %d request %d: status %d: %s", sec, i, resp.StatusCode, body)
			}
		}
		if sec < 14 {
			now = now.Add(time.Second)
		}
	}
	// Both windows are full now: the answer is the longer wait, so a client that honours it
	// is not refused again by the minute window a second later.
	resp, _ := do(t, sim, request{path: "/api/event-bulk-create-jobs", body: bulk})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "46" {
		t.Errorf("with both windows full: status %d, Retry-After %q; want 429 and 46", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	now = now.Add(time.Second)
	resp, _ = do(t, sim, request{path: "/api/event-bulk-create-jobs", body: bulk})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "45" {
		t.Errorf("151st request in a minute: status %d, Retry-After %q; want 429 and 45", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	now = now.Add(45 * time.Second)
	if resp, body := do(t, sim, request{path: "/api/event-bulk-create-jobs", body: bulk}); resp.StatusCode != http.StatusAccepted {
		t.Errorf("next minute: status %d: %s", resp.StatusCode, body)
	}
	sim.AssertNoViolations(t)
}

// TestRateLimitHeaders: answers counted against a limit report the tighter of its two
// windows (the fewer requests left; on a tie the later reset), and a 429 reports
// Retry-After instead.
func TestRateLimitHeaders(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	now := time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)
	sim.SetClock(func() time.Time { return now })
	bulk := request{path: "/api/event-bulk-create-jobs", body: `{"data":{"type":"event-bulk-create-job","attributes":{"events-bulk-create":{"data":[]}}}}`}
	headers := func(resp *http.Response) [3]string {
		return [3]string{resp.Header.Get("RateLimit-Limit"), resp.Header.Get("RateLimit-Remaining"), resp.Header.Get("RateLimit-Reset")}
	}
	check := func(what string, resp *http.Response, wantStatus int, want [3]string) {
		t.Helper()
		if resp.StatusCode != wantStatus || headers(resp) != want {
			t.Errorf("%s: status %d, RateLimit limit/remaining/reset %q; want %d and %q", what, resp.StatusCode, headers(resp), wantStatus, want)
		}
	}

	resp, _ := do(t, sim, request{body: validEvent})
	check("first event", resp, http.StatusAccepted, [3]string{"350", "349", "1"})
	// A request the handler refuses was still counted.
	resp, _ = do(t, sim, request{body: strings.Replace(validEvent, `"email":"a@example.com"`, `"first_name":"Ann"`, 1)})
	check("refused event", resp, http.StatusBadRequest, [3]string{"350", "348", "1"})

	resp, _ = do(t, sim, bulk)
	check("first bulk", resp, http.StatusAccepted, [3]string{"10", "9", "1"})
	// Half a second on, the second window resets in half a second: Reset rounds up.
	now = now.Add(500 * time.Millisecond)
	for range 8 {
		do(t, sim, bulk)
	}
	resp, _ = do(t, sim, bulk)
	check("tenth bulk in a second", resp, http.StatusAccepted, [3]string{"10", "0", "1"})
	resp, _ = do(t, sim, bulk)
	check("eleventh bulk in a second", resp, http.StatusTooManyRequests, [3]string{})
	if resp.Header.Get("Retry-After") != "1" {
		t.Errorf("429 Retry-After %q, want 1", resp.Header.Get("Retry-After"))
	}

	// Thirteen more full seconds leave 10 of the minute's 150, as many as a fresh second
	// has: the minute, which resets later, is the tighter window from here.
	now = now.Add(500 * time.Millisecond)
	for range 13 {
		for range 10 {
			do(t, sim, bulk)
		}
		now = now.Add(time.Second)
	}
	resp, _ = do(t, sim, bulk)
	check("bulk with 9 left in both windows", resp, http.StatusAccepted, [3]string{"150", "9", "46"})

	// Operations without a limit, and refusals before the limit is applied, carry none.
	resp, _ = do(t, sim, request{method: http.MethodGet, path: "/api/metrics"})
	check("operation not simulated", resp, http.StatusNotImplemented, [3]string{})
	resp, _ = do(t, sim, request{body: validEvent, noRevision: true})
	check("request that breaks the spec", resp, http.StatusBadRequest, [3]string{})
	for _, v := range sim.Violations() {
		if v.Response {
			t.Errorf("the headers made an answer break the spec: %s", v)
		}
	}
}
