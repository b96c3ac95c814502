package kafka

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/retry"
)

// Table is a compacted topic read as a map from key to its latest value: a state store that
// every replica of a role shares and that survives restarts, without a server of its own
// (Kafka Streams keeps its state stores' changelogs so). Every process reads the whole topic
// at start and then follows it; Put writes with acks=all and returns once this process has
// read its own write back, so a Get after a Put sees it, and Sync catches up with what other
// replicas wrote before a partition of work moved here.
type Table struct {
	topic  string
	pub    zenklav.Publisher
	client *kafkago.Client
	parts  []int
	logger *slog.Logger

	mu     sync.Mutex
	moved  *sync.Cond
	values map[string][]byte
	next   map[int]int64 // per partition, the offset after the last record read
	// version counts the records applied: a follower that sees it move knows to look again.
	version uint64

	stop    context.CancelFunc
	readers sync.WaitGroup
}

// OpenTable starts following topic (which must exist, compacted) from its first record.
func OpenTable(ctx context.Context, logger *slog.Logger, brokers []string, topic string, pub zenklav.Publisher) (*Table, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	parts, err := partitions(ctx, client, brokers, topic)
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	t := &Table{topic: topic, pub: pub, client: client, parts: parts, logger: logger.With("table", topic),
		values: map[string][]byte{}, next: map[int]int64{}, stop: stop}
	t.moved = sync.NewCond(&t.mu)
	for _, p := range parts {
		r := kafkago.NewReader(kafkago.ReaderConfig{
			Brokers: brokers, Topic: topic, Partition: p, StartOffset: kafkago.FirstOffset,
			MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 20 * time.Millisecond,
			ErrorLogger: kafkaLogger(t.logger),
		})
		t.readers.Go(func() { t.follow(runCtx, r, p) })
	}
	return t, nil
}

// follow applies partition p's records until ctx ends; kafka-go's reader retries on its own
// through broker outages.
func (t *Table) follow(ctx context.Context, r *kafkago.Reader, p int) {
	defer r.Close()
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if retry.Wait(ctx, 200*time.Millisecond) != nil {
				return
			}
			continue
		}
		t.mu.Lock()
		if len(m.Value) == 0 {
			delete(t.values, string(m.Key)) // a tombstone
		} else {
			t.values[string(m.Key)] = m.Value
		}
		t.next[p] = m.Offset + 1
		t.version++
		t.moved.Broadcast()
		t.mu.Unlock()
	}
}

// Get returns key's latest value as far as this process has read.
func (t *Table) Get(key string) ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.values[key]
	return v, ok
}

// Version counts the records this process has read: it moves whenever the table may have
// changed.
func (t *Table) Version() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.version
}

// Keys returns the keys that have a value, as far as this process has read.
func (t *Table) Keys() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.values))
	for k := range t.values {
		out = append(out, k)
	}
	return out
}

// Put writes key's new value (nil deletes it: a tombstone) and waits until this process has read it back. EUNAVAILABLE
// when Kafka did not acknowledge (then the value may or may not be written: Put again).
func (t *Table) Put(ctx context.Context, key string, value []byte) error {
	if err := t.pub.Publish(ctx, zenklav.Message{Topic: t.topic, Key: []byte(key), Value: value}); err != nil {
		return err
	}
	return t.Sync(ctx)
}

// Sync waits until this process has read every record written to the table before it was
// called.
func (t *Table) Sync(ctx context.Context) error {
	var want map[int]int64
	// A partition that just moved (a new topic, a broker restart) answers "not leader" until
	// the client's metadata catch up: a few quick tries ride that out.
	p := retry.Policy{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond, MaxElapsed: 5 * time.Second}
	err := p.DoReport(ctx, func(ctx context.Context) error {
		var err error
		want, err = t.ends(ctx)
		return err
	}, func(int, error) {})
	if err != nil {
		return err
	}
	return t.waitFor(ctx, want)
}

// ends are the end offsets of the table's partitions now.
func (t *Table) ends(ctx context.Context) (map[int]int64, error) {
	offsets := make([]kafkago.OffsetRequest, len(t.parts))
	for i, p := range t.parts {
		offsets[i] = kafkago.LastOffsetOf(p)
	}
	ends, err := t.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{t.topic: offsets}})
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "list offsets of %s", t.topic)
	}
	want := map[int]int64{}
	for _, po := range ends.Topics[t.topic] {
		if po.Error != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, po.Error, "list offsets of %s/%d", t.topic, po.Partition)
		}
		want[po.Partition] = po.LastOffset
	}
	return want, nil
}

// waitFor waits until every partition's reader has passed want.
func (t *Table) waitFor(ctx context.Context, want map[int]int64) error {
	stop := context.AfterFunc(ctx, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.moved.Broadcast()
	})
	defer stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	for !t.caughtUp(want) {
		if err := ctx.Err(); err != nil {
			return zenklav.Wrap(zenklav.EUNAVAILABLE, errors.Join(err, context.Cause(ctx)), "catching up with %s", t.topic)
		}
		t.moved.Wait()
	}
	return nil
}

func (t *Table) caughtUp(want map[int]int64) bool {
	for p, end := range want {
		if t.next[p] < end {
			return false
		}
	}
	return true
}

// Close stops following the topic.
func (t *Table) Close() {
	t.stop()
	t.readers.Wait()
}
