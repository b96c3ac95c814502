package sms

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
)

// people is a Zendesk account's users, for the reply rules.
type people map[int64]zenklav.Person

func (p people) FindUser(_ context.Context, id int64) (zenklav.Person, error) {
	u, ok := p[id]
	if !ok {
		return zenklav.Person{}, zenklav.Errorf(zenklav.ENOTFOUND, "no user %d", id)
	}
	return u, nil
}
func (p people) FindTicket(context.Context, int64) (zenklav.TicketDetails, error) {
	return zenklav.TicketDetails{}, nil
}
func (p people) FindTickets(context.Context, []int64) (map[int64]zenklav.TicketDetails, error) {
	return nil, nil
}
func (p people) FindUsers(context.Context, []int64) (map[int64]zenklav.Person, error) {
	return nil, nil
}
func (p people) GroupName(context.Context, int64) (string, error) { return "", nil }

const (
	ada     = 11 // the customer
	grace   = 21 // an agent
	adaTwin = 22 // an agent with the customer's email
	bob     = 12 // a customer who is not subscribed
)

func newReplies(t *testing.T, store Store) (*Replies, Route, *desk, *klaviyo) {
	t.Helper()
	hs := newHarness(t, store)
	hs.r.Directory = people{
		ada:     {ID: ada, Role: "end-user", Email: "ada@example.com", Phone: customer},
		bob:     {ID: bob, Role: "end-user", Phone: stranger},
		grace:   {ID: grace, Role: "agent", Email: "grace@acme.example"},
		adaTwin: {ID: adaTwin, Role: "admin", Email: "ADA@example.com"},
	}
	dlq := &kafka.DeadLetters{Publisher: nopPublisher{}, Topic: "dlq", Role: "sms", Logger: slog.New(slog.DiscardHandler)}
	h, err := NewReplies(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), Config{Routes: zenklav.StaticRoutes(map[string]Route{"acme": hs.r}), Store: store}, dlq)
	if err != nil {
		t.Fatal(err)
	}
	hs.desk.tickets[7] = &zenklav.DeskTicket{ID: 7, Status: zenklav.StatusOpen, RequesterID: ada, Tags: []string{zenklav.TagSMS}}
	hs.desk.tickets[8] = &zenklav.DeskTicket{ID: 8, Status: zenklav.StatusOpen, RequesterID: bob, Tags: []string{zenklav.TagSMS}}
	// The agent's reply with a file, as Zendesk holds it.
	hs.desk.comments[7] = append(hs.desk.comments[7], deskComment{DeskComment: zenklav.DeskComment{Body: "Here is the label", Public: true, AuthorID: grace}, id: 900, files: []string{"label.pdf"}})
	return h, hs.r, hs.desk, hs.r.Klaviyo.(*klaviyo)
}

func TestReplyRules(t *testing.T) {
	h, r, d, kl := newReplies(t, &memoryStore{})
	for _, c := range []struct {
		name   string
		rep    reply
		sent   []string // what the customer got, in all, after this one
		note   string   // the start of an internal note on the ticket, if any
		failed bool     // a refusal: noted, dead-lettered
	}{
		{"an agent's reply, as plain text", reply{EventID: "e1", TicketID: 7, RequesterID: ada, AuthorID: grace, Body: "<p>It ships <b>tomorrow</b> &amp; [track it](https://t.example/1)</p>"},
			[]string{"It ships tomorrow & track it (https://t.example/1)"}, "", false},
		{"the same event again", reply{EventID: "e1", TicketID: 7, RequesterID: ada, AuthorID: grace, Body: "again"},
			[]string{"It ships tomorrow & track it (https://t.example/1)"}, "", false},
		{"the customer's own comment", reply{EventID: "e2", TicketID: 7, RequesterID: ada, AuthorID: ada, Body: "thanks"},
			[]string{"It ships tomorrow & track it (https://t.example/1)"}, "", false},
		{"a reply with attachments: its text, and a note", reply{EventID: "e6", TicketID: 7, RequesterID: ada, AuthorID: grace, CommentID: 900, Body: "Here is the label"},
			[]string{"It ships tomorrow & track it (https://t.example/1)", "Here is the label"}, "The customer got the text of this reply by SMS, without its attachments (label.pdf)", false},
		{"a reply written two minutes ago: sent, and the agent told of the delay", reply{EventID: "e5", TicketID: 7, RequesterID: ada, AuthorID: grace, Body: "Sorry for the wait", Received: time.Now().Add(-2 * time.Minute)},
			[]string{"It ships tomorrow & track it (https://t.example/1)", "Here is the label", "Sorry for the wait"}, "This reply reaches the customer about 2m0s after it was written", false},
		{"an agent with the customer's email", reply{EventID: "e3", TicketID: 7, RequesterID: ada, AuthorID: adaTwin, Body: "hi"},
			[]string{"It ships tomorrow & track it (https://t.example/1)", "Here is the label", "Sorry for the wait"}, "This reply was not sent by SMS: the replying agent has the customer's email", false},
		{"a customer who is not subscribed", reply{EventID: "e4", TicketID: 8, RequesterID: bob, AuthorID: grace, Body: "hello"},
			[]string{"It ships tomorrow & track it (https://t.example/1)", "Here is the label", "Sorry for the wait"}, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			notes := len(d.comments[c.rep.TicketID])
			c.rep.Connection = "acme"
			err := h.send(context.Background(), r, &c.rep)
			if (err != nil) != c.failed {
				t.Fatalf("send: %v", err)
			}
			if got := kl.sent["conv-p1"]; strings.Join(got, "|") != strings.Join(c.sent, "|") {
				t.Errorf("the customer got %q, want %q", got, c.sent)
			}
			added := d.comments[c.rep.TicketID][notes:]
			switch {
			case c.note == "" && len(added) > 0:
				t.Errorf("unexpected notes %+v", added)
			case c.note != "" && (len(added) != 1 || added[0].Public || !strings.HasPrefix(added[0].Body, c.note)):
				t.Errorf("notes %+v, want one starting %q", added, c.note)
			}
		})
	}
}

// Killed between Klaviyo's 202 and the record of it: the reply is not sent again, and the agent
// is told it may not have arrived.
func TestReplyAtMostOnce(t *testing.T) {
	store := &failingStore{memoryStore: &memoryStore{}, left: 2} // the Put after the send fails
	h, r, d, kl := newReplies(t, store)
	rep := reply{Connection: "acme", EventID: "e1", TicketID: 7, RequesterID: ada, AuthorID: grace, Body: "On its way"}
	if err := h.send(context.Background(), r, &rep); err == nil {
		t.Fatal("the crash did not fail the send")
	}
	store.left = 1 << 30
	if err := h.send(context.Background(), r, &rep); err != nil {
		t.Fatal(err)
	}
	if got := kl.sent["conv-p1"]; len(got) != 1 {
		t.Errorf("the customer got %q, want the reply once", got)
	}
	if cs := notesOf(d, 7); len(cs) != 1 || !strings.Contains(cs[0], "may not have got it") {
		t.Errorf("notes %q, want one telling the agent", cs)
	}
	// An error answer from Klaviyo is retried: it took nothing.
	kl.refuse = zenklav.Errorf(zenklav.EUNAVAILABLE, "klaviyo answered 503")
	next := reply{Connection: "acme", EventID: "e2", TicketID: 7, RequesterID: ada, AuthorID: grace, Body: "Any news?"}
	if err := h.send(context.Background(), r, &next); !zenklav.Transient(err) {
		t.Fatalf("send during a Klaviyo outage: %v", err)
	}
	kl.refuse = nil
	if err := h.send(context.Background(), r, &next); err != nil {
		t.Fatal(err)
	}
	if got := kl.sent["conv-p1"]; len(got) != 2 || got[1] != "Any news?" || len(notesOf(d, 7)) != 1 {
		t.Errorf("after the retry the customer got %q, notes %q", got, notesOf(d, 7))
	}
}

// notesOf is the internal notes on a ticket.
func notesOf(d *desk, ticket int64) []string {
	var out []string
	for _, c := range d.comments[ticket] {
		if !c.Public {
			out = append(out, c.Body)
		}
	}
	return out
}

// TestRepliesHistory: replies received before the sms role first ran anywhere are history,
// never texted (a first start on a topic that holds Klaviyo's own integration's tickets); the
// first run's time is kept, so a restart does not move it.
func TestRepliesHistory(t *testing.T) {
	store := &memoryStore{}
	h, _, _, _ := newReplies(t, store)
	first := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	if err := h.Begin(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	route := func(received time.Time) bool {
		ev := schemas.TicketEvent{EventID: fmt.Sprintf("zd:r-%d", received.Unix()), Connection: "acme", Account: schemas.Account{Subdomain: "acme"},
			Type: schemas.TicketCommentAdded, Source: schemas.SourceEvent, OccurredAt: received, ReceivedAt: received,
			Ticket:  schemas.Ticket{ID: 7, Status: "open", Tags: []string{zenklav.TagSMS}, Requester: schemas.Requester{ID: ada}},
			Comment: &schemas.Comment{ID: 1, AuthorID: grace, Public: true, Body: "hi"}}
		b, err := ev.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		routed, err := h.Route(kafka.Message{Value: b})
		if err != nil {
			t.Fatal(err)
		}
		return routed.Value != nil
	}
	if route(first.Add(-time.Hour)) {
		t.Error("a reply from before the first run was routed to be texted")
	}
	if !route(first.Add(time.Second)) {
		t.Error("a reply from after the first run was not routed")
	}
	again, _, _, _ := newReplies(t, store)
	if err := again.Begin(context.Background(), first.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !again.since.Equal(first) {
		t.Errorf("after a restart the first run is %s, want %s", again.since, first)
	}
}
