// Package zendesk talks to Zendesk: its webhooks (signature and payloads) and its REST API.
package zendesk

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

// MaxWebhookBody is the largest webhook body zenklav reads; Zendesk's own payloads are far
// smaller, so anything bigger is not Zendesk.
const MaxWebhookBody = 1 << 20

// MaxClockSkew is how far a webhook's signature timestamp may be from our clock. It bounds
// how long a captured request can be replayed.
const MaxClockSkew = 5 * time.Minute

// VerifySignature checks Zendesk's webhook signature against each of secrets (during a
// rotation two are active) and the timestamp against now: ParseSignature, then Verify.
func VerifySignature(secrets []string, signature, timestamp string, body []byte, now time.Time) error {
	sig, err := ParseSignature(signature, timestamp, now)
	if err != nil {
		return err
	}
	return sig.Verify(secrets, body)
}

// Signature is a webhook's signature headers once they passed the checks that need no body.
type Signature struct {
	mac       []byte // the decoded HMAC-SHA256
	timestamp string // as sent: it is part of what was signed
}

// ParseSignature checks all that can be checked of a webhook's signature headers before
// its body is read, so that a request that cannot be Zendesk's costs no more than its
// headers: both are present, the signature is the base64 of an HMAC-SHA256 (32 bytes), and
// the timestamp is an ISO-8601 time within MaxClockSkew of now. Its errors are EUNAUTHORIZED.
func ParseSignature(signature, timestamp string, now time.Time) (Signature, error) {
	if signature == "" || timestamp == "" {
		return Signature{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "missing %s or %s header", HeaderSignature, HeaderSignatureTimestamp)
	}
	sum, err := base64.StdEncoding.Strict().DecodeString(signature)
	if err != nil || len(sum) != sha256.Size {
		return Signature{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "%s is not the base64 of an HMAC-SHA256", HeaderSignature)
	}
	ts, err := time.Parse(time.RFC3339, timestamp)
	if err != nil {
		return Signature{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "%s is not an ISO-8601 time", HeaderSignatureTimestamp)
	}
	if d := now.Sub(ts); d > MaxClockSkew || d < -MaxClockSkew {
		return Signature{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "signature timestamp is more than %s away from now", MaxClockSkew)
	}
	return Signature{mac: sum, timestamp: timestamp}, nil
}

// Verify checks that one of secrets signed body with the signature's timestamp.
func (s Signature) Verify(secrets []string, body []byte) error {
	for _, secret := range secrets {
		if hmac.Equal(s.mac, mac(secret, s.timestamp, body)) {
			return nil
		}
	}
	return zenklav.Errorf(zenklav.EUNAUTHORIZED, "webhook signature does not match")
}

// WebhookTarget says whose webhook is being parsed.
type WebhookTarget struct {
	Connection string // the connection id, when Owner is nil
	// Owner, when set, names the connection a ticket of the brand belongs to (the brand
	// rule, zenklav.Connections.Owner), or "" when none does: the event is then passed
	// over. The connection is part of a trigger event's id, so it is decided while parsing.
	Owner      func(brand int64) string
	Subdomain  string
	ReceivedAt time.Time
}

// connection names the connection of a ticket of brand; "" when there is none.
func (t WebhookTarget) connection(brand int64) string {
	if t.Owner != nil {
		return t.Owner(brand)
	}
	return t.Connection
}

// ParseWebhook turns a Zendesk webhook body into a ticket event. It accepts Zendesk's
// event-subscribed payloads (zen:event-type:ticket.*) and trigger-connected payloads built
// from zenklav's body template (docs/zendesk-webhooks.md). A well-formed payload of an event
// type zenklav does not use returns (nil, nil): acknowledge it and move on.
func ParseWebhook(body []byte, target WebhookTarget) (*schemas.TicketEvent, error) {
	var probe struct {
		Type    *string         `json:"type"`
		Zenklav *string         `json:"zenklav"`
		Detail  json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, zenklav.Errorf(zenklav.EINVALID, "malformed JSON: %v", err)
	}
	switch {
	case probe.Zenklav != nil:
		return parseTrigger(body, target)
	case probe.Type != nil && strings.HasPrefix(*probe.Type, eventTypePrefix+"ticket."):
		return parseEvent(body, target)
	case probe.Type != nil && strings.HasPrefix(*probe.Type, eventTypePrefix):
		return nil, nil // a user, organization or other event: not ours
	default:
		return nil, zenklav.Errorf(zenklav.EINVALID, "not a Zendesk event webhook (no zen:event-type) nor a zenklav trigger body (no \"zenklav\" key)")
	}
}

const eventTypePrefix = "zen:event-type:"

// flexInt reads an id that Zendesk sends as a number, a string, "" or null.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*f = 0
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(strings.TrimSpace(s))
		if len(b) == 0 {
			*f = 0
			return nil
		}
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("id %s is not a non-negative integer", b)
	}
	*f = flexInt(n)
	return nil
}

type eventPayload struct {
	Type      string  `json:"type"`
	AccountID flexInt `json:"account_id"`
	ID        string  `json:"id"`
	Time      string  `json:"time"`
	Detail    struct {
		ID          flexInt  `json:"id"`
		Subject     string   `json:"subject"`
		Description string   `json:"description"`
		Status      string   `json:"status"`
		Priority    string   `json:"priority"`
		Type        string   `json:"type"`
		Tags        []string `json:"tags"`
		BrandID     flexInt  `json:"brand_id"`
		RequesterID flexInt  `json:"requester_id"`
		AssigneeID  flexInt  `json:"assignee_id"`
		GroupID     flexInt  `json:"group_id"`
		Via         struct {
			Channel string `json:"channel"`
		} `json:"via"`
		UpdatedAt string `json:"updated_at"`
	} `json:"detail"`
	Event json.RawMessage `json:"event"`
}

type statusChange struct {
	Current  string `json:"current"`
	Previous string `json:"previous"`
}

type commentAdded struct {
	Comment struct {
		ID       flexInt `json:"id"`
		Body     string  `json:"body"`
		IsPublic bool    `json:"is_public"`
		Author   struct {
			ID flexInt `json:"id"`
		} `json:"author"`
	} `json:"comment"`
}

func parseEvent(body []byte, target WebhookTarget) (*schemas.TicketEvent, error) {
	var p eventPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, zenklav.Errorf(zenklav.EINVALID, "malformed Zendesk event: %v", err)
	}
	if !validEventID(p.ID) {
		return nil, zenklav.Errorf(zenklav.EINVALID, "Zendesk event has no usable id")
	}
	if p.Detail.ID == 0 {
		return nil, zenklav.Errorf(zenklav.EINVALID, "Zendesk event has no ticket id in detail.id")
	}
	occurred, err := parseTime(p.Time)
	if err != nil {
		return nil, zenklav.Errorf(zenklav.EINVALID, "Zendesk event time: %v", err)
	}
	status, err := normalizeStatus(p.Detail.Status)
	if err != nil {
		return nil, err
	}
	conn := target.connection(int64(p.Detail.BrandID))
	if conn == "" {
		return nil, nil // a brand no connection syncs
	}
	e := &schemas.TicketEvent{
		EventID:     "zd:" + p.ID,
		Connection:  conn,
		Account:     schemas.Account{Subdomain: target.Subdomain, ID: int64(p.AccountID)},
		BrandID:     int64(p.Detail.BrandID),
		ZendeskType: p.Type,
		Source:      schemas.SourceEvent,
		OccurredAt:  occurred,
		ReceivedAt:  target.ReceivedAt.UTC(),
		Ticket: schemas.Ticket{
			ID:          int64(p.Detail.ID),
			URL:         AgentURL(target.Subdomain, int64(p.Detail.ID)),
			Subject:     p.Detail.Subject,
			Description: p.Detail.Description,
			Status:      status,
			Priority:    normalizeEnum(p.Detail.Priority, priorities),
			Type:        normalizeEnum(p.Detail.Type, ticketTypes),
			Tags:        p.Detail.Tags,
			Channel:     channelOf(strings.ToLower(p.Detail.Via.Channel), p.Detail.Tags),
			Via:         strings.ToLower(p.Detail.Via.Channel),
			Requester:   schemas.Requester{ID: int64(p.Detail.RequesterID)},
			AssigneeID:  int64(p.Detail.AssigneeID),
			GroupID:     int64(p.Detail.GroupID),
		},
	}
	if err := eventDetails(e, &p); err != nil {
		return nil, err
	}
	return e, nil
}

// eventDetails sets what the event's type says beyond the ticket: its type, the status
// change, the comment.
func eventDetails(e *schemas.TicketEvent, p *eventPayload) error {
	var err error
	switch strings.TrimPrefix(p.Type, eventTypePrefix) {
	case "ticket.created":
		e.Type = schemas.TicketCreated
	case "ticket.status_changed":
		e.Type = schemas.TicketStatusChanged
		var sc statusChange
		if err := json.Unmarshal(p.Event, &sc); err != nil {
			return zenklav.Errorf(zenklav.EINVALID, "malformed status change in event: %v", err)
		}
		if e.Ticket.Status, err = normalizeStatus(sc.Current); err != nil {
			return err
		}
		if e.Ticket.PreviousStatus, err = normalizeStatus(sc.Previous); err != nil {
			return err
		}
		if e.Ticket.Status == "" {
			return zenklav.Errorf(zenklav.EINVALID, "status change without a current status")
		}
	case "ticket.comment_added":
		e.Type = schemas.TicketCommentAdded
		var ca commentAdded
		if err := json.Unmarshal(p.Event, &ca); err != nil {
			return zenklav.Errorf(zenklav.EINVALID, "malformed comment in event: %v", err)
		}
		e.Comment = &schemas.Comment{
			ID:       int64(ca.Comment.ID),
			Body:     ca.Comment.Body,
			Public:   ca.Comment.IsPublic,
			AuthorID: int64(ca.Comment.Author.ID),
		}
	default:
		e.Type = schemas.TicketFieldsChanged
	}
	return nil
}

// triggerPayload is zenklav's trigger body template (docs/zendesk-webhooks.md). Every value
// is a string because Zendesk placeholders render as text.
type triggerPayload struct {
	Zenklav    string `json:"zenklav"`
	Event      string `json:"event"`
	OccurredAt string `json:"occurred_at"`
	BrandID    string `json:"brand_id"`
	Ticket     struct {
		ID             string `json:"id"`
		Subject        string `json:"subject"`
		Description    string `json:"description"`
		Status         string `json:"status"`
		PreviousStatus string `json:"previous_status"`
		Priority       string `json:"priority"`
		Type           string `json:"type"`
		Tags           string `json:"tags"`
		Via            string `json:"via"`
		Requester      struct {
			ID    string `json:"id"`
			Email string `json:"email"`
			Phone string `json:"phone"`
			Name  string `json:"name"`
		} `json:"requester"`
		AssigneeID   string            `json:"assignee_id"`
		GroupID      string            `json:"group_id"`
		CustomFields map[string]string `json:"custom_fields"`
	} `json:"ticket"`
}

// triggerEvents maps the template's "event" values to event types.
var triggerEvents = map[string]string{
	"created":        schemas.TicketCreated,
	"status_changed": schemas.TicketStatusChanged,
	"comment_added":  schemas.TicketCommentAdded,
	"fields_changed": schemas.TicketFieldsChanged,
}

func parseTrigger(body []byte, target WebhookTarget) (*schemas.TicketEvent, error) {
	var p triggerPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, zenklav.Errorf(zenklav.EINVALID, "malformed zenklav trigger body: %v", err)
	}
	if p.Zenklav != "ticket_event.v1" {
		return nil, zenklav.Errorf(zenklav.EINVALID, "trigger body says zenklav %q; this version reads \"ticket_event.v1\"", p.Zenklav)
	}
	typ, ok := triggerEvents[strings.ToLower(strings.TrimSpace(p.Event))]
	if !ok {
		return nil, nil
	}
	ids, err := p.ids()
	if err != nil {
		return nil, err
	}
	if ids["ticket.id"] == 0 {
		return nil, zenklav.Errorf(zenklav.EINVALID, "trigger body has no ticket.id")
	}
	occurred, err := parseTime(p.OccurredAt)
	if err != nil {
		return nil, zenklav.Errorf(zenklav.EINVALID, "trigger body occurred_at: %v", err)
	}
	status, err := normalizeStatus(p.Ticket.Status)
	if err != nil {
		return nil, err
	}
	previous, err := normalizeStatus(p.Ticket.PreviousStatus)
	if err != nil {
		return nil, err
	}
	fields, err := triggerFields(p.Ticket.CustomFields)
	if err != nil {
		return nil, err
	}
	via := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(p.Ticket.Via)), " ", "_")
	conn := target.connection(ids["brand_id"])
	if conn == "" {
		return nil, nil // a brand no connection syncs
	}
	e := &schemas.TicketEvent{
		EventID:     "zt:" + triggerEventID(conn, body),
		Connection:  conn,
		Account:     schemas.Account{Subdomain: target.Subdomain},
		BrandID:     ids["brand_id"],
		Type:        typ,
		ZendeskType: "trigger:" + p.Event,
		Source:      schemas.SourceTrigger,
		OccurredAt:  occurred,
		ReceivedAt:  target.ReceivedAt.UTC(),
		Ticket: schemas.Ticket{
			ID:             ids["ticket.id"],
			URL:            AgentURL(target.Subdomain, ids["ticket.id"]),
			Subject:        p.Ticket.Subject,
			Description:    p.Ticket.Description,
			Status:         status,
			PreviousStatus: previous,
			Priority:       normalizeEnum(p.Ticket.Priority, priorities),
			Type:           normalizeEnum(p.Ticket.Type, ticketTypes),
			Tags:           strings.Fields(p.Ticket.Tags),
			Channel:        channelOf(via, strings.Fields(p.Ticket.Tags)),
			Via:            via,
			Requester: schemas.Requester{
				ID:    ids["ticket.requester.id"],
				Email: strings.TrimSpace(p.Ticket.Requester.Email),
				Phone: strings.TrimSpace(p.Ticket.Requester.Phone),
				Name:  strings.TrimSpace(p.Ticket.Requester.Name),
			},
			AssigneeID:   ids["ticket.assignee_id"],
			GroupID:      ids["ticket.group_id"],
			CustomFields: fields,
		},
	}
	return e, nil
}

// ids reads the ids of a trigger body, which Zendesk's placeholders render as text.
func (p *triggerPayload) ids() (map[string]int64, error) {
	ids := map[string]int64{}
	for name, s := range map[string]string{
		"ticket.id": p.Ticket.ID, "brand_id": p.BrandID, "ticket.requester.id": p.Ticket.Requester.ID,
		"ticket.assignee_id": p.Ticket.AssigneeID, "ticket.group_id": p.Ticket.GroupID,
	} {
		var f flexInt
		if err := f.UnmarshalJSON([]byte(strconv.Quote(s))); err != nil {
			return nil, zenklav.Errorf(zenklav.EINVALID, "trigger body %s: %v", name, err)
		}
		ids[name] = int64(f)
	}
	return ids, nil
}

// triggerEventID derives an event id for a trigger-connected webhook, which carries none.
// Zendesk redelivers the very same body, so a hash of it names the notification: a retry
// keeps its id, and two notifications that differ in anything get two.
func triggerEventID(connection string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(connection))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// channelOf maps Zendesk's via names (event webhooks say web_form and web_service, the
// {{ticket.via}} placeholder says Web Form, Mail, Text) to the channel marketers filter on.
//
// A ticket zenklav opened from SMS is created through the API (via web_service) with the tag
// sms: its channel is sms, so marketers see SMS conversations as such in the metrics and the
// reports. Only API-made tickets count: an agent's sms tag on an email ticket changes nothing.
func channelOf(via string, tags []string) string {
	if (via == "web_service" || via == "api") && slices.Contains(tags, zenklav.TagSMS) {
		return "sms"
	}
	switch via {
	case "mail", "email":
		return "email"
	case "web_form", "web":
		return "web"
	case "text", "sms":
		return "sms"
	case "web_service", "api":
		return "api"
	}
	return via
}

func triggerFields(m map[string]string) ([]schemas.CustomField, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make([]schemas.CustomField, 0, len(m))
	for k, v := range m {
		id, err := strconv.ParseInt(k, 10, 64)
		if err != nil || id <= 0 {
			return nil, zenklav.Errorf(zenklav.EINVALID, "trigger body custom_fields key %q is not a field id", k)
		}
		out = append(out, schemas.CustomField{ID: id, Value: v})
	}
	// Map order is random; a stable order keeps the event deterministic.
	slices.SortFunc(out, func(a, b schemas.CustomField) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// eventIDPattern is what ticket_event.v1 allows after the "zd:" prefix.
var eventIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

func validEventID(id string) bool { return eventIDPattern.MatchString(id) }

var statuses = map[string]string{
	"new": zenklav.StatusNew, "open": zenklav.StatusOpen, "pending": zenklav.StatusPending,
	"hold": zenklav.StatusHold, "on-hold": zenklav.StatusHold, "on_hold": zenklav.StatusHold,
	"solved": zenklav.StatusSolved, "closed": zenklav.StatusClosed, "deleted": zenklav.StatusDeleted,
}

// normalizeStatus lowercases a status whatever casing Zendesk used ("OPEN", "Open", "open").
func normalizeStatus(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", nil
	}
	if v, ok := statuses[s]; ok {
		return v, nil
	}
	return "", zenklav.Errorf(zenklav.EINVALID, "unknown ticket status %q", s)
}

// The values of ticket_event.v1's priority and type.
var (
	priorities  = []string{"low", "normal", "high", "urgent"}
	ticketTypes = []string{"problem", "incident", "question", "task"}
)

// normalizeEnum lowercases s and keeps it when it is one of allowed; Zendesk sends "-" or ""
// for an unset priority or type.
func normalizeEnum(s string, allowed []string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if slices.Contains(allowed, s) {
		return s
	}
	return ""
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05 MST", "2006-01-02T15:04:05-0700"}

// The range of ClickHouse's DateTime, where every event lands: a time outside it would be
// stored wrapped around, in the wrong month.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Unix(1<<32-1, 0)
)

func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if t.Before(minTime) || t.After(maxTime) {
				return time.Time{}, fmt.Errorf("%q is outside 1970–2106", s)
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an ISO-8601 time", s)
}

// AgentURL is the ticket's page in the Zendesk agent interface.
func AgentURL(subdomain string, ticket int64) string {
	return "https://" + subdomain + ".zendesk.com/agent/tickets/" + strconv.FormatInt(ticket, 10)
}
