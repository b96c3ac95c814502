package pipeline

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with jitter.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// Delay returns how long to wait before retry number attempt (0-based): a random duration
// between half and all of Initial·2^attempt, capped at Max. The jitter spreads the retries of
// many workers apart; the floor keeps a retry from coming back at once.
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Max
	if attempt < 30 {
		if e := b.Initial << attempt; e > 0 && e < b.Max {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits Delay(attempt), or returns ctx's error when ctx ends first.
func (b Backoff) Sleep(ctx context.Context, attempt int) error {
	t := time.NewTimer(b.Delay(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
