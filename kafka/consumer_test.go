package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/kafka/kafkatest"
)

var discard = slog.New(slog.DiscardHandler)

func newTopic(t *testing.T, partitions int) ([]string, string) {
	return kafkatest.NewTopic(t, partitions)
}

func messageCount(t *testing.T, brokers []string, topic string) int {
	return kafkatest.MessageCount(t, brokers, topic)
}

func produce(t *testing.T, p *kafka.Producer, topic string, n int) {
	t.Helper()
	msgs := make([]zenklav.Message, n)
	for i := range msgs {
		msgs[i] = zenklav.Message{Topic: topic, Key: fmt.Appendf(nil, "acme/%d", i%17), Value: fmt.Appendf(nil, "%d", i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// collector is a BatchHandler that records every message value it handled and calls stop
// once it has seen want distinct values.
type collector struct {
	mu     sync.Mutex
	seen   map[string]int
	want   int
	stop   context.CancelFunc
	before func(batch int) error // runs before a batch is accepted; an error refuses it
	calls  int
}

func (c *collector) handle(_ context.Context, msgs []kafka.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.before != nil {
		if err := c.before(c.calls); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		c.seen[string(m.Value)]++
	}
	if len(c.seen) >= c.want {
		c.stop()
	}
	return nil
}

func consume(t *testing.T, brokers []string, topic, group string, c *collector) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stop, cancelStop := context.WithCancel(ctx)
	c.stop = cancelStop
	cons, err := kafka.NewConsumer(discard, kafka.ConsumerConfig{
		Brokers: brokers, Topic: topic, Group: group, BatchSize: 100, BatchWait: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cons.Run(stop, c.handle); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("consumer saw %d of %d messages before the deadline", len(c.seen), c.want)
	}
}

func TestConsumerRetriesTransientFailures(t *testing.T) {
	brokers, topic := newTopic(t, 3)
	p := kafka.NewProducer(discard, brokers)
	defer p.Close()
	produce(t, p, topic, 1000)
	c := &collector{seen: map[string]int{}, want: 1000, before: func(call int) error {
		if call <= 2 {
			return zenklav.Errorf(zenklav.EUNAVAILABLE, "clickhouse is down")
		}
		return nil
	}}
	consume(t, brokers, topic, "g1", c)
	if len(c.seen) != 1000 {
		t.Fatalf("handled %d distinct messages, want 1000", len(c.seen))
	}
}

// TestConsumerGivesBackUncommittedBatch stops a consumer while it holds a batch it has not
// handled: the next member of the group must get those messages, and nothing is lost.
func TestConsumerGivesBackUncommittedBatch(t *testing.T) {
	brokers, topic := newTopic(t, 2)
	p := kafka.NewProducer(discard, brokers)
	defer p.Close()
	produce(t, p, topic, 500)

	first := &collector{seen: map[string]int{}, want: 1 << 30}
	first.before = func(call int) error {
		if call == 3 {
			first.stop() // "killed" while handling the third batch: it is never accepted
			return zenklav.Errorf(zenklav.EUNAVAILABLE, "killed")
		}
		return nil
	}
	consume(t, brokers, topic, "g2", first)
	if len(first.seen) == 0 || len(first.seen) >= 500 {
		t.Fatalf("first consumer handled %d messages; the test needs a partial run", len(first.seen))
	}

	second := &collector{seen: map[string]int{}, want: 500 - len(first.seen)}
	consume(t, brokers, topic, "g2", second)
	for v := range first.seen {
		if second.seen[v] > 0 {
			t.Errorf("message %s was committed by the first consumer yet handled again", v)
			break
		}
	}
	if total := len(first.seen) + len(second.seen); total != 500 {
		t.Fatalf("handled %d distinct messages in all, want 500", total)
	}
}

func TestProducerUnavailable(t *testing.T) {
	p := kafka.NewProducer(discard, []string{"127.0.0.1:1"})
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.Publish(ctx, zenklav.Message{Topic: "nowhere", Value: []byte("x")})
	if !zenklav.Transient(err) {
		t.Fatalf("Publish to a dead broker = %v, want an unavailable error", err)
	}
}

// TestConsumerStopsOnPermanentFailure: a handler's permanent error ends Run with that error
// at once, even when no further message arrives to wake the fetch.
func TestConsumerStopsOnPermanentFailure(t *testing.T) {
	brokers, topic := newTopic(t, 1)
	p := kafka.NewProducer(discard, brokers)
	defer p.Close()
	produce(t, p, topic, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cons, err := kafka.NewConsumer(discard, kafka.ConsumerConfig{
		Brokers: brokers, Topic: topic, Group: "g-perm", BatchSize: 100, BatchWait: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = cons.Run(ctx, func(context.Context, []kafka.Message) error {
		return zenklav.Errorf(zenklav.EINVALID, "poison batch")
	})
	if err == nil || !strings.Contains(err.Error(), "poison batch") {
		t.Fatalf("Run = %v, want the handler's error", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run returned only at the deadline")
	}
	if prog, err := kafka.GroupProgress(context.Background(), brokers, topic, "g-perm"); err != nil || prog.Committed != 0 {
		t.Errorf("committed %d after a failed batch (%v), want 0", prog.Committed, err)
	}
}
