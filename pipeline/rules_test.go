package pipeline

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

func TestTransitions(t *testing.T) {
	tests := []struct {
		typ, status string
		want        []string
	}{
		{schemas.TicketCreated, "new", []string{MetricOpened}},
		{schemas.TicketCreated, "open", []string{MetricOpened}},
		{schemas.TicketCreated, "closed", []string{MetricOpened, MetricResolved}},
		{schemas.TicketStatusChanged, "closed", []string{MetricResolved}},
		{schemas.TicketStatusChanged, "solved", nil},
		{schemas.TicketStatusChanged, "pending", nil},
		{schemas.TicketCommentAdded, "closed", nil},
		{schemas.TicketFieldsChanged, "open", nil},
		{"backfill " + schemas.TicketCreated, "new", nil},
		{"backfill " + schemas.TicketStatusChanged, "closed", nil},
		{"backfill to-klaviyo " + schemas.TicketCreated, "new", []string{MetricOpened}},
		{"backfill to-klaviyo " + schemas.TicketStatusChanged, "closed", []string{MetricResolved}},
		{"backfill to-klaviyo " + schemas.TicketStatusChanged, "solved", nil},
	}
	for _, tt := range tests {
		e := schemas.TicketEvent{Type: tt.typ, Ticket: schemas.Ticket{Status: tt.status}}
		// Backfilled events: without --to-klaviyo nothing, with it the live rules.
		if rest, ok := strings.CutPrefix(tt.typ, "backfill "); ok {
			e.Source = schemas.SourceBackfill
			e.Type, e.Klaviyo = strings.CutPrefix(rest, "to-klaviyo ")
		}
		var got []string
		for _, tr := range transitions(&e) {
			got = append(got, tr.metric)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s with status %s: metrics %v, want %v", tt.typ, tt.status, got, tt.want)
		}
	}
}

func TestUniqueIDIgnoresTheZendeskEvent(t *testing.T) {
	a := schemas.TicketEvent{EventID: "zd:1", Tenant: "acme", Ticket: schemas.Ticket{ID: 7}}
	b := a
	b.EventID = "zt:2" // the same change, delivered by a trigger as well
	if uniqueID(&a, opened) != uniqueID(&b, opened) {
		t.Error("one change delivered twice got two unique ids")
	}
	if uniqueID(&a, opened) == uniqueID(&a, resolved) {
		t.Error("opened and resolved share a unique id")
	}
	c := a
	c.Tenant = "globex"
	if uniqueID(&a, opened) == uniqueID(&c, opened) {
		t.Error("two connections share a unique id")
	}
}

func TestProfileOf(t *testing.T) {
	tests := []struct {
		in           Person
		email, phone string
		fails        bool
	}{
		{Person{Email: "a@example.com", Phone: "+15555550101"}, "a@example.com", "", false},
		{Person{Phone: "+1 (555) 555-0142"}, "", "+15555550142", false},
		{Person{Phone: "0044 20 7946 0958"}, "", "+442079460958", false},
		{Person{Phone: "555-0142"}, "", "", true}, // no country code: not guessed
		{Person{Name: "Nobody"}, "", "", true},
	}
	for _, tt := range tests {
		email, phone, err := ProfileOf(tt.in)
		if (err != nil) != tt.fails || email != tt.email || phone != tt.phone {
			t.Errorf("ProfileOf(%+v) = %q, %q, %v", tt.in, email, phone, err)
		}
		if err != nil && zenklav.ErrorCode(err) != zenklav.EINVALID {
			t.Errorf("ProfileOf(%+v): error kind %s, want EINVALID (a dead letter, not a retry)", tt.in, zenklav.ErrorCode(err))
		}
	}
}

func TestPropertiesAreTheFourteen(t *testing.T) {
	e := schemas.TicketEvent{Ticket: schemas.Ticket{ID: 9, Subject: strings.Repeat("é", maxStringBytes)}}
	p := properties(&e, Person{}, "", "", nil)
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

func TestOffsetsCommitOnlyDonePrefixes(t *testing.T) {
	o := newOffsets("t")
	msg := func(p int, off int64) kafka.Message { return kafka.Message{Topic: "t", Partition: p, Offset: off} }
	for off := int64(10); off < 15; off++ {
		o.add(msg(0, off))
	}
	o.add(msg(1, 3))
	o.done(msg(0, 11))
	o.done(msg(0, 12))
	if c := o.committable(); len(c) != 0 {
		t.Fatalf("committable %v before the first message is done", c)
	}
	o.done(msg(0, 10))
	o.done(msg(1, 3))
	got := map[int]int64{}
	for _, m := range o.committable() {
		got[m.Partition] = m.Offset
	}
	if got[0] != 12 || got[1] != 3 || len(got) != 2 {
		t.Fatalf("committable %v, want partition 0 up to 12 and 1 up to 3", got)
	}
	o.committed(o.committable())
	if c := o.committable(); len(c) != 0 {
		t.Fatalf("committable %v after committing", c)
	}
	// A rebalance makes the reader fetch 13 and 14 again: the old copies no longer count.
	o.add(msg(0, 13))
	o.done(msg(0, 14)) // not fetched again yet: ignored
	o.add(msg(0, 14))
	if n := o.inflight(); n != 2 {
		t.Fatalf("inflight %d, want 2", n)
	}
	o.done(msg(0, 13))
	o.done(msg(0, 14))
	if c := o.committable(); len(c) != 1 || c[0].Offset != 14 {
		t.Fatalf("committable %v, want partition 0 up to 14", c)
	}
}

// TestTicketBook: what the emitter has just seen wins over ClickHouse, which the sink may
// not have caught up with; a late delivery does not undo a newer status; a ticket that moved
// to another requester no longer counts for the first.
func TestTicketBook(t *testing.T) {
	b := newTicketBook()
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	note := func(ticket, requester int64, status string, minute int) {
		b.note(&schemas.TicketEvent{Tenant: "acme", OccurredAt: at.Add(time.Duration(minute) * time.Minute),
			Ticket: schemas.Ticket{ID: ticket, Status: status, Requester: schemas.Requester{ID: requester}}})
	}
	stored := map[int64]TicketState{ // ClickHouse, behind
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
