package backend_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/ingest"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
)

// budgeted is a webhook server with a byte budget of its own, its metrics and its log.
type budgeted struct {
	h    http.Handler
	reg  *prometheus.Registry
	logs *lockedBuffer
}

func newBudgeted(t *testing.T, in backend.Ingest, limit int64) budgeted {
	t.Helper()
	b := budgeted{reg: prometheus.NewRegistry(), logs: &lockedBuffer{}}
	srv, err := backend.New(slog.New(slog.NewJSONHandler(b.logs, nil)), backend.Options{Ingest: in, Registry: b.reg, MaxInflightBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	b.h = srv.Handler()
	return b
}

func acme(t *testing.T, pub zenklav.Publisher) *ingest.Service {
	t.Helper()
	conns, err := zenklav.NewConnections(zenklav.Connection{ID: "acme", Zendesk: zenklav.ZendeskSettings{
		Subdomain: "acme", WebhookSecrets: []zenklav.Secret{secret}, Brands: zenklav.Brands{All: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return ingest.New(ingest.Config{Connections: conns, Publisher: pub, Now: func() time.Time { return now }})
}

// inflight is what the server's gauge says webhooks hold.
func (b budgeted) inflight(t *testing.T) float64 {
	t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "zenklav_webhook_inflight_bytes" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no zenklav_webhook_inflight_bytes gauge")
	return 0
}

// waitInflight waits until the gauge says want.
func (b budgeted) waitInflight(t *testing.T, want float64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); b.inflight(t) != want; {
		if time.Now().After(deadline) {
			t.Fatalf("in-flight bytes %v, want %v", b.inflight(t), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// send posts body, signed, to acme's endpoint through r (the body's reader, strings.Reader
// of body when nil), with body's length as Content-Length.
func (b budgeted) send(body string, r io.Reader) *httptest.ResponseRecorder {
	if r == nil {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(http.MethodPost, "/webhooks/zendesk/acme", r)
	req.ContentLength = int64(len(body))
	ts := zendesk.Timestamp(now)
	req.Header.Set(zendesk.HeaderSignatureTimestamp, ts)
	req.Header.Set(zendesk.HeaderSignature, zendesk.Sign(secret, ts, []byte(body)))
	w := httptest.NewRecorder()
	b.h.ServeHTTP(w, req)
	return w
}

// sized is a signed ticket.created webhook of ticket id, padded to n bytes.
func sized(id, n int) string {
	body := strings.Replace(created, `"id":"5158"`, fmt.Sprintf(`"id":"%d"`, id), 1)
	body = strings.Replace(body, `"8a1f6a52-5a2e-4a5e-9b0e-3c1d2e4f5a6b"`, fmt.Sprintf(`"8a1f6a52-5a2e-4a5e-9b0e-%012d"`, id), 1)
	head := body[:len(body)-1] + `,"pad":"`
	return head + strings.Repeat("x", n-len(head)-2) + `"}`
}

// held is a webhook whose body stops halfway until it is let go.
type held struct {
	w    *io.PipeWriter
	rest string
	done chan *httptest.ResponseRecorder
}

func (b budgeted) hold(body string) *held {
	r, w := io.Pipe()
	h := &held{w: w, rest: body[len(body)/2:], done: make(chan *httptest.ResponseRecorder, 1)}
	go func() { _, _ = w.Write([]byte(body[:len(body)/2])) }()
	go func() { h.done <- b.send(body, r) }()
	return h
}

// finish sends the rest of the body and returns the answer.
func (h *held) finish() *httptest.ResponseRecorder {
	go func() {
		_, _ = h.w.Write([]byte(h.rest))
		h.w.Close()
	}()
	return <-h.done
}

// TestWebhookBudget: with the budget full a webhook is answered 503 with Retry-After,
// unread, and nothing is produced; once a request in flight ends, the next is accepted; the
// refusals make one log line, not one each; every ending gives its bytes back.
func TestWebhookBudget(t *testing.T) {
	const size = 16 << 10 // the largest a webhook may be to use the whole budget
	pub := &recorder{}
	b := newBudgeted(t, acme(t, pub), 4*size)
	var hold []*held
	for i := range 4 {
		hold = append(hold, b.hold(sized(100+i, size)))
	}
	b.waitInflight(t, 4*size)

	for name, body := range map[string]string{"small": created, "big": sized(7, 1<<20)} {
		r := &tripwire{}
		w := b.send(body, r)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), `"code":"unavailable"`) {
			t.Errorf("%s webhook with the budget full: %d, Retry-After %q, %s; want 503 with Retry-After", name, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
		if r.read.Load() {
			t.Errorf("%s webhook refused for want of budget was read", name)
		}
	}
	if n := pub.len(); n != 0 {
		t.Fatalf("produced %d messages with every webhook refused or unfinished", n)
	}

	if w := hold[0].finish(); w.Code != http.StatusAccepted {
		t.Fatalf("held webhook: %d %s", w.Code, w.Body)
	}
	b.waitInflight(t, 3*size)
	if w := b.send(created, nil); w.Code != http.StatusAccepted {
		t.Fatalf("webhook once the budget has room: %d %s", w.Code, w.Body)
	}
	for _, h := range hold[1:] {
		if w := h.finish(); w.Code != http.StatusAccepted {
			t.Fatalf("held webhook: %d %s", w.Code, w.Body)
		}
	}
	if got := b.inflight(t); got != 0 {
		t.Errorf("in-flight bytes %v after every request ended, want 0", got)
	}
	if n := pub.len(); n != 5 {
		t.Errorf("produced %d messages, want 5", n)
	}
	if n := strings.Count(b.logs.String(), "webhooks refused"); n != 1 {
		t.Errorf("%d log lines about refusals for two refusals, want 1:\n%s", n, b.logs)
	}
	if !b.metric(t, `zenklav_webhooks_total{result="overloaded",source="zendesk"} 2`) {
		t.Error("the refusals are not counted as overloaded")
	}
}

// TestWebhookBudgetKeepsRoomForSmall: big bodies cannot take the whole budget, so Zendesk's
// own webhooks, a few KB, still get in while big ones are refused.
func TestWebhookBudgetKeepsRoomForSmall(t *testing.T) {
	const limit = 4 << 20
	pub := &recorder{}
	b := newBudgeted(t, acme(t, pub), limit)
	hold := []*held{b.hold(sized(100, 1<<20))} // the biggest bodies' quarter
	b.waitInflight(t, 1<<20)
	if w := b.send(sized(7, 200<<10), &tripwire{}); w.Code != http.StatusServiceUnavailable {
		t.Errorf("a 200 KiB webhook past the bigger bodies' share: %d %s, want 503", w.Code, w.Body)
	}
	if w := b.send(sized(8, 100<<10), nil); w.Code != http.StatusAccepted {
		t.Errorf("a 100 KiB webhook within the medium share: %d %s, want 202", w.Code, w.Body)
	}
	if w := b.send(created, nil); w.Code != http.StatusAccepted {
		t.Errorf("a small webhook while big ones fill their share: %d %s, want 202", w.Code, w.Body)
	}
	for _, h := range hold {
		if w := h.finish(); w.Code != http.StatusAccepted {
			t.Fatalf("held webhook: %d %s", w.Code, w.Body)
		}
	}
	if got := b.inflight(t); got != 0 {
		t.Errorf("in-flight bytes %v after every request ended, want 0", got)
	}
}

// panicky is an ingest service whose Zendesk panics.
type panicky struct{ *ingest.Service }

func (panicky) Zendesk(context.Context, string, http.Header, []byte) (*schemas.TicketEvent, error) {
	panic("ingest broke")
}

// failingBody fails after its first bytes, as a connection that drops does.
type failingBody struct{ sent bool }

func (f *failingBody) Read(p []byte) (int, error) {
	if f.sent {
		return 0, io.ErrUnexpectedEOF
	}
	f.sent = true
	return copy(p, `{"type":`), nil
}

// TestWebhookBudgetReleased: every way a webhook ends gives its bytes back.
func TestWebhookBudgetReleased(t *testing.T) {
	huge := sized(9, 1<<20+10)
	for _, tc := range []struct {
		name   string
		in     func(*testing.T) backend.Ingest
		send   func(budgeted) *httptest.ResponseRecorder
		status int
	}{
		{"accepted", healthy, func(b budgeted) *httptest.ResponseRecorder { return b.send(created, nil) }, http.StatusAccepted},
		{"ignored", healthy, func(b budgeted) *httptest.ResponseRecorder {
			return b.send(`{"type":"zen:event-type:user.created","id":"u-1","detail":{}}`, nil)
		}, http.StatusOK},
		{"signature of another body", healthy, func(b budgeted) *httptest.ResponseRecorder {
			return request{body: created, secret: secret, headers: map[string]string{zendesk.HeaderSignature: zendesk.Sign(secret, zendesk.Timestamp(now), []byte("{}"))}}.do(b.h)
		}, http.StatusUnauthorized},
		{"malformed", healthy, func(b budgeted) *httptest.ResponseRecorder { return b.send(`{"type":`, nil) }, http.StatusBadRequest},
		{"body broken off", healthy, func(b budgeted) *httptest.ResponseRecorder { return b.send(created, &failingBody{}) }, http.StatusBadRequest},
		{"over 1 MiB without Content-Length", healthy, func(b budgeted) *httptest.ResponseRecorder {
			return request{body: huge, secret: secret, chunked: true}.do(b.h)
		}, http.StatusRequestEntityTooLarge},
		{"Kafka down", func(t *testing.T) backend.Ingest {
			return acme(t, &recorder{err: zenklav.Errorf(zenklav.EUNAVAILABLE, "kafka did not acknowledge the write")})
		}, func(b budgeted) *httptest.ResponseRecorder { return b.send(created, nil) }, http.StatusServiceUnavailable},
		{"panic", func(t *testing.T) backend.Ingest { return panicky{acme(t, &recorder{})} },
			func(b budgeted) *httptest.ResponseRecorder { return b.send(created, nil) }, http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBudgeted(t, tc.in(t), 4<<20)
			if w := tc.send(b); w.Code != tc.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body, tc.status)
			}
			if got := b.inflight(t); got != 0 {
				t.Errorf("in-flight bytes %v after the request ended, want 0", got)
			}
		})
	}
}

func healthy(t *testing.T) backend.Ingest { return acme(t, &recorder{}) }

func (b budgeted) metric(t *testing.T, line string) bool {
	t.Helper()
	w := httptest.NewRecorder()
	b.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return strings.Contains(w.Body.String(), line)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// lockedBuffer is a log destination that the server's goroutines and the test share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
