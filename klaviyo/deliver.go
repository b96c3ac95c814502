package klaviyo

import (
	"context"
	"sync"
	"time"

	"github.com/zenklav/zenklav"
)

// isolateConcurrency bounds the single requests that find the bad events of a refused bulk
// request; the Create Event bucket paces them anyway.
const isolateConcurrency = 16

// Deliver records events with as few requests as Klaviyo's limits allow, and says what became
// of each: errs[i] is nil when events[i] was accepted. A lone event goes through Create Event,
// whose limit is 35 times the bulk one; more go in bulk requests of at most MaxBulkEvents
// events, halved while their body would be over MaxPayloadBytes. An event Klaviyo would
// refuse is refused here, alone. When Klaviyo refuses a whole bulk request for good (4xx),
// its events are sent one by one, so one bad event costs only itself. Errors keep their
// kinds: EUNAVAILABLE is worth retrying.
func (c *Client) Deliver(ctx context.Context, events []Event) []error {
	errs := make([]error, len(events))
	var valid []int
	for i, e := range events {
		if err := validateEvent(e); err != nil {
			errs[i] = zenklav.Wrap(zenklav.EINVALID, err, "event %q", e.UniqueID)
			continue
		}
		valid = append(valid, i)
	}
	if len(valid) == 1 {
		errs[valid[0]] = c.CreateEvent(ctx, events[valid[0]])
		return errs
	}
	for start := 0; start < len(valid); start += MaxBulkEvents {
		c.deliverBulk(ctx, events, valid[start:min(start+MaxBulkEvents, len(valid))], errs)
	}
	return errs
}

// The Client is a zenklav.Klaviyo: the domain's view of the account.
var _ zenklav.Klaviyo = (*Client)(nil)

// DeliverDelay is how long a bulk request would wait for the account's rate limit now. A
// caller that forms its batch only then lets events wait unbatched, where later ones can
// still join them, rather than in a formed batch.
func (c *Client) DeliverDelay() time.Duration {
	return c.buckets["/api/event-bulk-create-jobs"].delay()
}

// MaxDeliver is the most events one bulk request holds.
func (c *Client) MaxDeliver() int { return MaxBulkEvents }

// deliverBulk sends the events at idx in one bulk request. The body's size is known only once
// it is encoded, which the request does anyway: a body over the limit is split in halves then,
// rather than every event being encoded once more beforehand to measure it.
func (c *Client) deliverBulk(ctx context.Context, events []Event, idx []int, errs []error) {
	batch := make([]Event, len(idx))
	for j, i := range idx {
		batch[j] = events[i]
	}
	err := c.BulkCreateEvents(ctx, batch)
	switch {
	case zenklav.ErrorCode(err) == zenklav.ETOOLARGE && len(idx) > 1:
		half := len(idx) / 2
		c.deliverBulk(ctx, events, idx[:half], errs)
		c.deliverBulk(ctx, events, idx[half:], errs)
	case err == nil || zenklav.Transient(err) || zenklav.ErrorCode(err) == zenklav.EUNAUTHORIZED:
		// Accepted, worth retrying as it is, or the key is wrong for every event alike.
		for _, i := range idx {
			errs[i] = err
		}
	default:
		c.logger.WarnContext(ctx, "klaviyo refused a bulk request; sending its events one by one", "events", len(idx), "err", err)
		c.isolate(ctx, events, idx, errs)
	}
}

// isolate sends the events at idx one at a time and records each answer.
func (c *Client) isolate(ctx context.Context, events []Event, idx []int, errs []error) {
	sem := make(chan struct{}, isolateConcurrency)
	var wg sync.WaitGroup
	for _, i := range idx {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = c.CreateEvent(ctx, events[i])
		})
	}
	wg.Wait()
}
