package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// latencyWarmup is how many webhooks go through before the clock starts: they prove the
// emitter has joined its group and every connection on the way is open.
const latencyWarmup = 20

// latency measures the way of a ticket from Zendesk to Klaviyo with no backlog: signed
// event-subscribed webhooks, as Zendesk sends them, into `zenklav all` at a steady rate,
// each timed from its sending to the Klaviyo simulator accepting its event. The webhooks
// carry what Zendesk's do, so the emitter looks up each ticket and requester in the
// Zendesk simulator on the way.
func latency(args []string) error {
	fs := flag.NewFlagSet("latency", flag.ExitOnError)
	bin := fs.String("zenklav", "bin/zenklav", "the zenklav binary")
	brokers := fs.String("brokers", "", "Kafka brokers")
	ch := fs.String("clickhouse", "", "ClickHouse native address")
	database := fs.String("database", "bench_emitter", "zenklav's ClickHouse database")
	httpAddr := fs.String("http", "127.0.0.1:18092", "zenklav's HTTP listener")
	rate := fs.Int("rate", 150, "webhooks per second")
	duration := fs.Duration("duration", 30*time.Second, "how long to send")
	fs.Parse(args)
	if *brokers == "" || *ch == "" || *rate <= 0 {
		return fmt.Errorf("latency needs -brokers, -clickhouse and a positive -rate")
	}
	ctx, _, bs, dir, s, done, err := prepare("latency", *brokers)
	if err != nil {
		return err
	}
	defer done()
	// Zendesk's 700 requests a minute is an account's whole budget; the lookups are what is
	// measured here, not that plan's limit.
	s.zendesk.SetRateLimit(1_000_000)
	conn := benchConnection{
		id:         fmt.Sprintf("latency%d", time.Now().Unix()),
		secret:     "latency-webhook-signing-secret",
		klaviyoKey: fmt.Sprintf("pk_latency_%d", time.Now().Unix()),
	}
	s.klaviyo.AddAccount(conn.klaviyoKey)
	connsFile := filepath.Join(dir, "connections.json")
	if err := writeConnections(connsFile, []benchConnection{conn}); err != nil {
		return err
	}
	arrivals := newArrivals()
	s.klaviyo.OnAccept(arrivals.accept)

	// Every ticket and payload exists before the clock starts, each with a requester of its
	// own, so every one needs both lookups.
	n := *rate * int(duration.Seconds())
	ids := make([]int64, latencyWarmup+n)
	bodies := make([][]byte, len(ids))
	for i := range ids {
		u := s.zendesk.AddUser(zendesk.User{Name: fmt.Sprintf("Customer %d", i), Email: fmt.Sprintf("customer%d@example.com", i)})
		t := s.zendesk.AddTicket(zendesk.Ticket{
			Subject: fmt.Sprintf("Where is my order #%d?", 10_000+i), Status: "new", Priority: "normal", Type: "question",
			Description: "I ordered a rain jacket last week and the tracking has not moved since Monday.",
			Tags:        []string{"shipping"}, Via: zendesk.Via{Channel: "web"}, RequesterID: u.ID,
			CustomFields: []zendesk.CustomField{{ID: 360001234567, Value: "exchange"}},
		})
		ids[i] = t.ID
		if bodies[i], err = s.zendesk.TicketCreated(t.ID, zendesktest.EventMeta{}); err != nil {
			return err
		}
	}

	if err := requireIdleGroup(ctx, bs, emitter.Group); err != nil {
		return err
	}
	p, err := startZenklav(ctx, *bin, "all", dir, s.env(*httpAddr, *brokers, *ch, *database, connsFile))
	if err != nil {
		return err
	}
	defer p.stop()
	// "No backlog": the shared topic may hold what earlier runs left to the sink and the
	// emitter of `zenklav all`; that waits until both have caught up.
	if err := waitCaughtUp(ctx, bs, p, emitter.Group, sink.Group, sink.Group+sink.TicketRowsSuffix); err != nil {
		return err
	}
	url := "http://" + *httpAddr + "/webhooks/zendesk/" + conn.id
	send := func(i int, failed *atomic.Int64) {
		if err := webhookAccepted(s.zendesk.SendWebhook(ctx, url, conn.secret, bodies[i])); err != nil {
			failed.Add(1)
			fmt.Fprintln(os.Stderr, "loadgen: webhook:", err)
		}
	}
	var failed atomic.Int64
	for i := range latencyWarmup {
		send(i, &failed)
		time.Sleep(50 * time.Millisecond)
	}
	if err := arrivals.wait(ctx, p, ids[:latencyWarmup], 2*time.Minute); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	sent := make([]time.Time, len(ids))
	interval := time.Second / time.Duration(*rate)
	var wg sync.WaitGroup
	before := sampleCPU()
	start := time.Now()
	for i := latencyWarmup; i < len(ids); i++ {
		at := start.Add(time.Duration(i-latencyWarmup) * interval)
		time.Sleep(time.Until(at))
		sent[i] = time.Now()
		// Each webhook on its own goroutine, as Zendesk's senders are independent: a slow
		// answer does not hold up the next one.
		wg.Go(func() { send(i, &failed) })
	}
	wg.Wait()
	sending := time.Since(start)
	after := sampleCPU()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d webhooks were not accepted", f)
	}
	if err := arrivals.wait(ctx, p, ids[latencyWarmup:], time.Minute); err != nil {
		return err
	}
	p.stop()

	lat := make([]time.Duration, 0, n)
	for i := latencyWarmup; i < len(ids); i++ {
		lat = append(lat, arrivals.at(ids[i]).Sub(sent[i]))
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	fmt.Printf("| webhook → Klaviyo, `zenklav all`, no backlog | %s signed event webhooks at %d/s for %s, each ticket and requester looked up in Zendesk | %.0f/s | p50 %s, p95 %s, p99 %s, max %s; bulk requests %s; %s |\n",
		thousands(n), *rate, duration, float64(n)/sending.Seconds(), secs(q(.50)), secs(q(.95)), secs(q(.99)), secs(lat[len(lat)-1]),
		s.answers.get(bulkEventsPath), cpuReport(before, after, map[int]string{p.pid(): "zenklav all", os.Getpid(): "loadgen (simulators)"}))
	return nil
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// waitCaughtUp waits until each group has committed the whole ticket-events topic.
func waitCaughtUp(ctx context.Context, brokers []string, p *zenklavProcess, groups ...string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for _, g := range groups {
		for {
			prog, err := kafka.GroupProgress(ctx, brokers, schemas.TicketEventsTopic, g)
			if err == nil && prog.Committed >= prog.End {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("group %s has not caught up with %s within 5 minutes: %+v (%v)", g, schemas.TicketEventsTopic, prog, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-p.exited():
				return fmt.Errorf("zenklav exited:\n%s", p.tail(30))
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// arrivals is when the Klaviyo simulator accepted each ticket's event.
type arrivals struct {
	mu sync.Mutex
	by map[int64]time.Time // by ticket id
}

func newArrivals() *arrivals { return &arrivals{by: map[int64]time.Time{}} }

// accept notes the events' tickets, from their unique ids: zendesk:<tenant>:<ticket>:opened.
func (a *arrivals) accept(_ string, events []klaviyo.Event) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range events {
		parts := strings.Split(e.UniqueID, ":")
		if len(parts) != 4 {
			continue
		}
		if id, err := strconv.ParseInt(parts[2], 10, 64); err == nil {
			if _, seen := a.by[id]; !seen {
				a.by[id] = now
			}
		}
	}
}

func (a *arrivals) at(id int64) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.by[id]
}

// wait waits until every ticket of ids has arrived.
func (a *arrivals) wait(ctx context.Context, p *zenklavProcess, ids []int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		missing := 0
		for _, id := range ids {
			if a.at(id).IsZero() {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d events had not reached Klaviyo after %s; zenklav's log:\n%s", missing, len(ids), within, p.tail(30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited():
			return fmt.Errorf("zenklav exited:\n%s", p.tail(30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
