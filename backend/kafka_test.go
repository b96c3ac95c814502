package backend_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
)

// TestWebhookWhileKafkaIsDown answers 503 with Retry-After while no broker acknowledges, and
// Zendesk's retry, once Kafka is back, puts the event in the topic exactly as sent.
func TestWebhookWhileKafkaIsDown(t *testing.T) {
	brokers := []string{testenv.Kafka(t)}
	ctx := context.Background()
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Topic{Name: schemas.TicketEventsTopic, Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	eventID := fmt.Sprintf("e2e00000-0000-4000-8000-%012d", rand.N(1_000_000_000))
	body := fmt.Sprintf(`{"type":"zen:event-type:ticket.created","id":%q,"time":"2025-01-08T10:12:07Z","detail":{"id":"77","status":"NEW"},"event":{}}`, eventID)

	down := kafka.NewProducer(slog.New(slog.DiscardHandler), []string{"127.0.0.1:1"})
	defer down.Close()
	w := request{body: body, secret: secret}.do(newServer(t, down))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("with Kafka down: %d, Retry-After %q; want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}

	up := kafka.NewProducer(slog.New(slog.DiscardHandler), brokers)
	defer up.Close()
	if w := (request{body: body, secret: secret}).do(newServer(t, up)); w.Code != http.StatusAccepted {
		t.Fatalf("retry with Kafka up: %d %s", w.Code, w.Body)
	}

	// Read the topic from the start in a group of our own until the event shows up.
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cons, err := kafka.NewConsumer(slog.New(slog.DiscardHandler), kafka.ConsumerConfig{
		Brokers: brokers, Topic: schemas.TicketEventsTopic, Group: "backend-test-" + eventID, BatchSize: 1000, BatchWait: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	err = cons.Run(cctx, func(_ context.Context, msgs []kafka.Message) error {
		for _, m := range msgs {
			for _, h := range m.Headers {
				if h.Key == "zenklav-event-id" && string(h.Value) == "zd:"+eventID {
					found++
					if string(m.Key) != "acme/77" {
						t.Errorf("key = %s, want acme/77", m.Key)
					}
					cancel()
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found != 1 {
		t.Fatalf("event found %d times in %s, want once", found, schemas.TicketEventsTopic)
	}
}
