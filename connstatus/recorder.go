package connstatus

import (
	"maps"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// window is how far back errors are counted: "the last hour".
const window = time.Hour

// observation is what one process saw of one connection, as a record of Topic holds it.
type observation struct {
	Connection string    `json:"connection"`
	Role       string    `json:"role"`
	Instance   string    `json:"instance"`
	UpdatedAt  time.Time `json:"updated_at"`
	Webhook    time.Time `json:"webhook,omitzero"`
	Delivery   time.Time `json:"delivery,omitzero"`
	SMSIn      time.Time `json:"sms_in,omitzero"`
	SMSOut     time.Time `json:"sms_out,omitzero"`
	// Errors are by kind (Kind), each counted by minute over the last hour.
	Errors map[string]errorCount `json:"errors,omitempty"`
}

// errorCount is one kind of error of a connection, as one process saw it.
type errorCount struct {
	Minutes map[int64]int64 `json:"minutes"` // Unix minute → errors in it, the last hour's only
	Last    time.Time       `json:"last"`
	Message string          `json:"message"` // the last one's, in short (message)
}

// clone is o with maps of its own.
func (o observation) clone() observation {
	o.Errors = maps.Clone(o.Errors)
	for k, e := range o.Errors {
		e.Minutes = maps.Clone(e.Minutes)
		o.Errors[k] = e
	}
	return o
}

// prune drops the minutes of o's errors that are out of the window at now, and the kinds
// left with none.
func (o *observation) prune(now time.Time) {
	oldest := minute(now.Add(-window)) + 1
	for k, e := range o.Errors {
		for m := range e.Minutes {
			if m < oldest {
				delete(e.Minutes, m)
			}
		}
		if len(e.Minutes) == 0 {
			delete(o.Errors, k)
		}
	}
}

func minute(t time.Time) int64 { return t.Unix() / 60 }

// latest is the later of a and b.
func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Recorder keeps what the roles of one process tell of each connection, in memory: the hooks
// of ingest's webhooks, the emitter and the sms role call it. A nil *Recorder records
// nothing, so a part whose tests set none needs no check. Its Publisher shares it with the
// other processes.
type Recorder struct {
	now     func() time.Time
	metrics *recorderMetrics

	mu      sync.Mutex
	conns   map[string]*observation
	dirty   map[string]bool
	changed chan struct{} // has a value when something is dirty
}

type recorderMetrics struct {
	webhook  *prometheus.GaugeVec
	delivery *prometheus.GaugeVec
	sms      *prometheus.GaugeVec
	errors   *prometheus.CounterVec
}

// NewRecorder returns a Recorder that exports its observations to reg (when not nil), as
// this process saw them: zenklav_connection_last_webhook_timestamp_seconds,
// zenklav_connection_last_delivery_timestamp_seconds,
// zenklav_connection_last_sms_timestamp_seconds and zenklav_connection_errors_total. now is
// its clock; nil is time.Now.
func NewRecorder(reg prometheus.Registerer, now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	r := &Recorder{now: now, conns: map[string]*observation{}, dirty: map[string]bool{}, changed: make(chan struct{}, 1)}
	if reg != nil {
		f := promauto.With(reg)
		r.metrics = &recorderMetrics{
			webhook: f.NewGaugeVec(prometheus.GaugeOpts{
				Name: "zenklav_connection_last_webhook_timestamp_seconds",
				Help: "When this process last accepted a Zendesk webhook of the connection (Unix time); max() over the api processes is the connection's.",
			}, []string{"connection"}),
			delivery: f.NewGaugeVec(prometheus.GaugeOpts{
				Name: "zenklav_connection_last_delivery_timestamp_seconds",
				Help: "When this process last had a metric of the connection accepted by Klaviyo (Unix time).",
			}, []string{"connection"}),
			sms: f.NewGaugeVec(prometheus.GaugeOpts{
				Name: "zenklav_connection_last_sms_timestamp_seconds",
				Help: "When this process last moved an SMS of the connection, by direction: in (a customer's text onto its ticket), out (an agent's reply sent).",
			}, []string{"connection", "direction"}),
			errors: f.NewCounterVec(prometheus.CounterOpts{
				Name: "zenklav_connection_errors_total",
				Help: "Failed calls of the connection to Zendesk or Klaviyo by kind: SYSTEM_unauthorized (reconnect), _throttled, _unavailable (retried), _refused (dead letter).",
			}, []string{"connection", "kind"}),
		}
	}
	return r
}

// Webhook records that a Zendesk webhook of the connection was accepted (Kafka has it).
func (r *Recorder) Webhook(connection string, at time.Time) {
	if r == nil {
		return
	}
	r.update(connection, func(o *observation) { o.Webhook = latest(o.Webhook, at) })
	if r.metrics != nil {
		r.metrics.webhook.WithLabelValues(connection).Set(unix(at))
	}
}

// Delivered records that Klaviyo accepted a metric of the connection.
func (r *Recorder) Delivered(connection string, at time.Time) {
	if r == nil {
		return
	}
	r.update(connection, func(o *observation) { o.Delivery = latest(o.Delivery, at) })
	if r.metrics != nil {
		r.metrics.delivery.WithLabelValues(connection).Set(unix(at))
	}
}

// SMS records a message of the connection's SMS conversations: direction Inbound (a
// customer's text put on its ticket) or Outbound (an agent's reply that Klaviyo took).
func (r *Recorder) SMS(connection, direction string, at time.Time) {
	if r == nil {
		return
	}
	r.update(connection, func(o *observation) {
		if direction == Inbound {
			o.SMSIn = latest(o.SMSIn, at)
		} else {
			o.SMSOut = latest(o.SMSOut, at)
		}
	})
	if r.metrics != nil {
		r.metrics.sms.WithLabelValues(connection, direction).Set(unix(at))
	}
}

// Failed records a failure of the connection's work with system (Zendesk or Klaviyo): one
// metric, lookup or message that failed, sorted by Kind; an error that is not the system's
// doing (Kind says "") is not recorded. Only the error's kind and its caller-safe message
// are kept, never its cause.
func (r *Recorder) Failed(connection, system string, err error) {
	kind := Kind(system, err)
	if r == nil || kind == "" {
		return
	}
	msg, now := message(err), r.now()
	r.update(connection, func(o *observation) {
		if o.Errors == nil {
			o.Errors = map[string]errorCount{}
		}
		e := o.Errors[kind]
		if e.Minutes == nil {
			e.Minutes = map[int64]int64{}
		}
		e.Minutes[minute(now)]++
		e.Last, e.Message = latest(e.Last, now), msg
		o.Errors[kind] = e
		o.prune(now)
	})
	if r.metrics != nil {
		r.metrics.errors.WithLabelValues(connection, kind).Inc()
	}
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// update changes the connection's observation and marks it to publish.
func (r *Recorder) update(connection string, f func(*observation)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.conns[connection]
	if o == nil {
		o = &observation{Connection: connection}
		r.conns[connection] = o
	}
	f(o)
	r.dirty[connection] = true
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// snapshot is the connection's observation now, and whether there is one.
func (r *Recorder) snapshot(connection string) (observation, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.conns[connection]
	if o == nil {
		return observation{}, false
	}
	c := o.clone()
	c.prune(r.now())
	return c, true
}

// takeDirty returns the observations changed since the last call, and forgets that they
// changed.
func (r *Recorder) takeDirty() []observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	out := make([]observation, 0, len(r.dirty))
	for c := range r.dirty {
		o := r.conns[c]
		o.prune(now)
		out = append(out, o.clone())
	}
	clear(r.dirty)
	return out
}

// markDirty marks connections to publish again (their publication failed).
func (r *Recorder) markDirty(connections []string) {
	if len(connections) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range connections {
		r.dirty[c] = true
	}
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// adopt takes over the times of another process's observation (one that stopped): they
// become this process's, to publish.
func (r *Recorder) adopt(o observation) {
	r.update(o.Connection, func(mine *observation) {
		mine.Webhook = latest(mine.Webhook, o.Webhook)
		mine.Delivery = latest(mine.Delivery, o.Delivery)
		mine.SMSIn = latest(mine.SMSIn, o.SMSIn)
		mine.SMSOut = latest(mine.SMSOut, o.SMSOut)
	})
}
