package schemas

import (
	"strconv"
	"time"
)

// Ticket event types: what changed.
const (
	TicketCreated       = "created"
	TicketStatusChanged = "status_changed"
	TicketCommentAdded  = "comment_added"
	TicketFieldsChanged = "fields_changed"
)

// Sources: which kind of Zendesk webhook delivered an event.
const (
	SourceEvent   = "event"   // event-subscribed webhook (zen:event-type:ticket.*)
	SourceTrigger = "trigger" // trigger-connected webhook with zenklav's body template
	// SourceBackfill is no webhook: `zenklav backfill` rebuilt the event from a ticket
	// snapshot of Zendesk's Incremental Ticket Export.
	SourceBackfill = "backfill"
)

// TicketEvent is ticket_event.v1: one change to one Zendesk ticket.
type TicketEvent struct {
	EventID     string  `json:"event_id"`
	Connection  string  `json:"tenant"`
	Account     Account `json:"account"`
	BrandID     int64   `json:"brand_id,omitempty"`
	Type        string  `json:"type"`
	ZendeskType string  `json:"zendesk_type,omitempty"`
	Source      string  `json:"source"`
	// Klaviyo is read only for SourceBackfill: its metrics go to Klaviyo (as backfill, never
	// triggering flows) when true, and not at all when false, so a backfill that was not asked
	// to reach Klaviyo cannot.
	Klaviyo    bool      `json:"klaviyo,omitempty"`
	OccurredAt time.Time `json:"occurred_at"`
	ReceivedAt time.Time `json:"received_at"`
	Ticket     Ticket    `json:"ticket"`
	Comment    *Comment  `json:"comment,omitempty"`
}

// Key is the Kafka key of the event: one ticket's events share a partition and stay in order.
func (e *TicketEvent) Key() string {
	return e.Connection + "/" + strconv.FormatInt(e.Ticket.ID, 10)
}

// Account names the Zendesk account.
type Account struct {
	Subdomain string `json:"subdomain"`
	ID        int64  `json:"id,omitempty"`
}

// Ticket is the ticket as Zendesk described it in the webhook.
type Ticket struct {
	ID             int64         `json:"id"`
	URL            string        `json:"url,omitempty"`
	Subject        string        `json:"subject,omitempty"`
	Description    string        `json:"description,omitempty"`
	Status         string        `json:"status,omitempty"` // zenklav.StatusNew, …
	PreviousStatus string        `json:"previous_status,omitempty"`
	Priority       string        `json:"priority,omitempty"`
	Type           string        `json:"type,omitempty"`
	Tags           []string      `json:"tags,omitempty"`
	Channel        string        `json:"channel,omitempty"`
	Via            string        `json:"via,omitempty"`
	Requester      Requester     `json:"requester,omitzero"`
	AssigneeID     int64         `json:"assignee_id,omitempty"`
	GroupID        int64         `json:"group_id,omitempty"`
	CustomFields   []CustomField `json:"custom_fields,omitempty"`
}

// Requester is the ticket's requester; Zendesk's event webhooks carry only the id, so the
// rest may be empty until looked up.
type Requester struct {
	ID    int64  `json:"id,omitempty"`
	Email string `json:"email,omitempty"`
	Phone string `json:"phone,omitempty"`
	Name  string `json:"name,omitempty"`
}

// CustomField is one custom ticket field; Value is whatever JSON Zendesk sent (string,
// number, boolean, list or null).
type CustomField struct {
	ID    int64 `json:"id"`
	Value any   `json:"value"`
}

// Comment is the comment of a comment_added event.
type Comment struct {
	ID       int64  `json:"id,omitempty"`
	Body     string `json:"body,omitempty"`
	Public   bool   `json:"public"`
	AuthorID int64  `json:"author_id,omitempty"`
}
