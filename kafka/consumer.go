package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav/internal/retry"
)

// ConsumerConfig configures a consumer of one topic in one group.
type ConsumerConfig struct {
	Brokers []string
	Topic   string
	Group   string
	// BatchSize and BatchWait shape Run's batches: at most BatchSize messages, handed over
	// BatchWait after the first one at the latest. RunLanes forms batches of its own.
	BatchSize int
	BatchWait time.Duration
	// SessionTimeout is how long the group waits for a member that stopped heartbeating
	// before it gives the member's partitions to another: how long a crashed member stalls
	// them. 0 is kafka-go's 30 s. HeartbeatInterval is then a fifth of it.
	SessionTimeout time.Duration
	// DeadLetters, when set, is where messages the consumer cannot use go: RunLanes sends
	// those its handler cannot route there.
	DeadLetters *DeadLetters
}

// BatchHandler handles a batch of messages. It returns nil when every message is dealt with
// (stored, or sent to a dead-letter topic); an EUNAVAILABLE error makes the consumer retry the
// whole batch, so handlers must be idempotent; any other error stops the consumer.
type BatchHandler func(ctx context.Context, msgs []Message) error

// Consumer is the loop every pipeline role runs: FetchMessage → handle with retry → commit.
// Offsets are committed only after the handler succeeded, so a crash makes the next owner of
// the partitions handle what was not committed again. Run handles ordered batches; RunLanes
// handles messages out of order in lanes of their own.
type Consumer struct {
	cfg    ConsumerConfig
	logger *slog.Logger
	reader *kafkago.Reader
	// retry is the policy of a batch that failed transiently and of a commit.
	retry retry.Policy
}

// NewConsumer returns a consumer in cfg.Group.
func NewConsumer(logger *slog.Logger, cfg ConsumerConfig) (*Consumer, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || cfg.Group == "" {
		return nil, errors.New("consumer needs brokers, a topic and a group")
	}
	if cfg.BatchSize < 0 || cfg.BatchWait < 0 {
		return nil, errors.New("consumer needs a positive batch size and wait")
	}
	logger = logger.With("topic", cfg.Topic, "group", cfg.Group)
	rc := kafkago.ReaderConfig{
		Brokers: cfg.Brokers,
		GroupID: cfg.Group,
		Topic:   cfg.Topic,
		// A new group reads the topic from its start. Commits are synchronous
		// (CommitInterval 0): each role commits only what it has handled.
		StartOffset:    kafkago.FirstOffset,
		CommitInterval: 0,
		MinBytes:       1,
		MaxBytes:       4 << 20,
		MaxWait:        100 * time.Millisecond,
		ErrorLogger:    kafkaLogger(logger.With("kafka", "reader")),
	}
	if cfg.BatchSize > 0 {
		rc.QueueCapacity = min(cfg.BatchSize, 5_000)
	}
	if cfg.SessionTimeout > 0 {
		rc.SessionTimeout, rc.HeartbeatInterval = cfg.SessionTimeout, cfg.SessionTimeout/5
	}
	return &Consumer{
		cfg:    cfg,
		logger: logger,
		reader: kafkago.NewReader(rc),
		retry:  retry.Policy{Initial: 100 * time.Millisecond, Max: 30 * time.Second},
	}, nil
}

// Run consumes ordered batches until ctx ends or the handler fails permanently. It fetches
// the next batch while the handler works on the current one (at most one batch is handled at
// a time, so batches are handled and committed in order); that overlap is what keeps both
// the broker and the store busy. On the way out it lets the batch in flight finish or give
// up, commits what was handled, and closes the reader, which leaves the group so another
// member takes the partitions over at once.
func (c *Consumer) Run(ctx context.Context, handle BatchHandler) error {
	defer c.close()
	if c.cfg.BatchSize < 1 || c.cfg.BatchWait <= 0 {
		return errors.New("batches need a positive batch size and wait")
	}
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
		batch := make([]Message, 0, c.cfg.BatchSize)
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
				// The batch is handled; should the commit fail, the next batch's commit
				// covers these offsets too, and handlers are idempotent, so carry on.
				c.commit(ctx, lastOffsets(batch))
			} else {
				stopFetch()
			}
			inflight <- err
		}()
	}
}

func (c *Consumer) close() {
	if err := c.reader.Close(); err != nil {
		c.logger.Warn("close kafka reader", "err", err)
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
func (c *Consumer) fill(ctx context.Context, batch *[]Message) error {
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
func (c *Consumer) handle(ctx context.Context, handle BatchHandler, batch []Message) error {
	err := c.retry.Do(ctx, c.logger, "batch failed, retrying", func(ctx context.Context) error { return handle(ctx, batch) },
		"at", Position(batch[0]), "size", len(batch))
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("handle batch at %s: %w", Position(batch[0]), err)
	}
	return err
}

// lastOffsets returns the last message of each partition in batch: what to commit.
func lastOffsets(batch []Message) []Message {
	last := map[int]Message{}
	for _, m := range batch {
		if p, ok := last[m.Partition]; !ok || m.Offset > p.Offset {
			last[m.Partition] = m
		}
	}
	msgs := make([]Message, 0, len(last))
	for _, m := range last {
		msgs = append(msgs, m)
	}
	return msgs
}

// commit commits msgs, each the last handled message of its partition, retrying a few times.
// It runs on a context that survives shutdown (a handled batch is committed even while the
// role is stopping), and reports whether the offsets were committed: a failure only means
// the messages are handled again, which every handler allows.
func (c *Consumer) commit(ctx context.Context, msgs []Message) bool {
	if len(msgs) == 0 {
		return true
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	p := c.retry
	p.MaxAttempts = 5
	err := p.Do(cctx, c.logger, "commit failed, retrying", func(ctx context.Context) error {
		return unavailable(c.reader.CommitMessages(ctx, msgs...))
	})
	if err != nil {
		c.logger.Warn("commit failed; what it covers is handled again by the next owner", "err", err)
		return false
	}
	return true
}

// DeadLetters is where the consumer's role writes what it gives up on; nil when it has no
// dead-letter topic.
func (c *Consumer) DeadLetters() *DeadLetters { return c.cfg.DeadLetters }
