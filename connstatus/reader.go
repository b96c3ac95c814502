package connstatus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/zenklav/zenklav"
)

// Report is a connection's health, as an admin reads it (GET
// /api/v1/connections/{id}/health, the admin page).
type Report struct {
	Connection string    `json:"connection"`
	At         time.Time `json:"at"` // when the report was made
	// LastWebhook is when a Zendesk webhook of the connection was last accepted (in Kafka);
	// LastDelivery when Klaviyo last accepted one of its metrics. Zero: never, as far as the
	// status topic remembers.
	LastWebhook  time.Time `json:"last_webhook,omitzero"`
	LastDelivery time.Time `json:"last_delivery,omitzero"`
	// Lag is how many messages each consumer group has yet to handle, by group, for all
	// connections together (a group's lag is not split by connection). A group that has
	// committed nothing yet (its role does not run) is left out.
	Lag map[string]int64 `json:"lag"`
	// DeadLetters counts the connection's messages in the dead-letter topics (by their
	// connection header, or their key when they have none). `zenklav
	// replay` sends copies back and leaves them there, so this counts those replayed too,
	// until the topics' retention drops them; LastDeadLetter says when the newest came.
	DeadLetters    int       `json:"dead_letters"`
	LastDeadLetter time.Time `json:"last_dead_letter,omitzero"`
	// Errors are the last hour's failed calls to Zendesk and Klaviyo, by kind, the most
	// urgent first.
	Errors []ErrorSummary `json:"errors"`
	SMS    SMSStatus      `json:"sms"`
	// Healthy is true when Problems is empty.
	Healthy bool `json:"healthy"`
	// Problems say, in plain sentences for the admin, what is wrong and what to do.
	Problems []string `json:"problems"`
}

// ErrorSummary is one kind of error of the last hour.
type ErrorSummary struct {
	Kind    string    `json:"kind"` // e.g. klaviyo_unauthorized (Kind)
	Count   int64     `json:"count"`
	Last    time.Time `json:"last"`
	Message string    `json:"message"` // the last one's, in short: the operation and the status
	Advice  string    `json:"advice"`  // what to do, e.g. "reconnect Klaviyo"
}

// SMSStatus is the connection's SMS conversations.
type SMSStatus struct {
	Enabled bool `json:"enabled"`
	// LastMessage is the newer of LastInbound and LastOutbound, and LastDirection its
	// direction (Inbound or Outbound).
	LastMessage   time.Time `json:"last_message,omitzero"`
	LastDirection string    `json:"last_direction,omitempty"`
	LastInbound   time.Time `json:"last_inbound,omitzero"`
	LastOutbound  time.Time `json:"last_outbound,omitzero"`
}

// Kafka is what a Reader asks Kafka itself (KafkaSource).
type Kafka interface {
	// Lag is each consumer group's lag (see Report.Lag).
	Lag(ctx context.Context) (map[string]int64, error)
	// DeadLetters counts the connection's dead letters, and says when the newest came.
	DeadLetters(ctx context.Context, connection string) (int, time.Time, error)
}

// ReaderConfig configures a Reader.
type ReaderConfig struct {
	Table Table // the status topic, followed
	// Local, when set, is this process's publisher: its own observations are read live
	// rather than from its last record.
	Local *Publisher
	// Connection finds a connection as the connections stand now; nil when there is none.
	Connection func(id string) *zenklav.Connection
	Kafka      Kafka         // nil leaves lag and dead letters out
	LagWarn    int64         // a group further behind is a problem; 10,000 when 0
	Timeout    time.Duration // bounds each read of Kafka; 3 s when 0
	Now        func() time.Time
}

// Reader makes the connections' Reports, from any api process.
type Reader struct{ cfg ReaderConfig }

// NewReader returns a Reader.
func NewReader(cfg ReaderConfig) (*Reader, error) {
	if cfg.Table == nil || cfg.Connection == nil {
		return nil, errors.New("connstatus: a reader needs the status table and the connections")
	}
	if cfg.LagWarn <= 0 {
		cfg.LagWarn = 10_000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reader{cfg: cfg}, nil
}

// Known says whether zenklav has the connection, as the connections stand now.
func (r *Reader) Known(id string) bool { return r.cfg.Connection(id) != nil }

// Report returns the connection's health: ENOTFOUND for a connection zenklav does not have.
// What cannot be read (Kafka away) is left out, and said among the problems.
func (r *Reader) Report(ctx context.Context, id string) (Report, error) {
	c := r.cfg.Connection(id)
	if c == nil {
		return Report{}, zenklav.Errorf(zenklav.ENOTFOUND, "no connection %q", id)
	}
	now := r.cfg.Now().UTC()
	rep := Report{Connection: id, At: now, Lag: map[string]int64{}, Errors: []ErrorSummary{}, Problems: []string{}}
	var unread []string
	merged, err := r.merged(ctx, id, now)
	if err != nil {
		unread = append(unread, "the status topic ("+err.Error()+")")
	}
	rep.apply(merged, now)
	if r.cfg.Kafka != nil {
		unread = append(unread, r.readKafka(ctx, &rep)...)
	}
	rep.SMS.Enabled = c.SMS.Enabled
	rep.Problems = problems(c, &rep, unread, r.cfg.LagWarn)
	rep.Healthy = len(rep.Problems) == 0
	return rep, nil
}

// merged is every process's observation of the connection merged into one: the latest of
// each time, the errors' minutes summed. A failure to catch up with the topic still merges
// what was read, and returns the error.
func (r *Reader) merged(ctx context.Context, id string, now time.Time) (observation, error) {
	sctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	err := r.cfg.Table.Sync(sctx)
	all := observation{Connection: id, Errors: map[string]errorCount{}}
	var ownKey string
	if r.cfg.Local != nil {
		var own observation
		var ok bool
		if own, ownKey, ok = r.cfg.Local.local(id); ok {
			merge(&all, own)
		}
	}
	for _, key := range r.cfg.Table.Keys() {
		if key == ownKey {
			continue
		}
		v, ok := r.cfg.Table.Get(key)
		var o observation
		if !ok || json.Unmarshal(v, &o) != nil || o.Connection != id {
			continue
		}
		merge(&all, o)
	}
	all.prune(now)
	return all, err
}

// merge adds o to all.
func merge(all *observation, o observation) {
	all.Webhook = latest(all.Webhook, o.Webhook)
	all.Delivery = latest(all.Delivery, o.Delivery)
	all.SMSIn = latest(all.SMSIn, o.SMSIn)
	all.SMSOut = latest(all.SMSOut, o.SMSOut)
	for kind, e := range o.Errors {
		sum := all.Errors[kind]
		if sum.Minutes == nil {
			sum.Minutes = map[int64]int64{}
		}
		for m, n := range e.Minutes {
			sum.Minutes[m] += n
		}
		if e.Last.After(sum.Last) {
			sum.Last, sum.Message = e.Last, e.Message
		}
		all.Errors[kind] = sum
	}
}

// apply sets what the observations tell.
func (rep *Report) apply(o observation, now time.Time) {
	rep.LastWebhook, rep.LastDelivery = o.Webhook, o.Delivery
	rep.SMS.LastInbound, rep.SMS.LastOutbound = o.SMSIn, o.SMSOut
	switch {
	case o.SMSIn.IsZero() && o.SMSOut.IsZero():
	case o.SMSIn.After(o.SMSOut):
		rep.SMS.LastMessage, rep.SMS.LastDirection = o.SMSIn, Inbound
	default:
		rep.SMS.LastMessage, rep.SMS.LastDirection = o.SMSOut, Outbound
	}
	for kind, e := range o.Errors {
		var n int64
		for _, c := range e.Minutes {
			n += c
		}
		rep.Errors = append(rep.Errors, ErrorSummary{Kind: kind, Count: n, Last: e.Last, Message: e.Message, Advice: Advice(rep.Connection, kind)})
	}
	slices.SortFunc(rep.Errors, func(a, b ErrorSummary) int {
		return cmp.Or(cmp.Compare(urgency(a.Kind), urgency(b.Kind)), b.Last.Compare(a.Last), cmp.Compare(a.Kind, b.Kind))
	})
}

// urgency orders kinds: what needs the admin first.
func urgency(kind string) int {
	for i, k := range []string{Unauthorized, Refused, Unavailable, Throttled} {
		if len(kind) > len(k) && kind[len(kind)-len(k):] == k {
			return i
		}
	}
	return 4
}

// readKafka reads the lag and the dead letters side by side, and returns what it could not
// read.
func (r *Reader) readKafka(ctx context.Context, rep *Report) (unread []string) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var lagErr, dlqErr error
	var lag map[string]int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		lag, lagErr = r.cfg.Kafka.Lag(ctx)
	}()
	rep.DeadLetters, rep.LastDeadLetter, dlqErr = r.cfg.Kafka.DeadLetters(ctx, rep.Connection)
	<-done
	for g, n := range lag {
		rep.Lag[g] = n
	}
	if lagErr != nil {
		unread = append(unread, "the consumer groups' lag ("+lagErr.Error()+")")
	}
	if dlqErr != nil {
		unread = append(unread, "the dead-letter topics ("+dlqErr.Error()+")")
	}
	return unread
}
