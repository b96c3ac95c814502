package kafka_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/kafka"
)

// TestProducerBoundsWhatIsUnderWay: against a broker that accepts connections and never
// answers (frozen), a write whose caller gives up is still under way; once MaxPending messages
// are, the producer refuses at once instead of queueing behind them, so resends cannot make a
// stalled partition's queue grow without end.
func TestProducerBoundsWhatIsUnderWay(t *testing.T) {
	p := kafka.NewProducer(slog.New(slog.DiscardHandler), []string{kafka.FrozenAddr(t)})
	defer p.Close()
	msgs := make([]zenklav.Message, kafka.MaxPending+1) // bigger than the bound, and first: let through
	for i := range msgs {
		msgs[i] = zenklav.Message{Topic: "frozen", Key: []byte("k"), Value: []byte("v")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Publish(ctx, msgs...); zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE || time.Since(start) > 2*time.Second {
		t.Fatalf("a write to a frozen broker: %v after %s, want EUNAVAILABLE when the caller's context ends", err, time.Since(start))
	}
	start = time.Now()
	err := p.Publish(context.Background(), zenklav.Message{Topic: "frozen", Value: []byte("one more")})
	if zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE || !strings.Contains(err.Error(), "still being written") {
		t.Fatalf("a write behind %d under way: %v, want a refusal", kafka.MaxPending, err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("the refusal took %s, want it at once", d)
	}
}
