package zendesktest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// delivery is one request a webhook target received.
type delivery struct {
	header http.Header
	body   []byte
}

// newTarget starts a webhook receiver that answers 202 and hands every delivery to the
// returned channel.
func newTarget(t *testing.T) (*httptest.Server, chan delivery) {
	t.Helper()
	got := make(chan delivery, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{header: r.Header.Clone(), body: b}
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte(`{"status":"queued"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func TestSendWebhookSignsLikeZendesk(t *testing.T) {
	const secret = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
	sim := zendesktest.NewServer()
	defer sim.Close()
	at := time.Date(2021, 7, 25, 10, 0, 0, 0, time.UTC)
	sim.SetClock(func() time.Time { return at })
	target, got := newTarget(t)

	body := []byte(`{"say": "hello"}`)
	resp, err := sim.SendWebhook(context.Background(), target.URL, secret, body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("status = %d, want the target's 202", resp.StatusCode)
	}
	d := <-got
	want := map[string]string{
		"Content-Type":                   "application/json",
		"User-Agent":                     "Zendesk Webhook",
		zendesk.HeaderWebhookID:          zendesktest.WebhookID,
		zendesk.HeaderSignatureTimestamp: "2021-07-25T10:00:00Z",
		// The vector of shared/reference/zendesk-api.md §4, computed independently.
		zendesk.HeaderSignature: "gf3v0LzLRHPUnIdhbvwRDVEvzSb07/QN0GYjSNlkBT0=",
	}
	for k, v := range want {
		if got := d.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if !bytes.Equal(d.body, body) {
		t.Errorf("body = %s, want %s", d.body, body)
	}
	if sig := d.header.Get(zendesk.HeaderSignature); sig != zendesk.Sign(secret, d.header.Get(zendesk.HeaderSignatureTimestamp), d.body) {
		t.Errorf("signature %s does not verify with zendesk.Sign", sig)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestPayloads(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	brand := sim.AddBrand(zendesk.Brand{Name: "Acme", Subdomain: "acme"})
	group := sim.AddGroup(zendesk.Group{Name: "Tier 1"})
	agent := sim.AddUser(zendesk.User{Name: "Support Agent", Email: "agent@acme.example.com", Role: "agent"})
	customer := sim.AddUser(zendesk.User{Name: "Jo", Email: "jo@example.com"})
	created := time.Date(2025, 1, 8, 10, 12, 7, 0, time.UTC)
	tk := sim.AddTicket(zendesk.Ticket{
		Subject: "Where is my order?", Description: "It has not arrived.", Status: "open",
		Priority: "high", Type: "question", Tags: []string{"sms"}, Via: zendesk.Via{Channel: "api"},
		RequesterID: customer.ID, AssigneeID: agent.ID, GroupID: group.ID, BrandID: brand.ID, CreatedAt: created,
	})
	bare := sim.AddTicket(zendesk.Ticket{Subject: "Hi", RequesterID: customer.ID, CreatedAt: created})
	changed := created.Add(3 * time.Hour)
	sim.SetClock(func() time.Time { return changed })
	if _, err := sim.UpdateTicket(tk.ID, func(t *zendesk.Ticket) { t.Status = "solved" }); err != nil {
		t.Fatal(err)
	}
	id := func(n int64) string { return strings.TrimSpace(string(mustJSON(t, n))) }

	tests := []struct {
		name   string
		build  func() ([]byte, error)
		typ    string
		ticket int64
		status string
		time   time.Time
		event  map[string]any // event fields besides meta
		detail map[string]any // detail fields to check
	}{
		{
			name:   "created",
			build:  func() ([]byte, error) { return sim.TicketCreated(bare.ID, zendesktest.EventMeta{}) },
			typ:    "zen:event-type:ticket.created",
			ticket: bare.ID, status: "NEW", time: created,
			event: map[string]any{},
			detail: map[string]any{"requester_id": id(customer.ID), "assignee_id": "0", "group_id": "0", "priority": nil, "type": nil,
				"via": map[string]any{"channel": "web"}, "tags": []any{}},
		},
		{
			name:   "status changed",
			build:  func() ([]byte, error) { return sim.TicketStatusChanged(tk.ID, "open", zendesktest.EventMeta{}) },
			typ:    "zen:event-type:ticket.status_changed",
			ticket: tk.ID, status: "SOLVED", time: changed,
			event: map[string]any{"current": "SOLVED", "previous": "OPEN"},
			detail: map[string]any{"requester_id": id(customer.ID), "assignee_id": id(agent.ID), "group_id": id(group.ID), "brand_id": id(brand.ID),
				"actor_id": id(agent.ID), "priority": "HIGH", "type": "QUESTION", "subject": "Where is my order?", "description": "It has not arrived.",
				"via": map[string]any{"channel": "web_service"}, "tags": []any{"sms"}, "created_at": "2025-01-08T10:12:07Z", "updated_at": "2025-01-08T13:12:07Z"},
		},
		{
			name: "comment added",
			build: func() ([]byte, error) {
				return sim.TicketCommentAdded(tk.ID, zendesktest.Comment{ID: 9876543210, Body: "We are on it.", Public: true}, zendesktest.EventMeta{})
			},
			typ:    "zen:event-type:ticket.comment_added",
			ticket: tk.ID, status: "SOLVED", time: changed,
			event: map[string]any{"comment": map[string]any{"id": "9876543210", "body": "We are on it.", "is_public": true,
				"author": map[string]any{"id": id(agent.ID), "is_staff": true, "name": "Support Agent"}}},
			detail: map[string]any{"actor_id": id(agent.ID)},
		},
		{
			name: "priority changed",
			build: func() ([]byte, error) {
				return sim.TicketEvent(tk.ID, "ticket.priority_changed", map[string]any{"current": "HIGH", "previous": "LOW"}, zendesktest.EventMeta{ActorID: customer.ID})
			},
			typ:    "zen:event-type:ticket.priority_changed",
			ticket: tk.ID, status: "SOLVED", time: changed,
			event:  map[string]any{"current": "HIGH", "previous": "LOW"},
			detail: map[string]any{"actor_id": id(customer.ID)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := tt.build()
			if err != nil {
				t.Fatal(err)
			}
			var p struct {
				Type      string         `json:"type"`
				AccountID any            `json:"account_id"`
				ID        string         `json:"id"`
				Time      string         `json:"time"`
				Version   string         `json:"zendesk_event_version"`
				Subject   string         `json:"subject"`
				Detail    map[string]any `json:"detail"`
				Event     map[string]any `json:"event"`
			}
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("payload is not JSON: %v\n%s", err, body)
			}
			if p.Type != tt.typ || p.Version != "2022-11-06" || p.Subject != "zen:ticket:"+id(tt.ticket) {
				t.Errorf("type %q version %q subject %q, want %q 2022-11-06 zen:ticket:%d", p.Type, p.Version, p.Subject, tt.typ, tt.ticket)
			}
			if p.AccountID != float64(zendesktest.DefaultAccountID) {
				t.Errorf("account_id = %#v, want the number %d", p.AccountID, zendesktest.DefaultAccountID)
			}
			if !uuidRE.MatchString(p.ID) {
				t.Errorf("id = %q, want a UUID", p.ID)
			}
			if when, err := time.Parse(time.RFC3339, p.Time); err != nil || !when.Equal(tt.time) {
				t.Errorf("time = %q, want %s in RFC 3339", p.Time, tt.time.Format(time.RFC3339))
			}
			// Every Zendesk id in detail is a string, as Zendesk's events send them
			// (external_id is the customer's own, null when unset).
			for k, v := range p.Detail {
				if (strings.HasSuffix(k, "_id") || k == "id") && k != "external_id" {
					if _, ok := v.(string); !ok {
						t.Errorf("detail.%s = %#v, want a string", k, v)
					}
				}
			}
			if p.Detail["id"] != id(tt.ticket) || p.Detail["status"] != tt.status {
				t.Errorf("detail id %v status %v, want %q %q", p.Detail["id"], p.Detail["status"], id(tt.ticket), tt.status)
			}
			for k, want := range tt.detail {
				if got := p.Detail[k]; string(mustJSON(t, got)) != string(mustJSON(t, want)) {
					t.Errorf("detail.%s = %s, want %s", k, mustJSON(t, got), mustJSON(t, want))
				}
			}
			meta, _ := p.Event["meta"].(map[string]any)
			seq, _ := meta["sequence"].(map[string]any)
			if seqID, _ := seq["id"].(string); !uuidRE.MatchString(seqID) || seq["position"] != float64(1) {
				t.Errorf("event.meta = %v, want a sequence with a UUID and position 1", p.Event["meta"])
			}
			delete(p.Event, "meta")
			if string(mustJSON(t, p.Event)) != string(mustJSON(t, tt.event)) {
				t.Errorf("event = %s, want %s", mustJSON(t, p.Event), mustJSON(t, tt.event))
			}
		})
	}
}

func TestPayloadDuplicates(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	u := sim.AddUser(zendesk.User{Name: "Jo"})
	tk := sim.AddTicket(zendesk.Ticket{RequesterID: u.ID})
	meta := zendesktest.EventMeta{ID: "0e7b7c3e-4a0f-4d8e-9f51-0a6b1c2d3e4f", Time: time.Date(2025, 1, 8, 10, 0, 0, 5, time.UTC), SequenceID: "seq"}

	first, err := sim.TicketCreated(tk.ID, meta)
	if err != nil {
		t.Fatal(err)
	}
	again, err := sim.TicketCreated(tk.ID, meta)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Errorf("the same meta built different payloads:\n%s\n%s", first, again)
	}
	if !bytes.Contains(first, []byte(`"id":"0e7b7c3e-4a0f-4d8e-9f51-0a6b1c2d3e4f"`)) || !bytes.Contains(first, []byte(`"time":"2025-01-08T10:00:00.000000005Z"`)) {
		t.Errorf("payload %s does not carry the chosen id and time", first)
	}
	other, _ := sim.TicketCreated(tk.ID, zendesktest.EventMeta{})
	fresh, _ := sim.TicketCreated(tk.ID, zendesktest.EventMeta{})
	if bytes.Equal(other, fresh) {
		t.Errorf("two events without a chosen id are identical: %s", other)
	}

	for name, build := range map[string]func() ([]byte, error){
		"unknown ticket":      func() ([]byte, error) { return sim.TicketCreated(999, meta) },
		"unknown author":      func() ([]byte, error) { return sim.TicketCommentAdded(tk.ID, zendesktest.Comment{AuthorID: 999}, meta) },
		"not a ticket event":  func() ([]byte, error) { return sim.TicketEvent(tk.ID, "zen:event-type:user.created", nil, meta) },
		"status of no ticket": func() ([]byte, error) { return sim.TicketStatusChanged(999, "open", meta) },
	} {
		if _, err := build(); err == nil {
			t.Errorf("%s: err = nil, want an error", name)
		}
	}
}

// TestPayloadsParse checks the simulator's events against zenklav's own parser, the
// consumer they exist for.
func TestPayloadsParse(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	customer := sim.AddUser(zendesk.User{Name: "Jo", Email: "jo@example.com"})
	agent := sim.AddUser(zendesk.User{Name: "Agent", Role: "agent"})
	tk := sim.AddTicket(zendesk.Ticket{Subject: "Hi", Status: "solved", RequesterID: customer.ID, AssigneeID: agent.ID})
	if _, err := sim.UpdateTicket(tk.ID, func(t *zendesk.Ticket) { t.Status = "closed" }); err != nil {
		t.Fatal(err)
	}
	body, err := sim.TicketStatusChanged(tk.ID, "solved", zendesktest.EventMeta{ID: "5d1c7e8a-0b2f-4e3d-8c9a-1b2c3d4e5f60"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := zendesk.ParseWebhook(body, zendesk.WebhookTarget{Connection: "t1", Subdomain: "acme", ReceivedAt: time.Now()})
	if err != nil {
		t.Fatalf("ParseWebhook: %v\n%s", err, body)
	}
	if e.Ticket.ID != tk.ID || e.Ticket.Status != "closed" || e.Ticket.PreviousStatus != "solved" || e.Ticket.Requester.ID != customer.ID || e.Ticket.AssigneeID != agent.ID {
		t.Errorf("parsed %+v, want ticket %d closed from solved, requester %d, assignee %d", e.Ticket, tk.ID, customer.ID, agent.ID)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
