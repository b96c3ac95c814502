// Package kafkatest helps tests that run on the real Kafka `make test` starts: a topic of the
// test's own, and what a topic or a group holds.
package kafkatest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
)

// NewTopic creates a topic of the test's own on the test Kafka and returns the brokers and
// its name. It skips the test (fails it in CI) when there is no test Kafka.
func NewTopic(t testing.TB, partitions int) (brokers []string, topic string) {
	t.Helper()
	brokers = []string{testenv.Kafka(t)}
	topic = fmt.Sprintf("test-%s-%d", t.Name(), rand.N(1_000_000))
	topic = strings.NewReplacer("/", "_", " ", "_", "#", "_").Replace(topic)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Topic{Name: topic, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	return brokers, topic
}

// MessageCount is how many messages topic holds.
func MessageCount(t testing.TB, brokers []string, topic string) int {
	t.Helper()
	p, err := kafka.GroupProgress(context.Background(), brokers, topic, "")
	if err != nil {
		t.Fatal(err)
	}
	return int(p.End)
}

// WaitCommitted waits until group's committed offsets cover total messages of topic, and
// fails the test when ctx ends first.
func WaitCommitted(t testing.TB, ctx context.Context, brokers []string, topic, group string, total int) {
	t.Helper()
	for {
		p, err := kafka.GroupProgress(ctx, brokers, topic, group)
		if err == nil && p.Committed >= int64(total) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group %s committed %d of %d messages before the deadline (%v)", group, p.Committed, total, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ReplicationOf reads how topic is replicated: the fewest replicas any of its partitions has,
// and its min.insync.replicas.
func ReplicationOf(t testing.TB, brokers []string, topic string) kafka.Replication {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil || len(meta.Topics[0].Partitions) == 0 {
		t.Fatalf("metadata of %s: %+v", topic, meta.Topics)
	}
	var r kafka.Replication
	for i, p := range meta.Topics[0].Partitions {
		if i == 0 || len(p.Replicas) < r.Factor {
			r.Factor = len(p.Replicas)
		}
	}
	desc, err := client.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"min.insync.replicas"},
	}}})
	if err == nil && (len(desc.Resources) != 1 || desc.Resources[0].Error != nil) {
		err = fmt.Errorf("%+v", desc.Resources)
	}
	if err != nil {
		t.Fatalf("configs of %s: %v", topic, err)
	}
	for _, e := range desc.Resources[0].ConfigEntries {
		if e.ConfigName == "min.insync.replicas" {
			if r.MinInsync, err = strconv.Atoi(e.ConfigValue); err != nil {
				t.Fatalf("min.insync.replicas of %s: %q", topic, e.ConfigValue)
			}
		}
	}
	return r
}
