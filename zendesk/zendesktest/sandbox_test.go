package zendesktest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// newSandbox serves a seeded simulator the way sandbox mode does: New, then the *Server as
// a handler on a listener of the caller's.
func newSandbox(t *testing.T) (*zendesktest.Server, string, zendesktest.Sample) {
	t.Helper()
	sim, err := zendesktest.New(discard())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		srv.Close()
		sim.AssertNoViolations(t)
	})
	return sim, srv.URL, sim.Seed()
}

func TestSeedIsServedByTheAPI(t *testing.T) {
	_, url, sample := newSandbox(t)
	c, err := zendesk.NewClient(discard(), zendesk.ClientConfig{BaseURL: url, Email: zendesktest.DefaultEmail, APIToken: zendesktest.DefaultAPIToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, want := range sample.Tickets {
		got, err := c.ShowTicket(ctx, want.ID)
		if err != nil {
			t.Fatalf("Ticket %d: %v", want.ID, err)
		}
		if got.Subject != want.Subject || got.RequesterID != want.RequesterID || got.BrandID != sample.Brand.ID {
			t.Errorf("Ticket %d = %+v, want %+v", want.ID, got, want)
		}
	}
	ids := []int64{sample.Agents[0].ID, sample.Agents[1].ID}
	for _, u := range sample.Customers {
		ids = append(ids, u.ID)
	}
	users, err := c.UsersMany(ctx, ids)
	if err != nil || len(users) != len(ids) {
		t.Errorf("UsersMany = %d users, %v; want %d", len(users), err, len(ids))
	}
	if g, err := c.Group(ctx, sample.Group.ID); err != nil || g != sample.Group {
		t.Errorf("Group = %+v, %v; want %+v", g, err, sample.Group)
	}
	want := zenklav.Brand{ID: sample.Brand.ID, Name: sample.Brand.Name, Default: true, Active: sample.Brand.Active}
	if b, err := c.Brands(ctx); err != nil || len(b) != 1 || b[0] != want {
		t.Errorf("Brands = %+v, %v; want [%+v]", b, err, want)
	}
}

func TestSandboxWebhooks(t *testing.T) {
	const secret = "sandbox-signing-secret"
	sim, url, sample := newSandbox(t)
	target, deliveries := newTarget(t)
	sim.SetWebhookTarget(target.URL, secret)
	open := sample.Tickets[0] // open, assigned

	tests := []struct {
		name     string
		query    string
		typ      string
		event    string // JSON of the event without meta; "" to skip
		ticketID int64  // 0: a new sample ticket
	}{
		{name: "created for a new sample ticket", query: "event=ticket.created", typ: "zen:event-type:ticket.created", event: `{}`},
		{name: "status to its next step", query: fmt.Sprintf("event=ticket.status_changed&ticket_id=%d", open.ID), typ: "zen:event-type:ticket.status_changed", event: `{"current":"SOLVED","previous":"OPEN"}`, ticketID: open.ID},
		{name: "status to closed", query: fmt.Sprintf("event=ticket.status_changed&ticket_id=%d&status=closed", open.ID), typ: "zen:event-type:ticket.status_changed", event: `{"current":"CLOSED","previous":"SOLVED"}`, ticketID: open.ID},
		{name: "comment", query: fmt.Sprintf("event=ticket.comment_added&ticket_id=%d&body=Hello&public=false", open.ID), typ: "zen:event-type:ticket.comment_added", ticketID: open.ID},
		{name: "priority with a replayed id", query: fmt.Sprintf("event=zen:event-type:ticket.priority_changed&ticket_id=%d&priority=urgent&event_id=dup-1", open.ID), typ: "zen:event-type:ticket.priority_changed", event: `{"current":"URGENT","previous":"NORMAL"}`, ticketID: open.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(url+"/sandbox/webhooks?"+tt.query, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var answer struct {
				Event        string `json:"event"`
				EventID      string `json:"event_id"`
				TicketID     int64  `json:"ticket_id"`
				TargetStatus int    `json:"target_status"`
				TargetBody   string `json:"target_body"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusAccepted || answer.TargetStatus != http.StatusAccepted || answer.TargetBody != `{"status":"queued"}` {
				t.Errorf("answer %d %+v, want the target's 202 and body", resp.StatusCode, answer)
			}
			d := <-deliveries
			ts := d.header.Get(zendesk.HeaderSignatureTimestamp)
			if d.header.Get(zendesk.HeaderSignature) != zendesk.Sign(secret, ts, d.body) {
				t.Errorf("delivery is not signed with the target's secret")
			}
			var p struct {
				Type   string `json:"type"`
				ID     string `json:"id"`
				Detail struct {
					ID          string `json:"id"`
					RequesterID string `json:"requester_id"`
				} `json:"detail"`
				Event map[string]json.RawMessage `json:"event"`
			}
			if err := json.Unmarshal(d.body, &p); err != nil {
				t.Fatal(err)
			}
			if p.Type != tt.typ || p.ID != answer.EventID || p.Detail.ID != fmt.Sprint(answer.TicketID) {
				t.Errorf("delivered %s %s ticket %s; answer said %+v", p.Type, p.ID, p.Detail.ID, answer)
			}
			if tt.ticketID != 0 && answer.TicketID != tt.ticketID {
				t.Errorf("ticket = %d, want %d", answer.TicketID, tt.ticketID)
			}
			if tt.ticketID == 0 {
				tk, ok := sim.Ticket(answer.TicketID)
				if _, known := sim.User(tk.RequesterID); !ok || !known {
					t.Errorf("sample ticket %d with requester %s is not stored", answer.TicketID, p.Detail.RequesterID)
				}
			}
			delete(p.Event, "meta")
			if tt.event != "" {
				if got, _ := json.Marshal(p.Event); string(got) != tt.event {
					t.Errorf("event = %s, want %s", got, tt.event)
				}
			}
		})
	}
	if tk, _ := sim.Ticket(open.ID); tk.Status != "closed" || tk.Priority != "urgent" {
		t.Errorf("ticket after the sandbox calls: status %q priority %q, want closed urgent", tk.Status, tk.Priority)
	}
}

func TestSandboxRefuses(t *testing.T) {
	sim, url, sample := newSandbox(t)
	post := func(query string) int {
		resp, err := http.Post(url+"/sandbox/webhooks?"+query, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("event=ticket.created"); got != http.StatusConflict {
		t.Errorf("without a target: status %d, want 409", got)
	}
	target, _ := newTarget(t)
	sim.SetWebhookTarget(target.URL, "s")
	closed := sim.AddTicket(zendesk.Ticket{Status: "closed", RequesterID: sample.Customers[0].ID})

	tests := []struct {
		name   string
		method string
		path   string
		status int
	}{
		{"unknown event", "POST", "/sandbox/webhooks?event=ticket.deleted", http.StatusBadRequest},
		{"no event", "POST", "/sandbox/webhooks", http.StatusBadRequest},
		{"unknown ticket", "POST", "/sandbox/webhooks?event=ticket.created&ticket_id=424242", http.StatusNotFound},
		{"closed tickets stay closed", "POST", fmt.Sprintf("/sandbox/webhooks?event=ticket.status_changed&ticket_id=%d&status=open", closed.ID), http.StatusUnprocessableEntity},
		{"not a status", "POST", fmt.Sprintf("/sandbox/webhooks?event=ticket.status_changed&ticket_id=%d&status=done", sample.Tickets[0].ID), http.StatusUnprocessableEntity},
		{"GET", "GET", "/sandbox/webhooks?event=ticket.created", http.StatusMethodNotAllowed},
		{"other sandbox path", "POST", "/sandbox/other", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, url+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
}
