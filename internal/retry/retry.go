// Package retry is zenklav's one retry policy: exponential backoff with jitter, bounded by
// attempts and elapsed time, sleeping in a select on the context, with the log level rising
// from warning to error once a failure has lasted. Every loop that waits for a dependency to
// come back uses it: the Kafka consumers, the emitter's deliveries and lookups, dead letters,
// the backfill, Zendesk's export.
package retry

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/zenklav/zenklav"
)

// Policy says how long to wait between attempts and when to give up.
type Policy struct {
	Initial time.Duration // the first wait
	Max     time.Duration // the longest wait
	// MaxElapsed bounds Do by the time since its first attempt; 0 retries until ctx ends.
	MaxElapsed time.Duration
	// MaxAttempts bounds Do by the number of attempts; 0 is no bound.
	MaxAttempts int
}

// Delay returns how long to wait before retry number attempt (0-based): a random duration
// between half and all of Initial·2^attempt, capped at Max. The jitter spreads the retries of
// many workers apart; the floor keeps a retry from coming back at once.
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Max
	if attempt < 30 {
		if e := p.Initial << attempt; e > 0 && e < p.Max {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits Delay(attempt), or returns ctx's error when ctx ends first.
func (p Policy) Sleep(ctx context.Context, attempt int) error {
	return Wait(ctx, p.Delay(attempt))
}

// Wait waits d, or returns ctx's error when ctx ends first.
func Wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Do calls f until it succeeds, returns an error that is not transient (zenklav.Transient),
// the policy's bounds are reached, or ctx ends. Each failure that is retried is logged with
// msg and args (see Log). It returns nil, f's last error, or ctx's error.
func (p Policy) Do(ctx context.Context, logger *slog.Logger, msg string, f func(context.Context) error, args ...any) error {
	return p.DoReport(ctx, f, func(attempt int, err error) { Log(ctx, logger, msg, attempt, err, args...) })
}

// DoReport is Do with each failure that is retried handed to report (attempt is 0-based)
// instead of the log: for a caller that says once that it waits, rather than every time.
func (p Policy) DoReport(ctx context.Context, f func(context.Context) error, report func(attempt int, err error)) error {
	began := time.Now()
	for attempt := 0; ; attempt++ {
		err := f(ctx)
		if err == nil || !zenklav.Transient(err) {
			return err
		}
		if p.MaxAttempts > 0 && attempt+1 >= p.MaxAttempts || p.MaxElapsed > 0 && time.Since(began) >= p.MaxElapsed {
			return err
		}
		report(attempt, err)
		if serr := p.Sleep(ctx, attempt); serr != nil {
			return serr
		}
	}
}

// lasting is the attempt from which a failure is no longer a blip.
const lasting = 5

// Log logs attempt (0-based) of a failure that is being retried: a warning, and an error once
// it has failed lasting times in a row, when someone should look.
func Log(ctx context.Context, logger *slog.Logger, msg string, attempt int, err error, args ...any) {
	level := slog.LevelWarn
	if attempt >= lasting {
		level = slog.LevelError
	}
	logger.Log(ctx, level, msg, append(args, "attempt", attempt+1, "err", err)...)
}
