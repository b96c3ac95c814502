package resilience_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/zenklav/zenklav/internal/testenv"
)

// webhooksPerSecond is the steady stream of every test: modest, as `make test` runs the
// packages side by side on two cores, and enough that every second of an outage meets many
// webhooks.
const webhooksPerSecond = 24

// afterBack is how long the webhooks keep coming once the dependency is back.
const afterBack = 8 * time.Second

// outage is one dependency going away from `zenklav all` and coming back.
type outage struct {
	dep    string // its name in /readyz's checks
	gone   string // what happened to it, for messages: "the broker was killed"
	down   func(s *stack)
	hold   time.Duration  // from down's call to up's
	up     func(s *stack) // returns once it is back
	answer string         // what every webhook may be answered, for messages
	ok     func(a attempt) bool
}

// runOutage runs `zenklav all` under a steady stream of webhooks through o, and checks
// that every webhook is answered as o allows, that /readyz tells the outage and the recovery
// within its bounds, that zenklav stays up, and that in the end every accepted webhook is
// once in ClickHouse and in Klaviyo.
func runOutage(t *testing.T, o outage) {
	s := newStack(t)
	addr := testenv.FreeAddr(t)
	p := s.startAndWait("all", addr)
	start := p.since
	r := pollReadiness(t, addr)
	r.waitReady(time.Minute, p.exitErr)
	tr := s.sendWebhooks(addr, webhooksPerSecond)
	// zenklav gone, nothing will accept the webhooks again: no point in resending them.
	p.onExit(tr.abort)
	s.waitFlowing(tr, p.exitErr)

	goingAt := time.Now()
	o.down(s)
	downAt := time.Now()
	time.Sleep(time.Until(goingAt.Add(o.hold))) // the outage itself
	restartAt := time.Now()
	o.up(s)
	backAt := time.Now()
	t.Logf("zenklav all started at %s; %s from %s to %s, brought back from %s, back at %s",
		start.Format("15:04:05.000"), o.gone, rel(goingAt, start), rel(downAt, start), rel(restartAt, start), rel(backAt, start))
	time.Sleep(afterBack) // the stream goes on after the outage
	tr.stop(stopWithin)
	r.stop()

	if err := p.exitErr(); err != nil {
		t.Errorf("zenklav all did not stay up: %v", err)
	}
	t.Logf("webhooks during the outage: %s; in all: %s", tr.summary(goingAt, backAt), tr.summary(time.Time{}, time.Now()))
	tr.expectAnswers(t, time.Time{}, time.Now(), start, o.answer, o.ok)
	r.notReadyBy(downAt, readyzAnswersWithin, o.dep, o.gone, start)
	r.honest(downAt.Add(readyzAnswersWithin), restartAt, o.gone, start)
	r.readyBy(backAt, readyzRecovers, o.dep+" was back", start)
	r.prompt(start)
	if p.exited() {
		return // said above; nothing converges without zenklav
	}
	s.converge(tr, p.exitErr)
	p.stop()
}

// waitFlowing waits until the webhooks reach ClickHouse and Klaviyo: the roles run and their
// consumers have joined their groups.
func (s *stack) waitFlowing(tr *traffic, alive func() error) {
	s.t.Helper()
	tr.waitAccepted(2*webhooksPerSecond, time.Minute, alive)
	conn := s.clickhouseConn()
	since := time.Now()
	waitFor(s.t, time.Minute, alive, func() (bool, string) {
		stored, err := storedEvents(context.Background(), conn, time.Time{})
		accepted := len(s.accepted.since(time.Time{}))
		return err == nil && len(stored) > 0 && accepted > 0,
			fmt.Sprintf("%s after the first webhooks, ClickHouse holds %d events (%v) and Klaviyo %d",
				time.Since(since).Round(time.Second), len(stored), err, accepted)
	})
}

// TestBrokerKilled: the broker is killed (SIGKILL) under a steady stream of webhooks, stays
// down 20 s, and starts again on the same data.
func TestBrokerKilled(t *testing.T) {
	runOutage(t, outage{
		dep: "kafka", gone: "the broker was killed",
		down: func(s *stack) { s.kafka.Kill() }, hold: 20 * time.Second, up: func(s *stack) { s.kafka.Start() },
		answer: "2xx or 503 with Retry-After", ok: accepted2xxOr503,
	})
}

// TestBrokerFrozen: the broker is frozen (SIGSTOP: its connections stay open and nothing
// answers) for 20 s, then goes on (SIGCONT).
func TestBrokerFrozen(t *testing.T) {
	runOutage(t, outage{
		dep: "kafka", gone: "the broker was frozen",
		down: func(s *stack) { s.kafka.Freeze() }, hold: 20 * time.Second, up: func(s *stack) { s.kafka.Thaw() },
		answer: "2xx or 503 with Retry-After", ok: accepted2xxOr503,
	})
}

// TestClickHouseStopped: ClickHouse is stopped for 60 s and started again on the same data.
// It is not on the webhooks' way: every one is accepted all along.
func TestClickHouseStopped(t *testing.T) {
	runOutage(t, outage{
		dep: "clickhouse", gone: "ClickHouse was stopped",
		down: func(s *stack) { s.clickhouse.Stop() }, hold: 60 * time.Second, up: func(s *stack) { s.clickhouse.Start() },
		answer: "2xx", ok: attempt.ok,
	})
}
