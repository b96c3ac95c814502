// Package ingest is the way into the event log: everything between "a webhook's bytes and
// headers arrived" (or a backfill read a ticket) and "Kafka acknowledged the event". It
// finds the connection, checks the signature, parses, applies the brand rule, encodes and
// validates against the wire contract, and publishes with acks=all. Zendesk's webhooks
// become ticket events (this file), Klaviyo's system webhooks SMS events (klaviyo.go). The
// HTTP handlers and `zenklav backfill` call it; neither knows Kafka.
package ingest

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
)

// Headers of every event zenklav produces.
const (
	HeaderSchema  = "zenklav-schema"   // the wire contract: ticket_event.v1, sms_event.v1
	HeaderEventID = "zenklav-event-id" // the event's id, to find it without decoding
)

// publishTimeout bounds the wait for Kafka's acknowledgement of a webhook: Zendesk gives up
// on a webhook after 10 s, so a 503 before that makes its retry sure. Klaviyo documents no
// timeout of its own; the same bound keeps its requests as short.
const publishTimeout = 8 * time.Second

// Config is what a Service takes events for and writes them to.
type Config struct {
	Connections *zenklav.Connections
	Publisher   zenklav.Publisher
	// Topic is where ticket events go: schemas.TicketEventsTopic when "".
	Topic string
	// SMSTopic is where SMS events go: schemas.SMSEventsTopic when "".
	SMSTopic string
	// Now is the clock signature timestamps are checked against: time.Now when nil.
	Now func() time.Time
	// Registry, when set, exports what became of Klaviyo webhook items
	// (zenklav_klaviyo_webhook_items_total).
	Registry prometheus.Registerer
}

// Service takes ticket and SMS events in.
type Service struct {
	cfg Config
	// items counts Klaviyo webhook items by connection and result: the SMS kind, or why
	// an item became no event (klaviyo.ItemIgnored, …).
	items *prometheus.CounterVec
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Topic == "" {
		cfg.Topic = schemas.TicketEventsTopic
	}
	if cfg.SMSTopic == "" {
		cfg.SMSTopic = schemas.SMSEventsTopic
	}
	return &Service{cfg: cfg, items: itemsCounter(cfg.Registry)}
}

// AdmitZendesk says whether a Zendesk webhook sent to subdomain's endpoint with headers h is
// worth reading: it makes every check of Zendesk that needs no body, so that a request that
// cannot be a webhook of ours is refused before its body costs memory. Its errors are
// Zendesk's first two: ENOTFOUND for an unknown subdomain, EUNAUTHORIZED for signature
// headers that are missing or malformed, or a timestamp that is stale.
func (s *Service) AdmitZendesk(subdomain string, h http.Header) error {
	_, err := s.admit(subdomain, h, s.cfg.Now())
	return err
}

// admit is AdmitZendesk at now, returning the signature for Zendesk to verify the body with.
func (s *Service) admit(subdomain string, h http.Header, now time.Time) (zendesk.Signature, error) {
	if len(s.cfg.Connections.BySubdomain(subdomain)) == 0 {
		return zendesk.Signature{}, zenklav.Errorf(zenklav.ENOTFOUND, "no connection for Zendesk subdomain %q", subdomain)
	}
	return zendesk.ParseSignature(h.Get(zendesk.HeaderSignature), h.Get(zendesk.HeaderSignatureTimestamp), now)
}

// Zendesk verifies, parses and publishes one Zendesk webhook sent to subdomain's endpoint.
// It returns the event once Kafka acknowledged it, or nil and no error for a well-formed
// webhook zenklav does not use (another kind of event, a brand no connection syncs). It
// makes AdmitZendesk's checks again, so it is whole on its own. Its errors: ENOTFOUND for an
// unknown subdomain, EUNAUTHORIZED for a bad signature or stale timestamp, EINVALID for a
// body that is not a Zendesk event, ETOOLARGE for an event over Kafka's limit, EUNAVAILABLE
// when Kafka did not acknowledge in time.
func (s *Service) Zendesk(ctx context.Context, subdomain string, h http.Header, body []byte) (*schemas.TicketEvent, error) {
	now := s.cfg.Now()
	sig, err := s.admit(subdomain, h, now)
	if err != nil {
		return nil, err
	}
	if err := sig.Verify(s.cfg.Connections.WebhookSecrets(subdomain), body); err != nil {
		return nil, err
	}
	ev, err := zendesk.ParseWebhook(body, zendesk.WebhookTarget{Owner: s.owner(subdomain), Subdomain: subdomain, ReceivedAt: now})
	if err != nil || ev == nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := s.Publish(ctx, *ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// owner is the brand rule for one Zendesk account, as the parser asks it.
func (s *Service) owner(subdomain string) func(brand int64) string {
	return func(brand int64) string {
		if c := s.cfg.Connections.Owner(subdomain, brand); c != nil {
			return c.ID
		}
		return ""
	}
}

// Publish encodes events, validates them against ticket_event.v1 and writes them to the
// ticket events topic, keyed by connection and ticket so one ticket's events stay in order.
// It returns once Kafka acknowledged all of them (EUNAVAILABLE when it did not: writing them
// again is safe). An event that breaks the contract is EINTERNAL (the producer's bug) and an
// event over the log's limit (with room for its framing) ETOOLARGE; nothing is written then.
func (s *Service) Publish(ctx context.Context, events ...schemas.TicketEvent) error {
	msgs := make([]zenklav.Message, len(events))
	for i := range events {
		e := &events[i]
		value, err := e.Marshal()
		if err != nil {
			// The parsers only return what the schema allows, so this is zenklav's bug: a 500
			// makes Zendesk retry once it is fixed, and the log says what broke.
			return zenklav.Wrap(zenklav.EINTERNAL, err, "ticket %d did not make a valid ticket event", e.Ticket.ID)
		}
		if msgs[i], err = message(s.cfg.Topic, "ticket_event.v1", e.EventID, e.Key(), value); err != nil {
			return err
		}
	}
	if err := s.cfg.Publisher.Publish(ctx, msgs...); err != nil {
		return fmt.Errorf("publish %d ticket events: %w", len(events), err)
	}
	return nil
}

// message is an encoded event as the log takes it, with the headers every event of zenklav
// carries; ETOOLARGE when it is over the log's limit, with room for its framing.
func message(topic, schema, eventID, key string, value []byte) (zenklav.Message, error) {
	if len(value)+len(key)+1024 > zenklav.MaxMessageBytes {
		return zenklav.Message{}, zenklav.Errorf(zenklav.ETOOLARGE, "event %s is over Kafka's %d-byte message limit", eventID, zenklav.MaxMessageBytes)
	}
	return zenklav.Message{
		Topic: topic, Key: []byte(key), Value: value,
		Headers: map[string]string{HeaderSchema: schema, HeaderEventID: eventID},
	}, nil
}
