package backend_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/ingest"
	"github.com/zenklav/zenklav/internal/health"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
)

const (
	secret    = "acme-signing-secret-0001"
	oldSecret = "acme-signing-secret-0000"
)

var now = time.Date(2025, 1, 8, 10, 12, 9, 0, time.UTC)

// recorder is a Publisher that keeps what it was given, or fails when told to.
type recorder struct {
	mu   sync.Mutex
	msgs []zenklav.Message
	err  error
}

func (r *recorder) Publish(_ context.Context, msgs ...zenklav.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.msgs = append(r.msgs, msgs...)
	return nil
}

func newServer(t *testing.T, pub zenklav.Publisher) http.Handler {
	t.Helper()
	conns, err := zenklav.NewConnections(zenklav.Connection{
		ID: "acme",
		Zendesk: zenklav.ZendeskSettings{
			Subdomain: "acme", WebhookSecrets: []zenklav.Secret{secret, oldSecret}, Brands: zenklav.Brands{All: true},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{
		Ingest: ingest.New(ingest.Config{Connections: conns, Publisher: pub, Now: func() time.Time { return now }}), Registry: prometheus.NewRegistry(),
		MaxInflightBytes: 64 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv.Handler()
}

const created = `{"type":"zen:event-type:ticket.created","account_id":22129848,"id":"8a1f6a52-5a2e-4a5e-9b0e-3c1d2e4f5a6b","time":"2025-01-08T10:12:07Z","subject":"zen:ticket:5158","detail":{"id":"5158","status":"NEW","requester_id":"8447388090494","brand_id":"8447346621310","subject":"Where is my order?"},"event":{}}`

type request struct {
	path      string
	body      string
	secret    string // signs with it unless empty
	timestamp time.Time
	headers   map[string]string
	chunked   bool // send without Content-Length, as a streaming client would
}

func (r request) do(h http.Handler) *httptest.ResponseRecorder {
	if r.path == "" {
		r.path = "/webhooks/zendesk/acme"
	}
	if r.timestamp.IsZero() {
		r.timestamp = now
	}
	req := httptest.NewRequest(http.MethodPost, r.path, strings.NewReader(r.body))
	req.Header.Set("Content-Type", "application/json")
	if r.secret != "" {
		ts := zendesk.Timestamp(r.timestamp)
		req.Header.Set(zendesk.HeaderSignatureTimestamp, ts)
		req.Header.Set(zendesk.HeaderSignature, zendesk.Sign(r.secret, ts, []byte(r.body)))
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

func TestZendeskWebhook(t *testing.T) {
	huge := `{"type":"zen:event-type:ticket.created","pad":"` + strings.Repeat("x", zendesk.MaxWebhookBody) + `"}`
	for _, tc := range []struct {
		name     string
		req      request
		status   int
		code     string // error kind in the body, for refusals
		produced int
	}{
		{"signed event", request{body: created, secret: secret}, http.StatusAccepted, "", 1},
		{"signed with the older secret of a rotation", request{body: created, secret: oldSecret}, http.StatusAccepted, "", 1},
		{"other event type is acknowledged", request{body: `{"type":"zen:event-type:user.created","id":"u-1","detail":{}}`, secret: secret}, http.StatusOK, "", 0},
		{"missing signature", request{body: created}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, 0},
		{"wrong signature", request{body: created, secret: "not-the-acme-secret-000"}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, 0},
		{"signature of another body", request{body: created, secret: secret, headers: map[string]string{zendesk.HeaderSignature: zendesk.Sign(secret, zendesk.Timestamp(now), []byte("{}"))}}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, 0},
		{"stale timestamp", request{body: created, secret: secret, timestamp: now.Add(-6 * time.Minute)}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, 0},
		{"future timestamp", request{body: created, secret: secret, timestamp: now.Add(6 * time.Minute)}, http.StatusUnauthorized, zenklav.EUNAUTHORIZED, 0},
		{"body over 1 MiB", request{body: huge, secret: secret}, http.StatusRequestEntityTooLarge, zenklav.ETOOLARGE, 0},
		{"body over 1 MiB without Content-Length", request{body: huge, secret: secret, chunked: true}, http.StatusRequestEntityTooLarge, zenklav.ETOOLARGE, 0},
		{"event over Kafka's message limit", request{body: strings.Replace(created, `"subject":"Where`, `"description":"`+strings.Repeat("<b>", 100_000)+`","subject":"Where`, 1), secret: secret}, http.StatusRequestEntityTooLarge, zenklav.ETOOLARGE, 0},
		{"malformed JSON", request{body: `{"type":"zen:event-type:ticket.created",`, secret: secret}, http.StatusBadRequest, zenklav.EINVALID, 0},
		{"not a ticket payload", request{body: `{"hello":"world"}`, secret: secret}, http.StatusBadRequest, zenklav.EINVALID, 0},
		{"unknown subdomain", request{path: "/webhooks/zendesk/initech", body: created, secret: secret}, http.StatusNotFound, zenklav.ENOTFOUND, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := &recorder{}
			w := tc.req.do(newServer(t, pub))
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tc.status, w.Body)
			}
			if tc.code != "" {
				var body struct {
					Error struct{ Code, Message string }
				}
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != tc.code || body.Error.Message == "" {
					t.Errorf("body = %s, want error code %s with a message", w.Body, tc.code)
				}
			}
			if len(pub.msgs) != tc.produced {
				t.Fatalf("produced %d messages, want %d", len(pub.msgs), tc.produced)
			}
			if tc.produced == 1 {
				m := pub.msgs[0]
				if m.Topic != schemas.TicketEventsTopic || string(m.Key) != "acme/5158" {
					t.Errorf("produced to %s with key %s", m.Topic, m.Key)
				}
				if err := schemas.ValidateTicketEventJSON(m.Value); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestZendeskWebhookKafkaDown(t *testing.T) {
	pub := &recorder{err: zenklav.Errorf(zenklav.EUNAVAILABLE, "kafka did not acknowledge the write")}
	w := request{body: created, secret: secret}.do(newServer(t, pub))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
}

// A Kafka outage met by many webhooks is logged twice, when it starts and when a webhook is
// accepted again, and the webhooks' part in the health tracker follows it.
func TestZendeskWebhookKafkaOutageLoggedOnce(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	tracker := health.NewTracker(logger, nil)
	conns, err := zenklav.NewConnections(zenklav.Connection{ID: "acme", Zendesk: zenklav.ZendeskSettings{
		Subdomain: "acme", WebhookSecrets: []zenklav.Secret{secret}, Brands: zenklav.Brands{All: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	pub := &recorder{err: zenklav.Errorf(zenklav.EUNAVAILABLE, "kafka did not acknowledge the write")}
	srv, err := backend.New(logger, backend.Options{
		Ingest:   ingest.New(ingest.Config{Connections: conns, Publisher: pub, Now: func() time.Time { return now }}),
		Registry: prometheus.NewRegistry(), Health: tracker, MaxInflightBytes: 64 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if w := (request{body: created, secret: secret}).do(srv.Handler()); w.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d during the outage, want 503", w.Code)
		}
	}
	if st := tracker.States()["webhooks/kafka"]; st.Condition != health.Waiting {
		t.Errorf("webhooks/kafka during the outage: %+v", st)
	}
	pub.mu.Lock()
	pub.err = nil
	pub.mu.Unlock()
	if w := (request{body: created, secret: secret}).do(srv.Handler()); w.Code != http.StatusAccepted {
		t.Fatalf("status %d after the outage, want 202", w.Code)
	}
	if st := tracker.States()["webhooks/kafka"]; st.Condition != health.Working {
		t.Errorf("webhooks/kafka after the outage: %+v", st)
	}
	out := logs.String()
	if n := strings.Count(out, "\n"); n != 2 || !strings.Contains(out, "waiting for a dependency") || !strings.Contains(out, "working again") {
		t.Errorf("20 refused webhooks and a recovery logged %d lines, want 2:\n%s", n, out)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	h := newServer(t, &recorder{})
	request{body: created, secret: secret}.do(h)
	for path, want := range map[string]string{
		"/healthz": `"ok"`,
		"/metrics": `zenklav_webhooks_total{result="accepted",source="zendesk"} 1`,
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(w.Body)
		if w.Code != http.StatusOK || !bytes.Contains(body, []byte(want)) {
			t.Errorf("GET %s = %d, body lacks %s", path, w.Code, want)
		}
	}
}

func TestReadyzNamesTheFailingDependency(t *testing.T) {
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{
		Registry: prometheus.NewRegistry(),
		Ready: map[string]func(context.Context) error{
			"kafka":      func(context.Context) error { return nil },
			"clickhouse": func(context.Context) error { return zenklav.Errorf(zenklav.EUNAVAILABLE, "ping ClickHouse") },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var body struct {
		Ready  bool
		Checks map[string]string
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusServiceUnavailable || body.Ready || body.Checks["kafka"] != "ok" || body.Checks["clickhouse"] != "ping ClickHouse" {
		t.Fatalf("GET /readyz = %d %s", w.Code, w.Body)
	}
	// Without connections the server takes no webhooks at all.
	w = httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/webhooks/zendesk/acme", strings.NewReader(created)))
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), `"code":"not_found"`) {
		t.Errorf("POST a webhook to a health-only server = %d %s, want a JSON 404", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if w.Code != http.StatusMethodNotAllowed || !strings.Contains(w.Body.String(), `"code":"method"`) {
		t.Errorf("POST /healthz = %d %s, want a JSON 405", w.Code, w.Body)
	}
}

// TestZendeskWebhookPerBrand: one Zendesk account feeds two connections, one per brand.
// The ticket's brand decides whose event it is; a brand neither syncs is acknowledged and
// not stored; either connection's secret signs for the account.
func TestZendeskWebhookPerBrand(t *testing.T) {
	const euSecret = "acme-eu-signing-secret-01"
	conns, err := zenklav.NewConnections(
		zenklav.Connection{ID: "acme-us", Zendesk: zenklav.ZendeskSettings{Subdomain: "acme", WebhookSecrets: []zenklav.Secret{secret}, Brands: zenklav.Brands{IDs: []int64{8447346621310}}}},
		zenklav.Connection{ID: "acme-eu", Zendesk: zenklav.ZendeskSettings{Subdomain: "acme", WebhookSecrets: []zenklav.Secret{euSecret}, Brands: zenklav.Brands{IDs: []int64{42}}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	pub := &recorder{}
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{
		Ingest: ingest.New(ingest.Config{Connections: conns, Publisher: pub, Now: func() time.Time { return now }}), Registry: prometheus.NewRegistry(),
		MaxInflightBytes: 64 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body, secret string
		status       int
		tenant       string
	}{
		{created, euSecret, http.StatusAccepted, "acme-us"},
		{strings.Replace(created, `"brand_id":"8447346621310"`, `"brand_id":"42"`, 1), secret, http.StatusAccepted, "acme-eu"},
		{strings.Replace(created, `"brand_id":"8447346621310"`, `"brand_id":"7"`, 1), secret, http.StatusOK, ""},
	} {
		before := len(pub.msgs)
		w := request{body: tc.body, secret: tc.secret}.do(srv.Handler())
		if w.Code != tc.status {
			t.Fatalf("status = %d, want %d; body %s", w.Code, tc.status, w.Body)
		}
		if tc.tenant == "" {
			if len(pub.msgs) != before {
				t.Errorf("an unsynced brand's event was produced")
			}
			continue
		}
		var ev schemas.TicketEvent
		if err := json.Unmarshal(pub.msgs[len(pub.msgs)-1].Value, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Connection != tc.tenant || !strings.HasPrefix(string(pub.msgs[len(pub.msgs)-1].Key), tc.tenant+"/") {
			t.Errorf("event of tenant %q (key %s), want %q", ev.Connection, pub.msgs[len(pub.msgs)-1].Key, tc.tenant)
		}
	}
}

// tripwire is a request body that fails the test's expectation by being read: it records
// the read and fails it.
type tripwire struct{ read atomic.Bool }

func (b *tripwire) Read([]byte) (int, error) {
	b.read.Store(true)
	return 0, errors.New("the body was read")
}

// TestZendeskWebhookRefusesUnread: what the path and headers rule out is answered without a
// byte of the body being read, so a hostile client's body costs no memory.
func TestZendeskWebhookRefusesUnread(t *testing.T) {
	ts := zendesk.Timestamp(now)
	wellFormed := zendesk.Sign("not-the-acme-secret-000", ts, []byte("anything"))
	for _, tc := range []struct {
		name    string
		path    string
		sig, ts string
		length  int64
		status  int
		code    string
	}{
		{"unknown subdomain", "/webhooks/zendesk/initech", wellFormed, ts, 1 << 20, http.StatusNotFound, zenklav.ENOTFOUND},
		{"no signature", "", "", ts, 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"no timestamp", "", wellFormed, "", 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"signature x", "", "x", ts, 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"signature of 16 bytes", "", base64.StdEncoding.EncodeToString(make([]byte, 16)), ts, 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"signature in hex", "", hex.EncodeToString(make([]byte, 32)), ts, 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"timestamp not ISO", "", wellFormed, "1736331129", 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"timestamp stale", "", wellFormed, zendesk.Timestamp(now.Add(-6 * time.Minute)), 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"timestamp ahead", "", wellFormed, zendesk.Timestamp(now.Add(6 * time.Minute)), 1 << 20, http.StatusUnauthorized, zenklav.EUNAUTHORIZED},
		{"Content-Length over 1 MiB", "", wellFormed, ts, 1<<20 + 1, http.StatusRequestEntityTooLarge, zenklav.ETOOLARGE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pub := &recorder{}
			body := &tripwire{}
			req := httptest.NewRequest(http.MethodPost, cmp.Or(tc.path, "/webhooks/zendesk/acme"), body)
			req.ContentLength = tc.length
			req.Header.Set(zendesk.HeaderSignature, tc.sig)
			req.Header.Set(zendesk.HeaderSignatureTimestamp, tc.ts)
			w := httptest.NewRecorder()
			newServer(t, pub).ServeHTTP(w, req)
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
