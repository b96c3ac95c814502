// Package health is what a process knows of its own parts: each part (a consumer, a role)
// says whether it is working, waiting for a dependency that may come back, or stopped for
// good. The tracker logs each change of state once (not each retry), exports the states as a
// metric, and lists them for /readyz, so an operator learns of an outage from one line and
// of its end from another.
package health

import (
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Condition is a part's state.
type Condition string

const (
	Working Condition = "working"
	// Waiting: a dependency (Kafka, ClickHouse, an API) failed; the part retries with
	// backoff and resumes by itself.
	Waiting Condition = "waiting"
	// Stopped: the part ended on an error that cannot heal (a configuration error); only
	// an operator can bring it back.
	Stopped Condition = "stopped"
)

// State is a part's condition, since when, and the last error while it is not working.
type State struct {
	Condition Condition `json:"state"`
	Since     time.Time `json:"since"`
	Err       string    `json:"error,omitempty"`
}

// Tracker holds the states of a process's parts.
type Tracker struct {
	logger *slog.Logger
	up     *prometheus.GaugeVec // nil without a registry
	now    func() time.Time

	mu     sync.Mutex
	states map[string]State
	// working mirrors, per part, whether its condition is Working, so that the hot path
	// (a consumer saying it works after every fetch) takes no lock.
	working map[string]*atomic.Bool
}

// NewTracker returns a tracker that logs to logger and, when reg is not nil, exports
// zenklav_part_up{part}.
func NewTracker(logger *slog.Logger, reg prometheus.Registerer) *Tracker {
	t := &Tracker{logger: logger, now: time.Now, states: map[string]State{}, working: map[string]*atomic.Bool{}}
	if reg != nil {
		t.up = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zenklav_part_up",
			Help: "1 while a part of the process (a consumer group, a role) works; 0 while it waits for a dependency or has stopped.",
		}, []string{"part"})
		reg.MustRegister(t.up)
	}
	return t
}

// Part returns the part of that name, working until it says otherwise.
func (t *Tracker) Part(name string) *Part {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.working[name]
	if !ok {
		w = &atomic.Bool{}
		w.Store(true)
		t.working[name] = w
		t.states[name] = State{Condition: Working, Since: t.now()}
		t.gauge(name, Working)
	}
	return &Part{t: t, name: name, working: w}
}

// States returns a copy of every part's state, by name.
func (t *Tracker) States() map[string]State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.states)
}

func (t *Tracker) gauge(name string, c Condition) {
	if t.up == nil {
		return
	}
	v := 0.0
	if c == Working {
		v = 1
	}
	t.up.WithLabelValues(name).Set(v)
}

// set moves name to condition c, logging only when the condition changes; a further error
// in the same condition updates the state quietly.
func (t *Tracker) set(name string, c Condition, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	prev := t.states[name]
	now := t.now()
	next := State{Condition: c, Since: prev.Since}
	if err != nil {
		next.Err = err.Error()
	}
	if prev.Condition != c {
		next.Since = now
		t.log(name, prev, next, now)
	}
	t.states[name] = next
	t.working[name].Store(c == Working)
	t.gauge(name, c)
}

func (t *Tracker) log(name string, prev, next State, now time.Time) {
	switch next.Condition {
	case Waiting:
		t.logger.Warn("waiting for a dependency; retrying with backoff until it is back", "part", name, "err", next.Err)
	case Stopped:
		t.logger.Error("stopped on an error that cannot heal; the rest of the process goes on", "part", name, "err", next.Err)
	case Working:
		t.logger.Info("working again", "part", name, "after", now.Sub(prev.Since).Round(time.Millisecond).String())
	}
}

// Part is one part's handle on its state.
type Part struct {
	t       *Tracker
	name    string
	working *atomic.Bool
}

// Working says the part works (again).
func (p *Part) Working() {
	if !p.working.Load() {
		p.t.set(p.name, Working, nil)
	}
}

// Waiting says the part waits for a dependency that failed with err.
func (p *Part) Waiting(err error) { p.t.set(p.name, Waiting, err) }

// blip is how many retries of one failure pass before the part is said to wait: one 5xx
// among many successes is not an outage, and saying so would make the state flap.
const blip = 2

// Retrying reports retry number attempt (0-based) of one failure: the part waits once the
// failure has outlasted a blip. The caller says Working when the work succeeds.
func (p *Part) Retrying(attempt int, err error) {
	if attempt >= blip {
		p.Waiting(err)
	}
}

// Stopped says the part ended for good with err.
func (p *Part) Stopped(err error) { p.t.set(p.name, Stopped, err) }
