package backend

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"golang.org/x/sync/semaphore"
)

// errOverloaded is the answer to a webhook the byte budget has no room for: a 503 with
// Retry-After, which Zendesk retries. The budget logs overload itself, once when it starts
// and once when it ends, so the error renderer does not log it per request.
var errOverloaded = zenklav.Errorf(zenklav.EUNAVAILABLE, "too many webhook bytes in flight: retry later")

// byteBudget bounds the bytes that webhook bodies in flight hold: each request reserves its
// body's size before reading it and gives it back when its handler returns, and a request
// that finds no room is refused at once, unread. So memory does not grow with what hostile
// clients send, only with the budget.
//
// The budget is shared by size so that a flood of big bodies cannot starve Zendesk's own
// webhooks, which are a few KB: requests over 128 KiB may hold at most a quarter of it
// together, requests over 16 KiB at most half, and only the smallest the rest. The big
// bodies' small share also limits how many hostile ones with a well-formed signature are
// read and hashed at once, each before it can be refused. Each tier is a semaphore of its
// share, and a request takes from every tier its size is over, most restrictive first, so a
// big request that does not fit never holds, even briefly, the small ones' room. Requests
// never wait for room (TryAcquire): a waiting request would hold a connection, and the
// semaphore's queue would make small requests wait behind big ones.
type byteBudget struct {
	limit    int64
	tiers    []budgetTier // by over, ascending
	inflight prometheus.Gauge
	overload overloadLog
}

type budgetTier struct {
	over int64 // requests of more than this many bytes take from the tier
	sem  *semaphore.Weighted
}

// overloadQuiet is how long after its last refusal the budget's overload counts as over.
const overloadQuiet = 10 * time.Second

func newByteBudget(logger *slog.Logger, limit int64, inflight prometheus.Gauge) *byteBudget {
	return &byteBudget{
		limit: limit,
		tiers: []budgetTier{
			{over: -1, sem: semaphore.NewWeighted(limit)},
			{over: 16 << 10, sem: semaphore.NewWeighted(limit / 2)},
			{over: 128 << 10, sem: semaphore.NewWeighted(limit / 4)},
		},
		inflight: inflight,
		overload: overloadLog{logger: logger, limit: limit, quiet: overloadQuiet},
	}
}

// reserve takes n bytes of the budget and returns the function that gives them back; ok is
// false, and nothing is taken, when n does not fit.
func (b *byteBudget) reserve(n int64) (release func(), ok bool) {
	k := 0 // n takes from tiers[:k]
	for k < len(b.tiers) && n > b.tiers[k].over {
		k++
	}
	for i := k - 1; i >= 0; i-- {
		if !b.tiers[i].sem.TryAcquire(n) {
			for _, t := range b.tiers[i+1 : k] {
				t.sem.Release(n)
			}
			b.overload.refused()
			return nil, false
		}
	}
	b.inflight.Add(float64(n))
	return func() {
		for _, t := range b.tiers[:k] {
			t.sem.Release(n)
		}
		b.inflight.Sub(float64(n))
	}, true
}

// overloadLog logs that the budget turns webhooks away once when it starts and once when it
// ends (no refusal for quiet): a line per refusal would let a flood fill the logs as well.
type overloadLog struct {
	logger *slog.Logger
	limit  int64
	quiet  time.Duration

	mu      sync.Mutex
	start   time.Time // of the overload; zero when there is none
	last    time.Time // the last refusal
	refusal int       // refusals since start
}

func (o *overloadLog) refused() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last = time.Now()
	o.refusal++
	if !o.start.IsZero() {
		return
	}
	o.start = o.last
	o.logger.Warn("webhooks refused with 503: their bytes in flight are at ZENKLAV_HTTP_MAX_INFLIGHT_BYTES", "limit_bytes", o.limit)
	time.AfterFunc(o.quiet, o.check)
}

// check ends the overload once quiet has passed since the last refusal.
func (o *overloadLog) check() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if wait := o.quiet - time.Since(o.last); wait > 0 {
		time.AfterFunc(wait, o.check)
		return
	}
	o.logger.Warn("webhooks taken again: no refusal for "+o.quiet.String(), "refused", o.refusal, "lasted", o.last.Sub(o.start).Round(time.Millisecond).String())
	o.start, o.refusal = time.Time{}, 0
}
