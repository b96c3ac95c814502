package backend_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/zenklav/zenklav"
)

type discardPublisher struct{}

func (discardPublisher) Publish(context.Context, ...zenklav.Message) error { return nil }

// BenchmarkZendeskWebhook is the CPU cost of one webhook in zenklav: signature check, parse,
// schema validation, encoding; Kafka is left out.
func BenchmarkZendeskWebhook(b *testing.B) {
	h := newServer(&testing.T{}, discardPublisher{})
	req := request{body: created, secret: secret}
	b.ReportAllocs()
	for b.Loop() {
		if w := req.do(h); w.Code != http.StatusAccepted {
			b.Fatalf("status %d", w.Code)
		}
	}
}
