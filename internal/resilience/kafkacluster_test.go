package resilience_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/kafka/kafkatest"
	"github.com/zenklav/zenklav/schemas"
)

// kafkaNodes is the Kafka cluster's size: three brokers, a controller quorum of three.
const kafkaNodes = 3

// brokerDown is how long the killed broker stays down while the webhooks go on: longer than
// the controller takes to notice (broker.session.timeout.ms, 9 s) and move its leaders.
const brokerDown = 20 * time.Second

// TestKafkaClusterBrokerKilled runs `zenklav all` against a cluster of three Kafka brokers
// with no replication setting, so that zenklav chooses for three brokers: every topic it
// makes has three replicas and min.insync.replicas 2. Under a steady stream of webhooks, the
// broker that leads partition 0 of ticket-events.v1 is killed with SIGKILL. The other two go
// on without it: every webhook is answered 2xx or 503 with Retry-After (the sender sends a
// 503's again), and with the broker still down every webhook zenklav acknowledged, before the
// kill or after, is once in ClickHouse and its ticket's metric once in Klaviyo. Then the
// broker starts again and catches up.
func TestKafkaClusterBrokerKilled(t *testing.T) {
	var cluster *testenv.KafkaCluster
	s := newStackOn(t, func(s *stack) {
		cluster = testenv.StartKafkaCluster(t, kafkaNodes)
		s.brokers = strings.Join(cluster.Brokers(), ",")
	})
	brokers := cluster.Brokers()
	addr := testenv.FreeAddr(t)
	p := s.startAndWait("all", addr)
	start := p.since
	r := pollReadiness(t, addr)
	r.waitReady(time.Minute, p.exitErr)
	tr := s.sendWebhooks(addr, webhooksPerSecond)
	p.onExit(tr.abort)
	s.waitFlowing(tr, p.exitErr)
	expectReplication(t, brokers, kafka.Replication{Factor: 3, MinInsync: 2})

	leaders := partitionLeaders(t, brokers, schemas.TicketEventsTopic)
	victim := leaders[0]
	led := ledBy(leaders, victim)
	moved := watchLeaders(t, brokers, schemas.TicketEventsTopic, victim)
	killedAt := time.Now()
	cluster.Node(victim).Kill()
	t.Logf("broker %d, leader of partitions %v of %s, killed at %s", victim, led, schemas.TicketEventsTopic, rel(killedAt, start))
	time.Sleep(time.Until(killedAt.Add(brokerDown)))
	// The stream stops with the broker still down: the two others take every webhook, and
	// what zenklav acknowledged must be in ClickHouse and Klaviyo without the dead one.
	tr.stop(stopWithin)
	stoppedAt := time.Now()

	if err := p.exitErr(); err != nil {
		t.Fatalf("zenklav all did not stay up: %v", err)
	}
	first := tr.firstAcceptedAfter(killedAt)
	last := lastRefusedAfter(tr, killedAt)
	t.Logf("failover: first webhook acknowledged %s after the kill; leaders of %s moved off broker %d %s after it; "+
		"last webhook refused %s after it; webhooks from the kill on: %s; /readyz not ready %d times",
		elapsed(killedAt, first), schemas.TicketEventsTopic, victim, elapsed(killedAt, moved()), elapsed(killedAt, last),
		tr.summary(killedAt, stoppedAt), r.notReady(killedAt, stoppedAt))
	if first.IsZero() {
		t.Errorf("no webhook sent after broker %d was killed was acknowledged", victim)
	}
	tr.expectAnswers(t, time.Time{}, time.Now(), start, "2xx or 503 with Retry-After", accepted2xxOr503)
	r.stop()
	s.converge(tr, p.exitErr)

	restartAt := time.Now()
	cluster.Node(victim).Start()
	waitInSync(t, brokers, schemas.TicketEventsTopic, kafkaNodes)
	t.Logf("broker %d started again %s after the kill, every partition of %s back to %d in-sync replicas %s after its start",
		victim, restartAt.Sub(killedAt).Round(100*time.Millisecond), schemas.TicketEventsTopic, kafkaNodes, elapsed(restartAt, time.Now()))
	if err := p.exitErr(); err != nil {
		t.Errorf("zenklav all did not stay up: %v", err)
	}
	p.stop()
}

// expectReplication checks that every topic of the cluster but Kafka's own is replicated as
// want says: zenklav made them all, and none by auto-creation with the broker's default.
func expectReplication(t *testing.T, brokers []string, want kafka.Replication) {
	t.Helper()
	meta := kafkaMetadata(t, brokers, nil)
	var names []string
	for _, tp := range meta.Topics {
		if !tp.Internal && !strings.HasPrefix(tp.Name, "__") {
			names = append(names, tp.Name)
		}
	}
	slices.Sort(names)
	if !slices.Contains(names, schemas.TicketEventsTopic) {
		t.Fatalf("the cluster has no %s, only %v", schemas.TicketEventsTopic, names)
	}
	for _, name := range names {
		if got := kafkatest.ReplicationOf(t, brokers, name); got != want {
			t.Errorf("%s is replicated %+v, want %+v", name, got, want)
		}
	}
	t.Logf("topics, each with %d replicas and min.insync.replicas %d: %s", want.Factor, want.MinInsync, strings.Join(names, ", "))
}

// kafkaMetadata asks the cluster about topics (nil: all of them), on a client of its own.
func kafkaMetadata(t *testing.T, brokers []string, topics []string) *kafkago.MetadataResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 5 * time.Second}
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
	if err != nil {
		t.Fatalf("kafka metadata: %v", err)
	}
	return meta
}

// partitionLeaders returns the broker id of each partition's leader of topic, by partition.
func partitionLeaders(t *testing.T, brokers []string, topic string) []int {
	t.Helper()
	parts, err := testenv.Partitions(brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int, len(parts))
	for _, p := range parts {
		out[p.ID] = p.Leader.ID
	}
	return out
}

// ledBy lists the partitions whose leader is broker.
func ledBy(leaders []int, broker int) []int {
	var out []int
	for p, id := range leaders {
		if id == broker {
			out = append(out, p)
		}
	}
	return out
}

// watchLeaders asks the cluster every 100 ms, from now, until no partition of topic is led
// by broker any more (nor leaderless); the function it returns says when that was (zero: not
// yet).
func watchLeaders(t *testing.T, brokers []string, topic string, broker int) func() time.Time {
	var (
		mu    sync.Mutex
		moved time.Time
	)
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(done)
		wg.Wait()
	})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if leadersMoved(brokers, topic, broker) {
				mu.Lock()
				moved = time.Now()
				mu.Unlock()
				return
			}
		}
	})
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return moved
	}
}

// leadersMoved says whether the cluster says now that no partition of topic has broker as
// its leader, or no leader.
func leadersMoved(brokers []string, topic string, broker int) bool {
	parts, err := testenv.Partitions(brokers, topic)
	if err != nil {
		return false
	}
	for _, p := range parts {
		if p.Leader.ID == broker || p.Leader.Host == "" {
			return false
		}
	}
	return true
}

// waitInSync waits until every partition of topic has n in-sync replicas.
func waitInSync(t *testing.T, brokers []string, topic string, n int) {
	t.Helper()
	waitFor(t, time.Minute, nil, func() (bool, string) {
		parts, err := testenv.Partitions(brokers, topic)
		if err != nil {
			return false, err.Error()
		}
		var short []string
		for _, p := range parts {
			if len(p.Isr) < n {
				short = append(short, fmt.Sprintf("%d (%d)", p.ID, len(p.Isr)))
			}
		}
		return len(short) == 0, fmt.Sprintf("partitions of %s with fewer than %d in-sync replicas: %s", topic, n, strings.Join(short, ", "))
	})
}

// lastRefusedAfter is when zenklav last answered a webhook other than 2xx, after t; zero if
// it never did.
func lastRefusedAfter(tr *traffic, t time.Time) time.Time {
	var last time.Time
	for _, a := range tr.answers(t, time.Now()) {
		if !a.ok() && a.done.After(last) {
			last = a.done
		}
	}
	return last
}

// notReady counts the /readyz answers in [from, to) that were not 200.
func (r *readiness) notReady(from, to time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.polls {
		if !p.done.Before(from) && p.done.Before(to) && p.status != 200 {
			n++
		}
	}
	return n
}

// elapsed is how long after from at was, or "never" when at is zero.
func elapsed(from, at time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return at.Sub(from).Round(10 * time.Millisecond).String()
}
