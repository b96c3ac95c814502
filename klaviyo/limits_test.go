package klaviyo

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestBucketStaysInsideTheMinuteWindow: whatever minute window Klaviyo counts, the bucket
// lets at most PerMinute-1 requests through in it, and at most PerSecond in any second.
func TestBucketStaysInsideTheMinuteWindow(t *testing.T) {
	for _, l := range []Limit{EventLimit, BulkEventLimit, ProfileImportLimit, FindProfileLimit, GetEventsLimit, ProfileMembershipLimit} {
		b := newBucket(l)
		start := time.Unix(1_800_000_000, 0)
		var sent []time.Time
		for now := start; now.Before(start.Add(3 * time.Minute)); now = now.Add(time.Millisecond) {
			for b.lim.AllowN(now, 1) {
				sent = append(sent, now)
			}
		}
		// For each request, count those in the minute (and the second) that starts with it.
		m, sec := 0, 0
		for i := range sent {
			for m < len(sent) && sent[m].Sub(sent[i]) < time.Minute {
				m++
			}
			for sec < len(sent) && sent[sec].Sub(sent[i]) < time.Second {
				sec++
			}
			if inMinute, inSecond := m-i, sec-i; inMinute >= l.PerMinute || inSecond > l.PerSecond {
				t.Fatalf("%+v: %d requests in a minute and %d in a second from %s", l, inMinute, inSecond, sent[i].Sub(start))
			}
		}
		if got, want := float64(len(sent))/3, float64(l.PerMinute)*0.95; got < want {
			t.Errorf("%+v: %.0f requests a minute, want at least %.0f (95%% of the limit)", l, got, want)
		}
	}
}

// TestPausedBucketFailsFastPastTheDeadline: after a 429, a caller whose deadline comes before
// the pause ends is told at once, as the limiter tells one that would wait too long.
func TestPausedBucketFailsFastPastTheDeadline(t *testing.T) {
	b := newBucket(ProfileMembershipLimit)
	b.throttled(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.wait(ctx); err == nil {
		t.Fatal("a 30 s pause let a caller with 1 s left through")
	}
	if ctx.Err() != nil {
		t.Error("wait spent the caller's whole deadline before failing")
	}
}

// TestSharedBucketsStayInsideTogether: three processes that each keep their third of an
// account's limit (ShareLimits(3)) send, together, no more than the limit allows in any
// minute, and still use most of it; a 429 and the recovery after it stay within the share.
func TestSharedBucketsStayInsideTogether(t *testing.T) {
	for _, l := range []Limit{BulkEventLimit, EventLimit, ConversationMessageLimit} {
		const n = 3
		start := time.Unix(1_800_000_000, 0)
		var sent []time.Time
		for range n {
			b := newBucket(l)
			b.share(n)
			for now := start; now.Before(start.Add(3 * time.Minute)); now = now.Add(time.Millisecond) {
				for b.lim.AllowN(now, 1) {
					sent = append(sent, now)
				}
			}
			b.throttled(0)
			for range 100 {
				b.succeeded()
			}
			if b.lim.Limit() > b.ceiling || b.ceiling > b.full/2 {
				t.Errorf("%+v: after a 429 and recovery the rate is %v, the share %v of the account's %v", l, b.lim.Limit(), b.ceiling, b.full)
			}
		}
		slices.SortFunc(sent, func(a, b time.Time) int { return a.Compare(b) })
		m := 0
		for i := range sent {
			for m < len(sent) && sent[m].Sub(sent[i]) < time.Minute {
				m++
			}
			if m-i >= l.PerMinute {
				t.Fatalf("%+v: %d requests in a minute from %d processes sharing it", l, m-i, n)
			}
		}
		if got, want := float64(len(sent))/3, float64(l.PerMinute)*0.9; got < want {
			t.Errorf("%+v: %.0f requests a minute together, want at least %.0f", l, got, want)
		}
	}
}
