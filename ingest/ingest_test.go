package ingest_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/ingest"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
)

// recorder is a Publisher that keeps what it is given.
type recorder struct{ msgs []zenklav.Message }

func (r *recorder) Publish(_ context.Context, msgs ...zenklav.Message) error {
	r.msgs = append(r.msgs, msgs...)
	return nil
}

func event(id string, ticket int64) schemas.TicketEvent {
	at := time.Date(2025, 1, 8, 10, 0, 0, 0, time.UTC)
	return schemas.TicketEvent{EventID: id, Connection: "acme", Account: schemas.Account{Subdomain: "acme"}, Type: schemas.TicketCreated,
		Source: schemas.SourceBackfill, OccurredAt: at, ReceivedAt: at, Ticket: schemas.Ticket{ID: ticket, Status: zenklav.StatusNew}}
}

// TestPublish: what the backfill writes goes to the topic, keyed by connection and ticket,
// with the schema and event id in headers; an event that breaks the contract or is over the
// log's limit is refused, and then nothing of the batch is written.
func TestPublish(t *testing.T) {
	rec := &recorder{}
	svc := ingest.New(ingest.Config{Publisher: rec, Topic: "events-test"})
	if err := svc.Publish(context.Background(), event("zb:acme:7:created", 7), event("zb:acme:8:created", 8)); err != nil {
		t.Fatal(err)
	}
	if len(rec.msgs) != 2 {
		t.Fatalf("published %d messages, want 2", len(rec.msgs))
	}
	m := rec.msgs[1]
	if m.Topic != "events-test" || string(m.Key) != "acme/8" || m.Headers[ingest.HeaderSchema] != "ticket_event.v1" || m.Headers[ingest.HeaderEventID] != "zb:acme:8:created" {
		t.Errorf("message %s key %s headers %v", m.Topic, m.Key, m.Headers)
	}

	huge := event("zb:acme:9:created", 9)
	huge.Ticket.Description = strings.Repeat("x", zenklav.MaxMessageBytes)
	bad := event("", 10) // no event id: not a ticket_event.v1
	for name, tc := range map[string]struct {
		ev   schemas.TicketEvent
		kind string
	}{"over the limit": {huge, zenklav.ETOOLARGE}, "breaks the contract": {bad, zenklav.EINTERNAL}} {
		rec.msgs = nil
		err := svc.Publish(context.Background(), event("zb:acme:1:created", 1), tc.ev)
		if zenklav.ErrorCode(err) != tc.kind || len(rec.msgs) != 0 {
			t.Errorf("%s: %v (kind %s, want %s), %d published", name, err, zenklav.ErrorCode(err), tc.kind, len(rec.msgs))
		}
	}
}

// TestAdmitZendesk: AdmitZendesk refuses from the headers alone what Zendesk would refuse
// too, with the same kind, and admits a well-formed signature, whose body Zendesk then
// checks.
func TestAdmitZendesk(t *testing.T) {
	const secret = "acme-signing-secret-0001"
	now := time.Date(2025, 1, 8, 10, 12, 9, 0, time.UTC)
	conns, err := zenklav.NewConnections(zenklav.Connection{ID: "acme", Zendesk: zenklav.ZendeskSettings{
		Subdomain: "acme", WebhookSecrets: []zenklav.Secret{secret}, Brands: zenklav.Brands{All: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	svc := ingest.New(ingest.Config{Connections: conns, Publisher: rec, Now: func() time.Time { return now }})
	body := []byte(`{"type":"zen:event-type:user.created","id":"u-1","detail":{}}`)
	headers := func(sig, ts string) http.Header {
		h := http.Header{}
		h.Set(zendesk.HeaderSignature, sig)
		h.Set(zendesk.HeaderSignatureTimestamp, ts)
		return h
	}
	ts := zendesk.Timestamp(now)
	for _, tc := range []struct {
		name, subdomain string
		h               http.Header
		admit, full     string // the error kinds of AdmitZendesk and Zendesk; "" = none
	}{
		{"signed", "acme", headers(zendesk.Sign(secret, ts, body), ts), "", ""},
		{"well-formed, wrong secret", "acme", headers(zendesk.Sign("not-the-acme-secret-000", ts, body), ts), "", zenklav.EUNAUTHORIZED},
		{"unknown subdomain", "initech", headers(zendesk.Sign(secret, ts, body), ts), zenklav.ENOTFOUND, zenklav.ENOTFOUND},
		{"no headers", "acme", http.Header{}, zenklav.EUNAUTHORIZED, zenklav.EUNAUTHORIZED},
		{"signature x", "acme", headers("x", ts), zenklav.EUNAUTHORIZED, zenklav.EUNAUTHORIZED},
		{"stale", "acme", headers(zendesk.Sign(secret, zendesk.Timestamp(now.Add(-6*time.Minute)), body), zendesk.Timestamp(now.Add(-6*time.Minute))), zenklav.EUNAUTHORIZED, zenklav.EUNAUTHORIZED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := svc.AdmitZendesk(tc.subdomain, tc.h); zenklav.ErrorCode(err) != tc.admit {
				t.Errorf("AdmitZendesk = %v, want kind %q", err, tc.admit)
			}
			if _, err := svc.Zendesk(context.Background(), tc.subdomain, tc.h, body); zenklav.ErrorCode(err) != tc.full {
				t.Errorf("Zendesk = %v, want kind %q", err, tc.full)
			}
		})
	}
	if len(rec.msgs) != 0 {
		t.Errorf("published %d messages for a user event", len(rec.msgs))
	}
}
