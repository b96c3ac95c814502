package emitter

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

func TestPropertiesAreTheFourteen(t *testing.T) {
	e := schemas.TicketEvent{Ticket: schemas.Ticket{ID: 9, Subject: strings.Repeat("é", maxStringBytes)}}
	p := properties(&e, zenklav.Person{}, "", "", nil)
	want := []string{"Assignee_email", "Assignee_name", "Channel", "Description", "Fields", "Group_name", "Priority",
		"Subject", "Tags", "Ticket_id", "Type", "Via", "Zendesk_URL", "Status"}
	if len(p) != len(want) {
		t.Errorf("%d properties, want %d", len(p), len(want))
	}
	for _, k := range want {
		if _, ok := p[k]; !ok {
			t.Errorf("property %s missing", k)
		}
	}
	if p["Assignee_email"] != nil || p["Ticket_id"] != int64(9) {
		t.Errorf("unknown values must be null and the id a number: %v, %v", p["Assignee_email"], p["Ticket_id"])
	}
	s := p["Subject"].(string)
	if len(s) > maxStringBytes || !utf8.ValidString(s) {
		t.Errorf("subject of %d bytes (valid UTF-8: %v) was not cut to Klaviyo's limit", len(s), utf8.ValidString(s))
	}
}

// TestTicketBook: what the emitter has just seen wins over ClickHouse, which the sink may
// not have caught up with; a late delivery does not undo a newer status; a ticket that moved
// to another requester no longer counts for the first.
func TestTicketBook(t *testing.T) {
	b := newTicketBook()
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	note := func(ticket, requester int64, status string, minute int) {
		b.note(&schemas.TicketEvent{Connection: "acme", OccurredAt: at.Add(time.Duration(minute) * time.Minute),
			Ticket: schemas.Ticket{ID: ticket, Status: status, Requester: schemas.Requester{ID: requester}}})
	}
	stored := map[int64]zenklav.TicketState{ // ClickHouse, behind
		1: {Status: "open", OccurredAt: at},
		2: {Status: "open", OccurredAt: at},
		3: {Status: "closed", OccurredAt: at},
	}
	note(1, 100, "closed", 5) // ClickHouse has not seen it close yet
	note(1, 100, "open", 1)   // delivered late: changes nothing
	note(2, 200, "open", 2)   // moved to requester 200
	note(4, 100, "new", 3)    // not in ClickHouse yet
	if n := b.count("acme", 100, stored); n != 1 {
		t.Errorf("requester 100 has %d open tickets, want 1 (ticket 4)", n)
	}
	if n := b.count("acme", 200, nil); n != 1 {
		t.Errorf("requester 200 has %d open tickets, want 1 (ticket 2)", n)
	}
	if n := b.count("globex", 100, nil); n != 0 {
		t.Errorf("another connection's requester 100 has %d open tickets, want 0", n)
	}
}
