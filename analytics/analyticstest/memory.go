package analyticstest

import (
	"context"
	"sync"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/schemas"
)

// Memory is a ticket store in memory: a zenklav.TicketStore that answers as the ClickHouse
// store does (Conformance checks both), for tests that need no ClickHouse. Like ClickHouse,
// it keeps times to the second. It folds nothing: the report rows are ClickHouse's alone.
type Memory struct {
	mu          sync.Mutex
	events      map[eventKey]schemas.TicketEvent
	memberships []Snapshot
}

var _ zenklav.TicketStore = (*Memory)(nil)

type eventKey struct{ connection, id string }

// Snapshot is a memberships snapshot RecordMemberships kept.
type Snapshot struct {
	Connection string
	Requester  int64
	At         time.Time
	Kind       string
	Names      []string
}

// NewMemory returns an empty store.
func NewMemory() *Memory { return &Memory{events: map[eventKey]schemas.TicketEvent{}} }

// InsertTicketEvents keeps the events; an event id seen before changes nothing.
func (m *Memory) InsertTicketEvents(_ context.Context, events []schemas.TicketEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range events {
		k := eventKey{e.Connection, e.EventID}
		if _, ok := m.events[k]; !ok {
			e.OccurredAt = e.OccurredAt.UTC().Truncate(time.Second)
			m.events[k] = e
		}
	}
	return nil
}

// SummarizeTicketEvents folds nothing: the report rows are ClickHouse's.
func (m *Memory) SummarizeTicketEvents(context.Context, []schemas.TicketEvent) error { return nil }

// ForgetTicketRows forgets nothing: there is nothing remembered.
func (m *Memory) ForgetTicketRows() {}

// RecordMemberships keeps the snapshot, checked as the ClickHouse store checks it.
func (m *Memory) RecordMemberships(_ context.Context, connection string, requester int64, at time.Time, kind string, names []string) error {
	if err := analytics.CheckMemberships(connection, requester, at, kind); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.memberships = append(m.memberships, Snapshot{connection, requester, at.UTC().Truncate(time.Second), kind, names})
	return nil
}

// Memberships returns the snapshots recorded, in order.
func (m *Memory) Memberships() []Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Snapshot(nil), m.memberships...)
}

// ticket is what the store's queries make of one ticket's events.
type ticket struct {
	id            int64
	requesters    map[int64]bool // every requester it had
	requester     int64          // the latest event's
	status        string         // the latest event's with a status
	latest        time.Time      // the latest event's time
	statusAt      time.Time
	created       time.Time // its created event's, else its earliest event's
	hasCreated    bool
	closed        time.Time // its first closed event's; zero when never closed
	subject       string    // the latest event's with a subject
	subjectAt     time.Time
	earliest      time.Time
	requesterSeen bool
}

// tickets folds the connection's events by ticket, as the SQL of RequesterTickets and
// SupportHistory groups them.
func (m *Memory) tickets(connection string) map[int64]*ticket {
	out := map[int64]*ticket{}
	for _, e := range m.events {
		if e.Connection != connection {
			continue
		}
		t := out[e.Ticket.ID]
		if t == nil {
			t = &ticket{id: e.Ticket.ID, requesters: map[int64]bool{}}
			out[e.Ticket.ID] = t
		}
		t.add(&e)
	}
	return out
}

func (t *ticket) add(e *schemas.TicketEvent) {
	at, tk := e.OccurredAt, &e.Ticket
	if tk.Requester.ID != 0 {
		t.requesters[tk.Requester.ID] = true
	}
	if !t.requesterSeen || at.After(t.latest) {
		t.requester, t.latest, t.requesterSeen = tk.Requester.ID, at, true
	}
	if tk.Status != "" && (t.status == "" || at.After(t.statusAt)) {
		t.status, t.statusAt = tk.Status, at
	}
	if tk.Subject != "" && (t.subject == "" || at.After(t.subjectAt)) {
		t.subject, t.subjectAt = tk.Subject, at
	}
	if t.earliest.IsZero() || at.Before(t.earliest) {
		t.earliest = at
	}
	if e.Type == schemas.TicketCreated && (!t.hasCreated || at.Before(t.created)) {
		t.created, t.hasCreated = at, true
	}
	if tk.Status == zenklav.StatusClosed && (t.closed.IsZero() || at.Before(t.closed)) {
		t.closed = at
	}
}

// createdAt is the ticket's creation: its created event, or its earliest event.
func (t *ticket) createdAt() time.Time {
	if t.hasCreated {
		return t.created
	}
	return t.earliest
}

// RequesterTickets returns the latest state of each ticket whose latest requester is one of
// requesters.
func (m *Memory) RequesterTickets(_ context.Context, connection string, requesters []int64) (map[int64]map[int64]zenklav.TicketState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int64]map[int64]zenklav.TicketState{}
	for _, t := range m.tickets(connection) {
		for _, r := range requesters {
			if t.requester == r && t.requesters[r] {
				if out[r] == nil {
					out[r] = map[int64]zenklav.TicketState{}
				}
				out[r][t.id] = zenklav.TicketState{Status: t.status, OccurredAt: t.latest}
			}
		}
	}
	return out, nil
}

// SupportHistory sums up the tickets whose latest requester is requester.
func (m *Memory) SupportHistory(_ context.Context, connection string, requester int64, since time.Time) (zenklav.SupportHistory, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	since = since.UTC().Truncate(time.Second)
	var h zenklav.SupportHistory
	for _, t := range m.tickets(connection) {
		if t.requester != requester || !t.requesters[requester] {
			continue
		}
		if t.status != zenklav.StatusDeleted {
			h.Total++
			if zenklav.IsOpen(t.status) {
				h.Open++
			}
			if !t.createdAt().Before(since) {
				h.Recent++
			}
		}
		r := &h.LastResolved
		if !t.closed.IsZero() && (t.closed.After(r.At) || t.closed.Equal(r.At) && t.id > r.TicketID) {
			*r = zenklav.ResolvedTicket{TicketID: t.id, Subject: t.subject, At: t.closed}
		}
	}
	return h, nil
}
