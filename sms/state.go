package sms

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
)

// conversation is zenklav's durable record of one customer's SMS conversation with one
// connection: the ticket it goes to, which messages it has handled, and the one step it was
// taking when it last stopped. It lives in the compacted topic ConversationsTopic, keyed like
// the messages (connection/phone), so every replica of the role sees the same record and a
// restart loses nothing. Why a compacted topic: the role already depends on Kafka, the record
// of a conversation is written by the one member that owns its partition, and a Table reads
// it back after a rebalance; a database would be a server more to run for a few bytes a
// customer.
type conversation struct {
	TicketID    int64 `json:"ticket_id,omitempty"`
	RequesterID int64 `json:"requester_id,omitempty"`
	// Handled are the ids of the latest messages handled (ticket made or commented, or passed
	// over), newest last: a redelivery of one of them does nothing.
	Handled []string `json:"handled,omitempty"`
	// Pending is the Zendesk write under way: recorded before the request and cleared after
	// it, so a crash in between is finished (not repeated) by whoever handles the
	// conversation next.
	Pending *pending `json:"pending,omitempty"`
	// LastSent is the last campaign or flow SMS the customer received: a new ticket shows it.
	LastSent *sentSMS `json:"last_sent,omitempty"`
}

// maxHandled bounds Handled: a redelivery comes within a few batches of the original.
const maxHandled = 256

// pending is one Zendesk write, as it will be sent.
type pending struct {
	EventIDs []string `json:"event_ids"`
	Action   string   `json:"action"` // create, follow-up, comment, reopen, note
	At       time.Time
	// Create and follow-up: the ticket and the idempotency key it is created with.
	Ticket *zenklav.NewTicket `json:"ticket,omitempty"`
	Key    string             `json:"key,omitempty"`
	// Comment, reopen, note: the ticket, the comment and the status it is set to.
	TicketID int64               `json:"ticket_id,omitempty"`
	Comment  zenklav.DeskComment `json:"comment"`
	Status   string              `json:"status,omitempty"`
}

// sentSMS is a campaign or flow SMS Klaviyo sent the customer.
type sentSMS struct {
	Body     string    `json:"body"`
	Campaign string    `json:"campaign,omitempty"`
	Flow     string    `json:"flow,omitempty"`
	At       time.Time `json:"at"`
}

func (c *conversation) handled(id string) bool { return slices.Contains(c.Handled, id) }

func (c *conversation) markHandled(ids ...string) {
	for _, id := range ids {
		if !c.handled(id) {
			c.Handled = append(c.Handled, id)
		}
	}
	if n := len(c.Handled) - maxHandled; n > 0 {
		c.Handled = slices.Delete(c.Handled, 0, n)
	}
}

// Store keeps the conversations and the replies' records: a kafka.Table in the role, a map in
// tests.
type Store interface {
	// Sync catches up with what other replicas wrote: called before a batch, since the
	// partitions it comes from may have been another member's until now.
	Sync(ctx context.Context) error
	Get(key string) ([]byte, bool)
	Put(ctx context.Context, key string, value []byte) error
}

var _ Store = (*kafka.Table)(nil)

// ConversationsTopic is the compacted topic of the conversations; EventsTopic the one the
// role reads.
const (
	ConversationsTopic = "sms-conversations.v1"
	EventsTopic        = schemas.SMSEventsTopic
)

// load reads key's record into v; a key never written leaves v as it is.
func load(s Store, key string, v any) error {
	raw, ok := s.Get(key)
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("record %s: %w", key, err)
	}
	return nil
}

// save writes v as key's record.
func save(ctx context.Context, s Store, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.Put(ctx, key, raw)
}

// memoryStore is a Store in memory, for tests of the rules.
type memoryStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memoryStore) Sync(context.Context) error { return nil }

func (s *memoryStore) Get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return v, ok
}

func (s *memoryStore) Put(_ context.Context, key string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[key] = v
	return nil
}
