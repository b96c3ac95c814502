package resilience_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/zenklav/zenklav/internal/testenv"
)

// resumeWithin is the bound from a role's kill -9 to its work going on, when it is
// started again at once: the consumers' session timeouts (about 6 s) let the group give the
// dead member's partitions to the new one.
const resumeWithin = 12 * time.Second

// TestRolesKilledAndRestarted runs the api, the sink and the emitter as three processes
// under a steady stream of webhooks, and kills each in turn with SIGKILL and starts it again
// at once. Each must be back at work within resumeWithin of its kill: the api answering 2xx,
// the sink writing to ClickHouse, the emitter delivering to Klaviyo, each for webhooks sent
// after the kill. In the end every accepted webhook is once in ClickHouse and in Klaviyo.
func TestRolesKilledAndRestarted(t *testing.T) {
	s := newStack(t)
	roles := []string{"api", "sink", "emitter"}
	addrs, procs := map[string]string{}, map[string]*process{}
	for _, role := range roles {
		addrs[role] = testenv.FreeAddr(t)
		procs[role] = s.startAndWait(role, addrs[role])
	}
	start := procs["api"].since
	alive := func() error {
		for _, role := range roles {
			if err := procs[role].exitErr(); err != nil {
				return err
			}
		}
		return nil
	}
	tr := s.sendWebhooks(addrs["api"], webhooksPerSecond)
	s.waitFlowing(tr, alive)
	conn := s.clickhouseConn()

	var apiKilled, apiResumed time.Time
	for _, role := range roles {
		killed := time.Now()
		procs[role].kill()
		procs[role] = s.start(role, addrs[role])
		resumed := s.waitResumed(role, killed, tr, conn, procs[role])
		took := resumed.Sub(killed)
		t.Logf("resume: %s %.1fs", role, took.Seconds())
		if took > resumeWithin {
			t.Errorf("zenklav %s was back at work %.1fs after its kill -9, over the %s session timeouts allow", role, took.Seconds(), resumeWithin)
		}
		if role == "api" {
			apiKilled, apiResumed = killed, resumed
		}
	}
	time.Sleep(3 * time.Second) // the stream goes on with every role restarted
	tr.stop(stopWithin)

	t.Logf("webhooks while the api was away: %s; in all: %s", tr.summary(apiKilled, apiResumed), tr.summary(time.Time{}, time.Now()))
	// Only while the api was dead may a webhook's connection fail.
	tr.expectAnswers(t, time.Time{}, apiKilled, start, "2xx or 503 with Retry-After", accepted2xxOr503)
	tr.expectAnswers(t, apiKilled, apiResumed, start, "2xx, 503 with Retry-After, or a failed connection while the api was dead",
		func(a attempt) bool { return a.err != nil || accepted2xxOr503(a) })
	tr.expectAnswers(t, apiResumed, time.Now(), start, "2xx or 503 with Retry-After", accepted2xxOr503)
	s.converge(tr, alive)
	if err := alive(); err != nil {
		t.Errorf("a role did not stay up: %v", err)
	}
	for _, role := range roles {
		procs[role].stop()
	}
}

// waitResumed waits until the role, killed at killed and started again as p, is at work on
// webhooks first sent after killed (which no process gone by then can have handled), and
// returns when it was.
func (s *stack) waitResumed(role string, killed time.Time, tr *traffic, conn driver.Conn, p *process) time.Time {
	s.t.Helper()
	var at time.Time
	found := func() (bool, string) {
		switch role {
		case "api":
			at = tr.firstAcceptedAfter(killed)
			return !at.IsZero(), "no webhook sent since the kill was accepted: " + tr.summary(killed, time.Now())
		case "sink":
			stored, err := storedEvents(context.Background(), conn, killed)
			now := time.Now()
			if err != nil {
				return false, "ClickHouse: " + err.Error()
			}
			after := tr.sentAfter(killed)
			for id := range stored {
				if after[id] {
					at = now
					return true, ""
				}
			}
			return false, fmt.Sprintf("ClickHouse holds none of the %d events sent since the kill", len(after)/2)
		default:
			after := tr.sentAfter(killed)
			for _, e := range s.accepted.since(killed) {
				if after[e.uniqueID] {
					at = e.at
					return true, ""
				}
			}
			return false, fmt.Sprintf("Klaviyo received none of the metrics of the %d webhooks sent since the kill", len(after)/2)
		}
	}
	waitFor(s.t, 5*resumeWithin, p.exitErr, func() (bool, string) {
		ok, why := found()
		return ok, fmt.Sprintf("zenklav %s, killed and started again %s ago, is not back at work: %s",
			role, time.Since(killed).Round(100*time.Millisecond), why)
	})
	return at
}
