package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/retry"
)

// Topic is a topic zenklav creates when it is missing.
type Topic struct {
	Name       string
	Partitions int
	// Compacted topics keep each key's latest record only (a Table's state).
	Compacted bool
	// Replication is how the topic is replicated; its zero fields are chosen from the
	// cluster when the topic is created (Replication.For).
	Replication Replication
}

// Replication is how a topic zenklav creates is replicated: on how many brokers each
// partition lives, and on how many of them (the leader included) a write must be before the
// producer's acks=all is answered. A topic that exists is left as it is.
type Replication struct {
	// Factor is the replication factor; 0 = the brokers the cluster has, at most 3.
	Factor int
	// MinInsync is the topic's min.insync.replicas; 0 = Factor-1, at least 1.
	MinInsync int
}

// maxDefaultFactor is the replication factor zenklav chooses on a cluster of three brokers or
// more: Kafka's own advice, and what its internal topics use.
const maxDefaultFactor = 3

// For returns r with its zero fields chosen for a cluster of brokers brokers. The factor is
// as many brokers as there are, up to 3; min.insync.replicas is one less than the factor, so
// that every acknowledged write is on all replicas but one: one broker lost loses none of
// them, and the writes go on without it. With one broker both are 1, as a topic made with
// the broker's defaults has.
func (r Replication) For(brokers int) (Replication, error) {
	if r.Factor == 0 {
		r.Factor = min(max(brokers, 1), maxDefaultFactor)
	}
	if r.MinInsync == 0 {
		r.MinInsync = max(r.Factor-1, 1)
	}
	switch {
	case r.Factor < 0 || r.Factor > 32767:
		return r, zenklav.Errorf(zenklav.EINVALID, "replication factor %d is outside 1..32767", r.Factor)
	case r.MinInsync < 0:
		return r, zenklav.Errorf(zenklav.EINVALID, "min.insync.replicas %d is negative", r.MinInsync)
	case r.MinInsync > r.Factor:
		return r, zenklav.Errorf(zenklav.EINVALID,
			"min.insync.replicas %d is more than the replication factor %d: no write could ever be acknowledged", r.MinInsync, r.Factor)
	}
	return r, nil
}

// EnsureTopics creates the topics that do not exist yet, each with its replication factor
// and its min.insync.replicas (Topic.Replication, chosen from the cluster's brokers where
// zero), and waits until every partition has a leader. Topics that exist are left as they
// are: changing a topic's replication is an operator's reassignment, not a start-up's.
func EnsureTopics(ctx context.Context, brokers []string, topics ...Topic) error {
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Name
	}
	// One metadata request says how many brokers there are (each Replication's zero fields
	// depend on it).
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: names})
	if err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "create topics: kafka metadata")
	}
	req := &kafkago.CreateTopicsRequest{}
	for _, t := range topics {
		tc, err := topicConfig(t, len(meta.Brokers))
		if err != nil {
			return err
		}
		req.Topics = append(req.Topics, tc)
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "create topics")
	}
	var errs []error
	for name, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return waitForLeaders(ctx, client, names)
}

// topicConfig is what t is created with on a cluster of brokers brokers.
func topicConfig(t Topic, brokers int) (kafkago.TopicConfig, error) {
	r, err := t.Replication.For(brokers)
	if err != nil {
		return kafkago.TopicConfig{}, fmt.Errorf("create topic %s: %w", t.Name, err)
	}
	tc := kafkago.TopicConfig{
		Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: r.Factor,
		ConfigEntries: []kafkago.ConfigEntry{{ConfigName: "min.insync.replicas", ConfigValue: strconv.Itoa(r.MinInsync)}},
	}
	if t.Compacted {
		tc.ConfigEntries = append(tc.ConfigEntries, kafkago.ConfigEntry{ConfigName: "cleanup.policy", ConfigValue: "compact"})
	}
	return tc, nil
}

// waitForLeaders waits until every partition of the topics names has a leader: a topic is
// usable only then, and readers that start earlier log a burst of "not leader" errors.
func waitForLeaders(ctx context.Context, client *kafkago.Client, names []string) error {
	p := retry.Policy{Initial: 20 * time.Millisecond, Max: time.Second, MaxElapsed: 30 * time.Second}
	err := p.Do(ctx, slog.New(slog.DiscardHandler), "", func(ctx context.Context) error {
		meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: names})
		if err != nil || !allLed(meta) {
			return zenklav.Errorf(zenklav.EUNAVAILABLE, "topics %s have no leader yet", strings.Join(names, ", "))
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return zenklav.Errorf(zenklav.EUNAVAILABLE, "topics %s have no leader yet", strings.Join(names, ", "))
	}
	return err
}

func allLed(meta *kafkago.MetadataResponse) bool {
	for _, t := range meta.Topics {
		if t.Error != nil || len(t.Partitions) == 0 {
			return false
		}
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return false
			}
		}
	}
	return true
}
