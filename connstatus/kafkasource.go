package connstatus

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/kafka"
)

// Group is a consumer group whose lag a report shows: its name there, the topic it reads and
// the group id.
type Group struct {
	Name, Topic, Group string
}

// KafkaSource reads the lag and the dead letters from Kafka.
type KafkaSource struct {
	brokers  []string
	groups   []Group
	counters []*kafka.HeaderCounter
}

// NewKafkaSource reads the lag of groups, and counts the dead letters of deadLetterTopics by
// their connection header (kafka.HeaderConnection), or when they have none (a message of a
// connection no longer served, dead-lettered before it was decoded) by their key's.
func NewKafkaSource(logger *slog.Logger, brokers []string, groups []Group, deadLetterTopics ...string) *KafkaSource {
	k := &KafkaSource{brokers: brokers, groups: groups}
	for _, t := range deadLetterTopics {
		k.counters = append(k.counters, kafka.NewHeaderCounter(logger, brokers, t, kafka.HeaderConnection, connectionOfKey))
	}
	return k
}

// Lag reads each group's committed offsets and its topic's end, side by side: the messages
// each group (by its Name) is behind.
func (k *KafkaSource) Lag(ctx context.Context) (map[string]int64, error) {
	lags, err := k.lags(ctx)
	out := make(map[string]int64, len(lags))
	for _, l := range lags {
		out[l.Name] = l.Messages
	}
	return out, err
}

// groupLag is how many messages a group is behind on its topic.
type groupLag struct {
	Group
	Messages int64
}

// lags reads the lag of each group that has committed on its topic: a group that never did
// (its role not run, its topic not made yet) is left out rather than shown behind on all of
// it. It returns what it could read, with the errors of the rest.
func (k *KafkaSource) lags(ctx context.Context) ([]groupLag, error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	var out []groupLag
	for _, g := range k.groups {
		wg.Go(func() {
			p, err := kafka.GroupProgress(ctx, k.brokers, g.Topic, g.Group)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case zenklav.ErrorCode(err) == zenklav.ENOTFOUND:
				// The topic is not made yet: nothing to be behind on.
			case err != nil:
				errs = append(errs, err)
			case p.Committed > 0:
				out = append(out, groupLag{Group: g, Messages: p.End - p.Committed})
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// DeadLetters counts the connection's dead letters in every dead-letter topic.
func (k *KafkaSource) DeadLetters(ctx context.Context, connection string) (int, time.Time, error) {
	var n int64
	var last time.Time
	var errs []error
	for _, c := range k.counters {
		counts, err := c.Count(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		n += counts[connection].N
		last = latest(last, counts[connection].Last)
	}
	return int(n), last, errors.Join(errs...)
}

// connectionOfKey is the connection of an event's key: ticket and SMS events are keyed
// connection/ticket and connection/phone.
func connectionOfKey(key []byte) string {
	c, _, _ := bytes.Cut(key, []byte("/"))
	return string(c)
}
