package zendesktest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

const testSecret = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="

// send sends one API request with the default credentials and extra headers, and returns
// the status, the answer's headers and its body.
func send(t *testing.T, sim *zendesktest.Server, method, path, body string, header http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, sim.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(zendesktest.DefaultEmail+"/token", zendesktest.DefaultAPIToken)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// commentEvent is what a test reads of a ticket.comment_added payload.
type commentEvent struct {
	Type    string `json:"type"`
	Subject string `json:"subject"`
	Detail  struct {
		ID       string   `json:"id"`
		Tags     []string `json:"tags"`
		IsPublic bool     `json:"is_public"`
		ActorID  string   `json:"actor_id"`
	} `json:"detail"`
	Event struct {
		Comment struct {
			ID       string `json:"id"`
			Body     string `json:"body"`
			IsPublic bool   `json:"is_public"`
			Author   struct {
				ID      string `json:"id"`
				IsStaff bool   `json:"is_staff"`
				Name    string `json:"name"`
			} `json:"author"`
		} `json:"comment"`
	} `json:"event"`
}

// next returns the next delivery, checking that it is signed as Zendesk signs.
func next(t *testing.T, got chan delivery) delivery {
	t.Helper()
	select {
	case d := <-got:
		ts := d.header.Get(zendesk.HeaderSignatureTimestamp)
		if sig := d.header.Get(zendesk.HeaderSignature); sig != zendesk.Sign(testSecret, ts, d.body) {
			t.Errorf("signature %q does not verify", sig)
		}
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no webhook delivered")
		return delivery{}
	}
}

func TestAgentReplySendsCommentAdded(t *testing.T) {
	sim := zendesktest.NewServer()
	t.Cleanup(func() { sim.Close(); sim.AssertNoViolations(t) })
	target, got := newTarget(t)
	sim.SetWebhookTarget(target.URL, testSecret)
	agent := sim.AddUser(zendesk.User{Name: "Maya Chen", Email: "maya@acme.example.com", Role: "agent"})
	// An agent whose email is the customer's: Klaviyo's guard against texting oneself.
	customer := sim.AddUser(zendesk.User{Name: "Ana", Email: "ana@example.com", Phone: "+15555550101"})
	twin := sim.AddUser(zendesk.User{Name: "Ana at work", Email: "ana@example.com", Role: "agent"})
	tk := sim.AddTicket(zendesk.Ticket{Subject: "SMS", Status: "open", Tags: []string{"sms"}, RequesterID: customer.ID})

	tests := []struct {
		name   string
		author zendesk.User
		public bool
	}{
		{"public reply", agent, true},
		{"internal note", agent, false},
		{"agent with the customer's email", twin, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cm, err := sim.AgentReply(tk.ID, tt.author.ID, "Your order ships today.", tt.public)
			if err != nil {
				t.Fatal(err)
			}
			d := next(t, got)
			var ev commentEvent
			if err := json.Unmarshal(d.body, &ev); err != nil {
				t.Fatal(err)
			}
			c := ev.Event.Comment
			if ev.Type != "zen:event-type:ticket.comment_added" || ev.Detail.ID != strconv.FormatInt(tk.ID, 10) ||
				!reflect.DeepEqual(ev.Detail.Tags, []string{"sms"}) || !ev.Detail.IsPublic || ev.Detail.ActorID != strconv.FormatInt(tt.author.ID, 10) {
				t.Errorf("envelope = %+v", ev)
			}
			if c.ID != strconv.FormatInt(cm.ID, 10) || c.Body != "Your order ships today." || c.IsPublic != tt.public ||
				c.Author.ID != strconv.FormatInt(tt.author.ID, 10) || !c.Author.IsStaff || c.Author.Name != tt.author.Name {
				t.Errorf("event.comment = %+v, want comment %d by %+v, public %v", c, cm.ID, tt.author, tt.public)
			}
			last := sim.Comments(tk.ID)
			if len(last) == 0 || !reflect.DeepEqual(last[len(last)-1], cm) {
				t.Errorf("Comments = %+v, want it to end with %+v", last, cm)
			}
		})
	}

	closed := sim.AddTicket(zendesk.Ticket{Subject: "done", Status: "closed", RequesterID: customer.ID})
	for name, call := range map[string]func() error{
		"closed ticket": func() error { _, err := sim.AgentReply(closed.ID, agent.ID, "hi", true); return err },
		"no ticket":     func() error { _, err := sim.AgentReply(404404, agent.ID, "hi", true); return err },
		"not an agent":  func() error { _, err := sim.AgentReply(tk.ID, customer.ID, "hi", true); return err },
	} {
		if call() == nil {
			t.Errorf("%s: AgentReply succeeded", name)
		}
	}
}

func TestAPIWritesSendEvents(t *testing.T) {
	sim := zendesktest.NewServer()
	t.Cleanup(func() { sim.Close(); sim.AssertNoViolations(t) })
	target, got := newTarget(t)
	sim.SetWebhookTarget(target.URL, testSecret)
	customer := sim.AddUser(zendesk.User{Name: "Ana", Phone: "+15555550101"})
	tk := sim.AddTicket(zendesk.Ticket{Subject: "SMS", Status: "solved", Tags: []string{"sms"}, RequesterID: customer.ID})
	path := "/api/v2/tickets/" + strconv.FormatInt(tk.ID, 10)

	status, _, body := send(t, sim, "PUT", path, `{"ticket":{"comment":{"body":"The customer did not get your reply.","public":false}}}`, nil)
	if status != 200 {
		t.Fatalf("PUT = %d %s", status, body)
	}
	var ev commentEvent
	json.Unmarshal(next(t, got).body, &ev)
	if a := ev.Event.Comment.Author; a.ID != strconv.FormatInt(zendesktest.APIUserID, 10) || !a.IsStaff || ev.Event.Comment.IsPublic {
		t.Errorf("note by the API user: event.comment = %+v, want the API user, staff, internal", ev.Event.Comment)
	}

	status, _, body = send(t, sim, "PUT", path, `{"ticket":{"status":"open","comment":{"body":"still there?","public":true,"author_id":`+strconv.FormatInt(customer.ID, 10)+`}}}`, nil)
	if status != 200 {
		t.Fatalf("PUT = %d %s", status, body)
	}
	json.Unmarshal(next(t, got).body, &ev)
	if a := ev.Event.Comment.Author; a.ID != strconv.FormatInt(customer.ID, 10) || a.IsStaff {
		t.Errorf("customer's comment: author = %+v, want the customer, not staff", a)
	}
	var change struct {
		Type  string            `json:"type"`
		Event map[string]string `json:"event"`
	}
	json.Unmarshal(next(t, got).body, &change)
	if change.Type != "zen:event-type:ticket.status_changed" || change.Event["current"] != "OPEN" || change.Event["previous"] != "SOLVED" {
		t.Errorf("status change event = %+v", change)
	}

	sim.SetAPIWebhooks(false)
	send(t, sim, "PUT", path, `{"ticket":{"comment":{"body":"quiet","public":false}}}`, nil)
	if err := sim.FlushWebhooks(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		t.Errorf("with API webhooks off, got %s", d.body)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestCreateTicketIdempotencyKey(t *testing.T) {
	sim := zendesktest.NewServer()
	t.Cleanup(func() { sim.Close(); sim.AssertNoViolations(t) })
	now := time.Date(2025, 3, 4, 9, 0, 0, 0, time.UTC)
	sim.SetClock(func() time.Time { return now })
	customer := sim.AddUser(zendesk.User{Name: "Ana", Phone: "+15555550101"})
	body := `{"ticket":{"requester_id":` + strconv.FormatInt(customer.ID, 10) + `,"subject":"hi","comment":{"body":"hi","public":true}}}`
	key := http.Header{"Idempotency-Key": {"k1"}}
	idOf := func(s string) int64 {
		var v struct {
			Ticket struct {
				ID int64 `json:"id"`
			} `json:"ticket"`
		}
		json.Unmarshal([]byte(s), &v)
		return v.Ticket.ID
	}

	status, h, first := send(t, sim, "POST", "/api/v2/tickets", body, key)
	if status != 201 || h.Get("X-Idempotency-Lookup") != "miss" {
		t.Fatalf("first = %d, lookup %q: %s", status, h.Get("X-Idempotency-Lookup"), first)
	}
	now = now.Add(time.Hour)
	status, h, again := send(t, sim, "POST", "/api/v2/tickets", strings.ReplaceAll(body, ",", " ,"), key)
	if status != 201 || h.Get("X-Idempotency-Lookup") != "hit" || again != first {
		t.Errorf("repeat = %d, lookup %q: %s; want 201 hit with the first answer %s", status, h.Get("X-Idempotency-Lookup"), again, first)
	}
	status, _, refused := send(t, sim, "POST", "/api/v2/tickets", strings.Replace(body, `"subject":"hi"`, `"subject":"other"`, 1), key)
	if status != 400 || !strings.Contains(refused, "IdempotentRequestError") {
		t.Errorf("same key, other request = %d %s; want 400", status, refused)
	}
	if n := len(sim.Tickets(customer.ID)); n != 1 {
		t.Errorf("%d tickets, want 1", n)
	}
	now = now.Add(zendesktest.IdempotencyWindow)
	if status, _, later := send(t, sim, "POST", "/api/v2/tickets", body, key); status != 201 || idOf(later) == idOf(first) {
		t.Errorf("after the window = %d %s; want a new ticket", status, later)
	}
}

func TestTicketWritesRefused(t *testing.T) {
	sim := zendesktest.NewServer()
	t.Cleanup(func() { sim.Close(); sim.AssertNoViolations(t) })
	customer := sim.AddUser(zendesk.User{Name: "Ana", Phone: "+15555550101"})
	closed := sim.AddTicket(zendesk.Ticket{Subject: "done", Status: "closed", RequesterID: customer.ID})
	open := sim.AddTicket(zendesk.Ticket{Subject: "open", Status: "open", RequesterID: customer.ID})
	id := func(n int64) string { return strconv.FormatInt(n, 10) }

	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"update of a closed ticket", "PUT", "/api/v2/tickets/" + id(closed.ID), `{"ticket":{"comment":{"body":"hi","public":true}}}`, 422},
		{"follow-up of an open ticket", "POST", "/api/v2/tickets", `{"ticket":{"via_followup_source_id":` + id(open.ID) + `,"comment":{"body":"hi"}}}`, 422},
		{"comment by nobody", "PUT", "/api/v2/tickets/" + id(open.ID), `{"ticket":{"comment":{"body":"hi","author_id":404404}}}`, 422},
		{"ticket without comment", "POST", "/api/v2/tickets", `{"ticket":{"subject":"x","comment":{"body":" "}}}`, 422},
		{"delete", "DELETE", "/api/v2/tickets/" + id(open.ID), "", 204},
		{"read after delete", "GET", "/api/v2/tickets/" + id(open.ID), "", 404},
		{"update after delete", "PUT", "/api/v2/tickets/" + id(open.ID), `{"ticket":{"status":"solved"}}`, 404},
		{"user with a taken email", "POST", "/api/v2/users", `{"user":{"name":"X","email":"` + zendesktest.DefaultEmail + `"}}`, 422},
		{"search for tickets", "GET", "/api/v2/search?query=type:ticket", "", 501},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if status, _, body := send(t, sim, tt.method, tt.path, tt.body, nil); status != tt.status {
				t.Errorf("%s %s = %d %s, want %d", tt.method, tt.path, status, body, tt.status)
			}
		})
	}
}
