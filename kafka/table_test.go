package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/kafka/kafkatest"
)

// A table is shared by the processes that open it and survives them: a Put in one is seen by
// another after Sync, the latest value of each key wins, and a table opened later reads the
// latest values back.
func TestTable(t *testing.T) {
	brokers, topic := kafkatest.NewTopic(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	p := kafka.NewProducer(logger, brokers)
	defer p.Close()
	open := func() *kafka.Table {
		tb, err := kafka.OpenTable(ctx, logger, brokers, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tb.Close)
		return tb
	}
	a, b := open(), open()
	for i := range 20 {
		if err := a.Put(ctx, fmt.Sprintf("acme/+1555000%04d", i%5), fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if v, ok := a.Get("acme/+15550000004"); !ok || string(v) != "v19" {
		t.Errorf("the writer reads %q, %v after its own Put, want v19", v, ok)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "acme/+15550000000", []byte("from b")); err != nil {
		t.Fatal(err)
	}
	c := open()
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"from b", "v16", "v17", "v18", "v19"} {
		key := fmt.Sprintf("acme/+1555000%04d", i)
		for name, tb := range map[string]*kafka.Table{"b": b, "c": c} {
			if v, ok := tb.Get(key); !ok || string(v) != want {
				t.Errorf("table %s: %s = %q, %v; want %q", name, key, v, ok, want)
			}
		}
	}
	if _, ok := c.Get("nobody"); ok {
		t.Error("a key never written is found")
	}
}
