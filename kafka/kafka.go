// Package kafka is zenklav's event log on Apache Kafka (segmentio/kafka-go): a producer that
// answers only after the brokers acknowledged, topic administration, and the consumer
// framework every pipeline role runs on (fetch → handler → commit, in ordered batches or in
// per-key lanes, with one retry policy, dead letters to a topic of the role's, rebalance and
// graceful shutdown handled in one place), and Replay for the dead letters.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/retry"
)

// Message is a record as a consumer reads it: its topic, partition and offset, key, value and
// headers.
type Message = kafkago.Message

// Producer writes to Kafka with acks=all and returns only once every message is acknowledged.
type Producer struct {
	w *kafkago.Writer
	// pending counts the messages handed to the writer whose write has not ended. A write
	// goes on after its caller gave up (kafka-go cannot take back a queued message), so
	// without a bound a slow partition's queue grows with every resend until no write on it
	// ends in time; past MaxPending, Publish refuses at once and the queue drains.
	pending atomic.Int64
}

// MaxPending bounds the messages a producer has under way: far above what a healthy
// Kafka holds in flight (a few hundred at the bench's 7,000 webhooks/s), reached only when
// writes stall.
const MaxPending = 5_000

var _ zenklav.Publisher = (*Producer)(nil)

// NewProducer returns a producer for brokers. It batches concurrent writes for a few
// milliseconds, which is what makes one Kafka round trip serve many webhooks.
func NewProducer(logger *slog.Logger, brokers []string) *Producer {
	return &Producer{w: &kafkago.Writer{
		Addr: kafkago.TCP(brokers...),
		// Murmur2 is what Java clients use, so a key lands on the same partition whoever
		// writes it.
		Balancer: &kafkago.Murmur2Balancer{},
		// A Writer{} literal defaults to acks=none: say all explicitly.
		RequiredAcks: kafkago.RequireAll,
		// The default 1 s would add a second to every webhook.
		BatchTimeout: 2 * time.Millisecond,
		BatchSize:    1000,
		// One record batch must fit the broker's message.max.bytes (1 MiB by default).
		BatchBytes: zenklav.MaxMessageBytes,
		// A leader that moves (a topic just made, a broker restarting) answers "not leader"
		// for a moment: kafka-go's attempts, 100 ms to 1 s apart, ride that out, and the
		// caller's context bounds the whole (8 s for a webhook, then a 503).
		MaxAttempts:  10,
		WriteTimeout: 5 * time.Second,
		ReadTimeout:  5 * time.Second,
		ErrorLogger:  kafkaLogger(logger.With("kafka", "writer")),
	}}
}

// Publish writes msgs and waits for the brokers' acknowledgement. A failure is EUNAVAILABLE:
// nothing acknowledged, the caller retries.
func (p *Producer) Publish(ctx context.Context, msgs ...zenklav.Message) error {
	km := make([]kafkago.Message, len(msgs))
	for i, m := range msgs {
		km[i] = kafkago.Message{Topic: m.Topic, Key: m.Key, Value: m.Value}
		for k, v := range m.Headers {
			km[i].Headers = append(km[i].Headers, kafkago.Header{Key: k, Value: []byte(v)})
		}
	}
	// A call bigger than the bound alone is let through when nothing else is under way
	// (backfill pages, load generators): the bound is against piling up, not on size.
	n := int64(len(km))
	if total := p.pending.Add(n); total > MaxPending && total > n {
		p.pending.Add(-n)
		return zenklav.Errorf(zenklav.EUNAVAILABLE, "kafka: over %d messages are still being written; not taking more until they are", MaxPending)
	}
	// The write runs to its end whatever becomes of the caller, so pending counts it for as
	// long as it really is under way (kafka-go bounds it: MaxAttempts × WriteTimeout).
	done := make(chan error, 1)
	go func() {
		defer p.pending.Add(-n)
		done <- p.w.WriteMessages(context.WithoutCancel(ctx), km...)
	}()
	select {
	case err := <-done:
		if err != nil {
			return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "kafka did not acknowledge the write")
		}
		return nil
	case <-ctx.Done():
		return zenklav.Wrap(zenklav.EUNAVAILABLE, ctx.Err(), "kafka did not acknowledge the write in time")
	}
}

// Close flushes and closes the producer.
func (p *Producer) Close() error { return p.w.Close() }

// PingTimeout bounds Ping: /readyz must tell the truth within 2 s, and a broker that does
// not answer a metadata request in a second and a half is not one to send webhooks to.
const PingTimeout = 1500 * time.Millisecond

// Ping checks that a broker answers a metadata request now: each broker is asked over a
// connection of its own, side by side, and the first answer will do. (A kafka-go Client
// answers metadata from its cache once it has reached the cluster, and would say a dead
// broker is fine.) A frozen broker accepts the connection but never answers: the deadline
// catches it.
func Ping(ctx context.Context, brokers []string) error {
	ctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	errs := make(chan error, len(brokers))
	for _, b := range brokers {
		go func() { errs <- pingBroker(ctx, b) }()
	}
	var all []error
	for range brokers {
		err := <-errs
		if err == nil {
			return nil
		}
		all = append(all, err)
	}
	return zenklav.Errorf(zenklav.EUNAVAILABLE, "no kafka broker answered within %s: %v", PingTimeout, joined(all))
}

// joined is errs on one line.
func joined(errs []error) string {
	s := make([]string, len(errs))
	for i, err := range errs {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func pingBroker(ctx context.Context, addr string) error {
	conn, err := (&kafkago.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	if _, err := conn.Brokers(); err != nil {
		return fmt.Errorf("%s: metadata: %w", addr, err)
	}
	return nil
}

// WaitForBrokers retries Ping until a broker answers or ctx ends, so roles can start in any
// order with Kafka.
func WaitForBrokers(ctx context.Context, logger *slog.Logger, brokers []string) error {
	p := retry.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second}
	at := strings.Join(brokers, ",")
	if err := p.Do(ctx, logger, "waiting for kafka", func(ctx context.Context) error { return Ping(ctx, brokers) }, "brokers", at); err != nil {
		return fmt.Errorf("wait for kafka at %s: %w", at, errors.Join(err, context.Cause(ctx)))
	}
	return nil
}

// kafkaLogger adapts slog to kafka-go's logger. A lost connection (refused, reset, cut short)
// goes to debug: a broker outage makes every reader and writer say so, each time it retries,
// and the health tracker says it once for all of them.
func kafkaLogger(l *slog.Logger) kafkago.LoggerFunc {
	return func(msg string, args ...any) {
		text := fmt.Sprintf(msg, args...)
		for _, a := range args {
			if e, ok := a.(error); ok && connectionLost(e) {
				l.Debug(text)
				return
			}
		}
		l.Warn(text)
	}
}

// connectionLost says whether err is a connection to a broker that failed or ended.
func connectionLost(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// Position formats a message's place as topic/partition/offset, as logs and dead letters
// name it.
func Position(m Message) string {
	return fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset)
}

// Progress is how far a consumer group got through a topic, summed over its partitions.
type Progress struct {
	Committed int64 // messages before the group's committed offsets
	End       int64 // messages in the topic (end offsets; the topic is never compacted)
}

// GroupProgress reads a group's committed offsets and the topic's end offsets. With an empty
// group it reads only the end offsets.
func GroupProgress(ctx context.Context, brokers []string, topic, group string) (Progress, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	parts, err := partitions(ctx, client, brokers, topic)
	if err != nil {
		return Progress{}, err
	}
	offsets := make([]kafkago.OffsetRequest, len(parts))
	for i, p := range parts {
		offsets[i] = kafkago.LastOffsetOf(p)
	}
	ends, err := client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: offsets}})
	if err != nil {
		return Progress{}, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "list offsets of %s", topic)
	}
	var p Progress
	for _, po := range ends.Topics[topic] {
		if po.Error != nil {
			return Progress{}, zenklav.Wrap(zenklav.EUNAVAILABLE, po.Error, "list offsets of %s/%d", topic, po.Partition)
		}
		p.End += po.LastOffset
	}
	if group == "" {
		return p, nil
	}
	fetched, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err == nil && fetched.Error != nil {
		err = fetched.Error
	}
	if err != nil {
		return Progress{}, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "fetch offsets of group %s", group)
	}
	for _, po := range fetched.Topics[topic] {
		if po.CommittedOffset > 0 {
			p.Committed += po.CommittedOffset
		}
	}
	return p, nil
}

// partitions lists the partition ids of topic; ENOTFOUND when there is no such topic.
func partitions(ctx context.Context, client *kafkago.Client, brokers []string, topic string) ([]int, error) {
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "kafka metadata")
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return nil, zenklav.Errorf(zenklav.ENOTFOUND, "topic %s not found on %s", topic, strings.Join(brokers, ","))
	}
	out := make([]int, len(meta.Topics[0].Partitions))
	for i, p := range meta.Topics[0].Partitions {
		out[i] = p.ID
	}
	return out, nil
}
