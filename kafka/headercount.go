package kafka

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/zenklav/zenklav"
)

// HeaderCount is how many messages of a topic carry one value of a header, and when the last
// of them was written.
type HeaderCount struct {
	N    int64
	Last time.Time // the newest one's timestamp (Kafka's, set by the producer)
}

// HeaderCounter counts a topic's messages by the value of one header: the dead letters of
// each connection (HeaderConnection) in a dead-letter topic, for the health page. A message
// without the header counts under what its fallback reads from its key, when it has one
// (a dead letter of a message that could not be routed carries no HeaderConnection, but its
// key is the original's, connection/…). It reads
// the topic without a consumer group, as Replay does, and each Count reads only what was
// written since the last one, so asking often costs little after the first time.
//
// Replay keeps no offset and leaves the dead letters it sends back in place: the counts are
// of every dead letter still within the topic's retention, replayed or not. Messages that
// retention dropped stay counted.
type HeaderCounter struct {
	brokers []string
	topic   string
	header  string
	keyed   func(key []byte) string
	logger  *slog.Logger

	mu     sync.Mutex // one catch-up at a time
	next   map[int]int64
	counts map[string]HeaderCount
}

// NewHeaderCounter returns a counter of topic's messages by the value of header, or, for a
// message without it, by what fallback (when not nil) reads from the message's key.
func NewHeaderCounter(logger *slog.Logger, brokers []string, topic, header string, fallback func(key []byte) string) *HeaderCounter {
	return &HeaderCounter{brokers: brokers, topic: topic, header: header, keyed: fallback, logger: logger.With("topic", topic),
		next: map[int]int64{}, counts: map[string]HeaderCount{}}
}

// Count reads what was written since the last Count and returns the counts by header value.
// When ctx ends first it returns what it counted so far with ctx's error, and the next Count
// goes on from there. A topic that does not exist yet counts nothing.
func (c *HeaderCounter) Count(ctx context.Context) (map[string]HeaderCount, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.catchUp(ctx)
	return maps.Clone(c.counts), err
}

func (c *HeaderCounter) catchUp(ctx context.Context) error {
	ranges, err := partitionRanges(ctx, c.brokers, c.topic)
	if err != nil {
		if zenklav.ErrorCode(err) == zenklav.ENOTFOUND {
			return nil
		}
		return err
	}
	for _, r := range ranges {
		r.first = max(r.first, c.next[r.partition])
		if r.first >= r.end {
			continue
		}
		err := readRange(ctx, c.logger, c.brokers, c.topic, r, func(m Message) error {
			c.add(m)
			c.next[r.partition] = m.Offset + 1
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *HeaderCounter) add(m Message) {
	value, found := "", false
	for _, h := range m.Headers {
		if h.Key == c.header {
			value, found = string(h.Value), true
			break
		}
	}
	if !found && c.keyed != nil {
		value, found = c.keyed(m.Key), true
	}
	if !found {
		return
	}
	n := c.counts[value]
	n.N++
	if m.Time.After(n.Last) {
		n.Last = m.Time
	}
	c.counts[value] = n
}
