package kafka_test

import (
	"context"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/kafka/kafkatest"
)

// TestGroupMembers counts a group's members as they join and leave: what the emitter's
// replicas share Klaviyo's limits by.
func TestGroupMembers(t *testing.T) {
	brokers, topic := kafkatest.NewTopic(t, 2)
	group := "members-" + topic
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := func(n int) {
		t.Helper()
		for {
			got, err := kafka.GroupMembers(ctx, brokers, group)
			if err == nil && got == n {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("group %s has %d members (%v), want %d", group, got, err, n)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	var readers []*kafkago.Reader
	for range 2 {
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, GroupID: group, MaxWait: 100 * time.Millisecond})
		readers = append(readers, r)
		go func() { _, _ = r.FetchMessage(ctx) }() // joining happens on the first fetch
	}
	want(2)
	readers[1].Close()
	want(1)
	readers[0].Close()
}
