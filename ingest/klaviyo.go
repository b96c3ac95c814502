package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/schemas"
)

// AdmitKlaviyo says whether a Klaviyo system webhook sent to connection's endpoint with
// headers h is worth reading: it makes every check of Klaviyo that needs no body. Its errors
// are Klaviyo's first two: ENOTFOUND for a connection that takes no Klaviyo webhooks (none of
// that id, or one without SMS or without Klaviyo webhook secrets: the same answer, so the
// endpoint does not tell which connections exist), EUNAUTHORIZED for signature headers that
// are missing or malformed, or a timestamp that is stale.
func (s *Service) AdmitKlaviyo(connection string, h http.Header) error {
	_, _, err := s.admitKlaviyo(connection, h, s.cfg.Now())
	return err
}

// admitKlaviyo is AdmitKlaviyo at now, returning the connection and the signature to verify
// the body with.
func (s *Service) admitKlaviyo(id string, h http.Header, now time.Time) (*zenklav.Connection, klaviyo.Signature, error) {
	c := s.cfg.Connections.ByID(id)
	if c == nil || !c.SMS.Enabled || len(c.Klaviyo.WebhookSecrets) == 0 {
		return nil, klaviyo.Signature{}, zenklav.Errorf(zenklav.ENOTFOUND, "no Klaviyo webhook endpoint for connection %q", id)
	}
	sig, err := klaviyo.ParseSignature(h, now)
	return c, sig, err
}

// Klaviyo verifies one Klaviyo system webhook sent to connection's endpoint, maps each of its
// items to an SMS event (klaviyo.SMSEventOf), and publishes them all at once. It returns the
// events once Kafka acknowledged every one of them; none and no error when no item is for
// zenklav (other topics, items without a customer number: acknowledged, counted). It makes
// AdmitKlaviyo's checks again, so it is whole on its own. Its errors: ENOTFOUND and
// EUNAUTHORIZED as AdmitKlaviyo's, EUNAUTHORIZED too for a signature of another body or
// secret and for a body whose meta names another webhook than Klaviyo-Webhook-Id, EINVALID
// for a body that is not a system webhook, ETOOLARGE for an event over Kafka's limit,
// EUNAVAILABLE when Kafka did not acknowledge in time: Klaviyo then sends it again, which is
// harmless, since each event keeps its id (klaviyo: + the item's external_id) and the
// consumers deduplicate by it.
func (s *Service) Klaviyo(ctx context.Context, connection string, h http.Header, body []byte) ([]schemas.SMSEvent, error) {
	now := s.cfg.Now()
	c, sig, err := s.admitKlaviyo(connection, h, now)
	if err != nil {
		return nil, err
	}
	if err := sig.Verify(reveal(c.Klaviyo.WebhookSecrets), body); err != nil {
		return nil, err
	}
	hook, err := klaviyo.ParseWebhook(body, sig.WebhookID())
	if err != nil {
		return nil, err
	}
	target := klaviyo.InboundTarget{Connection: c.ID, InboundTopics: c.SMS.InboundTopics, ReceivedAt: now}
	var events []schemas.SMSEvent
	results := map[string]float64{}
	for _, item := range hook.Data {
		ev, result := klaviyo.SMSEventOf(item, target)
		results[result]++
		if ev != nil {
			events = append(events, *ev)
		}
	}
	if len(events) > 0 {
		ctx, cancel := context.WithTimeout(ctx, publishTimeout)
		defer cancel()
		if err := s.publishSMS(ctx, events); err != nil {
			return nil, err
		}
	}
	// Counted once the request is answered 2xx: a request Klaviyo must send again is
	// counted when it gets through.
	for result, n := range results {
		s.items.WithLabelValues(c.ID, result).Add(n)
	}
	return events, nil
}

// publishSMS encodes events, validates them against sms_event.v1 and writes them to the SMS
// events topic in one request, keyed by connection and customer phone so one conversation
// stays in order. It returns once Kafka acknowledged all of them; nothing is written when one
// breaks the contract (EINTERNAL) or is over the log's limit (ETOOLARGE).
func (s *Service) publishSMS(ctx context.Context, events []schemas.SMSEvent) error {
	msgs := make([]zenklav.Message, len(events))
	for i := range events {
		e := &events[i]
		value, err := e.Marshal()
		if err != nil {
			// klaviyo.SMSEventOf only returns what the schema allows, so this is zenklav's bug:
			// a 500 makes Klaviyo retry once it is fixed.
			return zenklav.Wrap(zenklav.EINTERNAL, err, "Klaviyo item %s did not make a valid sms event", e.EventID)
		}
		if msgs[i], err = message(s.cfg.SMSTopic, schemas.SMSEventV1, e.EventID, e.Key(), value); err != nil {
			return err
		}
	}
	if err := s.cfg.Publisher.Publish(ctx, msgs...); err != nil {
		return fmt.Errorf("publish %d sms events: %w", len(events), err)
	}
	return nil
}

// reveal returns secrets as the strings they hide, for the signature check only.
func reveal(secrets []zenklav.Secret) []string {
	out := make([]string, len(secrets))
	for i, s := range secrets {
		out[i] = s.Reveal()
	}
	return out
}

// itemsCounter is the counter of Klaviyo webhook items, registered with reg when it is set.
// A second Service on the same registry (a test, a role built twice) shares the first's.
func itemsCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "zenklav_klaviyo_webhook_items_total",
		Help: "Items of Klaviyo system webhooks accepted, by connection and result: the SMS event's kind (inbound, sent, failed), or why the item became none (ignored, no_customer_phone, no_external_id, malformed_payload).",
	}, []string{"connection", "result"})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if errors.As(err, &dup) {
			if existing, ok := dup.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}
