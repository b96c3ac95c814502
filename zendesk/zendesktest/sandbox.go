package zendesktest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/zenklav/zenklav/zendesk"
)

// SetWebhookTarget sets where event webhooks go (API changes, AgentReply and POST
// /sandbox/webhooks), and the signing secret they are signed with (the secret zenklav's
// connection holds), besides the webhooks made through the Webhooks API.
func (s *Server) SetWebhookTarget(url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.target, s.secret = url, secret
}

// maxTargetBody bounds how much of the target's answer the sandbox endpoint passes on.
const maxTargetBody = 64 << 10

// serveSandbox answers POST /sandbox/webhooks, which plays the part of an agent changing a
// ticket: it builds the event for a stored ticket (or for a new sample ticket when
// ticket_id is absent), sends it signed to the webhook target and to the webhooks made
// through the API that subscribe to it, and answers with the first one's status and body.
// Query parameters:
//
//	event      ticket.created, ticket.status_changed, ticket.comment_added or
//	           ticket.priority_changed (required)
//	ticket_id  a stored ticket; a sample ticket with a sample requester when absent
//	status     ticket.status_changed: the new status (default: the next one of
//	           new → open → solved → closed)
//	priority   ticket.priority_changed: the new priority (default: high)
//	body       ticket.comment_added: the comment text; public=false makes it internal
//	event_id   the event id, to replay a delivery as Zendesk's retries do
func (s *Server) serveSandbox(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/sandbox/webhooks" {
		writeJSON(w, http.StatusNotFound, errorBody("NotFound", "the sandbox serves POST /sandbox/webhooks"))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody("MethodNotAllowed", "use POST"))
		return
	}
	q := r.URL.Query()
	event := strings.TrimPrefix(q.Get("event"), eventTypePrefix)
	if !isOneOf(event, "ticket.created", "ticket.status_changed", "ticket.comment_added", "ticket.priority_changed") {
		writeJSON(w, http.StatusBadRequest, errorBody("InvalidValue", "event must be ticket.created, ticket.status_changed, ticket.comment_added or ticket.priority_changed"))
		return
	}
	s.mu.Lock()
	hooks := s.hooksLocked(event)
	s.mu.Unlock()
	if len(hooks) == 0 {
		writeJSON(w, http.StatusConflict, errorBody("NoWebhookTarget", "no webhook target is set (SetWebhookTarget) and no webhook subscribes to "+eventTypePrefix+event))
		return
	}
	t, ok := s.sandboxTicket(q.Get("ticket_id"))
	if !ok {
		writeJSON(w, http.StatusNotFound, errorBody("RecordNotFound", fmt.Sprintf("no ticket %q", q.Get("ticket_id"))))
		return
	}
	body, err := s.sandboxEvent(event, t, q)
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, errorBody("InvalidValue", err.Error()))
		return
	}
	var sent struct {
		ID string `json:"id"`
	}
	json.Unmarshal(body, &sent)
	status, answer, err := s.sendSandbox(r.Context(), hooks, event, body)
	if err != nil {
		s.logger.Warn("zendesk simulator: webhook not delivered", "event", event, "event_id", sent.ID, "err", err)
		writeJSON(w, http.StatusBadGateway, errorBody("WebhookFailed", err.Error()))
		return
	}
	s.logger.Info("zendesk simulator: webhook sent", "event", event, "event_id", sent.ID, "ticket_id", t.ID, "status", status)
	writeJSON(w, status, map[string]any{
		"event":         eventTypePrefix + event,
		"event_id":      sent.ID,
		"ticket_id":     t.ID,
		"target_status": status,
		"target_body":   answer,
	})
}

// sendSandbox sends body to each hook and returns the first one's status and answer; the
// others' are logged.
func (s *Server) sendSandbox(ctx context.Context, hooks []hook, event string, body []byte) (int, string, error) {
	status, answer := 0, ""
	for i, h := range hooks {
		resp, err := s.sendSigned(ctx, h, body)
		if err != nil {
			if i == 0 {
				return 0, "", err
			}
			s.logger.Warn("zendesk simulator: webhook not delivered", "event", event, "webhook_id", h.id, "err", err)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxTargetBody))
		resp.Body.Close()
		if i == 0 {
			status, answer = resp.StatusCode, string(b)
		} else {
			s.logger.Info("zendesk simulator: webhook sent", "event", event, "webhook_id", h.id, "status", resp.StatusCode)
		}
	}
	return status, answer, nil
}

// sandboxTicket is the ticket a sandbox event is about: the stored ticket whose id is the
// ticket_id parameter v, or a new sample ticket when v is empty. ok is false when v names
// no stored ticket.
func (s *Server) sandboxTicket(v string) (t zendesk.Ticket, ok bool) {
	if v == "" {
		return s.sampleTicket(), true
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return zendesk.Ticket{}, false
	}
	return s.Ticket(id)
}

// sandboxEvent makes the change to t that event (without its prefix) reports, as the
// query q asks, and builds the event's body. Its errors, from a change a ticket cannot
// make or from building the event, are the request's: the sandbox answers them 422.
func (s *Server) sandboxEvent(event string, t zendesk.Ticket, q url.Values) ([]byte, error) {
	meta := EventMeta{ID: q.Get("event_id")}
	var body []byte
	var err error
	switch event {
	case "ticket.created":
		body, err = s.TicketCreated(t.ID, meta)
	case "ticket.status_changed":
		status := q.Get("status")
		if status == "" {
			status = nextStatus[t.Status]
		}
		if !isOneOf(status, "new", "open", "pending", "hold", "solved", "closed") || t.Status == "closed" {
			return nil, fmt.Errorf("ticket %d cannot go from %q to %q", t.ID, t.Status, status)
		}
		previous := t.Status
		if _, err = s.UpdateTicket(t.ID, func(t *zendesk.Ticket) { t.Status = status }); err == nil {
			body, err = s.TicketStatusChanged(t.ID, previous, meta)
		}
	case "ticket.priority_changed":
		priority := q.Get("priority")
		if priority == "" {
			priority = "high"
		}
		if !isOneOf(priority, "low", "normal", "high", "urgent") {
			return nil, fmt.Errorf("%q is not a priority", priority)
		}
		previous := t.Priority
		if _, err = s.UpdateTicket(t.ID, func(t *zendesk.Ticket) { t.Priority = priority }); err == nil {
			var prev any
			if previous != "" {
				prev = strings.ToUpper(previous)
			}
			body, err = s.TicketEvent(t.ID, event, map[string]any{"current": strings.ToUpper(priority), "previous": prev}, meta)
		}
	case "ticket.comment_added":
		text := q.Get("body")
		if text == "" {
			text = "Thanks for reaching out! We are looking into it."
		}
		if _, err = s.UpdateTicket(t.ID, func(*zendesk.Ticket) {}); err == nil {
			body, err = s.TicketCommentAdded(t.ID, Comment{Body: text, Public: q.Get("public") != "false"}, meta)
		}
	}
	return body, err
}

// nextStatus is the default move of the sandbox's status_changed: the usual life of a
// ticket, ending in closed (which is what zenklav reports as Resolved Ticket).
var nextStatus = map[string]string{
	"new":     "open",
	"open":    "solved",
	"pending": "solved",
	"hold":    "solved",
	"solved":  "closed",
}

func isOneOf(v string, set ...string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

// Sample is what Seed stored.
type Sample struct {
	Brand     zendesk.Brand
	Group     zendesk.Group
	Agents    []zendesk.User
	Customers []zendesk.User
	Tickets   []zendesk.Ticket
}

// Seed stores a small, plausible account for sandbox mode: one brand, one group, two
// agents, three customers (one reachable by SMS only) and tickets in several states and
// channels. Addresses use example.com and phone numbers the 555-01xx range reserved for
// fiction, so nothing can reach a real person.
func (s *Server) Seed() Sample {
	var sm Sample
	sm.Brand = s.AddBrand(zendesk.Brand{Name: "Northwind Outfitters", Subdomain: "northwind", BrandURL: "https://northwind.zendesk.com", Active: true})
	sm.Group = s.AddGroup(zendesk.Group{Name: "Customer Care"})
	sm.Agents = []zendesk.User{
		s.AddUser(zendesk.User{Name: "Maya Chen", Email: "maya.chen@northwind.example.com", Role: "agent"}),
		s.AddUser(zendesk.User{Name: "Daniel Okafor", Email: "daniel.okafor@northwind.example.com", Role: "admin"}),
	}
	sm.Customers = []zendesk.User{
		s.AddUser(zendesk.User{Name: "Ana Souza", Email: "ana.souza@example.com", Phone: "+15555550101", Role: "end-user"}),
		s.AddUser(zendesk.User{Name: "Liam Walsh", Email: "liam.walsh@example.com", Role: "end-user"}),
		s.AddUser(zendesk.User{Name: "+1 (555) 555-0142", Phone: "+15555550142", Role: "end-user"}),
	}
	agent, customers := sm.Agents[0], sm.Customers
	ticket := func(t zendesk.Ticket) zendesk.Ticket {
		t.BrandID, t.GroupID = sm.Brand.ID, sm.Group.ID
		return s.AddTicket(t)
	}
	sm.Tickets = []zendesk.Ticket{
		ticket(zendesk.Ticket{
			Subject: "Where is my order #10482?", Description: "I ordered a rain jacket last week and the tracking has not moved since Monday.",
			Status: "open", Priority: "normal", Type: "question", Tags: []string{"shipping", "order_status"},
			Via: zendesk.Via{Channel: "email"}, RequesterID: customers[0].ID, AssigneeID: agent.ID,
		}),
		ticket(zendesk.Ticket{
			Subject: "Wrong size delivered", Description: "I got the hiking boots in 42 instead of 44. How do I exchange them?",
			Status: "pending", Priority: "high", Type: "problem", Tags: []string{"returns"},
			Via: zendesk.Via{Channel: "web"}, RequesterID: customers[1].ID, AssigneeID: agent.ID,
			CustomFields: []zendesk.CustomField{{ID: 360001234567, Value: "exchange"}},
		}),
		ticket(zendesk.Ticket{
			Subject: "SMS from +1 (555) 555-0142", Description: "Hi, is the 20% off code still valid?",
			Status: "new", Tags: []string{"sms"},
			Via: zendesk.Via{Channel: "sms"}, RequesterID: customers[2].ID,
		}),
		ticket(zendesk.Ticket{
			Subject: "Cancel my subscription box", Description: "Please cancel the monthly box from next month on.",
			Status: "solved", Priority: "low", Type: "task", Tags: []string{"subscription"},
			Via: zendesk.Via{Channel: "api"}, RequesterID: customers[0].ID, AssigneeID: sm.Agents[1].ID,
		}),
	}
	return sm
}

// sampleTicket stores a new ticket from a new customer, for sandbox events that name no
// ticket.
func (s *Server) sampleTicket() zendesk.Ticket {
	s.mu.Lock()
	s.samples++
	n := s.samples
	s.mu.Unlock()
	requester := s.AddUser(zendesk.User{
		Name:  fmt.Sprintf("Sample Customer %d", n),
		Email: fmt.Sprintf("customer%d@example.com", n),
		Phone: fmt.Sprintf("+1555555%04d", 100+n%100),
		Role:  "end-user",
	})
	return s.AddTicket(zendesk.Ticket{
		Subject:     fmt.Sprintf("Question about order #%d", 20000+n),
		Description: "Hello, I have a question about my recent order.",
		Status:      "new",
		Tags:        []string{"sandbox"},
		Via:         zendesk.Via{Channel: "web"},
		RequesterID: requester.ID,
	})
}
