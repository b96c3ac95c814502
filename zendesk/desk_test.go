package zendesk_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// deskSim is a simulator with a clock the test moves, a brand, an agent and a customer.
type deskSim struct {
	*zendesktest.Server
	now      *time.Time
	brand    zendesk.Brand
	agent    zendesk.User
	customer zendesk.User
}

func newDeskSim(t *testing.T) deskSim {
	t.Helper()
	sim := newSim(t)
	now := time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)
	sim.SetClock(func() time.Time { return now })
	return deskSim{
		Server:   sim,
		now:      &now,
		brand:    sim.AddBrand(zendesk.Brand{Name: "Acme", Subdomain: "acme", Active: true}),
		agent:    sim.AddUser(zendesk.User{Name: "Agent Smith", Email: "smith@acme.example.com", Phone: "+15555550100", Role: "agent"}),
		customer: sim.AddUser(zendesk.User{Name: "Jo Customer", Email: "jo@example.com", Phone: "+1 (555) 555-0123"}),
	}
}

func TestFindEndUserByPhone(t *testing.T) {
	s := newDeskSim(t)
	c := newClient(t, s.URL)
	ctx := context.Background()
	older := s.AddUser(zendesk.User{ID: s.customer.ID - 100, Name: "Jo (old)", Phone: "+15555550123"})
	s.AddUser(zendesk.User{Name: "Almost", Phone: "+155555501234"})

	tests := []struct {
		name  string
		phone string
		want  zenklav.DeskUser
		found bool
	}{
		{"formatted phone matches, oldest wins", "+15555550123", zenklav.DeskUser{ID: older.ID, Name: "Jo (old)", Phone: "+15555550123"}, true},
		{"agents are not end users", "+15555550100", zenklav.DeskUser{}, false},
		{"nobody", "+15555550199", zenklav.DeskUser{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found, err := c.FindEndUserByPhone(ctx, tt.phone)
			if err != nil {
				t.Fatal(err)
			}
			if found != tt.found || got != tt.want {
				t.Errorf("FindEndUserByPhone(%s) = %+v, %v; want %+v, %v", tt.phone, got, found, tt.want, tt.found)
			}
		})
	}
	if _, _, err := c.FindEndUserByPhone(ctx, "555-0123"); zenklav.ErrorCode(err) != zenklav.EINVALID {
		t.Errorf("a number that is not E.164: err = %v, want %s", err, zenklav.EINVALID)
	}
}

func TestCreateEndUser(t *testing.T) {
	s := newDeskSim(t)
	c := newClient(t, s.URL)
	ctx := context.Background()

	got, err := c.CreateEndUser(ctx, zenklav.DeskUser{Name: "Ana Souza", Email: "ana@example.com", Phone: "+15555550142"})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := s.User(got.ID)
	want := zendesk.User{ID: got.ID, Name: "Ana Souza", Email: "ana@example.com", Phone: "+15555550142", Role: "end-user"}
	if stored != want {
		t.Errorf("stored %+v, want %+v", stored, want)
	}
	if found, ok, err := c.FindEndUserByPhone(ctx, "+15555550142"); err != nil || !ok || found != got {
		t.Errorf("FindEndUserByPhone after create = %+v, %v, %v; want %+v", found, ok, err, got)
	}

	phoneOnly, err := c.CreateEndUser(ctx, zenklav.DeskUser{Phone: "+15555550143"})
	if err != nil {
		t.Fatal(err)
	}
	if phoneOnly.Name != "SMS +15555550143" || phoneOnly.Email != "" {
		t.Errorf("phone-only user = %+v, want the phone as name and no email", phoneOnly)
	}

	// The email is the agent's: the agent is returned as it is, not changed.
	taken, err := c.CreateEndUser(ctx, zenklav.DeskUser{Name: "Smith at home", Email: "SMITH@acme.example.com", Phone: "+15555550144"})
	if err != nil {
		t.Fatal(err)
	}
	if taken.ID != s.agent.ID {
		t.Errorf("CreateEndUser with a taken email = %+v, want the agent %d", taken, s.agent.ID)
	}
	if u, _ := s.User(s.agent.ID); u != s.agent {
		t.Errorf("agent changed to %+v", u)
	}
}

func TestDeskTicketAndComment(t *testing.T) {
	s := newDeskSim(t)
	c := newClient(t, s.URL)
	ctx := context.Background()

	created, err := c.CreateTicket(ctx, zenklav.NewTicket{
		RequesterID: s.customer.ID, BrandID: s.brand.ID, Subject: "SMS: Where is my order?", Tags: []string{"sms"},
		Comment: zenklav.DeskComment{Body: "Where is my order?", Public: true},
		Notes:   []string{"Last SMS the customer got: 20% off today"},
	}, "key-1")
	if err != nil {
		t.Fatal(err)
	}
	want := zenklav.DeskTicket{ID: created.ID, Status: "new", RequesterID: s.customer.ID, BrandID: s.brand.ID, Tags: []string{"sms"}}
	if !reflect.DeepEqual(created, want) {
		t.Errorf("CreateTicket = %+v, want %+v", created, want)
	}
	if got, err := c.Ticket(ctx, created.ID); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Ticket = %+v, %v; want %+v", got, err, want)
	}
	*s.now = s.now.Add(time.Minute)
	if err := c.Comment(ctx, created.ID, zenklav.DeskComment{Body: "Order 1042", Public: true, AuthorID: s.customer.ID}, ""); err != nil {
		t.Fatal(err)
	}
	wantComments := []zendesktest.Comment{
		{Body: "Where is my order?", Public: true, AuthorID: s.customer.ID},
		{Body: "Last SMS the customer got: 20% off today", Public: false, AuthorID: zendesktest.APIUserID},
		{Body: "Order 1042", Public: true, AuthorID: s.customer.ID},
	}
	assertComments(t, s.Server, created.ID, wantComments)

	// HasComment finds each comment by body, author and publicity, made since the time given.
	tests := []struct {
		name  string
		c     zenklav.DeskComment
		since time.Time
		want  bool
	}{
		{"customer's comment", zenklav.DeskComment{Body: "Order 1042", Public: true, AuthorID: s.customer.ID}, s.now.Add(-time.Second), true},
		{"note by the api user", zenklav.DeskComment{Body: "Last SMS the customer got: 20% off today"}, s.now.Add(-time.Hour), true},
		{"note made before since", zenklav.DeskComment{Body: "Last SMS the customer got: 20% off today"}, *s.now, false},
		{"other author", zenklav.DeskComment{Body: "Order 1042", Public: true, AuthorID: s.agent.ID}, s.now.Add(-time.Hour), false},
		{"other publicity", zenklav.DeskComment{Body: "Order 1042", AuthorID: s.customer.ID}, s.now.Add(-time.Hour), false},
		{"other body", zenklav.DeskComment{Body: "Order 1043", Public: true, AuthorID: s.customer.ID}, s.now.Add(-time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.HasComment(ctx, created.ID, tt.c, tt.since)
			if err != nil || got != tt.want {
				t.Errorf("HasComment = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func assertComments(t *testing.T, sim *zendesktest.Server, ticketID int64, want []zendesktest.Comment) {
	t.Helper()
	got := sim.Comments(ticketID)
	for i := range got {
		got[i].ID, got[i].CreatedAt = 0, time.Time{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("comments of ticket %d:\n got  %+v\n want %+v", ticketID, got, want)
	}
}

func TestCreateTicketIdempotent(t *testing.T) {
	s := newDeskSim(t)
	// A proxy that loses the answer to the first note: the call fails after Zendesk made
	// the ticket, as a crash or timeout would.
	var puts atomic.Int32
	target, _ := url.Parse(s.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && puts.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	c := newClient(t, front.URL)
	ctx := context.Background()
	nt := zenklav.NewTicket{
		RequesterID: s.customer.ID, Subject: "SMS: hi", Tags: []string{"sms"},
		Comment: zenklav.DeskComment{Body: "hi", Public: true}, Notes: []string{"note 1", "note 2"},
	}

	if _, err := c.CreateTicket(ctx, nt, "sms:msg-1"); zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE {
		t.Fatalf("first call: err = %v, want the proxy's 502 as %s", err, zenklav.EUNAVAILABLE)
	}
	first, err := c.CreateTicket(ctx, nt, "sms:msg-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.CreateTicket(ctx, nt, "sms:msg-1")
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != again.ID {
		t.Errorf("retries made tickets %d and %d, want one", first.ID, again.ID)
	}
	if n := len(s.Tickets(s.customer.ID)); n != 1 {
		t.Errorf("customer has %d tickets, want 1", n)
	}
	assertComments(t, s.Server, first.ID, []zendesktest.Comment{
		{Body: "hi", Public: true, AuthorID: s.customer.ID},
		{Body: "note 1", AuthorID: zendesktest.APIUserID},
		{Body: "note 2", AuthorID: zendesktest.APIUserID},
	})

	// The same key for another ticket is refused, not answered with the first ticket.
	other := nt
	other.Subject = "SMS: something else"
	if _, err := c.CreateTicket(ctx, other, "sms:msg-1"); zenklav.ErrorCode(err) != zenklav.EINVALID {
		t.Errorf("same key, other ticket: err = %v, want %s", err, zenklav.EINVALID)
	}
	// After Zendesk's two hours the key is forgotten.
	*s.now = s.now.Add(zendesktest.IdempotencyWindow)
	if later, err := c.CreateTicket(ctx, nt, "sms:msg-1"); err != nil || later.ID == first.ID {
		t.Errorf("after the window: %+v, %v; want a new ticket", later, err)
	}
}

func TestFollowUpAndClosedTickets(t *testing.T) {
	s := newDeskSim(t)
	c := newClient(t, s.URL)
	ctx := context.Background()
	closed := s.AddTicket(zendesk.Ticket{Subject: "old", Status: "closed", Tags: []string{"sms", "vip"}, RequesterID: s.customer.ID})
	solved := s.AddTicket(zendesk.Ticket{Subject: "solved", Status: "solved", Tags: []string{"sms"}, RequesterID: s.customer.ID})

	err := c.Comment(ctx, closed.ID, zenklav.DeskComment{Body: "hello again", Public: true, AuthorID: s.customer.ID}, "open")
	if zenklav.ErrorCode(err) != zenklav.ECONFLICT || !strings.Contains(err.Error(), "is closed") || zenklav.Transient(err) {
		t.Errorf("comment on a closed ticket: err = %v (%s), want a final %s saying it is closed", err, zenklav.ErrorCode(err), zenklav.ECONFLICT)
	}
	if zenklav.Response(err) == "" {
		t.Errorf("closed-ticket error carries no response")
	}

	nt := zenklav.NewTicket{
		RequesterID: s.customer.ID, Subject: "SMS: hello again", Tags: []string{"sms"},
		Comment: zenklav.DeskComment{Body: "hello again", Public: true}, FollowUpOf: closed.ID,
	}
	follow, err := c.CreateTicket(ctx, nt, "follow-1")
	if err != nil {
		t.Fatal(err)
	}
	if follow.ID == closed.ID || follow.Status != "new" || !reflect.DeepEqual(follow.Tags, []string{"sms"}) {
		t.Errorf("follow-up = %+v, want a new ticket with the tags sent (not the closed one's)", follow)
	}
	nt.FollowUpOf = solved.ID
	if _, err := c.CreateTicket(ctx, nt, "follow-2"); zenklav.ErrorCode(err) != zenklav.EINVALID {
		t.Errorf("follow-up of a solved ticket: err = %v, want %s", err, zenklav.EINVALID)
	}

	// A solved ticket is reopened with the customer's comment.
	if err := c.Comment(ctx, solved.ID, zenklav.DeskComment{Body: "still broken", Public: true, AuthorID: s.customer.ID}, "open"); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Ticket(ctx, solved.ID); got.Status != "open" {
		t.Errorf("status after reopening = %q, want open", got.Status)
	}

	// A deleted ticket is not found, to read or to comment on.
	s.DeleteTicket(solved.ID)
	if _, err := c.Ticket(ctx, solved.ID); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("Ticket after delete: err = %v, want %s", err, zenklav.ENOTFOUND)
	}
	if err := c.Comment(ctx, solved.ID, zenklav.DeskComment{Body: "x", Public: true}, ""); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("Comment after delete: err = %v, want %s", err, zenklav.ENOTFOUND)
	}
}

func TestCommentPerTicketLimit(t *testing.T) {
	s := newDeskSim(t)
	c := newClient(t, s.URL)
	ctx := context.Background()
	ticket := s.AddTicket(zendesk.Ticket{Subject: "chatty", Status: "open", RequesterID: s.customer.ID})
	start := *s.now
	text := zenklav.DeskComment{Body: "one more", Public: true, AuthorID: s.customer.ID}
	for i := range zendesktest.TicketUpdateLimit {
		*s.now = start.Add(time.Duration(i) * time.Second)
		if err := c.Comment(ctx, ticket.ID, text, ""); err != nil {
			t.Fatalf("update %d: %v", i+1, err)
		}
	}
	*s.now = start.Add(time.Minute)
	err := c.Comment(ctx, ticket.ID, text, "")
	if zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE || !zenklav.Throttled(err) {
		t.Fatalf("update 31: err = %v, want a throttled %s", err, zenklav.EUNAVAILABLE)
	}
	if got, want := zenklav.RetryAfter(err), 9*time.Minute; got != want {
		t.Errorf("RetryAfter = %s, want %s (until the first update leaves the 10 minutes)", got, want)
	}
	*s.now = start.Add(zendesktest.TicketUpdateWindow)
	if err := c.Comment(ctx, ticket.ID, text, ""); err != nil {
		t.Errorf("after the window: %v", err)
	}
	if n := len(s.Comments(ticket.ID)); n != zendesktest.TicketUpdateLimit+1 {
		t.Errorf("%d comments, want %d", n, zendesktest.TicketUpdateLimit+1)
	}
}

// TestCommentClosedFromTicket covers a 422 whose body does not say why, as Zendesk's wording
// for a closed ticket is not documented: the client reads the ticket to tell.
func TestCommentClosedFromTicket(t *testing.T) {
	for _, status := range []string{"closed", "open"} {
		t.Run(status, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPut {
					w.WriteHeader(http.StatusUnprocessableEntity)
					w.Write([]byte(`{"error":"RecordInvalid","description":"Record validation errors"}`))
					return
				}
				w.Write([]byte(`{"ticket":{"id":7,"status":"` + status + `","requester_id":1}}`))
			}))
			defer srv.Close()
			err := newClient(t, srv.URL).Comment(context.Background(), 7, zenklav.DeskComment{Body: "hi", Public: true}, "")
			want := zenklav.EINVALID
			if status == "closed" {
				want = zenklav.ECONFLICT
			}
			if got := zenklav.ErrorCode(err); got != want {
				t.Errorf("kind = %q, want %q (err %v)", got, want, err)
			}
			if zenklav.Response(err) == "" {
				t.Errorf("error carries no response: %v", err)
			}
		})
	}
}

// The files attached to an agent's reply are named; a comment without any, or a ticket that is
// gone, names none.
func TestCommentAttachments(t *testing.T) {
	s := newDeskSim(t)
	c := newClient(t, s.URL)
	ctx := context.Background()
	tk, err := c.CreateTicket(ctx, zenklav.NewTicket{RequesterID: s.customer.ID, Subject: "SMS: hi", Tags: []string{"sms"},
		Comment: zenklav.DeskComment{Body: "hi", Public: true}}, "key-attach")
	if err != nil {
		t.Fatal(err)
	}
	with, err := s.AgentReplyFiles(tk.ID, s.agent.ID, "See the label", true, "label.pdf", "photo.png")
	if err != nil {
		t.Fatal(err)
	}
	without, err := s.AgentReply(tk.ID, s.agent.ID, "Anything else?", true)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.CommentAttachments(ctx, tk.ID, with.ID); err != nil || !reflect.DeepEqual(got, []string{"label.pdf", "photo.png"}) {
		t.Errorf("attachments of the reply with files = %q, %v", got, err)
	}
	if got, err := c.CommentAttachments(ctx, tk.ID, without.ID); err != nil || len(got) != 0 {
		t.Errorf("attachments of the reply without = %q, %v", got, err)
	}
	s.DeleteTicket(tk.ID)
	if got, err := c.CommentAttachments(ctx, tk.ID, with.ID); err != nil || len(got) != 0 {
		t.Errorf("attachments on a deleted ticket = %q, %v", got, err)
	}
}
