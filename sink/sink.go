// Package sink is the sink role: it copies ticket events from Kafka into ClickHouse in large
// batches, and folds them into the per-ticket and per-customer rows the reports read. Both
// are ordered batch handlers on the kafka package's consumer, each in a group of its own.
package sink

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/retry"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
)

// Sink is the sink role. Two consumers of ticket-events.v1, each with its own group and
// pace: one copies the events into ClickHouse in large batches, the other folds them into
// the per-ticket and per-customer rows the reports read (analytics.SummarizeTicketEvents).
// Apart, a slow fold never holds back the copy (issue 3's throughput), and each retries on
// its own.
type Sink struct {
	logger   *slog.Logger
	consumer *kafka.Consumer
	rows     *kafka.Consumer
	store    zenklav.TicketStore
	dlq      *kafka.DeadLetters
	metrics  sinkMetrics
	// copyUntil is when the copy's backlog last seemed to end (Unix nanoseconds; the largest
	// int64 while it handles a full batch). Under a backlog the copy goes first and the fold
	// waits, for up to foldYield at a time: the emitter reads ticket_events to keep
	// Open_tickets right, and on a small machine the two share the cores.
	copyUntil atomic.Int64
	batchSize int
}

const (
	// foldYield is the longest the fold waits for the copy at a time, so that under a load
	// the sink cannot keep up with, the reports still move.
	foldYield = 10 * time.Second
	// copyGrace is how long after a full batch the copy is taken to be still busy: the next
	// one is usually fetched by then.
	copyGrace = 500 * time.Millisecond
)

type sinkMetrics struct {
	events     prometheus.Counter
	batchTime  prometheus.Histogram
	rowsEvents prometheus.Counter
	rowsTime   prometheus.Histogram
}

// The sink's consumer-group timeouts, both groups alike (docs/operations.md). A crashed sink
// stalls ClickHouse's copy for SessionTimeout: 6 s, the least a broker allows by default (it
// was kafka-go's 30 s, which kept ClickHouse waiting half a minute); the heartbeats run beside
// the inserts, so a slow ClickHouse cannot make it miss one. A batch being inserted when a
// rebalance starts is finished and committed by the member that fetched it, or handled again
// by the next owner: RebalanceTimeout only bounds how long the live members take to rejoin.
const (
	SessionTimeout   = 6 * time.Second
	RebalanceTimeout = 10 * time.Second
)

// Group is the sink's consumer group; the fold's is Group + TicketRowsSuffix.
const (
	Group            = "zenklav-sink"
	TicketRowsSuffix = "-ticket-rows"
)

// New returns a sink reading cfg.Topic in cfg.Group, and folding it in cfg.Group +
// TicketRowsSuffix. Messages that are not ticket events go to cfg.DeadLetters with the
// reason, so one bad record never blocks the partition; the fold passes over them.
func New(logger *slog.Logger, reg prometheus.Registerer, cfg kafka.ConsumerConfig, store zenklav.TicketStore) (*Sink, error) {
	if cfg.DeadLetters == nil {
		return nil, errors.New("sink needs a dead-letter topic")
	}
	c, err := kafka.NewConsumer(logger, cfg)
	if err != nil {
		return nil, err
	}
	rowsCfg := cfg
	rowsCfg.Group += TicketRowsSuffix
	rows, err := kafka.NewConsumer(logger, rowsCfg)
	if err != nil {
		return nil, err
	}
	f := promauto.With(reg)
	m := sinkMetrics{
		events: f.NewCounter(prometheus.CounterOpts{
			Name: "zenklav_sink_events_total", Help: "Ticket events inserted into ClickHouse (re-inserts included).",
		}),
		batchTime: f.NewHistogram(prometheus.HistogramOpts{
			Name: "zenklav_sink_batch_seconds", Help: "Time to decode and insert one batch.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		rowsEvents: f.NewCounter(prometheus.CounterOpts{
			Name: "zenklav_sink_ticket_rows_events_total", Help: "Ticket events folded into the rows the reports read (re-folds included).",
		}),
		rowsTime: f.NewHistogram(prometheus.HistogramOpts{
			Name: "zenklav_sink_ticket_rows_batch_seconds", Help: "Time to decode one batch and fold it into the report rows.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
	}
	cfg.DeadLetters.Written = f.NewCounter(prometheus.CounterOpts{
		Name: "zenklav_sink_dead_letters_total", Help: "Messages the sink could not decode and sent to the dead-letter topic.",
	})
	return &Sink{logger: logger, consumer: c, rows: rows, store: store, dlq: cfg.DeadLetters, metrics: m, batchSize: cfg.BatchSize}, nil
}

// Run consumes until ctx ends, or either consumer fails for good (which stops the other).
func (s *Sink) Run(ctx context.Context) error {
	s.logger.Info("sink started")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	for _, run := range []func() error{
		func() error { return s.consumer.Run(ctx, s.handle) },
		func() error { return s.rows.Run(ctx, s.fold) },
	} {
		go func() {
			err := run()
			cancel()
			errs <- err
		}()
	}
	return errors.Join(<-errs, <-errs)
}

// yieldToCopy waits while the copy works through a backlog, for up to foldYield. With a
// backlog of its own (a full batch), the fold first gives the copy, which has one too, the
// moment it needs to start.
func (s *Sink) yieldToCopy(ctx context.Context, backlog bool) error {
	start := time.Now()
	for {
		waited := time.Since(start)
		copying := time.Now().UnixNano() < s.copyUntil.Load()
		if waited >= foldYield || !copying && (!backlog || waited >= copyGrace) {
			return nil
		}
		if err := retry.Wait(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// fold folds a batch into the report rows. What does not decode is the other consumer's to
// dead-letter.
func (s *Sink) fold(ctx context.Context, msgs []kafka.Message) error {
	if err := s.yieldToCopy(ctx, len(msgs) >= s.batchSize); err != nil {
		return err
	}
	start := time.Now()
	if s.rows.Rebalanced() {
		// Another member may have folded these partitions meanwhile: what the store
		// remembers of their rows may be stale.
		s.store.ForgetTicketRows()
	}
	events, _ := decodeEvents(msgs)
	if err := s.store.SummarizeTicketEvents(ctx, events); err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "fold batch into report rows")
	}
	s.metrics.rowsEvents.Add(float64(len(events)))
	s.metrics.rowsTime.Observe(time.Since(start).Seconds())
	return nil
}

func (s *Sink) handle(ctx context.Context, msgs []kafka.Message) error {
	start := time.Now()
	if len(msgs) >= s.batchSize {
		s.copyUntil.Store(math.MaxInt64)
		defer func() { s.copyUntil.Store(time.Now().Add(copyGrace).UnixNano()) }()
	}
	events, bad := decodeEvents(msgs)
	if err := s.insert(ctx, events); err != nil {
		// Whatever ClickHouse said, the events are fine (they were validated when produced):
		// retry until it takes them.
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "insert batch")
	}
	// Dead letters go after the insert, so a batch retried for ClickHouse's sake does not
	// dead-letter its bad messages again.
	if err := s.dlq.Write(ctx, bad...); err != nil {
		return err // stopping: nothing is committed, and the batch is handled again
	}
	s.metrics.events.Add(float64(len(events)))
	s.metrics.batchTime.Observe(time.Since(start).Seconds())
	s.logger.Debug("batch inserted", "events", len(events), "to", kafka.Position(msgs[len(msgs)-1]), "took", time.Since(start))
	return nil
}

// insert writes events in a few large inserts side by side: one insert keeps only one of
// ClickHouse's cores busy parsing and sorting the block.
func (s *Sink) insert(ctx context.Context, events []schemas.TicketEvent) error {
	const minPart = 10_000 // ClickHouse wants big blocks: never split below this
	parts := min(runtime.GOMAXPROCS(0), max(1, len(events)/minPart))
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := p*len(events)/parts, (p+1)*len(events)/parts
		wg.Go(func() { errs[p] = s.store.InsertTicketEvents(ctx, events[lo:hi]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// decodeEvents decodes msgs on every core: JSON decoding is the sink's main cost.
func decodeEvents(msgs []kafka.Message) ([]schemas.TicketEvent, []kafka.DeadLetter) {
	events := make([]schemas.TicketEvent, len(msgs))
	errs := make([]error, len(msgs))
	workers := min(runtime.GOMAXPROCS(0), (len(msgs)+999)/1000)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(msgs); i += workers {
				errs[i] = schemas.DecodeTicketEvent(msgs[i].Value, &events[i])
			}
		})
	}
	wg.Wait()
	var bad []kafka.DeadLetter
	out := events[:0]
	for i := range events {
		if errs[i] != nil {
			bad = append(bad, kafka.DeadLetter{Msg: msgs[i], Reason: errs[i].Error()})
			continue
		}
		out = append(out, events[i])
	}
	return out, bad
}
