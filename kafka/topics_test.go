package kafka_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/kafka/kafkatest"
)

// What a topic is replicated with when the settings leave it to the cluster, and when they
// do not: one broker gives 1 and 1 (what the broker's defaults gave before), three or more
// give 3 and 2, and a min.insync.replicas no write could meet is refused.
func TestReplicationFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     kafka.Replication
		brokers int
		want    kafka.Replication
		err     string
	}{
		{name: "one broker", brokers: 1, want: kafka.Replication{Factor: 1, MinInsync: 1}},
		{name: "two brokers", brokers: 2, want: kafka.Replication{Factor: 2, MinInsync: 1}},
		{name: "three brokers", brokers: 3, want: kafka.Replication{Factor: 3, MinInsync: 2}},
		{name: "six brokers", brokers: 6, want: kafka.Replication{Factor: 3, MinInsync: 2}},
		{name: "no broker listed", brokers: 0, want: kafka.Replication{Factor: 1, MinInsync: 1}},
		{name: "factor set", set: kafka.Replication{Factor: 5}, brokers: 6, want: kafka.Replication{Factor: 5, MinInsync: 4}},
		{name: "min.insync set", set: kafka.Replication{MinInsync: 3}, brokers: 6, want: kafka.Replication{Factor: 3, MinInsync: 3}},
		{name: "both set", set: kafka.Replication{Factor: 2, MinInsync: 2}, brokers: 3, want: kafka.Replication{Factor: 2, MinInsync: 2}},
		{name: "min.insync over the chosen factor", set: kafka.Replication{MinInsync: 2}, brokers: 1, err: "min.insync.replicas 2 is more than the replication factor 1"},
		{name: "min.insync over the set factor", set: kafka.Replication{Factor: 2, MinInsync: 3}, brokers: 3, err: "min.insync.replicas 3 is more than"},
		{name: "negative factor", set: kafka.Replication{Factor: -1}, brokers: 3, err: "replication factor -1 is outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.set.For(tc.brokers)
			if tc.err != "" {
				if zenklav.ErrorCode(err) != zenklav.EINVALID || !strings.Contains(zenklav.ErrorMessage(err), tc.err) {
					t.Fatalf("For(%d) = %v, want EINVALID saying %q", tc.brokers, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("For(%d) = %+v, %v; want %+v", tc.brokers, got, err, tc.want)
			}
		})
	}
}

// On the one broker of `make test`, a topic made with the settings left to the cluster has
// one replica and min.insync.replicas 1; a replication factor the cluster cannot give is
// refused with Kafka's reason, and a topic that exists is left as it is.
func TestEnsureTopicsReplication(t *testing.T) {
	brokers := []string{testenv.Kafka(t)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := func(what string) string { return fmt.Sprintf("test-replication-%s-%d", what, rand.N(1_000_000)) }

	chosen := name("chosen")
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Topic{Name: chosen, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if got := kafkatest.ReplicationOf(t, brokers, chosen); got != (kafka.Replication{Factor: 1, MinInsync: 1}) {
		t.Errorf("%s is replicated %+v, want factor 1, min.insync 1", chosen, got)
	}

	tooMany := name("too-many")
	err := kafka.EnsureTopics(ctx, brokers, kafka.Topic{Name: tooMany, Partitions: 1, Replication: kafka.Replication{Factor: 3}})
	if err == nil || !strings.Contains(err.Error(), tooMany) || !strings.Contains(strings.ToLower(err.Error()), "replication factor") {
		t.Errorf("a factor of 3 on one broker: %v, want an error naming the topic and the replication factor", err)
	}

	// Asked again with other settings, the topic that exists keeps its own.
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Topic{Name: chosen, Partitions: 2, Compacted: true}); err != nil {
		t.Errorf("ensure an existing topic: %v", err)
	}
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Topic{Name: chosen, Partitions: 2, Replication: kafka.Replication{MinInsync: 2}}); err == nil {
		t.Error("min.insync.replicas 2 on one broker was accepted")
	}
}
