package resilience_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/zenklav/zenklav"
)

// convergeWithin bounds how long the pipeline may take, once the webhooks are in, to have
// every accepted webhook in ClickHouse and every ticket's metrics in Klaviyo: generous, as
// the consumers may still be backing off after an outage.
const convergeWithin = 2 * time.Minute

// waitFor polls cond every 100 ms until it holds; it fails the test with cond's last word
// when within has passed, or at once when alive says zenklav is gone.
func waitFor(t *testing.T, within time.Duration, alive func() error, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if alive != nil {
			if err := alive(); err != nil {
				t.Fatalf("%s\nwhile waiting: %s", err, why)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clickhouseConn connects to the stack's ClickHouse, to zenklav's database.
func (s *stack) clickhouseConn() driver.Conn {
	s.t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{s.clickhouse.Addr},
		Auth:        clickhouse.Auth{Database: "zenklav", Username: "default"},
		DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { conn.Close() })
	return conn
}

// storedEvents counts the connection's events in ticket_events by event id, as the reports
// count them (FINAL: the copies a re-inserted batch leaves are one). received bounds them by
// the time zenklav received them (zero: all).
func storedEvents(ctx context.Context, conn driver.Conn, receivedFrom time.Time) (map[string]uint64, error) {
	q := "SELECT event_id, count() FROM ticket_events FINAL WHERE tenant = ?"
	args := []any{tenant}
	if !receivedFrom.IsZero() {
		// received_at is in seconds.
		q += " AND received_at >= ?"
		args = append(args, receivedFrom.UTC().Truncate(time.Second))
	}
	rows, err := conn.Query(ctx, q+" GROUP BY event_id", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rows.Err()
}

// converge waits until every ticket event zenklav accepted is in ClickHouse and each one's
// metric (if it makes one) in Klaviyo, then checks that each is there exactly once and
// nothing else is: no loss, no duplicates. (Customers' texts are the sms role's: not here.)
func (s *stack) converge(tr *traffic, alive func() error) {
	s.t.Helper()
	var acked, metrics []*hook
	for _, h := range tr.acked() {
		if h.eventID != "" {
			acked = append(acked, h)
		}
		if h.uniqueID != "" {
			metrics = append(metrics, h)
		}
	}
	if len(acked) == 0 {
		s.t.Fatal("zenklav accepted no webhook: nothing to check")
	}
	conn := s.clickhouseConn()
	ctx := context.Background()
	deadline := time.Now().Add(convergeWithin)
	var stored map[string]uint64
	waitFor(s.t, time.Until(deadline), alive, func() (bool, string) {
		var err error
		stored, err = storedEvents(ctx, conn, time.Time{})
		if err != nil {
			return false, "ClickHouse: " + err.Error()
		}
		missing := missingIDs(acked, func(h *hook) bool { return stored[h.eventID] > 0 }, func(h *hook) string { return h.eventID })
		return len(missing) == 0, fmt.Sprintf("ClickHouse holds %d events; %d of the %d accepted webhooks are missing, e.g. %s",
			len(stored), len(missing), len(acked), sample(missing))
	})
	want := map[string]bool{}
	for _, h := range acked {
		want[h.eventID] = true
	}
	var dups, extra []string
	for id, n := range stored {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", id, n))
		}
		if !want[id] {
			extra = append(extra, id)
		}
	}
	if len(dups) > 0 {
		s.t.Errorf("%d events are more than once in ticket_events FINAL: %s", len(dups), sample(dups))
	}
	if len(extra) > 0 {
		s.t.Errorf("ticket_events holds %d events of webhooks zenklav never accepted: %s", len(extra), sample(extra))
	}
	s.convergeKlaviyo(metrics, time.Until(deadline), alive)
	s.t.Logf("converged: %d ticket events accepted, each once in ClickHouse, and %d metrics once in Klaviyo", len(acked), len(metrics))
}

// convergeKlaviyo waits until Klaviyo holds the metric of every accepted webhook (each makes
// one), then checks that it holds each once and nothing else.
func (s *stack) convergeKlaviyo(acked []*hook, within time.Duration, alive func() error) {
	s.t.Helper()
	count := func() map[string]int {
		n := map[string]int{}
		for _, e := range s.kl.Events(klaviyoKey) {
			n[e.Metric+" "+e.UniqueID]++
		}
		return n
	}
	key := func(h *hook) string {
		metric := zenklav.MetricOpened
		if strings.HasSuffix(h.uniqueID, ":"+zenklav.Resolved.Name) {
			metric = zenklav.MetricResolved
		}
		return metric + " " + h.uniqueID
	}
	var got map[string]int
	waitFor(s.t, within, alive, func() (bool, string) {
		got = count()
		missing := missingIDs(acked, func(h *hook) bool { return got[key(h)] > 0 }, key)
		return len(missing) == 0, fmt.Sprintf("Klaviyo holds %d events; %d of the %d expected metrics are missing, e.g. %s",
			len(got), len(missing), len(acked), sample(missing))
	})
	want := map[string]bool{}
	for _, h := range acked {
		want[key(h)] = true
	}
	var wrong []string
	for k, n := range got {
		if n != 1 || !want[k] {
			wrong = append(wrong, fmt.Sprintf("%s×%d", k, n))
		}
	}
	if len(wrong) > 0 {
		s.t.Errorf("Klaviyo holds %d events that are not one Opened Ticket and one Resolved Ticket of an accepted ticket: %s",
			len(wrong), sample(wrong))
	}
	s.kl.AssertNoViolations(s.t)
	s.zd.AssertNoViolations(s.t)
}

func missingIDs(hooks []*hook, present func(*hook) bool, name func(*hook) string) []string {
	var out []string
	for _, h := range hooks {
		if !present(h) {
			out = append(out, name(h))
		}
	}
	return out
}

// sample shows the first five of ids, sorted.
func sample(ids []string) string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	if len(ids) > 5 {
		return strings.Join(ids[:5], ", ") + fmt.Sprintf(" and %d more", len(ids)-5)
	}
	return strings.Join(ids, ", ")
}
