package zenklav

import (
	"slices"
	"strconv"

	"github.com/zenklav/zenklav/schemas"
)

// Ticket statuses, lowercase as zenklav writes them (schemas.Ticket.Status) whatever casing
// Zendesk sent. Deleted is zenklav's: Zendesk deletes a ticket rather than giving it a status.
const (
	StatusNew     = "new"
	StatusOpen    = "open"
	StatusPending = "pending"
	StatusHold    = "hold"
	StatusSolved  = "solved"
	StatusClosed  = "closed"
	StatusDeleted = "deleted"
)

// UnsolvedStatuses are the statuses of a ticket an agent still works on. A customer's message
// on such a ticket is a comment; a ticket that goes back to one of them from solved is
// reopened.
var UnsolvedStatuses = []string{StatusNew, StatusOpen, StatusPending, StatusHold}

// FinalStatuses are the statuses a ticket ends in. Every other status, and a ticket whose
// status zenklav has not seen, is open: not yet closed. Open_tickets and the sidebar count
// open tickets, solved ones included, since Zendesk closes solved tickets later by
// automation.
var FinalStatuses = []string{StatusClosed, StatusDeleted}

// IsOpen reports whether a ticket of status is not yet closed (nor deleted).
func IsOpen(status string) bool { return !slices.Contains(FinalStatuses, status) }

// IsUnsolved reports whether a ticket of status is one an agent still works on.
func IsUnsolved(status string) bool { return slices.Contains(UnsolvedStatuses, status) }

// The two metrics zenklav records in Klaviyo, named as Klaviyo's own Zendesk integration
// names them.
const (
	MetricOpened   = "Opened Ticket"
	MetricResolved = "Resolved Ticket"
)

// OpenTicketsProperty is the profile property that holds the requester's count of tickets
// not yet closed, so marketers can segment on it without a metric filter.
const OpenTicketsProperty = "Open_tickets"

// Transition is a change of a ticket that becomes a metric.
type Transition struct {
	Metric string // MetricOpened or MetricResolved
	Name   string // in the unique id: opened, resolved
}

// The transitions of the product rules.
var (
	Opened   = Transition{MetricOpened, "opened"}
	Resolved = Transition{MetricResolved, "resolved"}
)

// Transitions applies the product rules: a created ticket is opened; a ticket whose status
// becomes closed is resolved (solved is not: Zendesk closes solved tickets later, by
// automation). A ticket created already closed, as imports do, is both. Nothing else
// reaches Klaviyo.
//
// A backfilled event reaches Klaviyo only when its backfill was asked to send it there
// (`zenklav backfill --to-klaviyo`), and then as a Klaviyo backfill.
func Transitions(e *schemas.TicketEvent) []Transition {
	if e.Source == schemas.SourceBackfill && !e.Klaviyo {
		return nil
	}
	closed := e.Ticket.Status == StatusClosed
	switch {
	case e.Type == schemas.TicketCreated && closed:
		return []Transition{Opened, Resolved}
	case e.Type == schemas.TicketCreated:
		return []Transition{Opened}
	case e.Type == schemas.TicketStatusChanged && closed:
		return []Transition{Resolved}
	}
	return nil
}

// UniqueID is the Klaviyo unique_id of t for e's ticket: Klaviyo keeps only the first event of
// a profile and metric with one id, so a redelivered, replayed or doubly delivered change
// counts once. It names the connection, the ticket and the transition, and not the Zendesk
// event: a ticket opens once and closes once (a closed ticket cannot be reopened; a
// follow-up is a new ticket), while one change can reach zenklav under two Zendesk event
// ids, by an event-subscribed webhook and by a trigger.
func UniqueID(e *schemas.TicketEvent, t Transition) string {
	return "zendesk:" + e.Connection + ":" + strconv.FormatInt(e.Ticket.ID, 10) + ":" + t.Name
}
