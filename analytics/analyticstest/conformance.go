package analyticstest

import (
	"context"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

// Conformance runs the same tests on a ticket store, the ClickHouse one and Memory alike:
// what the emitter and the sidebar read back of what the sink wrote. open returns an empty
// store of the test's own.
func Conformance(t *testing.T, open func(t *testing.T) zenklav.TicketStore) {
	t.Run("RequesterTickets", func(t *testing.T) { testRequesterTickets(t, open) })
	t.Run("SupportHistory", func(t *testing.T) { testSupportHistory(t, open) })
	t.Run("RecordMembershipsRejects", func(t *testing.T) { testRecordMembershipsRejects(t, open) })
	t.Run("FoldingTwiceIsHarmless", func(t *testing.T) { testFoldingTwiceIsHarmless(t, open) })
}

func testRequesterTickets(t *testing.T, open func(t *testing.T) zenklav.TicketStore) {
	store := open(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	ev := func(id string, ticket, requester int64, status string, minute int) schemas.TicketEvent {
		return schemas.TicketEvent{EventID: id, Connection: "acme", Type: schemas.TicketStatusChanged, Source: schemas.SourceEvent,
			OccurredAt: at.Add(time.Duration(minute) * time.Minute), ReceivedAt: at,
			Ticket: schemas.Ticket{ID: ticket, Status: status, Requester: schemas.Requester{ID: requester}}}
	}
	events := []schemas.TicketEvent{
		ev("a", 1, 100, "new", 0), ev("b", 1, 100, "closed", 5), // closed later
		ev("c", 2, 100, "solved", 3), ev("d", 2, 100, "open", 1), // arrived out of order: solved is the latest
		ev("e", 2, 100, "", 4),                                 // says nothing of the status: solved stays the latest
		ev("f", 3, 200, "open", 0), ev("g", 3, 100, "open", 2), // moved from requester 200 to 100
		ev("h", 4, 100, "open", 0), ev("i", 4, 300, "open", 2), // moved from requester 100 to 300
	}
	if err := store.InsertTicketEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	if err := store.InsertTicketEvents(ctx, events[:2]); err != nil { // a redelivery
		t.Fatal(err)
	}
	got, err := store.RequesterTickets(ctx, "acme", []int64{100, 200, 999})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]string{1: "closed", 2: "solved", 3: "open"}
	if len(got) != 1 || len(got[100]) != len(want) {
		t.Fatalf("RequesterTickets = %v, want requester 100 alone with tickets %v", got, want)
	}
	for ticket, status := range want {
		if got[100][ticket].Status != status {
			t.Errorf("ticket %d: %q, want %q", ticket, got[100][ticket].Status, status)
		}
	}
}

func testSupportHistory(t *testing.T, open func(t *testing.T) zenklav.TicketStore) {
	store := open(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const day = 24 * time.Hour
	closedAt := ago(16 * day)
	events := supportHistoryEvents(now)
	if err := store.InsertTicketEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	// Redeliveries: the same event ids again, in another insert.
	if err := store.InsertTicketEvents(ctx, []schemas.TicketEvent{events[0], events[1], events[6], events[21]}); err != nil {
		t.Fatal(err)
	}
	since := ago(90 * day)
	for _, tc := range []struct {
		name       string
		connection string
		requester  int64
		since      time.Time
		want       zenklav.SupportHistory
	}{
		{"open, recent and resolved", "acme", 100, since, zenklav.SupportHistory{Open: 4, Recent: 4, Total: 6,
			LastResolved: zenklav.ResolvedTicket{TicketID: 3, Subject: "Refund please", At: closedAt}}},
		{"since the beginning", "acme", 100, time.Time{}, zenklav.SupportHistory{Open: 4, Recent: 6, Total: 6,
			LastResolved: zenklav.ResolvedTicket{TicketID: 3, Subject: "Refund please", At: closedAt}}},
		{"a ticket moved to them", "acme", 300, since, zenklav.SupportHistory{Recent: 1, Total: 1,
			LastResolved: zenklav.ResolvedTicket{TicketID: 5, Subject: "Not mine after all", At: ago(day)}}},
		{"their only ticket moved away", "acme", 200, since, zenklav.SupportHistory{}},
		{"closed in the same second", "acme", 400, since, zenklav.SupportHistory{Recent: 2, Total: 2,
			LastResolved: zenklav.ResolvedTicket{TicketID: 11, Subject: "Eleven", At: ago(7 * day)}}},
		{"another tenant", "globex", 100, since, zenklav.SupportHistory{Open: 1, Recent: 2, Total: 2,
			LastResolved: zenklav.ResolvedTicket{TicketID: 1, Subject: "Globex order", At: ago(time.Hour)}}},
		{"unknown requester", "acme", 999, since, zenklav.SupportHistory{}},
		{"unknown tenant", "initech", 100, since, zenklav.SupportHistory{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := store.SupportHistory(ctx, tc.connection, tc.requester, tc.since)
			if err != nil {
				t.Fatal(err)
			}
			if !got.LastResolved.At.Equal(tc.want.LastResolved.At) {
				t.Errorf("LastResolved.At = %v, want %v", got.LastResolved.At, tc.want.LastResolved.At)
			}
			got.LastResolved.At, tc.want.LastResolved.At = time.Time{}, time.Time{}
			if got != tc.want {
				t.Errorf("SupportHistory = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func testRecordMembershipsRejects(t *testing.T, open func(t *testing.T) zenklav.TicketStore) {
	s := open(t)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, call := range map[string]func() error{
		"no tenant":    func() error { return s.RecordMemberships(context.Background(), "", 1, at, "segment", nil) },
		"no requester": func() error { return s.RecordMemberships(context.Background(), "acme", 0, at, "segment", nil) },
		"other kind":   func() error { return s.RecordMemberships(context.Background(), "acme", 1, at, "flow", nil) },
	} {
		t.Run(name, func(t *testing.T) {
			if call() == nil {
				t.Error("accepted")
			}
		})
	}
}

// testFoldingTwiceIsHarmless: a batch folded again (a redelivery, a retry after a crash) is
// taken, and so is one folded after the store forgot what it remembered.
func testFoldingTwiceIsHarmless(t *testing.T, open func(t *testing.T) zenklav.TicketStore) {
	s := open(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	events := []schemas.TicketEvent{{EventID: "zd:f1", Connection: "acme", Type: schemas.TicketCreated, Source: schemas.SourceEvent,
		OccurredAt: at, ReceivedAt: at, Ticket: schemas.Ticket{ID: 1, Status: zenklav.StatusNew, Requester: schemas.Requester{ID: 7}}}}
	for i := range 3 {
		if i == 2 {
			s.ForgetTicketRows()
		}
		if err := s.InsertTicketEvents(ctx, events); err != nil {
			t.Fatal(err)
		}
		if err := s.SummarizeTicketEvents(ctx, events); err != nil {
			t.Fatalf("fold %d: %v", i+1, err)
		}
	}
	got, err := s.RequesterTickets(ctx, "acme", []int64{7})
	if err != nil {
		t.Fatal(err)
	}
	if len(got[7]) != 1 || got[7][1].Status != zenklav.StatusNew {
		t.Errorf("RequesterTickets = %v, want ticket 1, new, once", got)
	}
}

// supportHistoryEvents are the tickets of testSupportHistory, as of now.
func supportHistoryEvents(now time.Time) []schemas.TicketEvent {
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const day = 24 * time.Hour
	ev := func(connection, id, typ string, ticket, requester int64, status, subject string, at time.Time) schemas.TicketEvent {
		return schemas.TicketEvent{EventID: id, Connection: connection, Type: typ, Source: schemas.SourceEvent, OccurredAt: at, ReceivedAt: at,
			Ticket: schemas.Ticket{ID: ticket, Subject: subject, Status: status, Requester: schemas.Requester{ID: requester}}}
	}
	created, changed := schemas.TicketCreated, schemas.TicketStatusChanged
	closedAt := ago(16 * day)
	return []schemas.TicketEvent{
		// Open, created 10 days ago.
		ev("acme", "1a", created, 1, 100, "new", "Where is my order?", ago(10*day)),
		ev("acme", "1b", changed, 1, 100, "open", "", ago(9*day)),
		// Open, created 100 days ago: outside 90 days even though it changed since.
		ev("acme", "2a", created, 2, 100, "new", "Old question", ago(100*day)),
		ev("acme", "2b", changed, 2, 100, "pending", "Old question", ago(5*day)),
		// Closed 16 days ago, reported again a day later by the other webhook: the last resolved.
		ev("acme", "3a", created, 3, 100, "new", "Refund please", ago(30*day)),
		ev("acme", "3b", changed, 3, 100, "solved", "Refund please", ago(20*day)),
		ev("acme", "3c", changed, 3, 100, "closed", "Refund please", closedAt),
		ev("acme", "3d", changed, 3, 100, "closed", "", ago(15*day)),
		// Closed long ago.
		ev("acme", "4a", created, 4, 100, "new", "Ancient", ago(200*day)),
		ev("acme", "4b", changed, 4, 100, "closed", "Ancient", ago(150*day)),
		// Moved from 100 to 300, then closed: 300's, not 100's.
		ev("acme", "5a", created, 5, 100, "new", "Not mine after all", ago(5*day)),
		ev("acme", "5b", changed, 5, 300, "open", "Not mine after all", ago(2*day)),
		ev("acme", "5c", changed, 5, 300, "closed", "Not mine after all", ago(1*day)),
		// Moved from 200 to 100.
		ev("acme", "6a", created, 6, 200, "new", "Forwarded", ago(50*day)),
		ev("acme", "6b", changed, 6, 100, "hold", "Forwarded", ago(49*day)),
		// Its created event never arrived: the earliest event stands for it.
		ev("acme", "7a", changed, 7, 100, "pending", "Half known", ago(40*day)),
		ev("acme", "7b", changed, 7, 100, "", "Half known", ago(39*day)),
		// Deleted: counts nowhere.
		ev("acme", "8a", created, 8, 100, "new", "Spam", ago(3*day)),
		ev("acme", "8b", changed, 8, 100, "deleted", "Spam", ago(2*day)),
		// Two closed in the same second: the higher ticket id wins, with its own subject.
		ev("acme", "10a", created, 10, 400, "closed", "Ten", ago(7*day)),
		ev("acme", "11a", created, 11, 400, "closed", "Eleven", ago(7*day)),
		// The same requester id in another tenant.
		ev("globex", "g1a", created, 1, 100, "new", "Globex order", ago(10*day)),
		ev("globex", "g1b", changed, 1, 100, "closed", "Globex order", ago(time.Hour)),
		ev("globex", "g9a", created, 9, 100, "open", "Globex other", ago(1*day)),
	}
}
