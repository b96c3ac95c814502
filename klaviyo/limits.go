package klaviyo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zenklav/zenklav/internal/retry"
	"golang.org/x/time/rate"
)

// Limit is an endpoint's published rate limit per account: a burst window of one second and
// a steady window of one minute (x-klaviyo-ratelimit in the OpenAPI document). Klaviyo counts
// both as fixed windows and answers 429 when either is full.
type Limit struct {
	PerSecond, PerMinute int
}

// The limits of the endpoints the client calls, from stable.json.
var (
	EventLimit         = Limit{PerSecond: 350, PerMinute: 3500} // create_event
	BulkEventLimit     = Limit{PerSecond: 10, PerMinute: 150}   // bulk_create_events
	BulkProfileLimit   = Limit{PerSecond: 10, PerMinute: 150}   // bulk_import_profiles
	ProfileImportLimit = Limit{PerSecond: 75, PerMinute: 750}   // create_or_update_profile
	// FindProfileLimit is get_profiles's limit when the request asks for
	// additional-fields[profile]=predictive_analytics, as FindProfile does; without it the
	// limit is GetProfilesLimit, which ProfileByPhone counts against.
	FindProfileLimit       = Limit{PerSecond: 10, PerMinute: 150}
	GetProfilesLimit       = Limit{PerSecond: 75, PerMinute: 750}   // get_profiles
	GetEventsLimit         = Limit{PerSecond: 350, PerMinute: 3500} // get_events
	ProfileMembershipLimit = Limit{PerSecond: 3, PerMinute: 60}     // get_segments_for_profile, get_lists_for_profile
	// ConversationMessageLimit (create_conversation_message) and ProfileConversationsLimit
	// (get_conversations_for_profile) pace the SMS replies: a burst of them waits in the
	// bucket's queue rather than being refused by Klaviyo.
	ConversationMessageLimit  = Limit{PerSecond: 3, PerMinute: 60}
	ProfileConversationsLimit = Limit{PerSecond: 3, PerMinute: 60}
)

// limitsByPath maps the endpoints the client calls to their limits: the paths it posts to,
// and "GET " and the path template of each read, so that reads of different profiles share
// their endpoint's bucket. A get_profiles asking for predictive analytics has a limit of its
// own, and so a bucket of its own ("+predictive_analytics").
var limitsByPath = map[string]Limit{
	"/api/events":                   EventLimit,
	"/api/event-bulk-create-jobs":   BulkEventLimit,
	"/api/profile-bulk-import-jobs": BulkProfileLimit,
	"/api/profile-import":           ProfileImportLimit,
	"/api/conversation-messages":    ConversationMessageLimit,

	"GET /api/profiles":                      GetProfilesLimit,
	"GET /api/profiles+predictive_analytics": FindProfileLimit,
	"GET /api/events":                        GetEventsLimit,
	"GET /api/profiles/{id}/segments":        ProfileMembershipLimit,
	"GET /api/profiles/{id}/lists":           ProfileMembershipLimit,
	"GET /api/profiles/{id}/conversations":   ProfileConversationsLimit,
}

// bucket is the token bucket of one endpoint of one account. A token bucket of rate r and
// burst b lets through at most b + 60·r requests in any minute, so it stays inside a fixed
// minute window wherever the window starts when b + 60·r < PerMinute. It leaves one request
// of the minute spare for requests that arrive in another order than they left.
//
// Klaviyo shares the account's quota between every integration that uses a private key, so
// a 429 can come however careful zenklav is: the bucket then waits out Retry-After and slows
// down, and speeds up again step by step as requests succeed.
type bucket struct {
	lim *rate.Limiter
	// full and fullBurst are the account's whole rate and burst; ceiling is this process's
	// share of the rate (share), which a 429 lowers the rate from and successes raise it to.
	full      rate.Limit
	fullBurst int
	perMinute int

	mu      sync.Mutex
	ceiling rate.Limit
	pause   time.Time // no request before this

	used atomic.Bool // a request waited here: the metrics show the bucket
}

func newBucket(l Limit) *bucket {
	burst := max(1, min(l.PerSecond/3, l.PerMinute/50))
	r := rate.Limit(float64(l.PerMinute-burst-1) / 60)
	return &bucket{lim: rate.NewLimiter(r, burst), full: r, fullBurst: burst, perMinute: l.PerMinute, ceiling: r}
}

// share makes the bucket this process's 1/n of the account's limit: n processes that each
// take their share stay inside it together, each burst counted (as newBucket counts one).
func (b *bucket) share(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	burst := max(1, b.fullBurst/n)
	b.ceiling = b.full
	if n > 1 {
		b.ceiling = rate.Limit(float64(b.perMinute-n*burst-1) / 60 / float64(n))
	}
	b.lim.SetBurst(burst)
	b.lim.SetLimit(b.ceiling)
}

// wait blocks until a request may go, or ctx ends. The limiter gives each caller its slot
// when it asks, so callers go in the order they came (a burst is queued, not refused), and
// one whose slot lies beyond its deadline fails at once. A 429 that arrives while a request
// waits in the limiter pauses it too: the pause is checked again once a token is granted.
func (b *bucket) wait(ctx context.Context) error {
	b.used.Store(true)
	for {
		if pause := b.paused(); pause > 0 {
			// Like the limiter below, give up at once when the pause outlasts the caller's
			// deadline: the sidebar's card would otherwise spend its whole timeout here.
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < pause {
				return fmt.Errorf("rate: paused for %s after a 429, beyond the context's deadline", pause.Round(time.Millisecond))
			}
			if err := retry.Wait(ctx, pause); err != nil {
				return err
			}
		}
		if err := b.lim.Wait(ctx); err != nil {
			return err
		}
		if b.paused() <= 0 {
			return nil
		}
	}
}

// delay is how long a request would wait now, without taking a token.
func (b *bucket) delay() time.Duration {
	if p := b.paused(); p > 0 {
		return p
	}
	tokens := b.lim.Tokens()
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(b.lim.Limit()) * float64(time.Second))
}

// paused is how long the bucket still waits out a 429.
func (b *bucket) paused() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.Until(b.pause)
}

// throttled records a 429: nothing goes before retryAfter has passed, and the rate drops by
// a quarter, down to a quarter of the ceiling, so that up to three emitters sharing an
// account settle under its limit. The pause does most of the yielding.
func (b *bucket) throttled(retryAfter time.Duration) {
	if retryAfter <= 0 {
		retryAfter = time.Second
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if until := time.Now().Add(retryAfter); until.After(b.pause) {
		b.pause = until
	}
	b.lim.SetLimit(max(b.lim.Limit()*3/4, b.ceiling/4))
}

// succeeded wins back a tenth of the rate after a slow-down: from the floor, the ceiling is
// back after fifteen requests.
func (b *bucket) succeeded() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l := b.lim.Limit(); l < b.ceiling {
		b.lim.SetLimit(min(b.ceiling, l*11/10))
	}
}
