package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
	"github.com/zenklav/zenklav/zendesk"
)

// The cluster measurements (issue 16) run against a Kafka cluster of their own: three KRaft
// brokers on loopback, started by internal/testenv's StartKafkaCluster (build/kafka.sh), with
// every topic replicated as zenklav chooses for three brokers (3 replicas, min.insync.replicas
// 2). Each role runs as 1 and then 2 replicas, separate processes of bin/zenklav, against it
// and a ClickHouse database of the run's own; then, with webhooks flowing into 2 replicas of
// `zenklav api`, the broker leading partition 0 of ticket-events.v1 is killed with SIGKILL.

// clusterFlags are the sizes of the cluster measurements.
type clusterFlags struct {
	zenklavFlags
	nodes                     int
	webhooks, warmup, senders int
	sinkEvents, sinkBatch     int
	foldFor                   time.Duration
	accounts, perAccount      int
	killRate                  int
	killFor                   time.Duration
}

func (f *clusterFlags) parse(args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ExitOnError)
	f.register(fs, "", "")
	fs.IntVar(&f.nodes, "nodes", 3, "Kafka brokers (KRaft, each a controller too)")
	fs.IntVar(&f.webhooks, "webhooks", 40_000, "webhooks timed into the api replicas, each run")
	fs.IntVar(&f.warmup, "warmup", 20_000, "webhooks sent before timing, each run")
	fs.IntVar(&f.senders, "c", 32, "concurrent webhook senders")
	fs.IntVar(&f.sinkEvents, "sink-events", 500_000, "ticket events waiting for the sink replicas, each run")
	fs.IntVar(&f.sinkBatch, "sink-batch", 100_000, "the sink's batch size (ZENKLAV_SINK_BATCH_SIZE)")
	fs.DurationVar(&f.foldFor, "fold-for", 25*time.Second, "how long the fold into report rows is followed after the copy")
	fs.IntVar(&f.accounts, "accounts", 10, "Klaviyo accounts of the emitter drains, one connection each")
	fs.IntVar(&f.perAccount, "n", 20_000, "ticket events per account, each emitter run")
	fs.IntVar(&f.killRate, "kill-rate", 100, "webhooks a second while a broker is killed")
	fs.DurationVar(&f.killFor, "kill-for", 40*time.Second, "how long webhooks go on after the kill at most")
	fs.Parse(args)
	if f.clickhouse == "" || f.nodes < 3 || f.webhooks < 1 || f.sinkEvents < 1 || f.accounts < 1 || f.perAccount < 1 || f.killRate < 1 {
		return fmt.Errorf("cluster needs -clickhouse, -nodes ≥ 3 and positive sizes")
	}
	return nil
}

// clusterBench is one run of the cluster measurements.
type clusterBench struct {
	ctx     context.Context
	f       clusterFlags
	s       *sims
	dir     string
	tb      *benchTB
	kc      *testenv.KafkaCluster
	brokers []string
	stamp   int64
	secret  string
	// ingestConns is the connections file of the api and sink replicas: the bench connection
	// the ingest webhooks are signed for.
	ingestConns string
	// ingested is how many webhooks the ingest runs sent so far: each run's tickets are new.
	ingested int
	// sunk is how many events the sink runs published so far.
	sunk int
}

// clusterReplicas is `loadgen cluster`.
func clusterReplicas(args []string) error {
	var f clusterFlags
	if err := f.parse(args); err != nil {
		return err
	}
	ctx, logger, _, dir, s, done, err := prepare("cluster", "")
	if err != nil {
		return err
	}
	defer done()
	b := &clusterBench{ctx: ctx, f: f, s: s, dir: dir, tb: &benchTB{dir: dir}, stamp: time.Now().Unix(), secret: "bench-webhook-signing-secret"}
	defer b.tb.cleanup() // before done removes dir: the brokers stop first

	started := time.Now()
	if err := b.tb.do(func() { b.kc = testenv.StartKafkaCluster(b.tb, f.nodes) }); err != nil {
		return fmt.Errorf("start the Kafka cluster: %w", err)
	}
	b.brokers = b.kc.Brokers()
	b.f.brokers = strings.Join(b.brokers, ",")
	fmt.Fprintf(os.Stderr, "loadgen: %d Kafka brokers started in %.1f s: %s\n", f.nodes, time.Since(started).Seconds(), b.f.brokers)

	// zenklav's topics as zenklav makes them on three brokers (Replication zero: chosen from
	// the cluster), before anything is published.
	if err := kafka.EnsureTopics(ctx, b.brokers,
		kafka.Topic{Name: schemas.TicketEventsTopic, Partitions: 4},
		kafka.Topic{Name: schemas.TicketEventsDLQTopic, Partitions: 4},
	); err != nil {
		return err
	}
	// The database of the run's own, migrated once here: replicas started side by side would
	// race for the migrations.
	b.f.database = fmt.Sprintf("bench_cluster_%d", b.stamp)
	store, err := analytics.Open(ctx, logger, analytics.Config{Addr: f.clickhouse, Database: b.f.database, User: "default"})
	if err != nil {
		return err
	}
	defer store.Close()
	defer store.Exec(context.Background(), "DROP DATABASE IF EXISTS "+b.f.database) //nolint:errcheck // best effort
	if _, err := store.Migrate(ctx); err != nil {
		return err
	}
	if b.ingestConns, err = writeConnectionsIn(dir, []benchConnection{{id: "bench", secret: b.secret, klaviyoKey: "pk_bench_ingest"}}); err != nil {
		return err
	}

	// The sink first, on a topic that holds only its events; then the emitter, which passes
	// over them (no connection of its own) to its backlog; then the webhooks, with no
	// consumer running.
	for _, n := range []int{1, 2} {
		if err := b.sinkRun(n); err != nil {
			return fmt.Errorf("sink, %d replicas: %w", n, err)
		}
	}
	for _, n := range []int{1, 2} {
		if err := b.emitterRun(n); err != nil {
			return fmt.Errorf("emitter, %d replicas: %w", n, err)
		}
	}
	if _, err := b.ingestRun(1, false); err != nil {
		return fmt.Errorf("ingest, 1 replica: %w", err)
	}
	apis, err := b.ingestRun(2, true)
	if err != nil {
		return fmt.Errorf("ingest, 2 replicas: %w", err)
	}
	defer stopAll(apis)
	return b.brokerKill(apis)
}

// replicas starts n processes of role side by side, each on an HTTP port of its own, and
// waits until every one is ready; names gets each one's pid.
func (b *clusterBench) replicas(role string, n int, connections string, extra map[string]string, names map[int]string) ([]*zenklavProcess, error) {
	procs := make([]*zenklavProcess, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		f := b.f.zenklavFlags
		f.httpAddr = addr
		env := b.s.env(f, connections)
		for k, v := range extra {
			env[k] = v
		}
		d := filepath.Join(b.dir, fmt.Sprintf("%s-%d-of-%d", role, i+1, n))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		env["ZENKLAV_DATA_DIR"] = d
		wg.Go(func() { procs[i], errs[i] = startZenklav(b.ctx, b.f.bin, role, d, env) })
	}
	wg.Wait()
	var started []*zenklavProcess
	for _, p := range procs {
		if p != nil {
			started = append(started, p)
		}
	}
	if err := errors.Join(errs...); err != nil {
		stopAll(started)
		return nil, err
	}
	for i, p := range procs {
		names[p.pid()] = fmt.Sprintf("zenklav %s %d", role, i+1)
	}
	return procs, nil
}

// stopAll stops every process side by side: each leaves its groups as it goes.
func stopAll(procs []*zenklavProcess) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// names is the pids this run knows by name: the brokers and the load generator.
func (b *clusterBench) names() map[int]string {
	out := map[int]string{os.Getpid(): "loadgen"}
	for i, s := range b.kc.Nodes {
		raw, err := os.ReadFile(filepath.Join(s.Dir(), "kafka.pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil {
			out[pid] = fmt.Sprintf("kafka %d", i+1)
		}
	}
	return out
}

// sinkRun publishes -sink-events ticket events and times n replicas of `zenklav sink`
// copying them into ClickHouse (group zenklav-sink) and folding them into the report rows
// (its -ticket-rows group), from the groups' committed offsets.
func (b *clusterBench) sinkRun(n int) error {
	ctx := b.ctx
	p := kafka.NewProducer(warnLogger(), b.brokers)
	err := publishClusterSinkEvents(ctx, p, b.sunk, b.f.sinkEvents)
	p.Close()
	if err != nil {
		return err
	}
	b.sunk += b.f.sinkEvents
	groups := []string{sink.Group, sink.Group + sink.TicketRowsSuffix}
	before := make([]int64, len(groups))
	var end int64
	for i, g := range groups {
		prog, err := retryProgress(ctx, b.brokers, g)
		if err != nil {
			return err
		}
		before[i], end = prog.Committed, prog.End
	}
	names := b.names()
	started := time.Now()
	procs, err := b.replicas("sink", n, b.ingestConns, map[string]string{"ZENKLAV_SINK_BATCH_SIZE": strconv.Itoa(b.f.sinkBatch)}, names)
	if err != nil {
		return err
	}
	defer stopAll(procs)
	ready := time.Since(started)
	cpu0 := sampleCPU()
	prog, cpuCopy, err := b.followSinkGroups(procs, groups, before, end)
	if err != nil {
		return err
	}
	cpuEnd := sampleCPU()
	hwms := make([]string, n)
	for i, p := range procs {
		if hwms[i], err = peakRSS(p.pid()); err != nil {
			return err
		}
	}
	cp := prog[0]
	rate := 0.0
	if cp.doneAt.After(cp.firstAt) {
		rate = float64(end-cp.first) / cp.doneAt.Sub(cp.firstAt).Seconds()
	}
	fmt.Printf("| cluster: sink Kafka → ClickHouse, %s | %s events waiting, batches of %s, 4 partitions × 3 replicas | %s events/s | from its first commit to its last (the first commit's events left out); %.1f s from starting the replicas (%.1f s to ready), %s events/s counting the group's join; peak memory %s; %s |\n",
		plural(n, "replica"), thousands(b.f.sinkEvents), thousands(b.f.sinkBatch), thousands(int(rate)),
		cp.doneAt.Sub(started).Seconds(), ready.Seconds(), thousands(int(float64(end-before[0])/cp.doneAt.Sub(started).Seconds())),
		strings.Join(hwms, ", "), clusterCPU(cpu0, cpuCopy, names))
	fp := prog[1]
	state := "all folded"
	if fp.doneAt.IsZero() {
		state = fmt.Sprintf("%s of %s folded when followed for %s after the copy", thousands(int(fp.last-before[1])), thousands(int(end-before[1])), b.f.foldFor)
	}
	foldRate := 0.0
	if fp.lastAt.After(fp.firstAt) {
		foldRate = float64(fp.last-fp.first) / fp.lastAt.Sub(fp.firstAt).Seconds()
	}
	fmt.Printf("| cluster: sink fold into report rows, %s | the same events, side by side with the copy | %s events/s | %s; from its first commit to its last; %s |\n",
		plural(n, "replica"), thousands(int(foldRate)), state, clusterCPU(cpu0, cpuEnd, names))
	return nil
}

// sinkProgress is how far a sink group got: its first commit past where it started, its
// last, and when it reached the end.
type sinkProgress struct {
	firstAt, doneAt, lastAt time.Time
	first, last             int64
}

// followSinkGroups watches the sink's groups until the copy is done and the fold too, or has
// been followed for -fold-for after it; it samples the CPU when the copy is done.
func (b *clusterBench) followSinkGroups(procs []*zenklavProcess, groups []string, before []int64, end int64) ([]sinkProgress, cpuSample, error) {
	prog := make([]sinkProgress, len(groups))
	var cpuCopy cpuSample
	deadline := time.Now().Add(3 * time.Minute)
	for {
		now := time.Now()
		for i, g := range groups {
			if !prog[i].doneAt.IsZero() {
				continue
			}
			gp, err := kafka.GroupProgress(b.ctx, b.brokers, schemas.TicketEventsTopic, g)
			if err != nil {
				continue
			}
			if gp.Committed > before[i] && prog[i].firstAt.IsZero() {
				prog[i].firstAt, prog[i].first = now, gp.Committed
			}
			if gp.Committed > prog[i].last {
				prog[i].lastAt, prog[i].last = now, gp.Committed
			}
			if gp.Committed >= end {
				prog[i].doneAt = now
				if i == 0 {
					cpuCopy = sampleCPU()
				}
			}
		}
		copied := !prog[0].doneAt.IsZero()
		if copied && (!prog[1].doneAt.IsZero() || now.Sub(prog[0].doneAt) > b.f.foldFor) {
			return prog, cpuCopy, nil
		}
		if now.After(deadline) {
			return nil, cpuCopy, fmt.Errorf("the sink committed %d and %d of %d events within 3 minutes", prog[0].last, prog[1].last, end)
		}
		for _, p := range procs {
			select {
			case <-p.exited():
				return nil, cpuCopy, fmt.Errorf("zenklav sink exited:\n%s", p.tail(30))
			default:
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// retryProgress is kafka.GroupProgress, asked again for up to 30 s: a fresh cluster has no
// group coordinator until its offsets topic is made, on the first question.
func retryProgress(ctx context.Context, brokers []string, group string) (kafka.Progress, error) {
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		var p kafka.Progress
		if p, err = kafka.GroupProgress(ctx, brokers, schemas.TicketEventsTopic, group); err == nil {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return kafka.Progress{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return kafka.Progress{}, err
}

// publishClusterSinkEvents publishes n created tickets to ticket-events.v1, tickets from+1 to
// from+n, as publishSinkEvents does: each run's tickets are new ones.
func publishClusterSinkEvents(ctx context.Context, p *kafka.Producer, from, n int) error {
	base := time.Now().UTC().Add(-time.Duration(n) * time.Second)
	const chunk = publishChunk
	for off := 0; off < n; off += chunk {
		msgs := make([]zenklav.Message, 0, chunk)
		for i := from + off; i < from+min(off+chunk, n); i++ {
			at := base.Add(time.Duration(i-from) * time.Second)
			e := schemas.TicketEvent{
				EventID: fmt.Sprintf("zd:cluster-%d", i), Connection: "bench", Account: schemas.Account{Subdomain: "bench", ID: 1},
				BrandID: 1, Type: schemas.TicketCreated, ZendeskType: "zen:event-type:ticket.created", Source: schemas.SourceEvent,
				OccurredAt: at, ReceivedAt: at,
				Ticket: schemas.Ticket{ID: int64(i + 1), Subject: "Where is my order?", Status: zenklav.StatusNew, Priority: "normal",
					Tags: []string{"order"}, Channel: "email", Via: "email", Requester: schemas.Requester{ID: int64(1000 + i%250_000)}},
			}
			v, err := e.Marshal()
			if err != nil {
				return err
			}
			msgs = append(msgs, zenklav.Message{Topic: schemas.TicketEventsTopic, Key: []byte(e.Key()), Value: v})
		}
		if err := p.Publish(ctx, msgs...); err != nil {
			return err
		}
	}
	return nil
}

// emitterRun drains -accounts × -n ticket events of new connections into the Klaviyo
// simulator through n replicas of `zenklav emitter`, as `loadgen emitter -accounts` does
// with one.
func (b *clusterBench) emitterRun(n int) error {
	ctx := b.ctx
	conns := make([]benchConnection, b.f.accounts)
	for i := range conns {
		conns[i] = benchConnection{
			id:         fmt.Sprintf("cluster%d-r%d-%d", b.stamp, n, i+1),
			secret:     "drain-webhook-signing-secret",
			klaviyoKey: fmt.Sprintf("pk_cluster_%d_r%d_%d", b.stamp, n, i+1),
		}
	}
	d := filepath.Join(b.dir, fmt.Sprintf("emitter-run-%d", n))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	connsFile, err := b.s.addConnections(d, conns)
	if err != nil {
		return err
	}
	// The emitter's group starts at the end of what the topic holds: the sink runs' events are
	// of a connection the emitter does not have, and it would dead-letter each one (a write
	// to ticket-events.dlq.v1 apiece) before reaching the backlog.
	if err := skipToEnd(ctx, b.brokers, emitter.Group); err != nil {
		return err
	}
	deliv := newDeliveries()
	b.s.klaviyo.OnAccept(deliv.accept)
	bulk0, imports0 := b.s.answers.get(bulkEventsPath), b.s.answers.get(profileImportsPath)
	if err := produceBacklog(ctx, warnLogger(), b.brokers, conns, b.f.perAccount); err != nil {
		return err
	}
	names := b.names()
	started := time.Now()
	procs, err := b.replicas("emitter", n, connsFile, nil, names)
	if err != nil {
		return err
	}
	defer stopAll(procs)
	want := b.f.accounts * b.f.perAccount
	within := 3*time.Duration(float64(b.f.perAccount)/bulkCeiling*float64(time.Second)) + 3*time.Minute
	var first cpuSample
	for deliv.total() < want {
		if deliv.total() > 0 && first.at.IsZero() {
			first = sampleCPU()
		}
		if time.Since(started) > within {
			return fmt.Errorf("the Klaviyo simulator accepted %d of %d events within %s; first replica's log:\n%s", deliv.total(), want, within, procs[0].tail(30))
		}
		for _, p := range procs {
			select {
			case <-p.exited():
				return fmt.Errorf("zenklav emitter exited during the drain:\n%s", p.tail(30))
			default:
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	last := sampleCPU()
	if first.at.IsZero() {
		first = last
	}
	hwms := make([]string, n)
	for i, p := range procs {
		if hwms[i], err = peakRSS(p.pid()); err != nil {
			return err
		}
	}
	all := deliv.all()
	lo, hi := deliv.rateRange()
	ceiling := bulkCeiling * float64(b.f.accounts)
	fmt.Printf("| cluster: emitter drain, %d Klaviyo accounts, %s | %d × %s ticket events waiting, interleaved | %s events/s = %.1f %% of %s/s | each account %s–%s/s; bulk requests %s; profile imports %s; %.1f s from the first accepted event to the last, %.1f s from starting the replicas; peak memory %s; %s |\n",
		b.f.accounts, plural(n, "replica"), b.f.accounts, thousands(b.f.perAccount), thousands(int(all.rate())), 100*all.rate()/ceiling, thousands(int(ceiling)),
		thousands(int(lo)), thousands(int(hi)), since1(bulk0, b.s.answers.get(bulkEventsPath)), since1(imports0, b.s.answers.get(profileImportsPath)),
		all.last.Sub(all.first).Seconds(), all.last.Sub(started).Seconds(), strings.Join(hwms, ", "), clusterCPU(first, last, names))
	return nil
}

// publishChunk is how many messages one Publish carries: under kafka.MaxPending, so a
// publish never waits behind another's bound.
const publishChunk = 4_000

// skipToEnd commits group's offsets of ticket-events.v1 at the partitions' ends, as a
// consumer with no generation may while the group has no members.
func skipToEnd(ctx context.Context, brokers []string, group string) error {
	parts, err := testenv.Partitions(brokers, schemas.TicketEventsTopic)
	if err != nil {
		return err
	}
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	reqs := make([]kafkago.OffsetRequest, len(parts))
	for i, p := range parts {
		reqs[i] = kafkago.LastOffsetOf(p.ID)
	}
	ends, err := client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{schemas.TicketEventsTopic: reqs}})
	if err != nil {
		return fmt.Errorf("list offsets: %w", err)
	}
	var commits []kafkago.OffsetCommit
	for _, po := range ends.Topics[schemas.TicketEventsTopic] {
		if po.Error != nil {
			return fmt.Errorf("list offsets of partition %d: %w", po.Partition, po.Error)
		}
		commits = append(commits, kafkago.OffsetCommit{Partition: po.Partition, Offset: po.LastOffset})
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := client.OffsetCommit(ctx, &kafkago.OffsetCommitRequest{
			GroupID: group, GenerationID: -1, Topics: map[string][]kafkago.OffsetCommit{schemas.TicketEventsTopic: commits},
		})
		if err == nil {
			for _, pc := range resp.Topics[schemas.TicketEventsTopic] {
				if pc.Error != nil {
					err = pc.Error
				}
			}
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("commit %s at the end of %s: %w", group, schemas.TicketEventsTopic, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// since1 is what the simulator answered between two counts of one endpoint.
func since1(before, after answerCount) answerCount {
	return answerCount{requests: after.requests - before.requests, throttled: after.throttled - before.throttled}
}

// ingestRun times -webhooks signed webhooks sent round-robin to n replicas of `zenklav api`,
// after -warmup untimed ones, with the ingest measurement's senders (sendRange). With keep,
// the replicas are left running and returned.
func (b *clusterBench) ingestRun(n int, keep bool) ([]*zenklavProcess, error) {
	names := b.names()
	procs, err := b.replicas("api", n, b.ingestConns, nil, names)
	if err != nil {
		return nil, err
	}
	if !keep {
		defer stopAll(procs)
	}
	client := roundRobinClient(procs, b.f.senders)
	url := "http://" + procs[0].http + "/webhooks/zendesk/bench"
	if err := sendRange(client, url, b.secret, b.ingested, b.f.warmup, b.f.senders, nil); err != nil {
		stopAll(procs)
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	b.ingested += b.f.warmup
	lat := make([]time.Duration, b.f.webhooks)
	cpu0 := sampleCPU()
	start := time.Now()
	if err := sendRange(client, url, b.secret, b.ingested, b.f.webhooks, b.f.senders, lat); err != nil {
		stopAll(procs)
		return nil, err
	}
	elapsed := time.Since(start)
	cpu1 := sampleCPU()
	b.ingested += b.f.webhooks
	slices.Sort(lat)
	hwms := make([]string, n)
	for i, p := range procs {
		if hwms[i], err = peakRSS(p.pid()); err != nil {
			stopAll(procs)
			return nil, err
		}
	}
	fmt.Printf("| cluster: ingest, signed webhooks, acks=all, %s of zenklav api, round-robin | %s webhooks, %d senders (after %s untimed), 4 partitions × 3 replicas | %s/s | p50 %s, p99 %s, max %s; peak memory %s; %s |\n",
		plural(n, "replica"), thousands(b.f.webhooks), b.f.senders, thousands(b.f.warmup), thousands(int(float64(b.f.webhooks)/elapsed.Seconds())),
		ms(quantile(lat, .50)), ms(quantile(lat, .99)), ms(lat[len(lat)-1]), strings.Join(hwms, ", "), clusterCPU(cpu0, cpu1, names))
	return procs, nil
}

// roundRobinClient is an HTTP client that sends each request to the next of procs in turn,
// whatever host its URL names.
func roundRobinClient(procs []*zenklavProcess, c int) *http.Client {
	hosts := make([]string, len(procs))
	for i, p := range procs {
		hosts[i] = p.http
	}
	return &http.Client{
		Transport: &roundRobin{hosts: hosts, base: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}},
		Timeout:   15 * time.Second,
	}
}

type roundRobin struct {
	hosts []string
	next  atomic.Uint64
	base  http.RoundTripper
}

func (r *roundRobin) RoundTrip(req *http.Request) (*http.Response, error) {
	h := r.hosts[(r.next.Add(1)-1)%uint64(len(r.hosts))]
	req = req.Clone(req.Context())
	req.URL.Host, req.Host = h, h
	return r.base.RoundTrip(req)
}

// answer is one webhook of the broker kill: when it was sent and answered, and how.
type answer struct {
	sent, answered time.Time
	status         int // 0: no answer
	retryAfter     bool
}

// brokerKill sends -kill-rate webhooks a second round-robin into apis, kills the broker that
// leads partition 0 of ticket-events.v1 with SIGKILL after 5 s, and goes on until a webhook
// sent after the kill has been acknowledged for 5 s, or for -kill-for at most. A webhook
// answered 503 is not sent again: the figure is when the webhooks are acknowledged again.
func (b *clusterBench) brokerKill(apis []*zenklavProcess) error {
	parts, err := testenv.Partitions(b.brokers, schemas.TicketEventsTopic)
	if err != nil {
		return err
	}
	victim := parts[0].Leader.ID
	var led []string
	for _, p := range parts {
		if p.Leader.ID == victim {
			led = append(led, strconv.Itoa(p.ID))
		}
	}
	names := b.names()
	for i, p := range apis {
		names[p.pid()] = fmt.Sprintf("zenklav api %d", i+1)
	}
	client := roundRobinClient(apis, 256)
	client.Timeout = 30 * time.Second
	url := "http://" + apis[0].http + "/webhooks/zendesk/bench"
	ts := zendesk.Timestamp(time.Now())
	interval := time.Second / time.Duration(b.f.killRate)
	maxN := int((5*time.Second+b.f.killFor).Seconds()*float64(b.f.killRate)) + 1
	answers := make([]answer, maxN)
	var wg sync.WaitGroup
	var stop atomic.Bool
	var firstAfter atomic.Int64 // unix nanos of the first acknowledgement of a webhook sent after the kill
	var killedAt time.Time
	var killNanos atomic.Int64
	start := time.Now()
	var cpu0, cpu1 cpuSample
	var moved time.Time
	sent := 0
	for i := 0; i < maxN && !stop.Load(); i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		if killedAt.IsZero() && time.Since(start) >= 5*time.Second {
			cpu0 = sampleCPU()
			killedAt = time.Now()
			killNanos.Store(killedAt.UnixNano())
			if err := b.tb.do(func() { b.kc.Node(victim).Kill() }); err != nil {
				return err
			}
			wg.Go(func() { moved = watchMoved(b.brokers, victim, killedAt.Add(b.f.killFor), &stop) })
		}
		if !killedAt.IsZero() {
			if fa := firstAfter.Load(); fa != 0 && time.Since(time.Unix(0, fa)) > 5*time.Second || time.Since(killedAt) > b.f.killFor {
				break
			}
		}
		body := killBody(b.ingested+i, ts)
		sig := zendesk.Sign(b.secret, ts, []byte(body))
		answers[i].sent = time.Now()
		sent++
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(zendesk.HeaderSignatureTimestamp, ts)
			req.Header.Set(zendesk.HeaderSignature, sig)
			resp, err := client.Do(req)
			a := &answers[i]
			a.answered = time.Now()
			if err != nil {
				return
			}
			resp.Body.Close()
			a.status, a.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After") != ""
			if k := killNanos.Load(); k != 0 && resp.StatusCode == http.StatusAccepted && a.sent.UnixNano() > k {
				firstAfter.CompareAndSwap(0, a.answered.UnixNano())
			}
		})
	}
	stop.Store(true)
	wg.Wait()
	cpu1 = sampleCPU()
	b.ingested += sent
	answers = answers[:sent]

	b.reportKill(answers, killRun{apis: len(apis), victim: victim, led: led, killedAt: killedAt, moved: moved, cpu0: cpu0, cpu1: cpu1, names: names})
	return nil
}

// killBody is the ticket.created webhook of the broker kill's webhook id.
func killBody(id int, ts string) string {
	return fmt.Sprintf(`{"type":"zen:event-type:ticket.created","account_id":1,"id":"kill-%d","time":"%s",`+
		`"zendesk_event_version":"2022-11-06","subject":"zen:ticket:%d","detail":{"id":"%d","status":"NEW",`+
		`"subject":"Where is my order?","requester_id":"%d","brand_id":"1","tags":["order"],"via":{"channel":"email"}},"event":{}}`,
		id, ts, id+1, id+1, 1000+id%250_000)
}

// killRun is what brokerKill saw besides the answers.
type killRun struct {
	apis, victim    int
	led             []string
	killedAt, moved time.Time
	cpu0, cpu1      cpuSample
	names           map[int]string
}

// reportKill prints the broker kill's row from the answers.
func (b *clusterBench) reportKill(answers []answer, k killRun) {
	killedAt, moved, victim, led, cpu0, cpu1, names := k.killedAt, k.moved, k.victim, k.led, k.cpu0, k.cpu1, k.names
	var beforeLat []time.Duration
	var acked, refused, other, ackedAfterKill int
	var firstAck, lastRefused time.Time
	for _, a := range answers {
		if a.sent.Before(killedAt) {
			if a.answered.Before(killedAt) && a.status == http.StatusAccepted {
				beforeLat = append(beforeLat, a.answered.Sub(a.sent))
			}
		}
		if a.answered.Before(killedAt) {
			continue
		}
		switch a.status {
		case http.StatusAccepted:
			acked++
			if a.sent.After(killedAt) {
				ackedAfterKill++
				if firstAck.IsZero() || a.answered.Before(firstAck) {
					firstAck = a.answered
				}
			}
		case http.StatusServiceUnavailable:
			refused++
			if a.answered.After(lastRefused) {
				lastRefused = a.answered
			}
		default:
			other++
		}
	}
	slices.Sort(beforeLat)
	p99 := "none"
	if len(beforeLat) > 0 {
		p99 = ms(quantile(beforeLat, .99))
	}
	first := "none within " + b.f.killFor.String()
	if !firstAck.IsZero() {
		first = fmt.Sprintf("%.1f s", firstAck.Sub(killedAt).Seconds())
	}
	fmt.Printf("| cluster: broker killed (kill -9), %s of zenklav api | %d webhooks/s round-robin; broker %d, leader of partitions %s of %s, killed after 5 s | first webhook sent after the kill acknowledged %s after it | leaders moved off it %s after the kill; last 503 %s after it; answered from the kill on: %d 202, %d 503, %d other or none; p99 before the kill %s; %s |\n",
		plural(k.apis, "replica"), b.f.killRate, victim, strings.Join(led, ", "), schemas.TicketEventsTopic, first,
		sinceKill(killedAt, moved), sinceKill(killedAt, lastRefused), acked, refused, other, p99, clusterCPU(cpu0, cpu1, names))
}

func sinceKill(killedAt, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmt.Sprintf("%.1f s", t.Sub(killedAt).Seconds())
}

// watchMoved asks the cluster every 100 ms until no partition of ticket-events.v1 is led by
// broker (nor leaderless), and says when; zero when it was not by until, or stop.
func watchMoved(brokers []string, broker int, until time.Time, stop *atomic.Bool) time.Time {
	for time.Now().Before(until) && !stop.Load() {
		time.Sleep(100 * time.Millisecond)
		parts, err := testenv.Partitions(brokers, schemas.TicketEventsTopic)
		if err != nil {
			continue
		}
		ok := true
		for _, p := range parts {
			if p.Leader.ID == broker || p.Leader.ID < 0 || p.Leader.Host == "" {
				ok = false
			}
		}
		if ok {
			return time.Now()
		}
	}
	return time.Time{}
}

// clusterCPU says where the CPU went between a and b: each process this run knows by name,
// ClickHouse, the rest of the machine (other work on it included), and the machine as a whole.
func clusterCPU(a, b cpuSample, names map[int]string) string {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return "CPU not sampled"
	}
	type use struct {
		name  string
		cores float64
	}
	var named []use
	var ch, rest float64
	for pid, p := range b.procs {
		before, ok := a.procs[pid]
		if !ok || before.name != p.name {
			before.ticks = 0
		}
		c := float64(p.ticks-before.ticks) / clockTicks / secs
		switch n, ok := names[pid]; {
		case ok:
			named = append(named, use{n, c})
		case strings.HasPrefix(p.name, "clickhouse"):
			ch += c
		default:
			rest += c
		}
	}
	slices.SortFunc(named, func(x, y use) int { return strings.Compare(x.name, y.name) })
	var parts []string
	for _, u := range named {
		parts = append(parts, fmt.Sprintf("%s %.2f", u.name, u.cores))
	}
	parts = append(parts, fmt.Sprintf("ClickHouse %.2f", ch), fmt.Sprintf("everything else %.2f", rest))
	machine := 0.0
	if b.total > a.total {
		machine = float64(b.busy-a.busy) / float64(b.total-a.total) * float64(len(cpuCores()))
	}
	return fmt.Sprintf("CPU in cores: %s; machine %.2f of %d", strings.Join(parts, ", "), machine, len(cpuCores()))
}

// cpuCores lists the machine's cores, a line each of /proc/stat's cpuN.
func cpuCores() []string {
	raw, _ := os.ReadFile("/proc/stat")
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "cpu") && len(line) > 3 && line[3] >= '0' && line[3] <= '9' {
			out = append(out, line)
		}
	}
	return out
}

// freeAddr is a loopback address nothing listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// benchTB lets the load generator use internal/testenv's server starters, written for tests:
// a testing.TB whose Fatal panics (do turns that into an error), whose TempDir is in the
// run's directory and whose cleanups run at cleanup. Any other method of testing.TB would
// call the nil one embedded, and panic: the starters use none.
type benchTB struct {
	testing.TB
	dir      string
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

type tbFatal struct{ msg string }

func (t *benchTB) Helper()           {}
func (t *benchTB) Fatal(args ...any) { t.fail(fmt.Sprint(args...)) }
func (t *benchTB) Fatalf(format string, args ...any) {
	t.fail(fmt.Sprintf(format, args...))
}
func (t *benchTB) Skipf(format string, args ...any) { t.fail(fmt.Sprintf(format, args...)) }
func (t *benchTB) Errorf(format string, args ...any) {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
}
func (t *benchTB) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
}
func (t *benchTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}
func (t *benchTB) TempDir() string {
	d, err := os.MkdirTemp(t.dir, "server-")
	if err != nil {
		t.fail(err.Error())
	}
	return d
}
func (t *benchTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *benchTB) fail(msg string) {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
	panic(tbFatal{msg})
}

// do runs f, and returns what a Fatal in it said as an error.
func (t *benchTB) do(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fatal, ok := r.(tbFatal)
			if !ok {
				panic(r)
			}
			err = errors.New(fatal.msg)
		}
	}()
	f()
	return nil
}

// cleanup runs the cleanups, last registered first, as testing does.
func (t *benchTB) cleanup() {
	t.mu.Lock()
	cs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		if err := t.do(cs[i]); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: cleanup:", err)
		}
	}
}
