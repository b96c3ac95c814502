package zendesk_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// simClock is a clock the simulator and the export share: the export's waits move it on
// instead of sleeping, so a test of a per-minute limit takes no minutes.
type simClock struct {
	mu    sync.Mutex
	now   time.Time
	slept time.Duration
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *simClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.slept += d
	return ctx.Err()
}

func (c *simClock) Slept() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slept
}

// exportSim is a simulator holding n tickets updated a second apart (every fourth pair in the
// same second, so ties are ordered by id), from base on; the clock stands an hour later.
func exportSim(t *testing.T, n int, base time.Time) (*zendesktest.Server, *simClock, []int64) {
	t.Helper()
	sim := newSim(t)
	clock := &simClock{now: base.Add(time.Hour)}
	sim.SetClock(clock.Now)
	var ids []int64
	for i := range n {
		at := base.Add(time.Duration(i-i%4/3) * time.Second)
		tk := sim.AddTicket(zendesk.Ticket{Subject: fmt.Sprint("ticket ", i), RequesterID: 1, CreatedAt: at.Add(-time.Hour), UpdatedAt: at})
		ids = append(ids, tk.ID)
	}
	return sim, clock, ids
}

// drain reads an export to its end and returns the ticket ids in the order served and the
// number of pages.
func drain(t *testing.T, x *zendesk.TicketExport) ([]int64, int) {
	t.Helper()
	var got []int64
	for pages := 1; ; pages++ {
		page, err := x.Next(context.Background())
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		for _, tk := range page.Tickets {
			got = append(got, tk.ID)
		}
		if page.EndOfStream {
			return got, pages
		}
		if pages > 1000 {
			t.Fatal("the export does not end")
		}
	}
}

func TestExportTickets(t *testing.T) {
	base := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		tickets   int
		pageSize  int
		start     time.Time
		wantFirst int // index of the first ticket exported
		wantPages int
	}{
		{"one page", 5, 10, base, 0, 1},
		{"exact pages", 20, 10, base, 0, 2},
		{"pages and a rest", 25, 10, base, 0, 3},
		{"start time leaves out older tickets", 25, 10, base.Add(10 * time.Second), 10, 2},
		{"nothing since start", 5, 10, base.Add(30 * time.Minute), 5, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, clock, ids := exportSim(t, tt.tickets, base)
			sim.SetExportPageSize(tt.pageSize)
			x, err := newClient(t, sim.URL).ExportTickets(tt.start, "", zendesk.ExportOptions{Now: clock.Now, Sleep: clock.Sleep})
			if err != nil {
				t.Fatal(err)
			}
			got, pages := drain(t, x)
			if want := ids[tt.wantFirst:]; !slices.Equal(got, want) {
				t.Errorf("exported %v, want %v", got, want)
			}
			if pages != tt.wantPages {
				t.Errorf("%d pages, want %d", pages, tt.wantPages)
			}
			if st := x.Stats(); st.Throttled != 0 || st.Retried != 0 {
				t.Errorf("stats %+v: paced to the limit, nothing should be retried", st)
			}
		})
	}
}

// TestExportResumes: an export started again from a page's cursor goes on after that page,
// and an export that reached the end finds, from its last cursor, what changed since (also a
// ticket updated again, which Zendesk exports again) and nothing from the last minute.
func TestExportResumes(t *testing.T) {
	base := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	sim, clock, ids := exportSim(t, 12, base)
	sim.SetExportPageSize(5)
	c := newClient(t, sim.URL)
	opts := zendesk.ExportOptions{Now: clock.Now, Sleep: clock.Sleep}
	x, err := c.ExportTickets(base, "", opts)
	if err != nil {
		t.Fatal(err)
	}
	first, err := x.Next(context.Background())
	if err != nil || len(first.Tickets) != 5 || first.EndOfStream || first.Cursor == "" {
		t.Fatalf("first page: %d tickets, end %v, cursor %q, %v", len(first.Tickets), first.EndOfStream, first.Cursor, err)
	}
	// A crash here: a new export from the kept cursor.
	y, err := c.ExportTickets(base, first.Cursor, opts)
	if err != nil {
		t.Fatal(err)
	}
	rest, _ := drain(t, y)
	if !slices.Equal(rest, ids[5:]) {
		t.Fatalf("resumed export gave %v, want %v", rest, ids[5:])
	}
	end := y.Cursor()

	clock.Sleep(context.Background(), time.Hour)
	if _, err := sim.UpdateTicket(ids[2], func(tk *zendesk.Ticket) { tk.Status = "solved" }); err != nil {
		t.Fatal(err)
	}
	clock.Sleep(context.Background(), 2*time.Minute)
	recent := sim.AddTicket(zendesk.Ticket{Subject: "just now", RequesterID: 1}) // within the last minute
	z, err := c.ExportTickets(base, end, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := drain(t, z); !slices.Equal(got, []int64{ids[2]}) {
		t.Errorf("after the end, the export gave %v, want only the updated ticket %d", got, ids[2])
	}
	clock.Sleep(context.Background(), time.Minute)
	if got, _ := drain(t, z); !slices.Equal(got, []int64{recent.ID}) {
		t.Errorf("a minute later, the export gave %v, want the new ticket %d", got, recent.ID)
	}
}

// TestExportRateLimit: paced as Zendesk says, the export never meets a 429; unpaced, it
// meets them and waits out each Retry-After, and still gets every ticket once.
func TestExportRateLimit(t *testing.T) {
	base := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name          string
		perMinute     int
		wantThrottled bool
	}{
		{"paced to 10 a minute", 0, false},
		{"unpaced", 6000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, clock, ids := exportSim(t, 25, base)
			sim.SetExportPageSize(1) // 25 pages: two and a half minutes of the limit
			x, err := newClient(t, sim.URL).ExportTickets(base, "", zendesk.ExportOptions{PerMinute: tt.perMinute, Now: clock.Now, Sleep: clock.Sleep})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := drain(t, x)
			if !slices.Equal(got, ids) {
				t.Errorf("exported %v, want %v", got, ids)
			}
			st := x.Stats()
			if (st.Throttled > 0) != tt.wantThrottled {
				t.Errorf("%d 429 answers, want some: %v", st.Throttled, tt.wantThrottled)
			}
			// 26 requests (the last page is empty and says end_of_stream) at 10 a minute
			// cannot take less than two minutes, nor much more when waits are exact.
			if s := clock.Slept(); s < 2*time.Minute || s > 3*time.Minute {
				t.Errorf("waited %s for 26 pages at 10 a minute", s)
			}
			if n := sim.ExportRequests(); n != st.Requests {
				t.Errorf("the simulator answered %d requests, the client counted %d", n, st.Requests)
			}
		})
	}
}

// TestExportFailures: 5xx answers are retried with backoff, a refusal is not, and a failure
// that outlasts RetryFor is given up.
func TestExportFailures(t *testing.T) {
	base := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		failFirst int32 // requests answered 503 before the simulator answers
		status    int
		retryFor  time.Duration
		wantErr   string // error kind; "" for success
		wantRetry int
	}{
		{"two 503s", 2, http.StatusServiceUnavailable, 0, "", 2},
		{"a 502", 1, http.StatusBadGateway, 0, "", 1},
		{"401 is final", 1, http.StatusUnauthorized, 0, zenklav.EUNAUTHORIZED, 0},
		{"down for longer than RetryFor", 100, http.StatusServiceUnavailable, 30 * time.Second, zenklav.EUNAVAILABLE, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, clock, ids := exportSim(t, 3, base)
			target, _ := url.Parse(sim.URL)
			proxy := httputil.NewSingleHostReverseProxy(target)
			var seen atomic.Int32
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if seen.Add(1) <= tt.failFirst {
					http.Error(w, `{"error":"ServiceUnavailable"}`, tt.status)
					return
				}
				proxy.ServeHTTP(w, r)
			}))
			defer front.Close()
			x, err := newClient(t, front.URL).ExportTickets(base, "", zendesk.ExportOptions{RetryFor: tt.retryFor, Now: clock.Now, Sleep: clock.Sleep})
			if err != nil {
				t.Fatal(err)
			}
			page, err := x.Next(context.Background())
			if tt.wantErr != "" {
				if zenklav.ErrorCode(err) != tt.wantErr {
					t.Fatalf("error %v (kind %s), want kind %s", err, zenklav.ErrorCode(err), tt.wantErr)
				}
				if tt.wantRetry >= 0 && x.Stats().Retried != tt.wantRetry {
					t.Errorf("retried %d times, want %d", x.Stats().Retried, tt.wantRetry)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []int64{}
			for _, tk := range page.Tickets {
				got = append(got, tk.ID)
			}
			if !slices.Equal(got, ids) || x.Stats().Retried != tt.wantRetry {
				t.Errorf("got %v after %d retries, want %v after %d", got, x.Stats().Retried, ids, tt.wantRetry)
			}
		})
	}
}

func TestExportRefusesRecentStart(t *testing.T) {
	sim := newSim(t)
	x, err := newClient(t, sim.URL).ExportTickets(time.Now().Add(-10*time.Second), "", zendesk.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = x.Next(context.Background())
	var apiErr *zendesk.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || zenklav.ErrorCode(err) != zenklav.EINVALID {
		t.Errorf("a start time within the last minute: %v, want Zendesk's 400", err)
	}
}

func TestBackfillEvents(t *testing.T) {
	created := time.Date(2025, 2, 3, 9, 0, 0, 0, time.UTC)
	updated := created.Add(50 * time.Hour)
	target := zendesk.BackfillTarget{Connection: "acme_eu", Subdomain: "acme", ReadAt: created.Add(24 * 365 * time.Hour)}
	tests := []struct {
		status  string
		toKlav  bool
		wantIDs []string
	}{
		{"new", false, []string{"zb:acme_eu:42:created"}},
		{"open", false, []string{"zb:acme_eu:42:created", fmt.Sprintf("zb:acme_eu:42:open:%d", updated.Unix())}},
		{"solved", true, []string{"zb:acme_eu:42:created", fmt.Sprintf("zb:acme_eu:42:solved:%d", updated.Unix())}},
		{"closed", true, []string{"zb:acme_eu:42:created", fmt.Sprintf("zb:acme_eu:42:closed:%d", updated.Unix())}},
		{"deleted", false, []string{"zb:acme_eu:42:created", fmt.Sprintf("zb:acme_eu:42:deleted:%d", updated.Unix())}},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			tk := zendesk.Ticket{
				ID: 42, Subject: "Refund", Description: "Please", Status: strings.ToUpper(tt.status), Priority: "High", Type: "question",
				Tags: []string{"vip"}, Via: zendesk.Via{Channel: "email"}, RequesterID: 7, AssigneeID: 8, GroupID: 9, BrandID: 10,
				CustomFields: []zendesk.CustomField{{ID: 11, Value: "x"}}, CreatedAt: created, UpdatedAt: updated,
			}
			tgt := target
			tgt.ToKlaviyo = tt.toKlav
			events, err := zendesk.BackfillEvents(tk, tgt)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs []string
			for i, e := range events {
				gotIDs = append(gotIDs, e.EventID)
				if _, err := e.Marshal(); err != nil {
					t.Errorf("event %s breaks ticket_event.v1: %v", e.EventID, err)
				}
				if e.Source != schemas.SourceBackfill || e.Klaviyo != tt.toKlav || e.Connection != "acme_eu" || e.BrandID != 10 ||
					e.Ticket.Requester.ID != 7 || e.Ticket.Channel != "email" || e.Ticket.Priority != "high" || !e.ReceivedAt.Equal(tgt.ReadAt) {
					t.Errorf("event %d: %+v", i, e)
				}
			}
			if !slices.Equal(gotIDs, tt.wantIDs) {
				t.Fatalf("event ids %v, want %v", gotIDs, tt.wantIDs)
			}
			if e := events[0]; e.Type != schemas.TicketCreated || !e.OccurredAt.Equal(created) || e.Ticket.Status != "new" {
				t.Errorf("created event: %s at %s with status %s", e.Type, e.OccurredAt, e.Ticket.Status)
			}
			if len(events) == 2 {
				if e := events[1]; e.Type != schemas.TicketStatusChanged || !e.OccurredAt.Equal(updated) || e.Ticket.Status != tt.status || e.Ticket.PreviousStatus != "" {
					t.Errorf("status event: %s at %s with status %s (previous %q)", e.Type, e.OccurredAt, e.Ticket.Status, e.Ticket.PreviousStatus)
				}
			}
			again, _ := zendesk.BackfillEvents(tk, tgt)
			for i := range again {
				if again[i].EventID != events[i].EventID {
					t.Errorf("a second read of the same snapshot gave id %s, not %s", again[i].EventID, events[i].EventID)
				}
			}
		})
	}
	if _, err := zendesk.BackfillEvents(zendesk.Ticket{ID: 1, Status: "archived", CreatedAt: created, UpdatedAt: updated}, target); zenklav.ErrorCode(err) != zenklav.EINVALID {
		t.Errorf("unknown status: %v, want EINVALID", err)
	}
}
