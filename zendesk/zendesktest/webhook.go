package zendesktest

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav/zendesk"
)

// EventVersion is the zendesk_event_version of the events the simulator builds.
const EventVersion = "2022-11-06"

// EventMeta picks what identifies one event. Zero fields get defaults, so a test that
// wants a duplicate delivery reuses the ID and Time of an earlier event.
type EventMeta struct {
	// ID is the event's id; a new random UUID when empty.
	ID string
	// Time is when the change happened; when zero, the ticket's created_at for
	// ticket.created and its updated_at for every other event.
	Time time.Time
	// ActorID is the user who made the change; when zero, the comment's author for
	// ticket.comment_added, else the assignee, else the requester.
	ActorID int64
	// SequenceID groups events that one action caused (event.meta.sequence.id); a new
	// UUID when empty.
	SequenceID string
}

// Comment is a comment of a ticket (Comments lists them), and the comment of a
// ticket.comment_added event.
type Comment struct {
	ID       int64 // a new id when zero
	Body     string
	Public   bool
	AuthorID int64 // in an event: the ticket's assignee when zero, or its requester when unassigned
	// CreatedAt is when the simulator stored the comment; events do not carry it.
	CreatedAt time.Time
	// Attachments are the names of the files attached to it (AgentReplyFiles).
	Attachments []string
}

// SendWebhook posts body to url signed with secret exactly as Zendesk does: JSON, the
// "Zendesk Webhook" user agent, the webhook id, and the signature of timestamp + body
// (zendesk.Sign) with the timestamp of the server clock. The caller closes the response
// body.
func (s *Server) SendWebhook(ctx context.Context, url, secret string, body []byte) (*http.Response, error) {
	return s.sendSigned(ctx, hook{id: WebhookID, url: url, secret: secret}, body)
}

// sendSigned posts body to h, signed with its secret, under its webhook id.
func (s *Server) sendSigned(ctx context.Context, h hook, body []byte) (*http.Response, error) {
	ts := zendesk.Timestamp(s.clock())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("send webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Zendesk Webhook")
	req.Header.Set(zendesk.HeaderWebhookID, h.id)
	req.Header.Set(zendesk.HeaderSignatureTimestamp, ts)
	req.Header.Set(zendesk.HeaderSignature, zendesk.Sign(h.secret, ts, body))
	resp, err := s.webhook.Do(req)
	if err != nil {
		return nil, fmt.Errorf("send webhook: %w", err)
	}
	return resp, nil
}

// TicketCreated builds the zen:event-type:ticket.created payload of a stored ticket.
func (s *Server) TicketCreated(ticketID int64, meta EventMeta) ([]byte, error) {
	return s.TicketEvent(ticketID, "ticket.created", map[string]any{}, meta)
}

// TicketStatusChanged builds the zen:event-type:ticket.status_changed payload of a stored
// ticket: event.current is its status now, event.previous the one given. Change the
// ticket first with UpdateTicket, as Zendesk changes it before it sends the event.
func (s *Server) TicketStatusChanged(ticketID int64, previous string, meta EventMeta) ([]byte, error) {
	t, ok := s.Ticket(ticketID)
	if !ok {
		return nil, fmt.Errorf("build ticket.status_changed: no ticket %d", ticketID)
	}
	event := map[string]any{"current": strings.ToUpper(t.Status), "previous": strings.ToUpper(previous)}
	return s.TicketEvent(ticketID, "ticket.status_changed", event, meta)
}

// TicketCommentAdded builds the zen:event-type:ticket.comment_added payload of a stored
// ticket; the comment's author must be a stored user (or the API user).
func (s *Server) TicketCommentAdded(ticketID int64, c Comment, meta EventMeta) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[ticketID]
	if !ok {
		return nil, fmt.Errorf("build ticket.comment_added: no ticket %d", ticketID)
	}
	authorID := cmp.Or(c.AuthorID, t.AssigneeID, t.RequesterID)
	author, ok := s.userByID(authorID)
	if !ok {
		return nil, fmt.Errorf("build ticket.comment_added: no author user %d", authorID)
	}
	c.ID = s.id(c.ID)
	return s.commentAddedLocked(t, c, author, meta)
}

// commentAddedLocked builds the ticket.comment_added payload of c, written by author, on
// t. The caller holds s.mu.
func (s *Server) commentAddedLocked(t zendesk.Ticket, c Comment, author zendesk.User, meta EventMeta) ([]byte, error) {
	meta.ActorID = cmp.Or(meta.ActorID, author.ID)
	event := map[string]any{"comment": map[string]any{
		"id":        strconv.FormatInt(c.ID, 10),
		"body":      c.Body,
		"is_public": c.Public,
		"author": map[string]any{
			"id":       strconv.FormatInt(author.ID, 10),
			"is_staff": author.Role == "agent" || author.Role == "admin",
			"name":     author.Name,
		},
	}}
	return buildEvent(t, s.accountID, s.now(), "ticket.comment_added", event, meta)
}

// TicketEvent builds the payload of any ticket event of a stored ticket, such as
// "ticket.priority_changed" with event {"current": "HIGH", "previous": "LOW"}. eventType
// may carry the "zen:event-type:" prefix or not. event.meta is added when missing.
func (s *Server) TicketEvent(ticketID int64, eventType string, event map[string]any, meta EventMeta) ([]byte, error) {
	eventType = strings.TrimPrefix(eventType, eventTypePrefix)
	if !strings.HasPrefix(eventType, "ticket.") {
		return nil, fmt.Errorf("build %s: not a ticket event", eventType)
	}
	s.mu.Lock()
	t, ok := s.tickets[ticketID]
	accountID, now := s.accountID, s.now()
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("build %s: no ticket %d", eventType, ticketID)
	}
	return buildEvent(cloneTicket(t), accountID, now, eventType, event, meta)
}

// buildEvent builds the payload of the ticket event eventType (without its prefix) of t.
func buildEvent(t zendesk.Ticket, accountID int64, now time.Time, eventType string, event map[string]any, meta EventMeta) ([]byte, error) {
	when := meta.Time
	if when.IsZero() {
		when = t.UpdatedAt
		if eventType == "ticket.created" {
			when = t.CreatedAt
		}
	}
	if when.IsZero() {
		when = now
	}
	ev := make(map[string]any, len(event)+1)
	for k, v := range event {
		ev[k] = v
	}
	if _, ok := ev["meta"]; !ok {
		ev["meta"] = map[string]any{"sequence": map[string]any{"id": cmp.Or(meta.SequenceID, newUUID()), "position": 1}}
	}
	payload := envelope{
		Type:                eventTypePrefix + eventType,
		AccountID:           accountID,
		ID:                  cmp.Or(meta.ID, newUUID()),
		Time:                when.UTC().Format(time.RFC3339Nano),
		ZendeskEventVersion: EventVersion,
		Subject:             "zen:ticket:" + strconv.FormatInt(t.ID, 10),
		Detail:              detailOf(t, cmp.Or(meta.ActorID, t.AssigneeID, t.RequesterID)),
		Event:               ev,
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", eventType, err)
	}
	return body, nil
}

const eventTypePrefix = "zen:event-type:"

// envelope is the body of every event-subscribed webhook. Unlike the REST API, events
// carry ids as strings and enum values in upper case.
type envelope struct {
	Type                string         `json:"type"`
	AccountID           int64          `json:"account_id"`
	ID                  string         `json:"id"`
	Time                string         `json:"time"`
	ZendeskEventVersion string         `json:"zendesk_event_version"`
	Subject             string         `json:"subject"`
	Detail              detail         `json:"detail"`
	Event               map[string]any `json:"event"`
}

type detail struct {
	ActorID        string   `json:"actor_id"`
	AssigneeID     string   `json:"assignee_id"`
	BrandID        string   `json:"brand_id"`
	CreatedAt      string   `json:"created_at"`
	Description    string   `json:"description"`
	ExternalID     *string  `json:"external_id"`
	GroupID        string   `json:"group_id"`
	ID             string   `json:"id"`
	IsPublic       bool     `json:"is_public"`
	OrganizationID string   `json:"organization_id"`
	Priority       *string  `json:"priority"`
	RequesterID    string   `json:"requester_id"`
	Status         string   `json:"status"`
	Subject        string   `json:"subject"`
	SubmitterID    string   `json:"submitter_id"`
	Tags           []string `json:"tags"`
	Type           *string  `json:"type"`
	UpdatedAt      string   `json:"updated_at"`
	Via            struct {
		Channel string `json:"channel"`
	} `json:"via"`
}

func detailOf(t zendesk.Ticket, actorID int64) detail {
	d := detail{
		ActorID:     eventID(actorID),
		AssigneeID:  eventID(t.AssigneeID),
		BrandID:     eventID(t.BrandID),
		CreatedAt:   stamp(t.CreatedAt),
		Description: t.Description,
		GroupID:     eventID(t.GroupID),
		ID:          eventID(t.ID),
		IsPublic:    true,
		// The simulator has no organizations.
		OrganizationID: eventID(0),
		Priority:       upperOrNil(t.Priority),
		RequesterID:    eventID(t.RequesterID),
		Status:         strings.ToUpper(t.Status),
		Subject:        t.Subject,
		SubmitterID:    eventID(t.RequesterID),
		Tags:           t.Tags,
		Type:           upperOrNil(t.Type),
		UpdatedAt:      stamp(t.UpdatedAt),
	}
	if d.Tags == nil {
		d.Tags = []string{}
	}
	d.Via.Channel = eventChannel(t.Via.Channel)
	return d
}

// eventID writes an id as events do: a string, and "0" when unset (Zendesk's own event
// examples show "0" for a missing organization).
func eventID(id int64) string { return strconv.FormatInt(id, 10) }

func upperOrNil(s string) *string {
	if s == "" {
		return nil
	}
	u := strings.ToUpper(s)
	return &u
}

// eventChannel maps a REST via.channel to the via type name events use: a ticket the REST
// API shows as "api" arrives in events as "web_service". Other names pass unchanged.
func eventChannel(channel string) string {
	if channel == "api" {
		return "web_service"
	}
	return channel
}

// newUUID returns a random (version 4) UUID, the shape of Zendesk's event ids.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
