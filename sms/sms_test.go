package sms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/kafka"
)

// desk is a Zendesk account in memory: users, tickets, comments, idempotency keys.
type desk struct {
	mu       sync.Mutex
	users    []zenklav.DeskUser
	tickets  map[int64]*zenklav.DeskTicket
	comments map[int64][]deskComment
	keys     map[string]int64
	next     int64
	// closeFirst closes a ticket when a comment comes for it, as an agent might just then.
	closeFirst bool
}

type deskComment struct {
	zenklav.DeskComment
	at    time.Time
	id    int64
	files []string
}

func newDesk() *desk {
	return &desk{tickets: map[int64]*zenklav.DeskTicket{}, comments: map[int64][]deskComment{}, keys: map[string]int64{}, next: 100}
}

func (d *desk) FindEndUserByPhone(_ context.Context, phone string) (zenklav.DeskUser, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range d.users {
		if u.Phone == phone {
			return u, true, nil
		}
	}
	return zenklav.DeskUser{}, false, nil
}

func (d *desk) CreateEndUser(_ context.Context, u zenklav.DeskUser) (zenklav.DeskUser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next++
	u.ID = d.next
	d.users = append(d.users, u)
	return u, nil
}

func (d *desk) Ticket(_ context.Context, id int64) (zenklav.DeskTicket, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tickets[id]
	if !ok {
		return zenklav.DeskTicket{}, zenklav.Errorf(zenklav.ENOTFOUND, "no ticket %d", id)
	}
	return *t, nil
}

func (d *desk) CreateTicket(_ context.Context, nt zenklav.NewTicket, key string) (zenklav.DeskTicket, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if id, ok := d.keys[key]; ok {
		return *d.tickets[id], nil
	}
	if nt.FollowUpOf != 0 && d.tickets[nt.FollowUpOf].Status != zenklav.StatusClosed {
		return zenklav.DeskTicket{}, errors.New("follow-up of a ticket that is not closed")
	}
	d.next++
	t := &zenklav.DeskTicket{ID: d.next, Status: zenklav.StatusNew, RequesterID: nt.RequesterID, BrandID: nt.BrandID, Tags: nt.Tags}
	d.tickets[t.ID], d.keys[key] = t, t.ID
	d.comments[t.ID] = append(d.comments[t.ID], deskComment{DeskComment: nt.Comment, at: time.Now()})
	for _, n := range nt.Notes {
		d.comments[t.ID] = append(d.comments[t.ID], deskComment{DeskComment: zenklav.DeskComment{Body: n}, at: time.Now()})
	}
	return *t, nil
}

func (d *desk) Comment(_ context.Context, id int64, c zenklav.DeskComment, status string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tickets[id]
	if ok && d.closeFirst {
		t.Status, d.closeFirst = zenklav.StatusClosed, false
	}
	if !ok {
		return fmt.Errorf("ticket %d takes no comment", id)
	}
	if t.Status == zenklav.StatusClosed {
		return zenklav.Errorf(zenklav.ECONFLICT, "ticket %d is closed", id)
	}
	d.comments[id] = append(d.comments[id], deskComment{DeskComment: c, at: time.Now()})
	if status != "" {
		t.Status = status
	}
	return nil
}

func (d *desk) CommentAttachments(_ context.Context, ticketID, commentID int64) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.comments[ticketID] {
		if c.id == commentID {
			return c.files, nil
		}
	}
	return nil, nil
}

func (d *desk) HasComment(_ context.Context, id int64, c zenklav.DeskComment, since time.Time) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, x := range d.comments[id] {
		if x.DeskComment == c && !x.at.Before(since) {
			return true, nil
		}
	}
	return false, nil
}

func (d *desk) set(id int64, status string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if status == zenklav.StatusDeleted {
		delete(d.tickets, id)
		return
	}
	d.tickets[id].Status = status
}

// klaviyo is the customers' profiles, by phone, and the replies sent to their conversations.
type klaviyo struct {
	mu       sync.Mutex
	profiles map[string]zenklav.Profile
	sent     map[string][]string // by conversation id ("conv-" + profile id)
	refuse   error               // what SendMessage answers, when set
}

func (k *klaviyo) ProfileByPhone(_ context.Context, phone string) (zenklav.Profile, bool, error) {
	p, ok := k.profiles[phone]
	return p, ok, nil
}

func (k *klaviyo) SMSConversation(_ context.Context, profileID string) (string, error) {
	return "conv-" + profileID, nil
}

func (k *klaviyo) SendMessage(_ context.Context, conversationID, body string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.refuse != nil {
		return k.refuse
	}
	if k.sent == nil {
		k.sent = map[string][]string{}
	}
	k.sent[conversationID] = append(k.sent[conversationID], body)
	return nil
}

func (k *klaviyo) MessageDelay() time.Duration { return 0 }

// failingStore fails the Save after n successful ones: a crash between a Zendesk write and the
// record of it.
type failingStore struct {
	*memoryStore
	mu   sync.Mutex
	left int
}

func (s *failingStore) Put(ctx context.Context, key string, v []byte) error {
	s.mu.Lock()
	s.left--
	fail := s.left == 0
	s.mu.Unlock()
	if fail {
		return zenklav.Errorf(zenklav.EUNAVAILABLE, "crash")
	}
	return s.memoryStore.Put(ctx, key, v)
}

const (
	customer = "+15555550100"
	stranger = "+15555550199"
)

type harness struct {
	t     *testing.T
	h     *Handler
	desk  *desk
	store Store
	r     Route
	n     int
}

func newHarness(t *testing.T, store Store) *harness {
	conn := &zenklav.Connection{ID: "acme", SMS: zenklav.SMSSettings{Enabled: true, Brand: 360001}}
	d := newDesk()
	r := Route{Connection: conn, Desk: d, Klaviyo: &klaviyo{profiles: map[string]zenklav.Profile{
		customer: {ID: "p1", FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com", SMSConsent: &zenklav.Consent{Consent: "SUBSCRIBED"}},
		stranger: {ID: "p2", Email: "bob@example.com", SMSConsent: &zenklav.Consent{Consent: "UNSUBSCRIBED"}},
	}}}
	dlq := &kafka.DeadLetters{Publisher: nopPublisher{}, Topic: "dlq", Role: "sms", Logger: slog.New(slog.DiscardHandler)}
	h, err := New(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), Config{Routes: zenklav.StaticRoutes(map[string]Route{"acme": r}), Store: store}, dlq)
	if err != nil {
		t.Fatal(err)
	}
	h.retry.Initial, h.retry.Max = time.Millisecond, time.Millisecond
	return &harness{t: t, h: h, desk: d, store: store, r: r}
}

type nopPublisher struct{}

func (nopPublisher) Publish(context.Context, ...zenklav.Message) error { return nil }

// send handles events as one batch; id reuses an event id when not "".
func (hs *harness) send(evs ...event) {
	hs.t.Helper()
	var ds []*kafka.Delivery[*event]
	for _, e := range evs {
		e := e
		hs.n++
		e.Connection = "acme"
		if e.EventID == "" {
			e.EventID = fmt.Sprintf("klaviyo:%d", hs.n)
		}
		if e.CustomerPhone == "" {
			e.CustomerPhone = customer
		}
		if e.Kind == "" {
			e.Kind = kindInbound
		}
		if e.SenderType == "" {
			e.SenderType = zenklav.SenderTollFree
		}
		ds = append(ds, &kafka.Delivery[*event]{Value: &e, Fetched: time.Now()})
	}
	for _, g := range byCustomer(ds) {
		if err := hs.h.step(context.Background(), hs.r, g); err != nil {
			hs.t.Fatalf("step: %v", err)
		}
	}
}

func (hs *harness) tickets() []*zenklav.DeskTicket {
	var out []*zenklav.DeskTicket
	for id := int64(0); id <= hs.desk.next; id++ {
		if t, ok := hs.desk.tickets[id]; ok {
			out = append(out, t)
		}
	}
	return out
}

func (hs *harness) bodies(id int64) []string {
	var out []string
	for _, c := range hs.desk.comments[id] {
		kind := "note"
		if c.Public {
			kind = "public"
		}
		out = append(out, kind+": "+c.Body)
	}
	return out
}

func TestConversationRules(t *testing.T) {
	hs := newHarness(t, &memoryStore{})
	hs.send(event{Kind: kindSent, Body: "20% off today", Campaign: "Spring sale", At: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)})
	if len(hs.tickets()) != 0 {
		t.Fatal("a campaign SMS with no ticket opened one")
	}
	hs.send(event{Body: "Where is my order #1234?"})
	ts := hs.tickets()
	if len(ts) != 1 || ts[0].BrandID != 360001 || ts[0].Tags[0] != zenklav.TagSMS {
		t.Fatalf("first text: tickets %+v", ts)
	}
	first := ts[0]
	got := hs.bodies(first.ID)
	if len(got) != 2 || got[0] != "public: Where is my order #1234?" || !strings.Contains(got[1], "Spring sale") {
		t.Errorf("new ticket's comments = %q", got)
	}
	if u := hs.desk.users[0]; u.Name != "Ada Lovelace" || u.Email != "ada@example.com" || u.Phone != customer || first.RequesterID != u.ID {
		t.Errorf("requester %+v of ticket %+v", u, first)
	}
	// A burst becomes one comment; an MMS says what was left out.
	hs.send(event{Body: "Hello?"}, event{Body: "Anyone?"}, event{Body: "", Media: []string{"image/jpeg"}})
	got = hs.bodies(first.ID)
	if len(got) != 3 || !strings.HasPrefix(got[2], "public: Hello?\n\nAnyone?\n\n[The customer also sent an attachment (image/jpeg)") {
		t.Errorf("burst: comments %q", got)
	}
	// Keywords: JOIN is passed over, STOP is told to the agent, HELP is a message.
	hs.send(event{Body: "join"})
	hs.send(event{Body: "STOP."})
	hs.send(event{Body: "help"})
	got = hs.bodies(first.ID)
	if len(got) != 5 || !strings.HasPrefix(got[3], "note: The customer texted STOP") || got[4] != "public: help" {
		t.Errorf("keywords: comments %q", got)
	}
	// Solved: reopened with the comment.
	hs.desk.set(first.ID, zenklav.StatusSolved)
	hs.send(event{Body: "It came broken"})
	if first.Status != zenklav.StatusOpen || len(hs.bodies(first.ID)) != 6 {
		t.Errorf("solved ticket: status %s, comments %q", first.Status, hs.bodies(first.ID))
	}
	// Closed: a follow-up.
	hs.desk.set(first.ID, zenklav.StatusClosed)
	hs.send(event{Body: "One more thing"})
	ts = hs.tickets()
	if len(ts) != 2 || len(hs.bodies(first.ID)) != 6 || hs.bodies(ts[1].ID)[0] != "public: One more thing" {
		t.Fatalf("closed ticket: tickets %+v", ts)
	}
	// Deleted: a new ticket, not a follow-up.
	hs.desk.set(ts[1].ID, zenklav.StatusDeleted)
	hs.send(event{Body: "Hello again"})
	if ts = hs.tickets(); len(ts) != 2 || hs.bodies(ts[1].ID)[0] != "public: Hello again" {
		t.Fatalf("deleted ticket: tickets %+v", ts)
	}
	// Not consented, or to an alpha sender: nothing.
	hs.send(event{Body: "hi", CustomerPhone: stranger})
	hs.send(event{Body: "hi", SenderType: zenklav.SenderAlpha})
	// (The new ticket holds the text and the note of the last campaign SMS.)
	if ts = hs.tickets(); len(ts) != 2 || len(hs.bodies(ts[1].ID)) != 2 {
		t.Errorf("unconsented or alpha texts made tickets or comments: %+v", ts)
	}
}

// A redelivered message does nothing; a crash between a Zendesk write and its record makes
// neither a second ticket nor a second comment when the message comes again.
func TestConversationExactlyOnce(t *testing.T) {
	hs := newHarness(t, &memoryStore{})
	hs.send(event{EventID: "klaviyo:a", Body: "first"}, event{EventID: "klaviyo:a", Body: "first"}) // twice in one batch
	hs.send(event{EventID: "klaviyo:a", Body: "first"})
	if ts := hs.tickets(); len(ts) != 1 || len(hs.bodies(ts[0].ID)) != 1 || hs.bodies(ts[0].ID)[0] != "public: first" {
		t.Fatalf("redelivery: tickets %+v", ts)
	}
	for _, c := range []struct {
		name string
		save int // the Save that fails: 1 records the pending write, 2 records it done
	}{{"crash after the write", 2}, {"crash before the write", 1}} {
		t.Run(c.name, func(t *testing.T) {
			for _, first := range []bool{true, false} { // a new ticket, then a comment
				store := &failingStore{memoryStore: &memoryStore{}, left: c.save}
				hs := newHarness(t, store)
				if !first {
					store.left = 1 << 30
					hs.send(event{EventID: "klaviyo:x", Body: "opening"})
					store.left = c.save
				}
				e := event{Connection: "acme", EventID: "klaviyo:b", Kind: kindInbound, CustomerPhone: customer, Body: "crashing", SenderType: zenklav.SenderTollFree}
				d := []*kafka.Delivery[*event]{{Value: &e, Fetched: time.Now()}}
				if err := hs.h.step(context.Background(), hs.r, d); err == nil {
					t.Fatal("the crash did not fail the step")
				}
				if err := hs.h.step(context.Background(), hs.r, d); err != nil {
					t.Fatalf("redelivery after the crash: %v", err)
				}
				ts := hs.tickets()
				if len(ts) != 1 {
					t.Fatalf("tickets after the crash: %d", len(ts))
				}
				crashing := 0
				for _, b := range hs.bodies(ts[0].ID) {
					if b == "public: crashing" {
						crashing++
					}
				}
				if crashing != 1 {
					t.Errorf("the text is on the ticket %d times: %q", crashing, hs.bodies(ts[0].ID))
				}
			}
		})
	}
}

// A ticket closed between zenklav's read of it and its comment: the text goes to a follow-up,
// once.
func TestConversationTicketClosedMeanwhile(t *testing.T) {
	hs := newHarness(t, &memoryStore{})
	hs.send(event{Body: "first"})
	hs.desk.closeFirst = true
	e := event{Connection: "acme", EventID: "klaviyo:late", Kind: kindInbound, CustomerPhone: customer, Body: "late", SenderType: zenklav.SenderTollFree}
	d := []*kafka.Delivery[*event]{{Value: &e, Fetched: time.Now()}}
	err := hs.h.step(context.Background(), hs.r, d)
	if !zenklav.Transient(err) {
		t.Fatalf("a comment on a ticket closed meanwhile: %v, want a transient error", err)
	}
	if err := hs.h.step(context.Background(), hs.r, d); err != nil {
		t.Fatal(err)
	}
	ts := hs.tickets()
	if len(ts) != 2 || len(hs.bodies(ts[0].ID)) != 1 || hs.bodies(ts[1].ID)[0] != "public: late" {
		t.Errorf("tickets %+v, comments %q / %q", ts, hs.bodies(ts[0].ID), hs.bodies(ts[len(ts)-1].ID))
	}
}

// Texts of one batch go on the ticket in the order Klaviyo says they were sent, whatever order
// the webhooks came in.
func TestConversationOrdersABatchByTime(t *testing.T) {
	hs := newHarness(t, &memoryStore{})
	at := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	hs.send(event{Body: "second", At: at.Add(time.Second)}, event{Body: "first", At: at}, event{Body: "third", At: at.Add(2 * time.Second)})
	ts := hs.tickets()
	if len(ts) != 1 || hs.bodies(ts[0].ID)[0] != "public: first\n\nsecond\n\nthird" {
		t.Errorf("comments %q", hs.bodies(ts[0].ID))
	}
}
