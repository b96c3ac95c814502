// Package emitter is the emitter role: it turns ticket events into the Klaviyo metrics of the
// product rules (Opened Ticket, Resolved Ticket) on the requester's profile, exactly once and
// at Klaviyo's rate limits, and keeps Open_tickets on the profile. It is a handler on the
// kafka package's lanes: one lane per connection, so one account's backlog or outage never
// holds up another's.
package emitter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/health"
	"github.com/zenklav/zenklav/internal/retry"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
)

// Group is the emitter's consumer group.
const Group = "zenklav-emitter"

// ParkedGroup is the emitter's consumer group of the parked topic
// (schemas.TicketEventsParkedTopic): the events of a connection whose lane was full, delivered
// apart so they hold up no other connection.
const ParkedGroup = "zenklav-emitter-parked"

// The emitter's consumer-group timeouts (docs/operations.md). A member that died without
// leaving holds its partitions for SessionTimeout: 6 s, the least a broker allows by default,
// so that a crashed emitter's connections wait for their metrics no longer than that (a
// restarted one is back within 12 s). Its heartbeats do not wait for Klaviyo, so a slow
// account cannot make it miss one. A live member rejoins a rebalance as soon as its lanes stop
// fetching, well within RebalanceTimeout; the batches it has under way finish on their own
// context meanwhile.
const (
	SessionTimeout   = 6 * time.Second
	RebalanceTimeout = 10 * time.Second
)

// Route is where one connection's ticket events go.
type Route struct {
	Connection *zenklav.Connection // its brands
	Klaviyo    zenklav.Klaviyo     // its Klaviyo account
	Directory  zenklav.Directory   // its Zendesk account
}

// Config configures the emitter; zero durations take the defaults.
type Config struct {
	// Routes finds a connection's route as the connections stand now. A route without a
	// Klaviyo account passes its connection's events over (they reach ClickHouse, not
	// Klaviyo); the events of a connection not served (removed or disabled) are dead letters,
	// sent again by a replay once it is back. Events already in a lane when their connection
	// goes finish with the route they had.
	Routes *zenklav.Routes[Route]
	// States is where Open_tickets is counted from; nil leaves Open_tickets alone.
	States zenklav.TicketStore
	// RetryFor bounds how long a delivery that keeps failing transiently is retried before
	// it goes to the dead-letter topic (replay sends it again). Default 15 minutes.
	RetryFor time.Duration
	// BackfillAfter is the age (since the webhook arrived) past which a metric is sent as a
	// backfill: recorded in Klaviyo, but without triggering flows. It keeps a first start on
	// a topic full of history, a long outage or a replay from greeting customers about
	// tickets long closed. Default 1 hour.
	BackfillAfter time.Duration
	// Lanes shapes the connections' lanes. Its default queue of 2,000 events a connection
	// keeps a second and a half of an account's bulk ceiling in memory with the batches of
	// its four senders: requests stay full without a large backlog held decoded.
	Lanes kafka.LaneConfig
	// Health, when set, is told each connection's Klaviyo and Zendesk state (parts
	// "zenklav-emitter/CONNECTION/klaviyo" and ".../zendesk"), so a lasting failure is said
	// once, not at every retry.
	Health *health.Tracker
	// Status, when set, is told of each connection's metrics delivered and of its failed
	// calls to Klaviyo and Zendesk (a connstatus.Recorder): the health page's view.
	Status Status
}

// Status is told what becomes of a connection's deliveries and lookups.
type Status interface {
	Delivered(connection string, at time.Time)
	// Failed is told of a failed call to system (connstatus.Klaviyo or connstatus.Zendesk).
	Failed(connection, system string, err error)
}

// noStatus is the Status of an emitter that has none.
type noStatus struct{}

func (noStatus) Delivered(string, time.Time)  {}
func (noStatus) Failed(string, string, error) {}

// Emitter is the emitter role.
type Emitter struct {
	cfg      Config
	logger   *slog.Logger
	consumer *kafka.Consumer
	dlq      *kafka.DeadLetters
	cache    *directoryCache
	book     *ticketBook
	metrics  metrics
	retry    retry.Policy

	mu       sync.Mutex
	routes   map[string]*route    // by connection id, as last looked up
	profiles map[string]*profiles // each connection's Open_tickets worker, once started
	run      context.Context      // what the workers run in: Run's
	workers  sync.WaitGroup
}

// route is a connection's Route with its Open_tickets worker, and the states of its accounts.
type route struct {
	Route
	id       string
	profiles *profiles // nil when Open_tickets is not kept
	klaviyo  *health.Part
	zendesk  *health.Part
}

type metrics struct {
	events          *prometheus.CounterVec // by connection and result
	parked          *prometheus.CounterVec // by connection
	latency         prometheus.Histogram
	retries         prometheus.Counter
	profileFailures prometheus.Counter
}

// New returns the emitter, consuming with consumer (in Group, with the dead letters of the
// role's topic).
func New(logger *slog.Logger, reg prometheus.Registerer, cfg Config, consumer *kafka.Consumer) (*Emitter, error) {
	if consumer == nil || consumer.DeadLetters() == nil || cfg.Routes == nil {
		return nil, errors.New("emitter needs its routes and a consumer with a dead-letter topic")
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = 15 * time.Minute
	}
	if cfg.BackfillAfter <= 0 {
		cfg.BackfillAfter = time.Hour
	}
	if cfg.Health == nil {
		cfg.Health = health.NewTracker(logger, nil)
	}
	if cfg.Status == nil {
		cfg.Status = noStatus{}
	}
	m := newMetrics(reg, &cfg.Lanes, consumer.DeadLetters())
	if o := cfg.Lanes.Overflow; o != nil {
		counted := *o
		counted.Publisher = parkCounter{Publisher: o.Publisher, parked: m.parked}
		cfg.Lanes.Overflow = &counted
	}
	e := &Emitter{
		cfg: cfg, logger: logger, consumer: consumer, dlq: consumer.DeadLetters(),
		routes: map[string]*route{}, profiles: map[string]*profiles{}, cache: newDirectoryCache(), book: newTicketBook(), metrics: m,
		retry: retry.Policy{Initial: 200 * time.Millisecond, Max: 30 * time.Second},
	}
	return e, nil
}

// newMetrics makes the emitter's metrics, registered with reg: its own, its lanes' queues and
// its dead letters.
func newMetrics(reg prometheus.Registerer, lanes *kafka.LaneConfig, dlq *kafka.DeadLetters) metrics {
	f := promauto.With(reg)
	m := metrics{
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "zenklav_emitter_metrics_total",
			Help: "Klaviyo metrics by connection and result: delivered (accepted by Klaviyo), dead_letter (given up, in the DLQ).",
		}, []string{"connection", "result"}),
		parked: f.NewCounterVec(prometheus.CounterOpts{
			Name: "zenklav_emitter_parked_events_total",
			Help: "Ticket events of the connection parked in the parked topic: its lane was full and had finished nothing for a while (its Klaviyo failing).",
		}, []string{"connection"}),
		latency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "zenklav_emitter_delivery_seconds",
			Help:    "From the webhook's arrival to Klaviyo's acceptance of its metric.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		retries: f.NewCounter(prometheus.CounterOpts{
			Name: "zenklav_emitter_retries_total", Help: "Metric deliveries tried again after a transient failure.",
		}),
		profileFailures: f.NewCounter(prometheus.CounterOpts{
			Name: "zenklav_emitter_open_tickets_failures_total",
			Help: "Batches whose Open_tickets profile updates were given up after retries (the counts are stale until the requester's next ticket change).",
		}),
	}
	lanes.Queued = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "zenklav_emitter_queued_events", Help: "Ticket events waiting in a connection's lane.",
	}, []string{"connection"})
	dlq.Written = f.NewCounter(prometheus.CounterOpts{
		Name: "zenklav_emitter_dead_letters_total", Help: "Ticket events the emitter sent to the dead-letter topic.",
	})
	return m
}

// item is one ticket event on its way through a lane.
type item struct {
	event     schemas.TicketEvent
	ts        []zenklav.Transition
	requester int64 // the requester's Zendesk id, once known
	left      int   // its metrics not yet finished
	failed    bool  // one of its metrics was given up on: it has its dead letter
}

// delivery is an item as the lanes carry it.
type delivery = kafka.Delivery[*item]

// Run consumes until ctx ends or Kafka fails for good (see kafka.RunLanes). The Open_tickets
// workers run beside the lanes and stop with them.
func (e *Emitter) Run(ctx context.Context) error {
	e.logger.Info("emitter started")
	ctx, cancel := context.WithCancel(ctx)
	e.mu.Lock()
	e.run = ctx
	e.mu.Unlock()
	err := kafka.RunLanes(ctx, e.consumer, e.cfg.Lanes, kafka.LaneHandler[*item](e))
	cancel()
	e.workers.Wait()
	e.logger.Info("emitter stopped")
	return err
}

// route returns the connection's route as the connections stand now, or, for one no longer
// served, the last route it had, and whether it is served. It is nil for a connection
// without a Klaviyo account.
func (e *Emitter) route(id string) (*route, bool) {
	cur, served := e.cfg.Routes.Current(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.routes[id]
	switch {
	case !served:
		return old, false
	case cur.Klaviyo == nil || cur.Directory == nil || cur.Connection == nil:
		return nil, true
	case old != nil && old.Route == cur:
		return old, true
	}
	r := &route{Route: cur, id: id, klaviyo: e.cfg.Health.Part(Group + "/" + id + "/klaviyo"), zendesk: e.cfg.Health.Part(Group + "/" + id + "/zendesk")}
	if e.cfg.States != nil {
		r.profiles = e.profilesOf(r)
	}
	e.routes[id] = r
	return r, true
}

// profilesOf returns the route's Open_tickets worker, started on first use, with the route's
// Klaviyo account (which a change of the connection may have replaced). e.mu is held.
func (e *Emitter) profilesOf(r *route) *profiles {
	p := e.profiles[r.id]
	if p == nil {
		p = &profiles{connection: r.id, state: r.klaviyo, states: e.cfg.States, book: e.book, logger: e.logger,
			failures: e.metrics.profileFailures, retry: e.retry, dirty: map[int64]zenklav.OpenTickets{}, wake: make(chan struct{}, 1)}
		e.profiles[r.id] = p
		ctx := e.run
		if ctx == nil {
			ctx = context.Background() // not running yet (tests calling the handler directly)
		}
		e.workers.Go(func() { p.run(ctx) })
	}
	p.use(r.Klaviyo)
	return p
}

// Route decodes a ticket event and sends it to its connection's lane, weighed by its metrics.
// Events that make no metric, or belong to a connection without a Klaviyo account, are done
// at once.
func (e *Emitter) Route(m kafka.Message) (kafka.Routed[*item], error) {
	it := &item{}
	if err := schemas.DecodeTicketEvent(m.Value, &it.event); err != nil {
		return kafka.Routed[*item]{}, err
	}
	it.ts = zenklav.Transitions(&it.event)
	r, served := e.route(it.event.Connection)
	if !served {
		return kafka.Routed[*item]{}, fmt.Errorf("connection %q is not connected (removed or disabled): "+
			"its ticket events wait here until it is back, then `zenklav replay --role emitter` sends them", it.event.Connection)
	}
	if r != nil && r.profiles != nil {
		e.book.note(&it.event)
	}
	if len(it.ts) == 0 || r == nil {
		return kafka.Routed[*item]{}, nil
	}
	return kafka.Routed[*item]{Lane: r.id, Value: it, Weight: len(it.ts)}, nil
}

// Ready waits until the connection's Klaviyo account would take a full delivery.
func (e *Emitter) Ready(ctx context.Context, lane string) error {
	r, _ := e.route(lane)
	k := r.Klaviyo
	for d := k.DeliverDelay(); d > 0; d = k.DeliverDelay() {
		if err := retry.Wait(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// MaxWeight is one delivery request's worth of metrics.
func (e *Emitter) MaxWeight(lane string) int {
	r, _ := e.route(lane)
	return r.Klaviyo.MaxDeliver()
}

// failure is a delivery given up on, and why.
type failure struct {
	d      *delivery
	reason string
	err    error // keeps the failing answer, when there was one
}

// deadLetter writes the dead letters of failures and marks their deliveries done; it fails
// only when ctx ends first, and then nothing is done.
func (e *Emitter) deadLetter(ctx context.Context, failures []failure) error {
	if len(failures) == 0 {
		return nil
	}
	letters := make([]kafka.DeadLetter, len(failures))
	for i, f := range failures {
		letters[i] = kafka.DeadLetter{Msg: f.d.Msg, Reason: f.reason, Response: zenklav.Response(f.err), Extra: map[string]string{
			kafka.HeaderConnection: f.d.Value.event.Connection,
			kafka.HeaderTicket:     strconv.FormatInt(f.d.Value.event.Ticket.ID, 10),
		}}
	}
	if err := e.dlq.Write(ctx, letters...); err != nil {
		return err
	}
	for _, f := range failures {
		f.d.Done()
	}
	return nil
}

// parkCounter is the parked topic's publisher, counting each connection's events as Kafka
// takes them. A parked message keeps its event's key, connection/ticket (ingest's), which
// names the connection: only events routed to a connection's lane are parked.
type parkCounter struct {
	zenklav.Publisher
	parked *prometheus.CounterVec
}

func (p parkCounter) Publish(ctx context.Context, msgs ...zenklav.Message) error {
	if err := p.Publisher.Publish(ctx, msgs...); err != nil {
		return err
	}
	for _, m := range msgs {
		connection, _, _ := bytes.Cut(m.Key, []byte("/"))
		p.parked.WithLabelValues(string(connection)).Inc()
	}
	return nil
}
