package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
	"github.com/zenklav/zenklav/zendesk"
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
	var zf zenklavFlags
	zf.register(fs, "bench_emitter", "127.0.0.1:18092")
	rate := fs.Int("rate", 150, "webhooks per second")
	duration := fs.Duration("duration", 30*time.Second, "how long to send")
	fs.Parse(args)
	if zf.brokers == "" || zf.clickhouse == "" || *rate <= 0 {
		return fmt.Errorf("latency needs -brokers, -clickhouse and a positive -rate")
	}
	ctx, _, bs, dir, s, done, err := prepare("latency", zf.brokers)
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
	connsFile, err := s.addConnections(dir, []benchConnection{conn})
	if err != nil {
		return err
	}
	arrivals := newArrivals()
	s.klaviyo.OnAccept(arrivals.accept)

	// Every ticket and payload exists before the clock starts, each with a requester of its
	// own, so every one needs both lookups.
	n := *rate * int(duration.Seconds())
	ids, bodies, err := s.ticketWebhooks(latencyWarmup+n, latencyCustomer, latencyTicket)
	if err != nil {
		return err
	}

	p, err := startAll(ctx, zf.bin, dir, bs, s.env(zf, connsFile))
	if err != nil {
		return err
	}
	defer p.stop()
	w := newWebhookSender(ctx, s, zf.httpAddr, conn, bodies)
	if err := warmUp(ctx, p, w, arrivals, ids[:latencyWarmup]); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	sent := make([]time.Time, len(ids))
	interval := time.Second / time.Duration(*rate)
	before := sampleCPU()
	start := time.Now()
	paceWebhooks(start, interval, latencyWarmup, len(ids), sent, w.send)
	sending := time.Since(start)
	after := sampleCPU()
	if err := w.err(); err != nil {
		return err
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
	fmt.Printf("| webhook → Klaviyo, `zenklav all`, no backlog | %s signed event webhooks at %d/s for %s, each ticket and requester looked up in Zendesk | %.0f/s | p50 %s, p95 %s, p99 %s, max %s; bulk requests %s; %s |\n",
		thousands(n), *rate, duration, float64(n)/sending.Seconds(), secs(quantile(lat, .50)), secs(quantile(lat, .95)), secs(quantile(lat, .99)), secs(lat[len(lat)-1]),
		s.answers.get(bulkEventsPath), cpuReport(before, after, map[int]string{p.pid(): "zenklav all", os.Getpid(): "loadgen (simulators)"}))
	return nil
}

// latencyCustomer is the requester of ticket i.
func latencyCustomer(i int) zendesk.User {
	return zendesk.User{Name: fmt.Sprintf("Customer %d", i), Email: fmt.Sprintf("customer%d@example.com", i)}
}

// latencyTicket is ticket i, filled in as a customer's question about an order is, so the
// emitter's lookup of it reads a whole ticket.
func latencyTicket(i int, requester int64) zendesk.Ticket {
	return zendesk.Ticket{
		Subject: fmt.Sprintf("Where is my order #%d?", 10_000+i), Status: "new", Priority: "normal", Type: "question",
		Description: "I ordered a rain jacket last week and the tracking has not moved since Monday.",
		Tags:        []string{"shipping"}, Via: zendesk.Via{Channel: "web"}, RequesterID: requester,
		CustomFields: []zendesk.CustomField{{ID: 360001234567, Value: "exchange"}},
	}
}

// warmUp sends the warm-up webhooks, ids, one every 50 ms, and waits until their events have
// reached the Klaviyo simulator: the emitter has joined its group and every connection on the
// way is open before the clock starts.
func warmUp(ctx context.Context, p *zenklavProcess, w *webhookSender, a *arrivals, ids []int64) error {
	for i := range ids {
		w.send(i)
		time.Sleep(50 * time.Millisecond)
	}
	return a.wait(ctx, p, ids, 2*time.Minute)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// startAll starts bin/zenklav all once no other emitter consumes the shared topic, and
// waits until it has caught up with the topic; it stops the process when that fails.
func startAll(ctx context.Context, bin, dir string, brokers []string, env map[string]string) (*zenklavProcess, error) {
	if err := requireIdleGroup(ctx, brokers, emitter.Group); err != nil {
		return nil, err
	}
	p, err := startZenklav(ctx, bin, "all", dir, env)
	if err != nil {
		return nil, err
	}
	// "No backlog": the shared topic may hold what earlier runs left to the sink and the
	// emitter of `zenklav all`; that waits until both have caught up.
	if err := waitCaughtUp(ctx, brokers, p, emitter.Group, sink.Group, sink.Group+sink.TicketRowsSuffix); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

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
