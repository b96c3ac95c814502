package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/schemas"
)

// bulkCeiling is what one Klaviyo account takes through bulk event creation at most:
// 150 requests a minute of 1,000 events.
const bulkCeiling = 150 * klaviyo.MaxBulkEvents / 60.0

// Paths of the Klaviyo endpoints the emitter calls, for the answer counts.
const (
	bulkEventsPath     = "/api/event-bulk-create-jobs"
	profileImportsPath = "/api/profile-bulk-import-jobs"
)

// emitterDrain measures `zenklav emitter` draining a backlog of ticket events into one or
// more Klaviyo accounts, from the Klaviyo simulator's side: from the first event it accepts
// to the last, and how many requests it refused with 429.
func emitterDrain(args []string) error {
	fs := flag.NewFlagSet("emitter", flag.ExitOnError)
	var zf zenklavFlags
	zf.register(fs, "bench_emitter", "127.0.0.1:18091")
	accounts := fs.Int("accounts", 1, "Klaviyo accounts, one connection each")
	n := fs.Int("n", 100_000, "ticket events per account")
	profiles := fs.String("cpuprofile", "", "directory for CPU profiles of zenklav and of this process (the simulators), 30 s from the first delivery")
	fs.Parse(args)
	if zf.brokers == "" || zf.clickhouse == "" {
		return fmt.Errorf("emitter needs -brokers and -clickhouse")
	}
	ctx, logger, bs, dir, s, done, err := prepare("emitter", zf.brokers)
	if err != nil {
		return err
	}
	defer done()
	conns := drainConnections(*accounts)
	connsFile, err := s.addConnections(dir, conns)
	if err != nil {
		return err
	}
	d := newDeliveries()
	s.klaviyo.OnAccept(d.accept)

	if err := requireIdleGroup(ctx, bs, emitter.Group); err != nil {
		return err
	}
	if err := produceBacklog(ctx, logger, bs, conns, *n); err != nil {
		return err
	}

	env := s.env(zf, connsFile)
	if *profiles != "" {
		env["ZENKLAV_PPROF_ADDR"] = "127.0.0.1:18061"
	}
	started := time.Now()
	p, err := startZenklav(ctx, zf.bin, "emitter", dir, env)
	if err != nil {
		return err
	}
	defer p.stop()
	names := map[int]string{p.pid(): "zenklav emitter", os.Getpid(): "loadgen (simulators)"}

	want := *accounts * *n
	// Three times what the ceiling allows, and minutes for the start: a slower run is
	// worth a number, a stuck one is not.
	timeout := 3*time.Duration(float64(*n)/bulkCeiling*float64(time.Second)) + 3*time.Minute
	var profiled sync.WaitGroup
	defer profiled.Wait()
	atFirst := func() error {
		if err := requireSoleEmitter(ctx, bs); err != nil {
			return err
		}
		if *profiles != "" {
			return profileBoth(&profiled, env["ZENKLAV_PPROF_ADDR"], *profiles)
		}
		return nil
	}
	first, last, err := waitDrained(ctx, p, d, want, started, timeout, atFirst)
	if err != nil {
		return err
	}
	hwm, err := peakRSS(p.pid())
	if err != nil {
		return err
	}
	p.stop()
	printDrain(d, s.answers, *accounts, *n, started, cpuReport(first, last, names), hwm)
	return nil
}

// drainConnections are the connections of accounts Klaviyo accounts. Their tenants are new
// to every run: the topic and the group are shared with every earlier run, and an event
// of ours left there by an interrupted run must not count in this one.
func drainConnections(accounts int) []benchConnection {
	stamp := time.Now().Unix()
	conns := make([]benchConnection, accounts)
	for i := range conns {
		conns[i] = benchConnection{
			id:         fmt.Sprintf("drain%d-%d", stamp, i+1),
			secret:     "drain-webhook-signing-secret",
			klaviyoKey: fmt.Sprintf("pk_drain_%d_%d", stamp, i+1),
		}
	}
	return conns
}

// requireSoleEmitter fails when the emitter's group has a member besides the zenklav of this
// run: the other would consume the shared topic and pass over our events.
func requireSoleEmitter(ctx context.Context, brokers []string) error {
	if members, err := groupMembers(ctx, brokers, emitter.Group); err != nil || members > 1 {
		return fmt.Errorf("group %s has %d members (%v): another emitter is consuming the shared topic and would pass over our events; stop it first",
			emitter.Group, members, err)
	}
	return nil
}

// waitDrained waits until the Klaviyo simulator has accepted want events, and samples the
// CPU at the first accepted event and at the last; atFirst runs right after the first
// sample. It gives up when zenklav exits, or when within has passed since started.
func waitDrained(ctx context.Context, p *zenklavProcess, d *deliveries, want int, started time.Time, within time.Duration,
	atFirst func() error) (first, last cpuSample, err error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return first, last, ctx.Err()
		case <-p.exited():
			return first, last, fmt.Errorf("zenklav emitter exited during the drain:\n%s", p.tail(30))
		case <-tick.C:
		}
		got := d.total()
		if got > 0 && first.at.IsZero() {
			first = sampleCPU()
			if err := atFirst(); err != nil {
				return first, last, err
			}
		}
		if got >= want {
			return first, sampleCPU(), nil
		}
		if time.Since(started) > within {
			return first, last, fmt.Errorf("the Klaviyo simulator accepted %d of %d events within %s; zenklav's log:\n%s", got, want, within, p.tail(30))
		}
	}
}

// printDrain prints the drain's row, with cpu where the CPU went, and the emitter's peak
// memory, hwm.
func printDrain(d *deliveries, answers *answerCounter, accounts, n int, started time.Time, cpu, hwm string) {
	all := d.all()
	label := "1 Klaviyo account"
	load := fmt.Sprintf("%s ticket events waiting in Kafka", thousands(n))
	ceiling := bulkCeiling * float64(accounts)
	perAccount := ""
	if accounts > 1 {
		label = fmt.Sprintf("%d Klaviyo accounts", accounts)
		load = fmt.Sprintf("%d × %s ticket events waiting in Kafka, interleaved", accounts, thousands(n))
		lo, hi := d.rateRange()
		perAccount = fmt.Sprintf("each account %s–%s/s; ", thousands(int(lo)), thousands(int(hi)))
	}
	fmt.Printf("| emitter drain, %s | %s | %s events/s = %.1f %% of %s/s | %sbulk requests %s; profile imports %s; %.1f s from the first accepted event to the last, %.1f s from starting zenklav emitter; %s |\n",
		label, load, thousands(int(all.rate())), 100*all.rate()/ceiling, thousands(int(ceiling)), perAccount,
		answers.get(bulkEventsPath), answers.get(profileImportsPath),
		all.last.Sub(all.first).Seconds(), all.last.Sub(started).Seconds(), cpu)
	fmt.Printf("| peak memory (VmHWM), zenklav emitter | after the drain into %s | %s | |\n", label, hwm)
}

// profileBoth profiles zenklav (through its pprof listener) and this process for 30 s.
func profileBoth(wg *sync.WaitGroup, pprofAddr, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stop, err := cpuProfile(filepath.Join(dir, "loadgen.pprof"))
	if err != nil {
		return err
	}
	const seconds = 30
	wg.Go(func() {
		if err := fetchProfile(pprofAddr, seconds, filepath.Join(dir, "zenklav.pprof")); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
		}
	})
	wg.Go(func() {
		time.Sleep(seconds * time.Second)
		stop()
	})
	return nil
}

// produceBacklog publishes n created tickets for each connection, interleaved as accounts
// send them side by side, before the emitter starts: the drain measures the emitter alone.
func produceBacklog(ctx context.Context, logger *slog.Logger, brokers []string, conns []benchConnection, n int) error {
	if err := kafka.EnsureTopics(ctx, brokers,
		kafka.Topic{Name: schemas.TicketEventsTopic, Partitions: 4},
		kafka.Topic{Name: schemas.TicketEventsDLQTopic, Partitions: 4},
	); err != nil {
		return err
	}
	p := kafka.NewProducer(logger, brokers)
	defer p.Close()
	// The tickets changed over the past n seconds; their webhooks arrived just now, as after
	// an outage of the emitter: older arrivals would be sent as backfill.
	now := time.Now().UTC()
	base := now.Add(-time.Duration(n) * time.Second)
	const chunk = 10_000
	msgs := make([]zenklav.Message, 0, chunk)
	flush := func() error {
		err := p.Publish(ctx, msgs...)
		msgs = msgs[:0]
		return err
	}
	for i := 1; i <= n; i++ {
		for _, c := range conns {
			e := drainTicket(c.id, i, base.Add(time.Duration(i)*time.Second), now)
			v, err := e.Marshal()
			if err != nil {
				return err
			}
			msgs = append(msgs, zenklav.Message{Topic: schemas.TicketEventsTopic, Key: []byte(e.Key()), Value: v})
			if len(msgs) == chunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// drainTicket is ticket i of tenant, created, as a trigger-connected webhook delivers it:
// with the requester's email, the description and the custom fields, so the emitter has
// nothing to look up in Zendesk and the drain measures the way to Klaviyo. Every ticket
// has a requester of its own, so every Open_tickets import is a full one.
func drainTicket(tenant string, i int, at, received time.Time) schemas.TicketEvent {
	return schemas.TicketEvent{
		EventID: fmt.Sprintf("zt:%s-%d", tenant, i), Connection: tenant, Account: schemas.Account{Subdomain: tenant},
		Type: schemas.TicketCreated, Source: schemas.SourceTrigger, OccurredAt: at, ReceivedAt: received,
		Ticket: schemas.Ticket{
			ID: int64(i), Subject: fmt.Sprintf("Where is my order #%d?", 10_000+i), Status: zenklav.StatusNew,
			Description: "I ordered a rain jacket last week and the tracking has not moved since Monday.",
			Priority:    "normal", Type: "question", Tags: []string{"shipping", "order_status"},
			Channel: "web", Via: "web_form", URL: fmt.Sprintf("https://%s.zendesk.com/agent/tickets/%d", tenant, i),
			Requester:    schemas.Requester{ID: int64(1_000_000 + i), Email: fmt.Sprintf("customer%d@example.com", i), Name: fmt.Sprintf("Customer %d", i)},
			CustomFields: []schemas.CustomField{{ID: 360001234567, Value: "exchange"}},
		},
	}
}

// deliveries records, by Klaviyo account, what the simulator accepted and when.
type deliveries struct {
	mu       sync.Mutex
	accounts map[string]*accepted // by private key
	sum      int
}

// accepted is one account's deliveries: events, and the times of the first and last
// request that added any.
type accepted struct {
	events      int
	first, last time.Time
	firstEvents int // what the first request added
}

// rate is events per second between the first accepted request and the last. The first
// request's events are left out: they arrived at the start of the interval, not during it.
func (a accepted) rate() float64 {
	secs := a.last.Sub(a.first).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(a.events-a.firstEvents) / secs
}

func newDeliveries() *deliveries {
	return &deliveries{accounts: map[string]*accepted{}}
}

func (d *deliveries) accept(key string, events []klaviyo.Event) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.accounts[key]
	if a == nil {
		a = &accepted{first: now, firstEvents: len(events)}
		d.accounts[key] = a
	}
	a.events += len(events)
	a.last = now
	d.sum += len(events)
}

func (d *deliveries) total() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sum
}

// all is every account together, from the first account's first request to the last
// account's last.
func (d *deliveries) all() accepted {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out accepted
	for _, a := range d.accounts {
		out.events += a.events
		out.firstEvents += a.firstEvents // each account's first request starts its interval
		if out.first.IsZero() || a.first.Before(out.first) {
			out.first = a.first
		}
		if a.last.After(out.last) {
			out.last = a.last
		}
	}
	return out
}

// rateRange is the slowest and the fastest account's rate.
func (d *deliveries) rateRange() (lo, hi float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range d.accounts {
		r := a.rate()
		if lo == 0 || r < lo {
			lo = r
		}
		hi = max(hi, r)
	}
	return lo, hi
}

// thousands formats n with commas, as the tables of docs/benchmarks.md do.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
