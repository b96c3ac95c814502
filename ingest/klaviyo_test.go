package ingest_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/ingest"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/schemas"
)

const (
	klaviyoSecret = "acme-klaviyo-secret-0001"
	klaviyoHook   = "a8b890458b4bbfaa26d961471b83c101d6de23bd826e7e5173a15310985ec3cb"
)

var klaviyoNow = time.Date(2025, 1, 8, 10, 12, 9, 0, time.UTC)

// calls is a Publisher that keeps each call's messages apart.
type calls struct{ calls [][]zenklav.Message }

func (c *calls) Publish(_ context.Context, msgs ...zenklav.Message) error {
	c.calls = append(c.calls, msgs)
	return nil
}

// smsService serves acme, with SMS on, and quiet, without.
func smsService(t testing.TB, pub zenklav.Publisher) *ingest.Service {
	t.Helper()
	zd := func(sub string) zenklav.ZendeskSettings {
		return zenklav.ZendeskSettings{Subdomain: sub, WebhookSecrets: []zenklav.Secret{"acme-signing-secret-0001"}, Brands: zenklav.Brands{All: true}}
	}
	kl := zenklav.KlaviyoSettings{PrivateKey: "pk_acme_0123456789", WebhookSecrets: []zenklav.Secret{klaviyoSecret}}
	conns, err := zenklav.NewConnections(
		zenklav.Connection{ID: "acme", Zendesk: zd("acme"), Klaviyo: kl, SMS: zenklav.SMSSettings{Enabled: true, InboundTopics: []string{"event:custom.text_received"}}},
		zenklav.Connection{ID: "quiet", Zendesk: zd("quiet"), Klaviyo: kl},
	)
	if err != nil {
		t.Fatal(err)
	}
	return ingest.New(ingest.Config{Connections: conns, Publisher: pub, Now: func() time.Time { return klaviyoNow }})
}

func signed(body []byte, secret string) http.Header {
	h := http.Header{}
	ts := klaviyo.Timestamp(klaviyoNow)
	h.Set(klaviyo.HeaderTimestamp, ts)
	h.Set(klaviyo.HeaderWebhookID, klaviyoHook)
	h.Set(klaviyo.HeaderSignature, klaviyo.Sign(secret, ts, body))
	return h
}

// TestAdmitKlaviyo: AdmitKlaviyo refuses from the headers alone what Klaviyo would refuse
// too, with the same kind.
func TestAdmitKlaviyo(t *testing.T) {
	svc := smsService(t, &calls{})
	body := []byte(`{"data":[],"meta":{"klaviyo_webhook_id":"` + klaviyoHook + `"}}`)
	stale := signed(body, klaviyoSecret)
	stale.Set(klaviyo.HeaderTimestamp, klaviyo.Timestamp(klaviyoNow.Add(-6*time.Minute)))
	for _, tc := range []struct {
		name, connection string
		h                http.Header
		admit, full      string // the error kinds of AdmitKlaviyo and Klaviyo; "" = none
	}{
		{"signed", "acme", signed(body, klaviyoSecret), "", ""},
		{"well-formed, wrong secret", "acme", signed(body, "not-the-acme-klaviyo-secret"), "", zenklav.EUNAUTHORIZED},
		{"unknown connection", "initech", signed(body, klaviyoSecret), zenklav.ENOTFOUND, zenklav.ENOTFOUND},
		{"SMS off", "quiet", signed(body, klaviyoSecret), zenklav.ENOTFOUND, zenklav.ENOTFOUND},
		{"no headers", "acme", http.Header{}, zenklav.EUNAUTHORIZED, zenklav.EUNAUTHORIZED},
		{"stale", "acme", stale, zenklav.EUNAUTHORIZED, zenklav.EUNAUTHORIZED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := svc.AdmitKlaviyo(tc.connection, tc.h); zenklav.ErrorCode(err) != tc.admit {
				t.Errorf("AdmitKlaviyo = %v, want kind %q", err, tc.admit)
			}
			if _, err := svc.Klaviyo(context.Background(), tc.connection, tc.h, body); zenklav.ErrorCode(err) != tc.full {
				t.Errorf("Klaviyo = %v, want kind %q", err, tc.full)
			}
		})
	}
}

// TestKlaviyoOnePublish: a batch's events go to Kafka in one request, in the batch's order.
func TestKlaviyoOnePublish(t *testing.T) {
	body, err := os.ReadFile("../klaviyo/testdata/webhooks/mixed_batch.json")
	if err != nil {
		t.Fatal(err)
	}
	pub := &calls{}
	events, err := smsService(t, pub).Klaviyo(context.Background(), "acme", signed(body, klaviyoSecret), body)
	if err != nil {
		t.Fatal(err)
	}
	if len(pub.calls) != 1 || len(pub.calls[0]) != len(events) || len(events) != 4 {
		t.Fatalf("%d events in %d Publish calls, want 4 in 1", len(events), len(pub.calls))
	}
	for i, m := range pub.calls[0] {
		if m.Topic != schemas.SMSEventsTopic || m.Headers[ingest.HeaderEventID] != events[i].EventID || string(m.Key) != events[i].Key() {
			t.Errorf("message %d: %s %s %v, event %s", i, m.Topic, m.Key, m.Headers, events[i].EventID)
		}
	}
}

// FuzzKlaviyoWebhook feeds arbitrary bodies, correctly signed, to the Klaviyo webhook: nothing
// panics, a refusal is a client error, and whatever is produced is a valid sms_event.v1 of
// acme, keyed by its customer's phone, in one Publish.
func FuzzKlaviyoWebhook(f *testing.F) {
	files, _ := filepath.Glob("../klaviyo/testdata/webhooks/*.json")
	for _, in := range files {
		if b, err := os.ReadFile(in); err == nil && !strings.HasSuffix(in, ".golden.json") {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"data":[{"external_id":"x","topic":"event:klaviyo.inbound_sms","payload":{"attributes":{"event_properties":{"from_phone_number":"+15005550006"}}}}],"meta":{"klaviyo_webhook_id":"` + klaviyoHook + `"}}`))
	f.Add([]byte(`{"data":[{"external_id":"x","topic":"event:klaviyo.sent_sms","payload":{"attributes":{"datetime":"9999-12-31T23:59:59-23:59","timestamp":-1,"event_properties":{"to_phone_number":"00 1 500 555 0006","media":["u",{},1]}}}}],"meta":{"klaviyo_webhook_id":"` + klaviyoHook + `"}}`))
	f.Add([]byte(`{"data":null,"meta":{"klaviyo_webhook_id":"` + klaviyoHook + `"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		pub := &calls{}
		events, err := smsService(t, pub).Klaviyo(context.Background(), "acme", signed(body, klaviyoSecret), body)
		if err != nil {
			if k := zenklav.ErrorCode(err); k != zenklav.EINVALID && k != zenklav.EUNAUTHORIZED {
				t.Fatalf("error of kind %s: %v", k, err)
			}
			if len(pub.calls) != 0 {
				t.Fatal("refused, yet produced")
			}
			return
		}
		if len(events) == 0 {
			if len(pub.calls) != 0 {
				t.Fatal("no events, yet a Publish")
			}
			return
		}
		if len(pub.calls) != 1 || len(pub.calls[0]) != len(events) {
			t.Fatalf("%d events in %d Publish calls", len(events), len(pub.calls))
		}
		for _, m := range pub.calls[0] {
			if err := schemas.ValidateSMSEventJSON(m.Value); err != nil {
				t.Fatalf("produced an invalid event: %v\n%s", err, m.Value)
			}
			var ev schemas.SMSEvent
			if err := schemas.DecodeSMSEvent(m.Value, &ev); err != nil || ev.Connection != "acme" || string(m.Key) != "acme/"+ev.CustomerPhone {
				t.Fatalf("event %s keyed %s: %v", m.Value, m.Key, err)
			}
		}
	})
}
