// Package pipeline is zenklav's Kafka plumbing and the consumers built on it: a producer
// that answers only after the brokers acknowledged, a batching consumer loop that commits
// only what was handled, and the roles that run on them (sink; emitter and sms later).
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
)

// Message is one record to produce.
type Message struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers map[string]string
}

// MaxMessageBytes is the largest record batch zenklav produces, and so the largest message:
// Kafka's default message.max.bytes is 1 MiB plus a little.
const MaxMessageBytes = 1 << 20

// Producer writes to Kafka with acks=all and returns only once every message is acknowledged.
type Producer struct {
	w *kafka.Writer
}

// NewProducer returns a producer for brokers. It batches concurrent writes for a few
// milliseconds, which is what makes one Kafka round trip serve many webhooks.
func NewProducer(logger *slog.Logger, brokers []string) *Producer {
	return &Producer{w: &kafka.Writer{
		Addr: kafka.TCP(brokers...),
		// Murmur2 is what Java clients use, so a key lands on the same partition whoever
		// writes it.
		Balancer: &kafka.Murmur2Balancer{},
		// A Writer{} literal defaults to acks=none: say all explicitly.
		RequiredAcks: kafka.RequireAll,
		// The default 1 s would add a second to every webhook.
		BatchTimeout: 2 * time.Millisecond,
		BatchSize:    1000,
		// One record batch must fit the broker's message.max.bytes (1 MiB by default).
		BatchBytes:   MaxMessageBytes,
		MaxAttempts:  3,
		WriteTimeout: 5 * time.Second,
		ReadTimeout:  5 * time.Second,
		ErrorLogger:  kafkaLogger(logger.With("kafka", "writer")),
	}}
}

// Publish writes msgs and waits for the brokers' acknowledgement. A failure is EUNAVAILABLE:
// nothing acknowledged, the caller retries.
func (p *Producer) Publish(ctx context.Context, msgs ...Message) error {
	km := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		km[i] = kafka.Message{Topic: m.Topic, Key: m.Key, Value: m.Value}
		for k, v := range m.Headers {
			km[i].Headers = append(km[i].Headers, kafka.Header{Key: k, Value: []byte(v)})
		}
	}
	if err := p.w.WriteMessages(ctx, km...); err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "kafka did not acknowledge the write")
	}
	return nil
}

// Close flushes and closes the producer.
func (p *Producer) Close() error { return p.w.Close() }

// Topic is a topic zenklav creates when it is missing.
type Topic struct {
	Name       string
	Partitions int
}

// EnsureTopics creates the topics that do not exist yet, with the broker's default
// replication factor (the cluster's own setting decides durability, not zenklav).
func EnsureTopics(ctx context.Context, brokers []string, topics ...Topic) error {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: -1})
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "create topics")
	}
	var errs []error
	for name, err := range resp.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return waitForLeaders(ctx, client, topics)
}

// waitForLeaders waits until every partition of topics has a leader: a topic is usable only
// then, and readers that start earlier log a burst of "not leader" errors.
func waitForLeaders(ctx context.Context, client *kafka.Client, topics []Topic) error {
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.Name
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b := Backoff{Initial: 20 * time.Millisecond, Max: time.Second}
	for attempt := 0; ; attempt++ {
		meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err == nil && allLed(meta) {
			return nil
		}
		if err := b.Sleep(ctx, attempt); err != nil {
			return zenklav.Errorf(zenklav.EUNAVAILABLE, "topics %s have no leader yet", strings.Join(names, ", "))
		}
	}
}

func allLed(meta *kafka.MetadataResponse) bool {
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

// Ping checks that a broker answers a metadata request.
func Ping(ctx context.Context, brokers []string) error {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 3 * time.Second}
	if _, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}}); err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "kafka metadata")
	}
	return nil
}

// WaitForBrokers retries Ping until a broker answers or ctx ends, so roles can start in any
// order with Kafka.
func WaitForBrokers(ctx context.Context, logger *slog.Logger, brokers []string) error {
	b := Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 0; ; attempt++ {
		err := Ping(ctx, brokers)
		if err == nil {
			return nil
		}
		if attempt%5 == 4 {
			logger.Warn("waiting for kafka", "brokers", strings.Join(brokers, ","), "err", err)
		}
		if err := b.Sleep(ctx, attempt); err != nil {
			return fmt.Errorf("wait for kafka at %s: %w", strings.Join(brokers, ","), errors.Join(err, context.Cause(ctx)))
		}
	}
}

// kafkaLogger adapts slog to kafka-go's logger, dropping the connection-refused noise that a
// broker restart causes (the caller reports the failure that matters).
func kafkaLogger(l *slog.Logger) kafka.LoggerFunc {
	return func(msg string, args ...any) {
		text := fmt.Sprintf(msg, args...)
		var opErr *net.OpError
		for _, a := range args {
			if e, ok := a.(error); ok && errors.As(e, &opErr) {
				l.Debug(text)
				return
			}
		}
		l.Warn(text)
	}
}

// Progress is how far a consumer group got through a topic, summed over its partitions.
type Progress struct {
	Committed int64 // messages before the group's committed offsets
	End       int64 // messages in the topic (end offsets; the topic is never compacted)
}

// GroupProgress reads a group's committed offsets and the topic's end offsets. With an empty
// group it reads only the end offsets.
func GroupProgress(ctx context.Context, brokers []string, topic, group string) (Progress, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return Progress{}, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "kafka metadata")
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return Progress{}, zenklav.Errorf(zenklav.ENOTFOUND, "topic %s not found", topic)
	}
	var offsets []kafka.OffsetRequest
	var parts []int
	for _, p := range meta.Topics[0].Partitions {
		offsets = append(offsets, kafka.LastOffsetOf(p.ID))
		parts = append(parts, p.ID)
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: offsets}})
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
	fetched, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return Progress{}, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "fetch offsets of group %s", group)
	}
	if fetched.Error != nil {
		return Progress{}, zenklav.Wrap(zenklav.EUNAVAILABLE, fetched.Error, "fetch offsets of group %s", group)
	}
	for _, po := range fetched.Topics[topic] {
		if po.CommittedOffset > 0 {
			p.Committed += po.CommittedOffset
		}
	}
	return p, nil
}
