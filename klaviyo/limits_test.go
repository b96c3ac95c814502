package klaviyo

import (
	"context"
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
