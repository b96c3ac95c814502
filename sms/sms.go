// Package sms is the sms role: it turns a consented Klaviyo SMS subscriber's texts into Zendesk
// tickets and comments under the guide's rules (rules.go), exactly once (state.go), one lane per
// connection on the kafka package's consumer framework, with the messages of one customer
// handled in order.
package sms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstatus"
	"github.com/zenklav/zenklav/internal/retry"
	"github.com/zenklav/zenklav/kafka"
)

// Group is the sms role's consumer group.
const Group = "zenklav-sms"

// Route is one connection's accounts, as the sms role uses them.
type Route struct {
	Connection *zenklav.Connection
	Desk       zenklav.Desk
	Directory  zenklav.Directory // who wrote a reply, and the requester's phone
	Klaviyo    zenklav.Conversations
}

// Config configures the handler.
type Config struct {
	// Routes finds the connections with SMS on, as they stand now: a message of one not
	// served is a dead letter (replayed once it is back); messages already in a lane when
	// their connection goes finish with the route they had.
	Routes *zenklav.Routes[Route]
	Store  Store
	// RetryFor bounds how long a conversation's writes that keep failing transiently are
	// retried before its messages become dead letters (default 15 minutes).
	RetryFor time.Duration
	// ConsentTTL is how long a profile's SMS consent is trusted (default a minute): long
	// enough that a burst of texts asks Klaviyo once, short enough that a STOP counts soon.
	ConsentTTL time.Duration
	Now        func() time.Time
	// Status, when set, is told of each connection's texts and replies moved and of its
	// failed calls to Zendesk and Klaviyo (a connstatus.Recorder): the health page's view.
	Status Status
}

// Handler is the sms role's lane handler.
type Handler struct {
	cfg     Config
	logger  *slog.Logger
	dlq     *kafka.DeadLetters
	retry   retry.Policy
	metrics *prometheus.CounterVec // by connection and result
	delay   prometheus.ObserverVec // by connection: webhook in → on the ticket
	consent consentCache
}

var _ kafka.LaneHandler[*event] = (*Handler)(nil)

// New returns the handler; dlq is where it sends what it gives up on.
func New(logger *slog.Logger, reg prometheus.Registerer, cfg Config, dlq *kafka.DeadLetters) (*Handler, error) {
	if cfg.Store == nil || dlq == nil || cfg.Routes == nil {
		return nil, errors.New("sms: needs routes, a conversation store and a dead-letter topic")
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = 15 * time.Minute
	}
	if cfg.ConsentTTL <= 0 {
		cfg.ConsentTTL = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Status == nil {
		cfg.Status = noStatus{}
	}
	return &Handler{
		cfg: cfg, logger: logger, dlq: dlq,
		retry: retry.Policy{Initial: 200 * time.Millisecond, Max: 30 * time.Second},
		metrics: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "zenklav_sms_messages_total",
			Help: "SMS events by connection and what became of them: ticket_created, followed_up, commented, reopened, " +
				"ignored_keyword, not_consented, cannot_receive, duplicate, sent_noted, dead_letter.",
		}, []string{"connection", "result"}),
		delay: promauto.With(reg).NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zenklav_sms_inbound_delay_seconds",
			Help:    "From a customer's text reaching zenklav (the Klaviyo webhook) to its place on the Zendesk ticket, by connection.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300},
		}, []string{"connection"}),
		consent: consentCache{entries: map[string]consentEntry{}},
	}, nil
}

// Route sends a message to its connection's lane; a message that is not an sms_event.v1, or
// of a connection without SMS, is a dead letter.
func (h *Handler) Route(m kafka.Message) (kafka.Routed[*event], error) {
	e, err := decode(m)
	if err != nil {
		return kafka.Routed[*event]{}, err
	}
	if _, ok := h.cfg.Routes.Current(e.Connection); !ok {
		return kafka.Routed[*event]{}, fmt.Errorf("connection %q has no SMS conversations here", e.Connection)
	}
	return kafka.Routed[*event]{Lane: e.Connection, Value: e, Weight: 1}, nil
}

// Ready lets a lane form its batch at once: the Zendesk and Klaviyo clients wait for their
// accounts' limits themselves.
func (h *Handler) Ready(context.Context, string) error { return nil }

// MaxWeight is the most messages one batch of a connection holds.
func (h *Handler) MaxWeight(string) int { return 200 }

// conversationsAtOnce is how many customers' conversations of one batch are handled side by
// side: Zendesk's rate limit, not zenklav, sets the pace beyond that.
const conversationsAtOnce = 4

// Handle handles a batch of one connection: its messages by customer, each customer's in
// order, several customers side by side.
func (h *Handler) Handle(ctx, sendCtx context.Context, lane string, batch []*kafka.Delivery[*event]) {
	r, _ := h.cfg.Routes.Last(lane)
	if h.retry.Do(ctx, h.logger, "sms: catching up with the conversations failed, retrying", h.cfg.Store.Sync) != nil {
		return // shutting down: the batch is handled again after a restart
	}
	slots := make(chan struct{}, conversationsAtOnce)
	var wg sync.WaitGroup
	for _, group := range byCustomer(batch) {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			h.conversation(ctx, sendCtx, r, group)
		})
	}
	wg.Wait()
}

// byCustomer splits a batch into each customer's messages, in the order Klaviyo says they
// happened: a webhook Klaviyo delivered late (a retry) still takes its place in the comment.
func byCustomer(batch []*kafka.Delivery[*event]) [][]*kafka.Delivery[*event] {
	index := map[string]int{}
	var out [][]*kafka.Delivery[*event]
	for _, d := range batch {
		k := d.Value.key()
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], d)
	}
	for _, group := range out {
		slices.SortStableFunc(group, func(a, b *kafka.Delivery[*event]) int { return a.Value.At.Compare(b.Value.At) })
	}
	return out
}

// conversation handles one customer's messages of a batch, retrying what fails transiently
// until RetryFor, after which they are dead letters; on shutdown it leaves them undone.
func (h *Handler) conversation(ctx, sendCtx context.Context, r Route, ds []*kafka.Delivery[*event]) {
	for attempt := 0; ; attempt++ {
		err := h.step(sendCtx, r, ds)
		if err == nil {
			for _, d := range ds {
				if d.Value.Kind == kindInbound && !d.Value.Received.IsZero() {
					h.delay.WithLabelValues(r.Connection.ID).Observe(time.Since(d.Value.Received).Seconds())
				}
				if d.Value.Kind == kindInbound {
					h.cfg.Status.SMS(r.Connection.ID, connstatus.Inbound, h.cfg.Now())
				}
				d.Done()
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		failed(h.cfg.Status, r.Connection.ID, err)
		if !zenklav.Transient(err) || time.Since(ds[0].Fetched) >= h.cfg.RetryFor {
			h.deadLetter(sendCtx, r, ds, err)
			return
		}
		retry.Log(ctx, h.logger, "sms: handling a conversation failed, retrying", attempt, err, "connection", r.Connection.ID)
		// Zendesk's 429 says when to come back (its 30 updates per ticket in 10 minutes
		// can mean minutes); otherwise back off.
		if retry.Wait(ctx, max(h.retry.Delay(attempt), zenklav.RetryAfter(err))) != nil {
			return
		}
	}
}

func (h *Handler) deadLetter(ctx context.Context, r Route, ds []*kafka.Delivery[*event], err error) {
	letters := make([]kafka.DeadLetter, len(ds))
	for i, d := range ds {
		letters[i] = kafka.DeadLetter{Msg: d.Msg, Reason: err.Error(), Response: zenklav.Response(err),
			Extra: map[string]string{kafka.HeaderConnection: r.Connection.ID}}
	}
	if h.dlq.Write(ctx, letters...) != nil {
		return
	}
	for _, d := range ds {
		d.Done()
	}
	h.metrics.WithLabelValues(r.Connection.ID, "dead_letter").Add(float64(len(ds)))
}
