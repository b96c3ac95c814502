package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// emitterProcess is `zenklav emitter` run as a child process, so the test can kill it the
// way a crash or an OOM kill would: no shutdown, no last commit.
type emitterProcess struct {
	t   *testing.T
	bin string
	env []string
	cmd *exec.Cmd
	out *syncBuffer
}

func (p *emitterProcess) start() {
	p.t.Helper()
	p.out = &syncBuffer{}
	p.cmd = exec.Command(p.bin, "emitter")
	p.cmd.Env = p.env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// A child left behind would stay in the consumer group and take the partitions from the
	// next test's emitter: it dies with the test.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	cmd := p.cmd
	p.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.out.String(), "zenklav emitter is running") {
		if time.Now().After(deadline) {
			p.t.Fatalf("zenklav emitter did not start within a minute:\n%s", p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *emitterProcess) kill() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// stop ends it as an operator does (SIGTERM) and checks it shut down cleanly.
func (p *emitterProcess) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	if err := p.cmd.Wait(); err != nil {
		p.t.Errorf("zenklav emitter exited with %v:\n%s", err, p.out)
	}
}

// TestEmitterFaults is the fault table of the emitter: a 429 storm, half of all requests
// failing with 503 for a while, Klaviyo down for a minute, a permanent 400, and the emitter
// killed mid-batch and started again. In the end Klaviyo holds every event exactly once,
// the refused event is in the dead-letter topic with Klaviyo's answer, and `zenklav replay`
// delivers it once Klaviyo accepts it.
func TestEmitterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("takes over a minute: Klaviyo is down for one")
	}
	brokers, ch := testenv.Kafka(t), testenv.ClickHouse(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "zenklav")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	zd := zendesktest.NewServer()
	defer zd.Close()
	kl := klaviyotest.NewServer()
	defer kl.Close()
	const key = "pk_faults_test_account"
	kl.AddAccount(key)
	tenant := fmt.Sprintf("faults-%d", rand.N(1_000_000))
	conns := filepath.Join(dir, "connections.json")
	if err := os.WriteFile(conns, fmt.Appendf(nil, `{"connections":[{"id":%q,"zendesk":{"subdomain":%q,
		"email":%q,"api_token":%q,"webhook_secrets":[%q],"brands":"all"},"klaviyo":{"private_key":%q}}]}`,
		tenant, tenant, zendesktest.DefaultEmail, zendesktest.DefaultAPIToken, acmeSecret, key), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &emitterProcess{t: t, bin: bin, env: append(os.Environ(),
		"ZENKLAV_HTTP_ADDR=127.0.0.1:0",
		"ZENKLAV_KAFKA_BROKERS="+brokers,
		"ZENKLAV_CLICKHOUSE_ADDR="+ch,
		"ZENKLAV_CLICKHOUSE_DATABASE="+fmt.Sprintf("faults_%d", rand.N(1_000_000)),
		"ZENKLAV_CONNECTIONS_FILE="+conns,
		"ZENKLAV_ZENDESK_BASE_URL="+zd.URL,
		"ZENKLAV_KLAVIYO_BASE_URL="+kl.URL,
		"ZENKLAV_EMITTER_RETRY_FOR=10m",
		"ZENKLAV_LOG_LEVEL=warn",
	)}
	p.start()

	producer := kafka.NewProducer(slog.New(slog.DiscardHandler), []string{brokers})
	defer producer.Close()
	ctx := context.Background()
	next := 0
	// produce sends n new tickets, created, each of its own requester.
	produce := func(n int) {
		t.Helper()
		msgs := make([]zenklav.Message, n)
		for i := range msgs {
			next++
			e := faultTicket(tenant, next)
			b, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			msgs[i] = zenklav.Message{Topic: schemas.TicketEventsTopic, Key: []byte(e.Key()), Value: b}
		}
		if err := producer.Publish(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	delivered := func() int { return len(kl.Events(key)) }
	waitDelivered := func(n int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for delivered() < n {
			if time.Now().After(deadline) {
				t.Fatalf("Klaviyo holds %d of %d events after %s; emitter output:\n%s", delivered(), n, within, tail(p.out.String(), 60))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Outages: while each lasts, Klaviyo keeps what it had and no more; once it is over,
	// everything arrives.
	for _, f := range []struct {
		name     string
		status   int
		fraction float64
		events   int
		lasts    time.Duration
	}{
		{"429 storm", http.StatusTooManyRequests, 1, 500, 3 * time.Second},
		{"half of the requests fail", http.StatusServiceUnavailable, 0.5, 2000, 10 * time.Second},
		{"Klaviyo down for a minute", http.StatusServiceUnavailable, 1, 500, time.Minute},
	} {
		t.Logf("%s: %s, %d events produced before", time.Now().Format(time.TimeOnly), f.name, next)
		kl.SetFault(f.status, f.fraction)
		before := delivered()
		produce(f.events)
		time.Sleep(f.lasts) // the outage itself
		if n := delivered(); f.fraction == 1 && n != before {
			t.Fatalf("%s: Klaviyo holds %d events, want the %d it had", f.name, n, before)
		}
		kl.SetFault(0, 0)
		waitDelivered(next, 2*time.Minute)
	}

	t.Logf("%s: %d events produced so far", time.Now().Format(time.TimeOnly), next)
	// A permanent 400 for one event among others: only it is refused.
	refused := next + 7
	refusedID := fmt.Sprintf("zendesk:%s:%d:opened", tenant, refused)
	kl.RefuseEvents(func(e klaviyo.Event) bool { return e.UniqueID == refusedID })
	produce(50)
	waitDelivered(next-1, time.Minute)

	t.Logf("%s: %d events produced so far", time.Now().Format(time.TimeOnly), next)
	// Killed mid-batch: slow answers keep requests in flight when the process dies.
	kl.SetLatency(500 * time.Millisecond)
	before := delivered()
	produce(10_000) // ten bulk requests: more than the bucket lets go at once
	deadline := time.Now().Add(time.Minute)
	for delivered() == before {
		if time.Now().After(deadline) {
			t.Fatalf("nothing delivered within a minute:\n%s", tail(p.out.String(), 60))
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.kill()
	if delivered() >= next-1 {
		t.Fatalf("the emitter was killed after it had delivered everything; the test proves nothing")
	}
	kl.SetLatency(0)
	p.start()
	waitDelivered(next-1, 2*time.Minute)
	waitCaughtUp(t, brokers)

	t.Logf("%s: %d events produced so far", time.Now().Format(time.TimeOnly), next)
	// The refused event, and only it, is a dead letter with the reason and Klaviyo's answer.
	// It may be there twice: dead letters are at least once too, and a kill before the
	// commit sends the event, and so its dead letter, again.
	dls := deadLetters(t, brokers, tenant)
	if len(dls) == 0 {
		t.Fatal("no dead letter for the refused event")
	}
	for _, dl := range dls {
		if dl[kafka.HeaderTicket] != strconv.Itoa(refused) || !strings.Contains(dl[kafka.HeaderResponse], `"status":400`) ||
			dl[kafka.HeaderRole] != "emitter" || dl[kafka.HeaderReason] == "" {
			t.Errorf("dead letter headers %v, want ticket %d, role emitter, a reason and the 400 answer", dl, refused)
		}
	}

	t.Logf("%s: %d events produced so far", time.Now().Format(time.TimeOnly), next)
	// Replay, once Klaviyo accepts the event, delivers it; replaying twice changes nothing.
	kl.RefuseEvents(nil)
	for range 2 {
		var out bytes.Buffer
		env := map[string]string{"ZENKLAV_KAFKA_BROKERS": brokers}
		if err := run(ctx, []string{"replay", "--connection", tenant}, func(k string) string { return env[k] }, &out); err != nil {
			t.Fatalf("replay: %v\n%s", err, out.String())
		}
	}
	waitDelivered(next, time.Minute)
	waitCaughtUp(t, brokers)
	p.stop()

	// Exactly once: every ticket's Opened Ticket, none twice, nothing else.
	seen := map[string]int{}
	for _, e := range kl.Events(key) {
		seen[e.UniqueID]++
	}
	for i := 1; i <= next; i++ {
		id := fmt.Sprintf("zendesk:%s:%d:opened", tenant, i)
		if seen[id] != 1 {
			t.Errorf("%s is in Klaviyo %d times, want once", id, seen[id])
		}
		delete(seen, id)
	}
	if len(seen) > 0 {
		t.Errorf("Klaviyo holds events nobody sent: %v", seen)
	}
	kl.AssertNoViolations(t)
}

// faultTicket is ticket i of tenant, created, with everything the metric needs, so the
// emitter has nothing to look up.
func faultTicket(tenant string, i int) schemas.TicketEvent {
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return schemas.TicketEvent{
		EventID: fmt.Sprintf("zt:%s-%d", tenant, i), Connection: tenant, Account: schemas.Account{Subdomain: tenant},
		Type: schemas.TicketCreated, Source: schemas.SourceTrigger, OccurredAt: at, ReceivedAt: time.Now().UTC(),
		Ticket: schemas.Ticket{
			ID: int64(i), Subject: "Order " + strconv.Itoa(i), Description: "Where is it?", Status: zenklav.StatusNew,
			Channel: "web", Via: "web_form", URL: fmt.Sprintf("https://%s.zendesk.com/agent/tickets/%d", tenant, i),
			Requester:    schemas.Requester{ID: int64(100_000 + i), Email: fmt.Sprintf("customer%d@example.com", i)},
			CustomFields: []schemas.CustomField{{ID: 1, Value: "x"}},
		},
	}
}

// waitCaughtUp waits until the emitter's group has committed the whole topic.
func waitCaughtUp(t *testing.T, brokers string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		p, err := kafka.GroupProgress(context.Background(), []string{brokers}, schemas.TicketEventsTopic, emitter.Group)
		if err == nil && p.Committed == p.End {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the emitter has not committed the topic after a minute: %+v (%v)", p, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deadLetters returns the headers of tenant's dead letters.
func deadLetters(t *testing.T, brokers, tenant string) []map[string]string {
	t.Helper()
	conn, err := kafkago.Dial("tcp", brokers)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(schemas.TicketEventsDLQTopic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	var found []map[string]string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, part := range parts {
		wg.Go(func() {
			r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{brokers}, Topic: schemas.TicketEventsDLQTopic, Partition: part.ID})
			defer r.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			end, err := r.ReadLag(ctx)
			if err != nil || end == 0 {
				return
			}
			for range end {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				h := map[string]string{}
				for _, x := range m.Headers {
					h[x.Key] = string(x.Value)
				}
				if h[kafka.HeaderConnection] == tenant {
					mu.Lock()
					found = append(found, h)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return found
}

func tail(s string, lines int) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	var all []string
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
