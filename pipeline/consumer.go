package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
)

// ConsumerConfig configures a batching consumer.
type ConsumerConfig struct {
	Brokers   []string
	Topic     string
	Group     string
	BatchSize int           // most messages handed to the handler at once
	BatchWait time.Duration // longest a partial batch waits for more messages
}

// BatchHandler handles a batch of messages. It returns nil when every message is dealt with
// (stored, or sent to a dead-letter topic); an EUNAVAILABLE error makes the consumer retry the
// whole batch, so handlers must be idempotent; any other error stops the consumer.
type BatchHandler func(ctx context.Context, msgs []kafka.Message) error

// Consumer is the loop every pipeline role runs: FetchMessage → handle with retry → commit,
// with commits batched. Offsets are committed only after the handler succeeded, so a crash
// makes the next owner of the partitions handle the uncommitted batch again.
type Consumer struct {
	cfg     ConsumerConfig
	logger  *slog.Logger
	reader  *kafka.Reader
	backoff Backoff
}

// NewConsumer returns a consumer in cfg.Group.
func NewConsumer(logger *slog.Logger, cfg ConsumerConfig) (*Consumer, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || cfg.Group == "" {
		return nil, errors.New("consumer needs brokers, a topic and a group")
	}
	if cfg.BatchSize < 1 || cfg.BatchWait <= 0 {
		return nil, errors.New("consumer needs a positive batch size and wait")
	}
	logger = logger.With("topic", cfg.Topic, "group", cfg.Group)
	rc := readerConfig(logger, cfg.Brokers, cfg.Topic, cfg.Group)
	rc.QueueCapacity = min(cfg.BatchSize, 5_000)
	r := kafka.NewReader(rc)
	return &Consumer{
		cfg:     cfg,
		logger:  logger,
		reader:  r,
		backoff: Backoff{Initial: 100 * time.Millisecond, Max: 30 * time.Second},
	}, nil
}

// Run consumes until ctx ends or the handler fails permanently. It fetches the next batch
// while the handler works on the current one (at most one batch is handled at a time, so
// batches are handled and committed in order); that overlap is what keeps both the broker and
// the store busy. On the way out it lets the batch in flight finish or give up, commits
// what was handled, and closes the reader, which leaves the group so another member takes
// the partitions over at once.
func (c *Consumer) Run(ctx context.Context, handle BatchHandler) error {
	defer func() {
		if err := c.reader.Close(); err != nil {
			c.logger.Warn("close kafka reader", "err", err)
		}
	}()
	// A permanent failure of the batch in flight must stop the fetch that waits beside it,
	// or the consumer would sit on the failure until the next message arrives.
	fetchCtx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	var inflight chan error // the result of the batch being handled, nil when none is
	wait := func() error {
		if inflight == nil {
			return nil
		}
		err := <-inflight
		inflight = nil
		return err
	}
	for {
		batch := make([]kafka.Message, 0, c.cfg.BatchSize)
		ferr := c.fill(fetchCtx, &batch)
		herr := wait()
		if ctx.Err() != nil {
			return nil // an unhandled batch goes, uncommitted, to the next owner of its partitions
		}
		if herr != nil {
			return herr
		}
		if ferr != nil {
			return fmt.Errorf("fetch from %s: %w", c.cfg.Topic, ferr)
		}
		inflight = make(chan error, 1)
		go func() {
			err := c.handle(ctx, handle, batch)
			if err == nil {
				if cerr := c.commit(ctx, batch); cerr != nil {
					// The batch is handled; the next batch's commit covers these offsets
					// too, and handlers are idempotent, so carry on and report.
					c.logger.Error("commit failed", "err", cerr)
				}
			} else {
				stopFetch()
			}
			inflight <- err
		}()
	}
}

// Rebalanced says whether the consumer joined a new generation of its group (the first
// join included) since it was last asked: its partitions may have been another member's
// in between. Only one goroutine may ask (kafka-go's Stats counts since the last call).
func (c *Consumer) Rebalanced() bool {
	return c.reader.Stats().Rebalances > 0
}

// fill blocks for the first message, then takes more until the batch is full or BatchWait
// has passed since the first one.
func (c *Consumer) fill(ctx context.Context, batch *[]kafka.Message) error {
	m, err := c.reader.FetchMessage(ctx)
	if err != nil {
		return err
	}
	*batch = append(*batch, m)
	wait, cancel := context.WithTimeout(ctx, c.cfg.BatchWait)
	defer cancel()
	for len(*batch) < c.cfg.BatchSize {
		m, err := c.reader.FetchMessage(wait)
		if err != nil {
			if wait.Err() != nil && ctx.Err() == nil {
				return nil // the wait is over: hand over a partial batch
			}
			return err
		}
		*batch = append(*batch, m)
	}
	return nil
}

// handle runs the handler, retrying transient failures with backoff for as long as it takes:
// the data stays in Kafka, so waiting is always safe and dropping never is.
func (c *Consumer) handle(ctx context.Context, handle BatchHandler, batch []kafka.Message) error {
	for attempt := 0; ; attempt++ {
		err := handle(ctx, batch)
		if err == nil {
			return nil
		}
		if !zenklav.Transient(err) {
			return fmt.Errorf("handle batch at %s: %w", position(batch[0]), err)
		}
		level := slog.LevelWarn
		if attempt >= 5 {
			level = slog.LevelError // no longer a blip: someone should look
		}
		c.logger.Log(ctx, level, "batch failed, retrying", "at", position(batch[0]), "size", len(batch), "attempt", attempt+1, "err", err)
		if err := c.backoff.Sleep(ctx, attempt); err != nil {
			return err
		}
	}
}

// commit commits the last offset of each partition in the batch. It runs on a context that
// survives shutdown, so a handled batch is committed even while the role is stopping.
func (c *Consumer) commit(ctx context.Context, batch []kafka.Message) error {
	last := map[int]kafka.Message{}
	for _, m := range batch {
		if p, ok := last[m.Partition]; !ok || m.Offset > p.Offset {
			last[m.Partition] = m
		}
	}
	msgs := make([]kafka.Message, 0, len(last))
	for _, m := range last {
		msgs = append(msgs, m)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := c.reader.CommitMessages(cctx, msgs...)
		if err == nil {
			return nil
		}
		if attempt == 4 || cctx.Err() != nil {
			// The batch was handled; failing to commit only means it is handled again.
			return fmt.Errorf("commit offsets up to %s: %w", position(batch[len(batch)-1]), err)
		}
		if err := c.backoff.Sleep(cctx, attempt); err != nil {
			return err
		}
	}
}

// readerConfig is how every role reads a topic in its group: from the start when the group
// is new, and with synchronous commits (CommitInterval 0), which each role makes only when
// it has handled what it commits.
func readerConfig(logger *slog.Logger, brokers []string, topic, group string) kafka.ReaderConfig {
	return kafka.ReaderConfig{
		Brokers:        brokers,
		GroupID:        group,
		Topic:          topic,
		MinBytes:       1,
		MaxBytes:       4 << 20,
		MaxWait:        100 * time.Millisecond,
		StartOffset:    kafka.FirstOffset,
		CommitInterval: 0,
		ErrorLogger:    kafkaLogger(logger.With("kafka", "reader")),
	}
}

// position formats a message's place as topic/partition/offset.
func position(m kafka.Message) string {
	return fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset)
}
