package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav/backend"
)

// The banner lists a process's routes as the server has them, by method, with Gin's
// parameters written as the docs write them.
func TestBannerServes(t *testing.T) {
	got := serves([]string{"GET /healthz", "POST /webhooks/zendesk/:subdomain", "GET /reports/web/:version/*file", "GET /metrics"})
	want := "GET /healthz /reports/web/{version}/… /metrics, POST /webhooks/zendesk/{subdomain}"
	if got != want {
		t.Errorf("serves = %q, want %q", got, want)
	}
}

// A process without the api role (a sink, an emitter) serves health and metrics only, and its
// banner says so: it does not claim the webhooks.
func TestBannerOfAPipelineRole(t *testing.T) {
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	banner{role: "sink", http: "http://127.0.0.1:1", routes: srv.Routes()}.print(&out)
	line := ""
	for l := range strings.Lines(out.String()) {
		if strings.Contains(l, "http://127.0.0.1:1") {
			line = l
		}
	}
	for _, want := range []string{"/healthz", "/readyz", "/metrics"} {
		if !strings.Contains(line, want) {
			t.Errorf("sink banner %q lacks %s", line, want)
		}
	}
	for _, not := range []string{"webhooks", "sidebar", "reports", "POST"} {
		if strings.Contains(line, not) {
			t.Errorf("sink banner %q claims %s", line, not)
		}
	}
}
