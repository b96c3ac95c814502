package backend_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/internal/health"
)

type readyzBody struct {
	Ready  bool
	Checks map[string]string
	Parts  map[string]health.State
}

func readyz(t *testing.T, opts backend.Options) (int, readyzBody, time.Duration) {
	t.Helper()
	opts.Registry = prometheus.NewRegistry()
	srv, err := backend.New(slog.New(slog.DiscardHandler), opts)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	start := time.Now()
	srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	took := time.Since(start)
	var body readyzBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("GET /readyz = %d %s: %v", w.Code, w.Body, err)
	}
	return w.Code, body, took
}

// A check that ignores its context (a client dialling with a timeout of its own) does not hold
// /readyz past CheckTimeout: the answer names it as not answering.
func TestReadyzAnswersWithinItsBound(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	code, body, took := readyz(t, backend.Options{Ready: map[string]func(context.Context) error{
		"kafka":      func(context.Context) error { return nil },
		"clickhouse": func(context.Context) error { <-release; return nil },
	}})
	if code != http.StatusServiceUnavailable || body.Ready || body.Checks["kafka"] != "ok" ||
		!strings.HasPrefix(body.Checks["clickhouse"], "no answer within") {
		t.Errorf("readyz with a hanging check = %d %+v", code, body)
	}
	if took > backend.CheckTimeout+time.Second {
		t.Errorf("readyz took %s with a hanging check, past its %s bound", took, backend.CheckTimeout)
	}
}

// The parts' states are listed; one that waits for a dependency leaves the process ready (its
// dependency's check speaks for it), one that stopped for good does not.
func TestReadyzListsParts(t *testing.T) {
	tracker := health.NewTracker(slog.New(slog.DiscardHandler), nil)
	tracker.Part("zenklav-sink/kafka").Working()
	tracker.Part("zenklav-emitter/acme/klaviyo").Waiting(errors.New("klaviyo answered 503"))
	ok := map[string]func(context.Context) error{"kafka": func(context.Context) error { return nil }}
	code, body, _ := readyz(t, backend.Options{Ready: ok, Health: tracker})
	if code != http.StatusOK || !body.Ready || body.Parts["zenklav-emitter/acme/klaviyo"].Condition != health.Waiting ||
		body.Parts["zenklav-emitter/acme/klaviyo"].Err != "klaviyo answered 503" || body.Parts["zenklav-sink/kafka"].Condition != health.Working {
		t.Errorf("readyz with a waiting part = %d %+v", code, body)
	}
	tracker.Part("sink").Stopped(errors.New("connection acme has no Klaviyo key"))
	code, body, _ = readyz(t, backend.Options{Ready: ok, Health: tracker})
	if code != http.StatusServiceUnavailable || body.Ready || body.Parts["sink"].Condition != health.Stopped {
		t.Errorf("readyz with a stopped part = %d %+v", code, body)
	}
}
