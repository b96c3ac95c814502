package emitter

import (
	"context"
	"fmt"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstatus"
)

// outgoing is one metric of a delivery; the delivery is done when all of its metrics are.
type outgoing struct {
	d       *delivery
	metric  zenklav.MetricEvent
	lastErr error // why its last delivery failed, when it is retried
}

// finish records one delivered metric and reports whether its delivery is now done.
func (o *outgoing) finish() bool {
	it := o.d.Value
	it.left--
	return it.left == 0 && !it.failed
}

// fail records a metric given up on and reports whether its delivery needs its dead letter
// (only once, whatever became of its other metric).
func (o *outgoing) fail() bool {
	it := o.d.Value
	it.left--
	first := !it.failed
	it.failed = true
	return first
}

// Handle enriches a batch of one connection and delivers its metrics, retrying what fails
// transiently until it is accepted, RetryFor has passed (dead letter), or shutdown (given
// back: not marked done).
func (e *Emitter) Handle(ctx, sendCtx context.Context, lane string, batch []*delivery) {
	r, _ := e.route(lane) // a lane is made by a route, which is kept once its connection goes
	pending, dead := e.enrich(ctx, sendCtx, r, batch)
	if e.deadLetter(sendCtx, dead) != nil {
		return
	}
	var delivered []*outgoing
	defer func() {
		if r.profiles != nil {
			r.profiles.mark(delivered)
		}
	}()
	for attempt := 0; len(pending) > 0; attempt++ {
		ok, retryable, throttledOnly, err := e.deliver(ctx, sendCtx, r, pending)
		delivered = append(delivered, ok...)
		if len(ok) > 0 {
			r.klaviyo.Working()
		}
		if err != nil {
			return
		}
		if pending = retryable; len(pending) == 0 {
			return
		}
		e.metrics.retries.Add(float64(len(pending)))
		if !throttledOnly {
			// A throttled request waits in the account's rate limit, which honours
			// Retry-After; anything else backs off here.
			e.logger.Debug("klaviyo delivery failed, retrying", "connection", lane, "metrics", len(pending),
				"attempt", attempt+1, "err", pending[0].lastErr)
			r.klaviyo.Retrying(attempt, pending[0].lastErr)
			if e.retry.Sleep(ctx, attempt) != nil {
				return
			}
		}
	}
}

// deliver makes one attempt at delivering pending, and sorts what became of each metric:
// delivered, to retry (and whether all of those were throttled), or given up on (written
// as dead letters here). err is set only when ctx ended before the dead letters were written.
func (e *Emitter) deliver(ctx, sendCtx context.Context, r *route, pending []*outgoing) (
	delivered, retryable []*outgoing, throttledOnly bool, err error,
) {
	events := make([]zenklav.MetricEvent, len(pending))
	for i, p := range pending {
		events[i] = p.metric
	}
	errs := r.Klaviyo.Deliver(sendCtx, events)
	var dead []failure
	throttledOnly = true
	for i, p := range pending {
		err := errs[i]
		switch {
		case err == nil:
			delivered = append(delivered, p)
			if p.finish() {
				p.d.Done()
			}
			e.metrics.latency.Observe(time.Since(p.d.Value.event.ReceivedAt).Seconds())
			e.metrics.events.WithLabelValues(r.id, "delivered").Inc()
		case zenklav.Transient(err) && time.Since(p.d.Fetched) < e.cfg.RetryFor && ctx.Err() == nil:
			e.cfg.Status.Failed(r.id, connstatus.Klaviyo, err)
			p.lastErr = err
			retryable = append(retryable, p)
			throttledOnly = throttledOnly && zenklav.Throttled(err)
		case zenklav.Transient(err) && ctx.Err() != nil:
			// Shutting down: give the event back; the next owner sends it.
		default:
			e.cfg.Status.Failed(r.id, connstatus.Klaviyo, err)
			reason := err.Error()
			if zenklav.Transient(err) {
				reason = fmt.Sprintf("gave up after %s of retries: %s", e.cfg.RetryFor, reason)
			}
			if p.fail() {
				dead = append(dead, failure{p.d, reason, err})
			}
			e.metrics.events.WithLabelValues(r.id, "dead_letter").Inc()
		}
	}
	if len(delivered) > 0 {
		e.cfg.Status.Delivered(r.id, time.Now())
	}
	return delivered, retryable, throttledOnly, e.deadLetter(sendCtx, dead)
}
