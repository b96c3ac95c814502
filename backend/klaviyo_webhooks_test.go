package backend_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/ingest"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/schemas"
)

const (
	klaviyoSecret    = "acme-klaviyo-secret-0001"
	klaviyoOldSecret = "acme-klaviyo-secret-0000"
	klaviyoHook      = "a8b890458b4bbfaa26d961471b83c101d6de23bd826e7e5173a15310985ec3cb"
	customTopic      = "event:custom.text_received"
)

// newSMSServer serves two connections: acme with SMS on, its Klaviyo secret being rotated and
// a further inbound topic; quiet without SMS, though it has a Klaviyo secret.
func newSMSServer(t *testing.T, pub zenklav.Publisher) http.Handler {
	t.Helper()
	zd := func(sub string) zenklav.ZendeskSettings {
		return zenklav.ZendeskSettings{Subdomain: sub, WebhookSecrets: []zenklav.Secret{secret}, Brands: zenklav.Brands{All: true}}
	}
	conns, err := zenklav.NewConnections(
		zenklav.Connection{ID: "acme", Zendesk: zd("acme"),
			Klaviyo: zenklav.KlaviyoSettings{PrivateKey: "pk_acme_0123456789", WebhookSecrets: []zenklav.Secret{klaviyoSecret, klaviyoOldSecret}},
			SMS:     zenklav.SMSSettings{Enabled: true, InboundTopics: []string{customTopic}}},
		zenklav.Connection{ID: "quiet", Zendesk: zd("quiet"),
			Klaviyo: zenklav.KlaviyoSettings{PrivateKey: "pk_quiet_0123456789", WebhookSecrets: []zenklav.Secret{klaviyoSecret}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{
		Ingest:   ingest.New(ingest.Config{Connections: conns, Publisher: pub, Now: func() time.Time { return now }, Registry: reg}),
		Registry: reg, MaxInflightBytes: 64 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv.Handler()
}

// hook is a system webhook body of webhook klaviyoHook with items.
func hook(items ...string) string {
	return `{"data":[` + strings.Join(items, ",") + `],"meta":{"klaviyo_account_id":"AbC123","klaviyo_webhook_id":"` + klaviyoHook + `","timestamp":"2025-01-08T10:12:08+00:00"}}`
}

func smsItem(id, topic, from, to, body string) string {
	return `{"external_id":"` + id + `","topic":"` + topic + `","payload":{"type":"event","id":"` + id +
		`","attributes":{"datetime":"2025-01-08T10:12:07+00:00","event_properties":{"from_phone_number":"` + from +
		`","to_phone_number":"` + to + `","body":"` + body + `","sender_type":"long_code"}},` +
		`"relationships":{"profile":{"data":{"type":"profile","id":"01GDDKASAP8TKDDA2GRZDSVP4H"}}}}}`
}

var inbound = hook(smsItem("5Rd8PqLm2Xa", zenklav.TopicInboundSMS, "+15005550006", "+18885550100", "Where is my order?"))

type klaviyoRequest struct {
	path      string
	body      string
	secret    string // signs with it unless empty
	timestamp string // Klaviyo-Timestamp; now when ""
	headers   map[string]string
	chunked   bool
}

func (r klaviyoRequest) do(h http.Handler) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, cmp.Or(r.path, "/webhooks/klaviyo/acme"), strings.NewReader(r.body))
	req.Header.Set("Content-Type", "application/json")
	ts := cmp.Or(r.timestamp, klaviyo.Timestamp(now))
	req.Header.Set(klaviyo.HeaderWebhookID, klaviyoHook)
	if r.secret != "" {
		req.Header.Set(klaviyo.HeaderTimestamp, ts)
		req.Header.Set(klaviyo.HeaderSignature, klaviyo.Sign(r.secret, ts, []byte(r.body)))
	}
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	if r.chunked {
		req.ContentLength = -1
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// produced is what a good case expects of each message, in order: its kind and key.
type produced struct{ kind, key string }

func TestKlaviyoWebhook(t *testing.T) {
	batch, err := os.ReadFile("../klaviyo/testdata/webhooks/mixed_batch.json")
	if err != nil {
		t.Fatal(err)
	}
	huge := hook(smsItem("x", zenklav.TopicInboundSMS, "+15005550006", "+18885550100", strings.Repeat("x", klaviyo.MaxWebhookBody)))
	stale := klaviyo.Timestamp(now.Add(-5*time.Minute - time.Second))
	ahead := klaviyo.Timestamp(now.Add(5*time.Minute + time.Second))
	for _, tc := range []struct {
		name     string
		req      klaviyoRequest
		status   int
		code     string // error kind in the body, for refusals
		produced []produced
	}{
		{"one inbound text", klaviyoRequest{body: inbound, secret: klaviyoSecret}, http.StatusAccepted, "", []produced{{"inbound", "acme/+15005550006"}}},
		{"signed with the older secret of a rotation", klaviyoRequest{body: inbound, secret: klaviyoOldSecret}, http.StatusAccepted, "", []produced{{"inbound", "acme/+15005550006"}}},
		{"a batch of mixed topics", klaviyoRequest{body: string(batch), secret: klaviyoSecret}, http.StatusAccepted, "", []produced{
			{"sent", "acme/+15005550006"}, {"failed", "acme/+447700900123"}, {"inbound", "acme/+15005550007"}, {"inbound", "acme/+15005550008"},
		}},
		{"only topics zenklav does not read", klaviyoRequest{body: hook(smsItem("c1", "event:klaviyo.clicked_sms", "+18885550100", "+15005550006", "")), secret: klaviyoSecret}, http.StatusOK, "", nil},
		{"no items", klaviyoRequest{body: hook(), secret: klaviyoSecret}, http.StatusOK, "", nil},
		{"missing signature", klaviyoRequest{body: inbound}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, nil},
		{"wrong secret", klaviyoRequest{body: inbound, secret: "not-the-acme-klaviyo-secret"}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, nil},
		{"the Zendesk secret", klaviyoRequest{body: inbound, secret: secret}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, nil},
		{"signature of another body", klaviyoRequest{body: inbound, secret: klaviyoSecret, headers: map[string]string{klaviyo.HeaderSignature: klaviyo.Sign(klaviyoSecret, klaviyo.Timestamp(now), []byte(hook()))}}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, nil},
		{"signature of another timestamp", klaviyoRequest{body: inbound, secret: klaviyoSecret, headers: map[string]string{klaviyo.HeaderTimestamp: klaviyo.Timestamp(now.Add(time.Second))}}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, nil},
		{"stale timestamp", klaviyoRequest{body: inbound, secret: klaviyoSecret, timestamp: stale}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, nil},
		{"future timestamp", klaviyoRequest{body: inbound, secret: klaviyoSecret, timestamp: ahead}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, nil},
		{"malformed timestamp", klaviyoRequest{body: inbound, secret: klaviyoSecret, timestamp: "2025-01-08T10:12:09Z"}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, nil},
		{"webhook id header is not meta's", klaviyoRequest{body: inbound, secret: klaviyoSecret, headers: map[string]string{klaviyo.HeaderWebhookID: "b" + klaviyoHook[1:]}}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, nil},
		{"no webhook id header", klaviyoRequest{body: inbound, secret: klaviyoSecret, headers: map[string]string{klaviyo.HeaderWebhookID: ""}}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, nil},
		{"unknown connection", klaviyoRequest{path: "/webhooks/klaviyo/initech", body: inbound, secret: klaviyoSecret}, http.StatusNotFound, zenklav.ENOTFOUND, nil},
		{"connection without SMS", klaviyoRequest{path: "/webhooks/klaviyo/quiet", body: inbound, secret: klaviyoSecret}, http.StatusNotFound, zenklav.ENOTFOUND, nil},
		{"body over 1 MiB", klaviyoRequest{body: huge, secret: klaviyoSecret}, http.StatusRequestEntityTooLarge, zenklav.ETOOLARGE, nil},
		{"body over 1 MiB without Content-Length", klaviyoRequest{body: huge, secret: klaviyoSecret, chunked: true}, http.StatusRequestEntityTooLarge, zenklav.ETOOLARGE, nil},
		{"malformed JSON", klaviyoRequest{body: inbound[:60], secret: klaviyoSecret}, http.StatusBadRequest, zenklav.EINVALID, nil},
		{"not a system webhook", klaviyoRequest{body: `{"hello":"world"}`, secret: klaviyoSecret}, http.StatusBadRequest, zenklav.EINVALID, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := &recorder{}
			h := newSMSServer(t, pub)
			w := tc.req.do(h)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tc.status, w.Body)
			}
			checkAnswer(t, w, tc.code, len(tc.produced))
			if len(pub.msgs) != len(tc.produced) {
				t.Fatalf("produced %d messages, want %d", len(pub.msgs), len(tc.produced))
			}
			for i, want := range tc.produced {
				checkSMSMessage(t, pub.msgs[i], want)
			}
		})
	}
}

// checkAnswer checks the answer's body: the error's kind and message for a refusal, else the
// number of events accepted, or ignored.
func checkAnswer(t *testing.T, w *httptest.ResponseRecorder, code string, events int) {
	t.Helper()
	var body struct {
		Status string
		Events int
		Error  struct{ Code, Message string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("answer %s: %v", w.Body, err)
	}
	switch {
	case code != "":
		if body.Error.Code != code || body.Error.Message == "" {
			t.Errorf("body = %s, want error code %s with a message", w.Body, code)
		}
	case events == 0:
		if body.Status != "ignored" {
			t.Errorf("body = %s, want status ignored", w.Body)
		}
	default:
		if body.Status != "accepted" || body.Events != events {
			t.Errorf("body = %s, want %d events accepted", w.Body, events)
		}
	}
}

// checkSMSMessage checks one produced message: topic, key, headers, and a value that is a
// valid sms_event.v1 of the kind expected.
func checkSMSMessage(t *testing.T, m zenklav.Message, want produced) {
	t.Helper()
	if m.Topic != schemas.SMSEventsTopic || string(m.Key) != want.key {
		t.Errorf("produced to %s with key %s, want %s", m.Topic, m.Key, want.key)
	}
	if err := schemas.ValidateSMSEventJSON(m.Value); err != nil {
		t.Error(err)
	}
	var ev schemas.SMSEvent
	if err := schemas.DecodeSMSEvent(m.Value, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Kind != want.kind || ev.Key() != want.key || ev.Connection != "acme" || !ev.ReceivedAt.Equal(now) {
		t.Errorf("event %+v, want kind %s", ev, want.kind)
	}
	if m.Headers[ingest.HeaderSchema] != "sms_event.v1" || m.Headers[ingest.HeaderEventID] != ev.EventID || !strings.HasPrefix(ev.EventID, "klaviyo:") {
		t.Errorf("headers %v for event %s", m.Headers, ev.EventID)
	}
}

// TestKlaviyoWebhookRedelivery: Klaviyo sending the same webhook again produces the same
// events again, with the same ids, which the consumers deduplicate by.
func TestKlaviyoWebhookRedelivery(t *testing.T) {
	pub := &recorder{}
	h := newSMSServer(t, pub)
	for range 2 {
		if w := (klaviyoRequest{body: inbound, secret: klaviyoSecret}).do(h); w.Code != http.StatusAccepted {
			t.Fatalf("status %d %s", w.Code, w.Body)
		}
	}
	if len(pub.msgs) != 2 || pub.msgs[0].Headers[ingest.HeaderEventID] != pub.msgs[1].Headers[ingest.HeaderEventID] {
		t.Fatalf("a redelivery changed the event id: %v", pub.msgs)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range []string{
		`zenklav_klaviyo_webhook_items_total{connection="acme",result="inbound"} 2`,
		`zenklav_webhooks_total{result="accepted",source="klaviyo"} 2`,
	} {
		if !strings.Contains(w.Body.String(), line) {
			t.Errorf("metrics lack %s", line)
		}
	}
}

func TestKlaviyoWebhookKafkaDown(t *testing.T) {
	pub := &recorder{err: zenklav.Errorf(zenklav.EUNAVAILABLE, "kafka did not acknowledge the write")}
	h := newSMSServer(t, pub)
	w := klaviyoRequest{body: inbound, secret: klaviyoSecret}.do(h)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
}

// TestKlaviyoWebhookRefusesUnread: what the path and headers rule out is answered without a
// byte of the body being read.
func TestKlaviyoWebhookRefusesUnread(t *testing.T) {
	ts := klaviyo.Timestamp(now)
	wellFormed := klaviyo.Sign("not-the-acme-klaviyo-secret", ts, []byte("anything"))
	for _, tc := range []struct {
		name        string
		path        string
		sig, ts, id string
		length      int64
		status      int
		code        string
	}{
		{"unknown connection", "/webhooks/klaviyo/initech", wellFormed, ts, klaviyoHook, 1 << 20, http.StatusNotFound, zenklav.ENOTFOUND},
		{"connection without SMS", "/webhooks/klaviyo/quiet", wellFormed, ts, klaviyoHook, 1 << 20, http.StatusNotFound, zenklav.ENOTFOUND},
		{"no signature", "", "", ts, klaviyoHook, 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"no timestamp", "", wellFormed, "", klaviyoHook, 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"no webhook id", "", wellFormed, ts, "", 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"signature in base64", "", "gf3v0LzLRHPUnIdhbvwRDVEvzSb07/QN0GYjSNlkBT0=", ts, klaviyoHook, 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"timestamp in Unix seconds", "", wellFormed, "1736331129", klaviyoHook, 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"timestamp stale", "", wellFormed, klaviyo.Timestamp(now.Add(-6 * time.Minute)), klaviyoHook, 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"Content-Length over 1 MiB", "", wellFormed, ts, klaviyoHook, 1<<20 + 1, http.StatusRequestEntityTooLarge, zenklav.ETOOLARGE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := &recorder{}
			h := newSMSServer(t, pub)
			body := &tripwire{}
			req := httptest.NewRequest(http.MethodPost, cmp.Or(tc.path, "/webhooks/klaviyo/acme"), body)
			req.ContentLength = tc.length
			req.Header.Set(klaviyo.HeaderSignature, tc.sig)
			req.Header.Set(klaviyo.HeaderTimestamp, tc.ts)
			req.Header.Set(klaviyo.HeaderWebhookID, tc.id)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), `"code":"`+tc.code+`"`) {
				t.Errorf("answer %d %s, want %d with code %s", w.Code, w.Body, tc.status, tc.code)
			}
			if body.read.Load() {
				t.Error("the body was read")
			}
			if len(pub.msgs) != 0 {
				t.Errorf("produced %d messages", len(pub.msgs))
			}
		})
	}
}

// TestKlaviyoWebhookFromTheSimulator: what the Klaviyo simulator sends (klaviyotest, the
// sandbox's phone) is what this endpoint takes: envelope, headers, signature and items.
func TestKlaviyoWebhookFromTheSimulator(t *testing.T) {
	sim, err := klaviyotest.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	sim.SetClock(func() time.Time { return now })
	sim.SetWebhookIDs("AbC123", klaviyoHook)
	req, err := sim.WebhookRequest("http://zenklav.test/webhooks/klaviyo/acme", klaviyoOldSecret,
		sim.InboundSMSItem(klaviyotest.InboundSMS{From: "+15005550006", To: "+18885550100", Body: "Is it in stock?",
			Media: []klaviyotest.Media{{ContentType: "image/png", URL: "https://media.klaviyo.example/1.png"}}}),
		sim.SentSMSItem(klaviyotest.SentSMS{From: "+18885550100", To: "+15005550006", Body: "Winter sale", CampaignName: "Winter"}),
		sim.FailedToDeliverSMSItem(klaviyotest.SentSMS{To: "+15005550009", FlowName: "Welcome"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	pub := &recorder{}
	w := httptest.NewRecorder()
	newSMSServer(t, pub).ServeHTTP(w, req)
	if w.Code != http.StatusAccepted {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	want := []produced{{"inbound", "acme/+15005550006"}, {"sent", "acme/+15005550006"}, {"failed", "acme/+15005550009"}}
	if len(pub.msgs) != len(want) {
		t.Fatalf("produced %d messages, want %d", len(pub.msgs), len(want))
	}
	for i := range want {
		checkSMSMessage(t, pub.msgs[i], want[i])
	}
	var ev schemas.SMSEvent
	if err := schemas.DecodeSMSEvent(pub.msgs[0].Value, &ev); err != nil || ev.Body != "Is it in stock?" || len(ev.Media) != 1 || ev.SenderType != zenklav.SenderLongCode || ev.MessageID == "" {
		t.Errorf("inbound event %+v, %v", ev, err)
	}
}

// TestKlaviyoWebhookIntoKafka: a batch lands in the real Kafka, every event with its key and
// headers, before the 202.
func TestKlaviyoWebhookIntoKafka(t *testing.T) {
	brokers := []string{testenv.Kafka(t)}
	ctx := context.Background()
	topic := fmt.Sprintf("sms-events-backend-test-%d", rand.N(1_000_000_000))
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Topic{Name: topic, Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	batch, err := os.ReadFile("../klaviyo/testdata/webhooks/mixed_batch.json")
	if err != nil {
		t.Fatal(err)
	}
	prod := kafka.NewProducer(slog.New(slog.DiscardHandler), brokers)
	defer prod.Close()
	conns, err := zenklav.NewConnections(zenklav.Connection{ID: "acme",
		Zendesk: zenklav.ZendeskSettings{Subdomain: "acme", WebhookSecrets: []zenklav.Secret{secret}, Brands: zenklav.Brands{All: true}},
		Klaviyo: zenklav.KlaviyoSettings{PrivateKey: "pk_acme_0123456789", WebhookSecrets: []zenklav.Secret{klaviyoSecret}},
		SMS:     zenklav.SMSSettings{Enabled: true, InboundTopics: []string{customTopic}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{
		Ingest:   ingest.New(ingest.Config{Connections: conns, Publisher: prod, SMSTopic: topic, Now: func() time.Time { return now }}),
		Registry: prometheus.NewRegistry(), MaxInflightBytes: 64 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	if w := (klaviyoRequest{body: string(batch), secret: klaviyoSecret}).do(srv.Handler()); w.Code != http.StatusAccepted {
		t.Fatalf("status %d %s", w.Code, w.Body)
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cons, err := kafka.NewConsumer(slog.New(slog.DiscardHandler), kafka.ConsumerConfig{
		Brokers: brokers, Topic: topic, Group: topic, BatchSize: 1000, BatchWait: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{} // event id → key
	err = cons.Run(cctx, func(_ context.Context, msgs []kafka.Message) error {
		for _, m := range msgs {
			var ev schemas.SMSEvent
			if err := schemas.DecodeSMSEvent(m.Value, &ev); err != nil {
				t.Error(err)
				continue
			}
			keys[ev.EventID] = string(m.Key)
		}
		if len(keys) == 4 {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"klaviyo:6Ab1Cd2Ef3G": "acme/+15005550006", "klaviyo:6Ab1Cd2Ef3H": "acme/+447700900123",
		"klaviyo:6Ab1Cd2Ef3M": "acme/+15005550007", "klaviyo:6Ab1Cd2Ef3N": "acme/+15005550008",
	}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("in Kafka: %v, want %v", keys, want)
	}
}
