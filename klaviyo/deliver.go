package klaviyo

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/zenklav/zenklav"
)

// bulkBudget is how much of MaxPayloadBytes the events of one bulk request may fill; the
// rest is for the JSON:API envelope and the profile entries around them.
const bulkBudget = MaxPayloadBytes * 9 / 10

// isolateConcurrency bounds the single requests that find the bad events of a refused bulk
// request; the Create Event bucket paces them anyway.
const isolateConcurrency = 16

// Deliver records events with as few requests as Klaviyo's limits allow, and says what became
// of each: errs[i] is nil when events[i] was accepted. A lone event goes through Create Event,
// whose limit is 35 times the bulk one; more go in bulk requests of at most MaxBulkEvents
// events and MaxPayloadBytes. An event Klaviyo would refuse is refused here, alone. When
// Klaviyo refuses a whole bulk request for good (4xx), its events are sent one by one, so one
// bad event costs only itself. Errors keep their kinds: EUNAVAILABLE is worth retrying.
func (c *Client) Deliver(ctx context.Context, events []Event) []error {
	errs := make([]error, len(events))
	var valid []int
	for i, e := range events {
		if err := e.Validate(); err != nil {
			errs[i] = zenklav.Wrap(zenklav.EINVALID, err, "event %q", e.UniqueID)
			continue
		}
		valid = append(valid, i)
	}
	if len(valid) == 1 {
		errs[valid[0]] = c.CreateEvent(ctx, events[valid[0]])
		return errs
	}
	for _, chunk := range chunks(events, valid) {
		batch := make([]Event, len(chunk))
		for j, i := range chunk {
			batch[j] = events[i]
		}
		err := c.BulkCreateEvents(ctx, batch)
		if err == nil || zenklav.Transient(err) || zenklav.ErrorCode(err) == zenklav.EUNAUTHORIZED {
			for _, i := range chunk {
				errs[i] = err
			}
			continue
		}
		c.logger.WarnContext(ctx, "klaviyo refused a bulk request; sending its events one by one", "events", len(chunk), "err", err)
		c.isolate(ctx, events, chunk, errs)
	}
	return errs
}

// chunks splits the indexes of valid events into bulk requests within Klaviyo's limits.
func chunks(events []Event, valid []int) [][]int {
	var out [][]int
	var cur []int
	size := 0
	for _, i := range valid {
		n := eventSize(events[i])
		if len(cur) == MaxBulkEvents || len(cur) > 0 && size+n > bulkBudget {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, i)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// eventSize is about what e adds to a bulk request.
func eventSize(e Event) int {
	b, err := json.Marshal(eventAttributes(e))
	if err != nil {
		return MaxPayloadBytes // cannot be encoded: let it travel alone and fail there
	}
	return len(b) + 200 // the profile entry and the wrappers
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
