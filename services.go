package zenklav

import (
	"context"
	"time"

	"github.com/zenklav/zenklav/schemas"
)

// The interfaces of the systems zenklav talks to. Each is defined here once, implemented by
// the package named after the system (kafka, zendesk, klaviyo, analytics), and faked in
// tests. Every method says which error kinds it returns; EUNAVAILABLE is always "try again
// later" and Throttled, RetryAfter and Response tell more where the API did.

// Message is one record of the event log.
type Message struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers map[string]string
}

// MaxMessageBytes is the largest message the event log takes: Kafka's default
// message.max.bytes is 1 MiB plus a little, and zenklav produces record batches of at most
// this size.
const MaxMessageBytes = 1 << 20

// Publisher writes to the event log (kafka.Producer). Publish returns only once every
// message is acknowledged by all in-sync replicas: EUNAVAILABLE when it was not (nothing is
// known to be written; writing again is safe, since every consumer is idempotent).
type Publisher interface {
	Publish(ctx context.Context, msgs ...Message) error
}

// TicketDetails is what zenklav reads of a Zendesk ticket when a webhook did not say it.
type TicketDetails struct {
	ID           int64
	Description  string // the body of the first comment
	BrandID      int64
	RequesterID  int64
	CustomFields []schemas.CustomField
}

// Directory is one Zendesk account's tickets, users and groups (zendesk.Client), read for
// what webhooks leave out and for the sidebar's card. The single lookups are ENOTFOUND when
// the thing does not exist (any more); the batch lookups leave such ids out of their answer.
// EUNAUTHORIZED means the connection's credentials need fixing.
type Directory interface {
	FindTicket(ctx context.Context, id int64) (TicketDetails, error)
	FindTickets(ctx context.Context, ids []int64) (map[int64]TicketDetails, error)
	FindUser(ctx context.Context, id int64) (Person, error)
	FindUsers(ctx context.Context, ids []int64) (map[int64]Person, error)
	GroupName(ctx context.Context, id int64) (string, error)
}

// Klaviyo is one Klaviyo account (klaviyo.Client). Every call waits for the account's rate
// limits first, so callers may ask as fast as they like; a call whose wait would outlast ctx
// fails at once with EUNAVAILABLE.
type Klaviyo interface {
	// Deliver records events with as few requests as the limits allow; errs[i] is what
	// became of events[i]: nil when accepted, EUNAVAILABLE when worth another try,
	// anything else final (with the answer in Response).
	Deliver(ctx context.Context, events []MetricEvent) []error
	// DeliverDelay is how long a delivery of a full batch would wait for the rate limit
	// now. A caller that forms its batch only then lets events wait unbatched, where later
	// ones can still join them.
	DeliverDelay() time.Duration
	// MaxDeliver is the most events one delivery request holds.
	MaxDeliver() int
	// SetOpenTickets sets OpenTicketsProperty on the profiles.
	SetOpenTickets(ctx context.Context, counts []OpenTickets) error
	// FindProfile looks up the profile key names; found is false when there is none.
	FindProfile(ctx context.Context, key ProfileKey) (p Profile, found bool, err error)
	RecentEvents(ctx context.Context, profileID string, n int) ([]RecordedEvent, error)
	ProfileSegments(ctx context.Context, profileID string) ([]Membership, error)
	ProfileLists(ctx context.Context, profileID string) ([]Membership, error)
}

// TicketState is a ticket's latest known status.
type TicketState struct {
	Status     string
	OccurredAt time.Time
}

// SupportHistory is what a requester's tickets say of them, for the agent's sidebar card.
// A ticket is the requester's when they are its latest requester.
type SupportHistory struct {
	Open         int            // tickets not yet closed (IsOpen)
	Recent       int            // tickets created since the time asked for
	Total        int            // tickets ever, deleted ones excepted
	LastResolved ResolvedTicket // the ticket closed last; zero when none was
}

// ResolvedTicket is a ticket and when it became closed, the product's "resolved".
type ResolvedTicket struct {
	TicketID int64
	Subject  string
	At       time.Time
}

// TicketStore is zenklav's own record of every ticket event (analytics.Store on
// ClickHouse): what the sink writes and the emitter and the sidebar read. Writing the same
// events twice is harmless. Its errors are EUNAVAILABLE, or EINVALID for bad arguments.
type TicketStore interface {
	// InsertTicketEvents stores events; a redelivered event counts once.
	InsertTicketEvents(ctx context.Context, events []schemas.TicketEvent) error
	// SummarizeTicketEvents folds events into the per-ticket and per-customer rows the
	// reports read. One ticket's events must be folded by one caller at a time.
	SummarizeTicketEvents(ctx context.Context, events []schemas.TicketEvent) error
	// ForgetTicketRows makes the fold read the rows it remembers from the store again: after
	// a rebalance, another process may have folded them meanwhile.
	ForgetTicketRows()
	// RequesterTickets returns, per requester, the latest state of each ticket whose
	// latest requester they are.
	RequesterTickets(ctx context.Context, connection string, requesters []int64) (map[int64]map[int64]TicketState, error)
	// SupportHistory sums up a requester's tickets; Recent counts those created since.
	SupportHistory(ctx context.Context, connection string, requester int64, since time.Time) (SupportHistory, error)
	// RecordMemberships keeps the segments (kind "segment") or lists ("list") a customer was
	// seen in at a time, for the segments report.
	RecordMemberships(ctx context.Context, connection string, requester int64, at time.Time, kind string, names []string) error
}
