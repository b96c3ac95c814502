package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav/internal/health"
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
	// them. 0 is DefaultSessionTimeout. HeartbeatInterval is a fifth of it.
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the group waits for its live members to rejoin during a
	// rebalance; 0 is DefaultRebalanceTimeout.
	RebalanceTimeout time.Duration
	// Health, when set, is where the consumer says whether it works or waits for Kafka (part
	// "GROUP/kafka") or for its handler's dependency (part "GROUP/handle"); without it the
	// consumer keeps the states to itself and still logs each change once.
	Health *health.Tracker
	// DeadLetters, when set, is where messages the consumer cannot use go: RunLanes sends
	// those its handler cannot route there.
	DeadLetters *DeadLetters
}

// BatchHandler handles a batch of messages. It returns nil when every message is dealt with
// (stored, or sent to a dead-letter topic); an EUNAVAILABLE error makes the consumer retry the
// whole batch, so handlers must be idempotent; any other error stops the consumer.
type BatchHandler func(ctx context.Context, msgs []Message) error

// The group timeouts of a consumer that does not choose its own. kafka-go's 30 s session
// stalled a crashed member's partitions for half a minute; 6 s is the least a broker allows
// by default (group.min.session.timeout.ms), and safe because kafka-go heartbeats from a
// goroutine of its own, whatever the handler is doing. A live member rejoins a rebalance as
// soon as its generation ends, so 10 s to rejoin is ample, and a member that takes longer is
// one to drop. See docs/operations.md.
const (
	DefaultSessionTimeout   = 6 * time.Second
	DefaultRebalanceTimeout = 10 * time.Second
	// joinBackoff is how long the reader waits after a failed attempt to join its group
	// (kafka-go's default is 5 s): after an outage, the first second the brokers are back
	// is when the work should resume.
	joinBackoff = time.Second
)

// Consumer is the loop every pipeline role runs: FetchMessage → handle with retry → commit.
// Offsets are committed only after the handler succeeded, so a crash makes the next owner of
// the partitions handle what was not committed again. Run handles ordered batches; RunLanes
// handles messages out of order in lanes of their own.
type Consumer struct {
	cfg    ConsumerConfig
	logger *slog.Logger
	// rc is the group reader's configuration; Run makes the reader, and RunLanes, which
	// follows the group's generations itself (generation.go), never does.
	rc     kafkago.ReaderConfig
	reader *kafkago.Reader
	// retry is the policy of a batch that failed transiently, of a commit, and of the wait
	// for Kafka after a fetch failed.
	retry retry.Policy
	// kafka and handling are the consumer's parts in the health tracker: Kafka (fetches and
	// commits), and the handler's dependency.
	kafka, handling *health.Part
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
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.RebalanceTimeout <= 0 {
		cfg.RebalanceTimeout = DefaultRebalanceTimeout
	}
	rc.SessionTimeout, rc.HeartbeatInterval = cfg.SessionTimeout, cfg.SessionTimeout/5
	rc.RebalanceTimeout, rc.JoinGroupBackoff = cfg.RebalanceTimeout, joinBackoff
	tracker := cfg.Health
	if tracker == nil {
		tracker = health.NewTracker(logger, nil)
	}
	return &Consumer{
		cfg:      cfg,
		logger:   logger,
		rc:       rc,
		retry:    retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second},
		kafka:    tracker.Part(cfg.Group + "/kafka"),
		handling: tracker.Part(cfg.Group + "/handle"),
	}, nil
}

// Run consumes ordered batches until ctx ends or the handler fails permanently; Kafka's
// outages it waits out (see fetch). It fetches
// the next batch while the handler works on the current one (at most one batch is handled at
// a time, so batches are handled and committed in order); that overlap is what keeps both
// the broker and the store busy. On the way out it lets the batch in flight finish or give
// up, commits what was handled, and closes the reader, which leaves the group so another
// member takes the partitions over at once.
func (c *Consumer) Run(ctx context.Context, handle BatchHandler) error {
	if c.cfg.BatchSize < 1 || c.cfg.BatchWait <= 0 {
		return errors.New("batches need a positive batch size and wait")
	}
	c.reader = kafkago.NewReader(c.rc) // joins the group
	defer c.close()
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
			return ferr // only ctx ends fetching; kept should that ever change
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
	if c.reader == nil {
		return
	}
	if err := c.reader.Close(); err != nil {
		c.logger.Warn("close kafka reader", "err", err)
	}
}

// Rebalanced says whether the consumer joined a new generation of its group (the first
// join included) since it was last asked: its partitions may have been another member's
// in between. Only one goroutine may ask (kafka-go's Stats counts since the last call).
func (c *Consumer) Rebalanced() bool {
	return c.reader != nil && c.reader.Stats().Rebalances > 0
}

// fill blocks for the first message, then takes more until the batch is full or BatchWait
// has passed since the first one. It fails only when ctx ends.
func (c *Consumer) fill(ctx context.Context, batch *[]Message) error {
	m, err := c.fetch(ctx)
	if err != nil {
		return err
	}
	*batch = append(*batch, m)
	wait, cancel := context.WithTimeout(ctx, c.cfg.BatchWait)
	defer cancel()
	for len(*batch) < c.cfg.BatchSize {
		m, err := c.reader.FetchMessage(wait)
		if err != nil {
			// The wait is over, or Kafka failed: hand over the partial batch; the next
			// fill's first fetch waits for Kafka.
			return ctx.Err()
		}
		*batch = append(*batch, m)
	}
	return nil
}

// fetch returns the next message, waiting out Kafka's outages: kafka-go's reader gives up
// joining its group after a few tries and says so, but goes on trying, so the consumer says
// it waits (once), checks with backoff until a broker answers again, and fetches once more.
// It fails only when ctx ends.
func (c *Consumer) fetch(ctx context.Context) (Message, error) {
	for {
		m, err := c.reader.FetchMessage(ctx)
		if err == nil {
			c.kafka.Working()
			return m, nil
		}
		if ctx.Err() != nil {
			return Message{}, ctx.Err()
		}
		c.kafka.Waiting(fmt.Errorf("fetch from %s: %w", c.cfg.Topic, err))
		for attempt := 0; ; attempt++ {
			if err := c.retry.Sleep(ctx, attempt); err != nil {
				return Message{}, err
			}
			if Ping(ctx, c.cfg.Brokers) == nil {
				// Kafka answers again: say so now, not at the next message, which a quiet
				// topic (the parked one) may not have for hours. A fetch that still fails
				// says it waits again.
				c.kafka.Working()
				break
			}
		}
	}
}

// handle runs the handler, retrying transient failures with backoff for as long as it takes:
// the data stays in Kafka, so waiting is always safe and dropping never is. A failure that
// lasts is said once, not at every retry.
func (c *Consumer) handle(ctx context.Context, handle BatchHandler, batch []Message) error {
	err := c.retry.DoReport(ctx, func(ctx context.Context) error { return handle(ctx, batch) }, func(_ int, err error) {
		c.handling.Waiting(fmt.Errorf("handle batch at %s: %w", Position(batch[0]), err))
	})
	if err == nil {
		c.handling.Working()
		return nil
	}
	if ctx.Err() == nil {
		err = fmt.Errorf("handle batch at %s: %w", Position(batch[0]), err)
		c.handling.Stopped(err)
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
	err := p.DoReport(cctx, func(ctx context.Context) error {
		ahead, err := c.notBehind(ctx, msgs)
		if err != nil || len(ahead) == 0 {
			return err
		}
		return unavailable(c.reader.CommitMessages(ctx, ahead...))
	}, func(int, error) {})
	if err != nil {
		// Said once for the outage; each failed commit only means its messages may be
		// handled again by the next owner.
		c.kafka.Waiting(fmt.Errorf("commit offsets of %s: %w", c.cfg.Topic, err))
		return false
	}
	c.kafka.Working()
	return true
}

// notBehind leaves out of msgs the partitions whose committed offset is already past them:
// after a rebalance, another member owns the partition and has committed further, and a
// late commit of ours would move the group back (its events handled again). Kafka takes a
// commit from any member of the generation, so the check is ours to make.
func (c *Consumer) notBehind(ctx context.Context, msgs []Message) ([]Message, error) {
	parts := make([]int, len(msgs))
	for i, m := range msgs {
		parts[i] = m.Partition
	}
	client := &kafkago.Client{Addr: kafkago.TCP(c.cfg.Brokers...), Timeout: 5 * time.Second}
	resp, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: c.cfg.Group, Topics: map[string][]int{c.cfg.Topic: parts}})
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if err != nil {
		return nil, unavailable(err)
	}
	committed := map[int]int64{}
	for _, po := range resp.Topics[c.cfg.Topic] {
		committed[po.Partition] = po.CommittedOffset
	}
	var out []Message
	for _, m := range msgs {
		if m.Offset+1 > committed[m.Partition] {
			out = append(out, m)
		}
	}
	return out, nil
}

// DeadLetters is where the consumer's role writes what it gives up on; nil when it has no
// dead-letter topic.
func (c *Consumer) DeadLetters() *DeadLetters { return c.cfg.DeadLetters }
