package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/config"
	"github.com/zenklav/zenklav/schemas"
)

// EmitterGroup is the emitter's consumer group.
const EmitterGroup = "zenklav-emitter"

// MetricSender records metrics in one Klaviyo account (klaviyo.Client, adapted in cmd). It
// waits for the account's rate limits itself. errs[i] is what became of metrics[i]: nil when
// accepted; EUNAVAILABLE (throttled, 5xx, timeout, network) is worth another try; anything
// else is final.
type MetricSender interface {
	Deliver(ctx context.Context, metrics []Metric) []error
	// Delay is how long a bulk request would wait for the account's rate limit now.
	Delay() time.Duration
}

// Route is where one connection's ticket events go.
type Route struct {
	Brands    config.Brands // the brands the connection syncs
	Sender    MetricSender  // its Klaviyo account
	Profiles  ProfileSender // the same account's profiles, for Open_tickets; nil for none
	Directory Directory     // its Zendesk account
}

// EmitterConfig configures the emitter.
type EmitterConfig struct {
	Brokers []string
	Topic   string // ticket-events.v1
	Group   string // EmitterGroup
	Routes  map[string]Route
	// States is where Open_tickets is counted from; nil leaves Open_tickets alone.
	States TicketStates
	// RetryFor bounds how long a delivery that keeps failing transiently is retried before
	// it goes to the dead-letter topic (replay sends it again). Default 15 minutes.
	RetryFor time.Duration
	// Linger is how long a connection's lane waits for more events after the first, to fill
	// a bulk request. Default 100 ms: far below the seconds a webhook may take to arrive.
	Linger time.Duration
	// QueueSize bounds the events waiting per connection. Default 2,000: with the batches
	// of its senders, a second and a half of an account's bulk ceiling is in memory, which
	// keeps its requests full without holding a large backlog decoded.
	QueueSize int
	// Senders is how many requests of one connection may be under way (or waiting for its
	// rate limit) at once. Default 4.
	Senders int
	// BackfillAfter is the age (since the webhook arrived) past which a metric is sent as a
	// backfill: recorded in Klaviyo, but without triggering flows. It keeps a first start on
	// a topic full of history, a long outage or a replay from greeting customers about
	// tickets long closed. Default 1 hour.
	BackfillAfter time.Duration
	// ShutdownGrace is how long, on shutdown, requests under way may take to finish before
	// they are given up (and their events handled again after a restart). Default 10 s.
	ShutdownGrace time.Duration
}

func (c *EmitterConfig) defaults() {
	if c.RetryFor <= 0 {
		c.RetryFor = 15 * time.Minute
	}
	if c.Linger <= 0 {
		c.Linger = 100 * time.Millisecond
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 2_000
	}
	if c.Senders <= 0 {
		c.Senders = 4
	}
	if c.BackfillAfter <= 0 {
		c.BackfillAfter = time.Hour
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 10 * time.Second
	}
}

// Emitter is the emitter role: it turns ticket events into Klaviyo metrics. Each connection
// has a lane of its own (queue, enrichment, rate-limited sends, retries), so one account's
// backlog or outage never holds up another's until that lane's queue is full; offsets are
// committed up to the first message not yet done, across lanes.
type Emitter struct {
	cfg     EmitterConfig
	logger  *slog.Logger
	reader  *kafka.Reader
	dlq     Publisher
	offsets *offsets
	lanes   map[string]*lane
	cache   *directoryCache
	book    *ticketBook
	metrics emitterMetrics
	backoff Backoff
}

type emitterMetrics struct {
	events          *prometheus.CounterVec // by result
	latency         prometheus.Histogram
	retries         prometheus.Counter
	queued          *prometheus.GaugeVec
	deadLetters     prometheus.Counter
	profileFailures prometheus.Counter
}

// NewEmitter returns the emitter. Ticket events of connections without a route (no Klaviyo
// account) are passed over.
func NewEmitter(logger *slog.Logger, reg prometheus.Registerer, cfg EmitterConfig, dlq Publisher) (*Emitter, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || cfg.Group == "" {
		return nil, errors.New("emitter needs brokers, a topic and a group")
	}
	cfg.defaults()
	logger = logger.With("topic", cfg.Topic, "group", cfg.Group)
	m := emitterMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zenklav_emitter_metrics_total",
			Help: "Klaviyo metrics by result: delivered (accepted by Klaviyo), dead_letter (given up, in the DLQ).",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zenklav_emitter_delivery_seconds",
			Help:    "From the webhook's arrival to Klaviyo's acceptance of its metric.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zenklav_emitter_retries_total", Help: "Metric deliveries tried again after a transient failure.",
		}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zenklav_emitter_queued_events", Help: "Ticket events waiting in a connection's lane.",
		}, []string{"connection"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zenklav_emitter_dead_letters_total", Help: "Ticket events the emitter sent to the dead-letter topic.",
		}),
		profileFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zenklav_emitter_open_tickets_failures_total",
			Help: "Batches whose Open_tickets profile updates were given up after retries (the counts are stale until the requester's next ticket change).",
		}),
	}
	for _, c := range []prometheus.Collector{m.events, m.latency, m.retries, m.queued, m.deadLetters, m.profileFailures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register emitter metrics: %w", err)
		}
	}
	e := &Emitter{
		cfg:     cfg,
		logger:  logger,
		dlq:     dlq,
		offsets: newOffsets(cfg.Topic),
		lanes:   map[string]*lane{},
		cache:   newDirectoryCache(),
		book:    newTicketBook(),
		metrics: m,
		backoff: Backoff{Initial: 200 * time.Millisecond, Max: 30 * time.Second},
	}
	for tenant, r := range cfg.Routes {
		if r.Sender == nil || r.Directory == nil {
			return nil, fmt.Errorf("emitter: connection %q needs a Klaviyo sender and a Zendesk directory", tenant)
		}
		l := &lane{e: e, tenant: tenant, route: r, in: make(chan *item, cfg.QueueSize),
			queued: m.queued.WithLabelValues(tenant)}
		if cfg.States != nil && r.Profiles != nil {
			l.profiles = newProfiles(l)
		}
		e.lanes[tenant] = l
	}
	rc := readerConfig(logger, cfg.Brokers, cfg.Topic, cfg.Group)
	// A member that died without leaving holds its partitions until its session times out:
	// 10 s rather than kafka-go's 30 s keeps a crash from stalling delivery long.
	rc.SessionTimeout, rc.HeartbeatInterval = 10*time.Second, 2*time.Second
	e.reader = kafka.NewReader(rc)
	return e, nil
}

// item is one fetched ticket event on its way through a lane.
type item struct {
	msg       kafka.Message
	event     schemas.TicketEvent
	ts        []transition
	fetched   time.Time // when this process first saw it: RetryFor counts from here
	requester int64     // the requester's Zendesk id, once known
}

// Run consumes until ctx ends or Kafka fails for good. On the way out it stops fetching,
// lets the requests under way finish (for up to ShutdownGrace), commits what is done and
// leaves the group; events that were queued but not sent are not committed, so the next
// owner of their partitions sends them.
func (e *Emitter) Run(ctx context.Context) error {
	e.logger.Info("emitter started", "connections", len(e.lanes))
	// The lanes and the committer stop when fetching does, whether ctx ended or Kafka failed.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	// Sends outlive runCtx by ShutdownGrace, so a request under way is not cut off mid-flight.
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	var lanes sync.WaitGroup
	for _, l := range e.lanes {
		lanes.Go(func() { l.run(runCtx, sendCtx) })
	}
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		e.commitEvery(runCtx, time.Second)
	}()

	err := e.fetch(runCtx)
	stop()

	stopped := make(chan struct{})
	go func() {
		lanes.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(e.cfg.ShutdownGrace):
		e.logger.Warn("requests under way did not finish in time; their events will be sent again after a restart")
		cancelSends()
		<-stopped
	}
	<-committerDone
	e.commit(context.WithoutCancel(ctx))
	if cerr := e.reader.Close(); cerr != nil {
		e.logger.Warn("close kafka reader", "err", cerr)
	}
	e.logger.Info("emitter stopped")
	return err
}

// fetch reads messages and hands each to its connection's lane until ctx ends.
func (e *Emitter) fetch(ctx context.Context) error {
	for {
		m, err := e.reader.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch from %s: %w", e.cfg.Topic, err)
		}
		e.offsets.add(m)
		it := &item{msg: m, fetched: time.Now()}
		if err := decodeEvent(m.Value, &it.event); err != nil {
			if err := e.deadLetter(ctx, DeadLetter{Msg: m, Role: "emitter", Reason: err.Error()}); err != nil {
				return nil // only ctx ends the retries
			}
			continue
		}
		it.ts = transitions(&it.event)
		l := e.lanes[it.event.Tenant]
		if l != nil && l.profiles != nil {
			e.book.note(&it.event)
		}
		if len(it.ts) == 0 || l == nil {
			e.offsets.done(m) // nothing for Klaviyo, or a connection without a Klaviyo account
			continue
		}
		select {
		case l.in <- it:
			l.queued.Inc()
		case <-ctx.Done():
			return nil
		}
	}
}

// commitEvery commits done prefixes every interval until ctx ends.
func (e *Emitter) commitEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.commit(ctx)
		}
	}
}

func (e *Emitter) commit(ctx context.Context) {
	msgs := e.offsets.committable()
	if len(msgs) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.reader.CommitMessages(cctx, msgs...); err != nil {
		// Done messages stay done; the next commit covers them, and at worst they are
		// handled again, which Klaviyo's unique_id makes harmless.
		e.logger.Warn("commit failed", "err", err)
		return
	}
	e.offsets.committed(msgs)
}

// deadLetter publishes d, retrying until Kafka takes it or ctx ends, and marks its message
// done: a dead letter is never dropped on the way.
func (e *Emitter) deadLetter(ctx context.Context, ds ...DeadLetter) error {
	now := time.Now()
	out := make([]Message, len(ds))
	for i, d := range ds {
		out[i] = d.message(now)
		e.logger.Warn("dead-lettering ticket event", "at", position(d.Msg), "reason", d.Reason)
	}
	for attempt := 0; ; attempt++ {
		err := e.dlq.Publish(ctx, out...)
		if err == nil {
			break
		}
		e.logger.Error("publish dead letters failed, retrying", "err", err, "attempt", attempt+1)
		if err := e.backoff.Sleep(ctx, attempt); err != nil {
			return err
		}
	}
	for _, d := range ds {
		e.offsets.done(d.Msg)
	}
	e.metrics.deadLetters.Add(float64(len(ds)))
	return nil
}

// lane is one connection's way to Klaviyo.
type lane struct {
	e        *Emitter
	tenant   string
	route    Route
	in       chan *item
	carry    *item // taken from in, but for the next batch: it would not fit this one
	queued   prometheus.Gauge
	profiles *profiles // nil when Open_tickets is not kept
}

// run forms batches and sends them, Senders at a time, until ctx ends; then waits for the
// sends under way, which run on sendCtx.
func (l *lane) run(ctx, sendCtx context.Context) {
	slots := make(chan struct{}, l.e.cfg.Senders)
	var sends sync.WaitGroup
	defer sends.Wait()
	if l.profiles != nil {
		sends.Go(func() { l.profiles.run(ctx) })
	}
	for {
		// Take a slot, and wait for the rate limit, before forming the batch: events wait in
		// the queue, where later ones join them, rather than in batches formed early; under
		// a backlog every batch is a full one.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if l.waitForRate(ctx) != nil {
			return
		}
		batch := l.collect(ctx)
		if len(batch) == 0 || ctx.Err() != nil {
			return // stopping: what was collected is not done, so the next owner sends it
		}
		sends.Go(func() {
			defer func() { <-slots }()
			l.handle(ctx, sendCtx, batch)
		})
	}
}

// waitForRate waits until the connection's Klaviyo account would take a bulk request.
func (l *lane) waitForRate(ctx context.Context) error {
	for {
		d := l.route.Sender.Delay()
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// collect waits for one event, then takes more until the batch holds a bulk request's worth
// or Linger has passed.
func (l *lane) collect(ctx context.Context) []*item {
	var batch []*item
	if l.carry != nil {
		batch, l.carry = append(batch, l.carry), nil
	} else {
		select {
		case it := <-l.in:
			l.queued.Dec()
			batch = append(batch, it)
		case <-ctx.Done():
			return nil
		}
	}
	linger := time.NewTimer(l.e.cfg.Linger)
	defer linger.Stop()
	for metrics := len(batch[0].ts); metrics < maxBatchMetrics; {
		select {
		case it := <-l.in:
			l.queued.Dec()
			if metrics+len(it.ts) > maxBatchMetrics {
				l.carry = it // a bulk request holds 1,000 events: one more would cost a request of its own
				return batch
			}
			batch = append(batch, it)
			metrics += len(it.ts)
		case <-linger.C:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// maxBatchMetrics is one bulk request's worth (Klaviyo's limit of 1,000 events).
const maxBatchMetrics = 1000

// handle enriches a batch and delivers its metrics, retrying what fails transiently until it
// is accepted, RetryFor has passed (dead letter), or shutdown (given back: not marked done).
func (l *lane) handle(ctx, sendCtx context.Context, batch []*item) {
	e := l.e
	pending, dead := l.enrich(ctx, sendCtx, batch)
	if len(dead) > 0 && e.deadLetter(sendCtx, dead...) != nil {
		return
	}
	var delivered []*outgoing
	defer func() {
		if l.profiles != nil {
			l.profiles.mark(delivered)
		}
	}()
	for attempt := 0; len(pending) > 0; attempt++ {
		metrics := make([]Metric, len(pending))
		for i, p := range pending {
			metrics[i] = p.metric
		}
		errs := l.route.Sender.Deliver(sendCtx, metrics)
		var retry []*outgoing
		var dead []DeadLetter
		throttledOnly := true
		for i, p := range pending {
			err := errs[i]
			switch {
			case err == nil:
				delivered = append(delivered, p)
				if p.finish() {
					e.offsets.done(p.item.msg)
				}
				e.metrics.latency.Observe(time.Since(p.item.event.ReceivedAt).Seconds())
				e.metrics.events.WithLabelValues("delivered").Inc()
			case retryable(err) && time.Since(p.item.fetched) < e.cfg.RetryFor && ctx.Err() == nil:
				retry = append(retry, p)
				throttledOnly = throttledOnly && isThrottled(err)
			case retryable(err) && ctx.Err() != nil:
				// Shutting down: give the event back; the next owner sends it.
			default:
				reason := err.Error()
				if retryable(err) {
					reason = fmt.Sprintf("gave up after %s of retries: %s", e.cfg.RetryFor, reason)
				}
				if p.fail() {
					dead = append(dead, l.deadLetterOf(p.item, reason, err))
				}
				e.metrics.events.WithLabelValues("dead_letter").Inc()
			}
		}
		if len(dead) > 0 && e.deadLetter(sendCtx, dead...) != nil {
			return
		}
		pending = retry
		if len(pending) == 0 {
			return
		}
		e.metrics.retries.Add(float64(len(pending)))
		if !throttledOnly {
			// A throttled request waits in the sender's rate limit, which honours
			// Retry-After; anything else backs off here.
			l.logRetry(attempt, errs, len(pending))
			if e.backoff.Sleep(ctx, attempt) != nil {
				return
			}
		}
	}
}

func (l *lane) logRetry(attempt int, errs []error, n int) {
	var first error
	for _, err := range errs {
		if err != nil {
			first = err
			break
		}
	}
	level := slog.LevelWarn
	if attempt >= 5 {
		level = slog.LevelError
	}
	l.e.logger.Log(context.Background(), level, "klaviyo delivery failed, retrying",
		"connection", l.tenant, "metrics", n, "attempt", attempt+1, "err", first)
}

// Responder is implemented by errors that carry the failing answer (klaviyo.APIError), which
// a dead letter keeps in a header.
type Responder interface{ Response() string }

func (l *lane) deadLetterOf(it *item, reason string, err error) DeadLetter {
	d := DeadLetter{Msg: it.msg, Role: "emitter", Reason: reason, Extra: map[string]string{
		HeaderTenant: it.event.Tenant,
		HeaderTicket: strconv.FormatInt(it.event.Ticket.ID, 10),
	}}
	var r Responder
	if errors.As(err, &r) {
		d.Response = r.Response()
	}
	return d
}

// outgoing is one metric of an item; an item is done when all of its metrics are.
type outgoing struct {
	item      *item
	metric    Metric
	requester int64
	left      *int // the item's metrics not yet finished; shared by its outgoings
	failed    *bool
}

// finish records one delivered metric and reports whether the item is now done.
func (o *outgoing) finish() bool {
	*o.left--
	return *o.left == 0 && !*o.failed
}

// fail records a metric given up on and reports whether the item needs its dead letter
// (only once, whatever became of its other metric).
func (o *outgoing) fail() bool {
	*o.left--
	first := !*o.failed
	*o.failed = true
	return first
}

// retryable reports whether a failure may pass by itself: 5xx, 429, timeouts, the network.
// A 401 or 403 is final, as every other 4xx: a revoked key would otherwise hold the
// connection's events, and with them every other connection's, for as long as RetryFor; its
// dead letters wait for `zenklav replay --connection` once the key is fixed.
func retryable(err error) bool {
	return zenklav.Transient(err)
}

// Throttler is implemented by errors that are a rate limit's refusal (klaviyo.APIError of a
// 429): the sender's own limiter waits those out.
type Throttler interface{ Throttled() bool }

func isThrottled(err error) bool {
	var t Throttler
	return errors.As(err, &t) && t.Throttled()
}
