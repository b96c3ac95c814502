// Command loadgen measures zenklav for `make bench` on loopback only:
//
//	loadgen ingest -url http://127.0.0.1:18090/webhooks/zendesk/bench -secret S -n 100000 -c 32 [-pid PID]
//	    signed Zendesk webhooks per second and latency percentiles; with -pid, the peak RSS
//	    of that process (VmHWM)
//	loadgen sink -brokers 127.0.0.1:19092 -clickhouse 127.0.0.1:19000 -n 1000000
//	    ticket events per second from Kafka into ClickHouse through the sink
//	loadgen emitter -brokers … -clickhouse … [-accounts 10] [-n 100000] [-zenklav bin/zenklav]
//	    bin/zenklav emitter draining a backlog into simulated Klaviyo accounts: events per
//	    second against the bulk ceiling, 429 answers, where the CPU went, peak RSS
//	loadgen latency -brokers … -clickhouse … [-rate 150] [-duration 30s] [-zenklav bin/zenklav]
//	    signed webhooks into bin/zenklav all at a steady rate: time from sending each to
//	    the Klaviyo simulator accepting its event
//	loadgen sidebar -brokers … -clickhouse … [-accounts 10] [-cards 200] [-latency 50ms]
//	    the sidebar's profile card through bin/zenklav api, cold and warm, with the Klaviyo
//	    simulator answering each call after -latency
//	loadgen reports -clickhouse 127.0.0.1:19000 [-events 10000000] [-runs 20]
//	    a year of ticket events into ClickHouse, then p50/p95 of each report
//	loadgen freshness -brokers … -clickhouse … [-rate 20] [-duration 30s]
//	    signed webhooks into bin/zenklav all: time until the trends report counts each
//	loadgen hostile -url … -secret S [-conns 1000] [-size 1048576] [-sig wellformed|x] [-rate 50] [-duration 30s] [-pid PID]
//	    hostile clients posting big bodies with wrong signatures beside valid webhooks: the
//	    share of valid ones accepted, their latency, the peak RSS of PID
//	loadgen sms -brokers … -clickhouse … [-texts 200] [-customers 50] [-replies 20] [-burst 500] [-reply-burst 120]
//	    SMS conversations through bin/zenklav api and bin/zenklav sms: text → Zendesk and
//	    agent reply → Klaviyo latency with no backlog, customers texting at once against
//	    Zendesk's 700 requests a minute, a burst of replies against Klaviyo's 60 a minute
//	loadgen connections -brokers … -clickhouse … [-n 1000] [-starts 3] [-repeats 3]
//	    a fresh connections store filled by bin/zenklav connections apply; start-up time and
//	    memory of bin/zenklav all with 1 and with -n stored connections; then, beside it, a
//	    bin/zenklav api: from applying a new connection to its first webhook accepted by each
//	loadgen cluster -clickhouse … [-nodes 3] [-webhooks 40000] [-sink-events 500000] [-accounts 10 -n 20000] [-kill-rate 100]
//	    a Kafka cluster of its own (3 KRaft brokers, internal/testenv): 1 and 2 replicas of
//	    bin/zenklav api (webhooks/s, p99), sink (events/s) and emitter (events/s into 10
//	    Klaviyo accounts), with the CPU of each process; then a broker leading a partition
//	    killed with SIGKILL while webhooks flow: time to the first acknowledged webhook
//
// It prints one Markdown table row per measurement, for docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
	"github.com/zenklav/zenklav/zendesk"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen ingest|sink|emitter|latency|sidebar|reports|freshness|hostile|sms|connections|cluster [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "ingest":
		err = ingest(os.Args[2:])
	case "sink":
		err = sinkRate(os.Args[2:])
	case "emitter":
		err = emitterDrain(os.Args[2:])
	case "latency":
		err = latency(os.Args[2:])
	case "sidebar":
		err = sidebarCards(os.Args[2:])
	case "reports":
		err = reportLatency(os.Args[2:])
	case "backfill":
		err = backfillRate(os.Args[2:])
	case "freshness":
		err = freshness(os.Args[2:])
	case "hostile":
		err = hostile(os.Args[2:])
	case "sms":
		err = smsConversations(os.Args[2:])
	case "connections":
		err = connectionsAtRunTime(os.Args[2:])
	case "cluster":
		err = clusterReplicas(os.Args[2:])
	default:
		err = fmt.Errorf("unknown measurement %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func ingest(args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ExitOnError)
	url := fs.String("url", "", "zenklav's webhook URL")
	secret := fs.String("secret", "", "the connection's signing secret")
	n := fs.Int("n", 100_000, "webhooks to send")
	c := fs.Int("c", 32, "concurrent senders")
	pid := fs.Int("pid", 0, "zenklav's pid, to report its peak memory")
	label := fs.String("label", "", "what to call this run in the table")
	warmup := fs.Int("warmup", 60_000, "webhooks sent before measuring: a fresh Kafka broker's JVM needs them to compile its hot paths")
	fs.Parse(args)
	if *url == "" || *secret == "" {
		return fmt.Errorf("ingest needs -url and -secret")
	}
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: *c, MaxConnsPerHost: *c},
		Timeout:   15 * time.Second,
	}
	if err := sendRange(client, *url, *secret, 0, *warmup, *c, nil); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	lat := make([]time.Duration, *n)
	start := time.Now()
	if err := sendRange(client, *url, *secret, *warmup, *n, *c, lat); err != nil {
		return err
	}
	elapsed := time.Since(start)
	slices.Sort(lat)
	fmt.Printf("| ingest: signed webhooks, acks=all%s | %d webhooks, %d senders | %.0f/s | p50 %s, p99 %s, max %s |\n",
		*label, *n, *c, float64(*n)/elapsed.Seconds(), ms(quantile(lat, .50)), ms(quantile(lat, .99)), ms(lat[len(lat)-1]))
	if *pid != 0 {
		hwm, err := peakRSS(*pid)
		if err != nil {
			return err
		}
		fmt.Printf("| peak memory (VmHWM)%s | after that ingest run | %s | |\n", *label, hwm)
	}
	return nil
}

// signedWebhook is one request, built and signed before the clock starts so the load
// generator spends its CPU on sending, not on formatting and HMAC.
type signedWebhook struct {
	body, ts, sig string
}

// sendRange sends webhooks for tickets [from, from+n) from c goroutines, recording each
// latency in lat when it is not nil.
func sendRange(client *http.Client, url, secret string, from, n, c int, lat []time.Duration) error {
	ts := zendesk.Timestamp(time.Now())
	reqs := make([]signedWebhook, n)
	for i := range reqs {
		body := fmt.Sprintf(`{"type":"zen:event-type:ticket.created","account_id":1,"id":"bench-%d-%d","time":"%s",`+
			`"zendesk_event_version":"2022-11-06","subject":"zen:ticket:%d","detail":{"id":"%d","status":"NEW",`+
			`"subject":"Where is my order?","requester_id":"%d","brand_id":"1","tags":["order"],"via":{"channel":"email"}},"event":{}}`,
			from, i, ts, from+i+1, from+i+1, 1000+(from+i)%250_000)
		reqs[i] = signedWebhook{body: body, ts: ts, sig: zendesk.Sign(secret, ts, []byte(body))}
	}
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(reqs[i].body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(zendesk.HeaderSignatureTimestamp, reqs[i].ts)
				req.Header.Set(zendesk.HeaderSignature, reqs[i].sig)
				t0 := time.Now()
				err := webhookAccepted(client.Do(req))
				d := time.Since(t0)
				if err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				}
				if lat != nil {
					lat[i] = d
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d webhooks failed, first: %v", f, n, firstErr)
	}
	return nil
}

func sinkRate(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	brokers := fs.String("brokers", "", "Kafka brokers")
	ch := fs.String("clickhouse", "", "ClickHouse native address")
	n := fs.Int("n", 1_000_000, "events")
	batch := fs.Int("batch", 100_000, "sink batch size")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the sink run to this file")
	fs.Parse(args)
	ctx := context.Background()
	logger := warnLogger()
	bs := strings.Split(*brokers, ",")
	stamp := time.Now().UnixNano()
	topic := fmt.Sprintf("bench-sink-%d", stamp)
	if err := kafka.EnsureTopics(ctx, bs, kafka.Topic{Name: topic, Partitions: 4}); err != nil {
		return err
	}
	store, err := analytics.Open(ctx, logger, analytics.Config{Addr: *ch, Database: fmt.Sprintf("bench_%d", stamp), User: "default"})
	if err != nil {
		return err
	}
	defer store.Close()
	if _, err := store.Migrate(ctx); err != nil {
		return err
	}

	// Load the topic first, so the measurement is the sink alone.
	p := kafka.NewProducer(logger, bs)
	defer p.Close()
	if err := publishSinkEvents(ctx, p, topic, *n); err != nil {
		return err
	}

	timed := &timedStore{TicketStore: store}
	s, err := sink.New(logger, prometheus.NewRegistry(), kafka.ConsumerConfig{
		Brokers: bs, Topic: topic, Group: "bench-sink", BatchSize: *batch, BatchWait: time.Second,
		DeadLetters: &kafka.DeadLetters{Publisher: p, Topic: schemas.TicketEventsDLQTopic, Role: "sink", Logger: logger},
	}, timed)
	if err != nil {
		return err
	}
	if *profile != "" {
		stopProfile, err := cpuProfile(*profile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	start, elapsed, folded, err := runSink(ctx, s, bs, topic, *n)
	if err != nil {
		return err
	}
	got, err := store.CountTicketEvents(ctx, analytics.EventFilter{Connection: "bench"})
	if err != nil {
		return err
	}
	if got != uint64(*n) {
		return fmt.Errorf("ClickHouse counts %d events, want %d", got, *n)
	}
	_ = store.Exec(ctx, "DROP DATABASE IF EXISTS "+fmt.Sprintf("bench_%d", stamp))
	printSink(timed, *n, *batch, start, elapsed, folded)
	return nil
}

// publishSinkEvents publishes n created tickets to topic, a second apart up to now, in
// chunks.
func publishSinkEvents(ctx context.Context, p *kafka.Producer, topic string, n int) error {
	base := time.Now().UTC().Add(-time.Duration(n) * time.Second)
	const chunk = 10_000
	for off := 0; off < n; off += chunk {
		msgs := make([]zenklav.Message, 0, chunk)
		for i := off; i < min(off+chunk, n); i++ {
			e := schemas.TicketEvent{
				EventID: fmt.Sprintf("zd:bench-%d", i), Connection: "bench", Account: schemas.Account{Subdomain: "bench", ID: 1},
				BrandID: 1, Type: schemas.TicketCreated, ZendeskType: "zen:event-type:ticket.created", Source: schemas.SourceEvent,
				OccurredAt: base.Add(time.Duration(i) * time.Second), ReceivedAt: base.Add(time.Duration(i) * time.Second),
				Ticket: schemas.Ticket{ID: int64(i + 1), Subject: "Where is my order?", Status: zenklav.StatusNew, Priority: "normal",
					Tags: []string{"order"}, Channel: "email", Via: "email", Requester: schemas.Requester{ID: int64(1000 + i%250_000)}},
			}
			v, err := e.Marshal()
			if err != nil {
				return err
			}
			msgs = append(msgs, zenklav.Message{Topic: topic, Key: []byte(e.Key()), Value: v})
		}
		if err := p.Publish(ctx, msgs...); err != nil {
			return err
		}
	}
	return nil
}

// runSink runs s until its groups have committed all n events of topic, and stops it. It
// says when it started s, and how long the copy (elapsed) and the fold (folded) took.
func runSink(ctx context.Context, s *sink.Sink, brokers []string, topic string, n int) (start time.Time, elapsed, folded time.Duration, err error) {
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	start = time.Now()
	go func() { done <- s.Run(rctx) }()
	// The copy and the fold into the report rows run side by side, each in its group.
	for elapsed == 0 || folded == 0 {
		for group, at := range map[string]*time.Duration{"bench-sink": &elapsed, "bench-sink" + sink.TicketRowsSuffix: &folded} {
			if prog, err := kafka.GroupProgress(ctx, brokers, topic, group); *at == 0 && err == nil && prog.Committed >= int64(n) {
				*at = time.Since(start)
			}
		}
		select {
		case err := <-done:
			return start, 0, 0, fmt.Errorf("sink stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	<-done
	return start, elapsed, folded, nil
}

// printSink prints the sink's two rows: the copy into ClickHouse and the fold into the
// report rows.
func printSink(timed *timedStore, n, batch int, start time.Time, elapsed, folded time.Duration) {
	steady := elapsed - timed.first.Sub(start) // from the first insert: the group join is not the sink's work
	fmt.Printf("| sink: Kafka → ClickHouse | %d events, batches of %d, 4 partitions | %.0f events/s | %s in all (%.0f events/s counting the consumer-group join); %d inserts took %s (summed; they run two at a time) |\n",
		n, batch, float64(n)/steady.Seconds(), elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(),
		timed.calls, timed.total.Round(time.Millisecond))
	fmt.Printf("| sink: fold into report rows | the same events, side by side with the copy | %.0f events/s | %s in all from the first insert; every event a new ticket, 250,000 customers with 4 each |\n",
		float64(n)/(folded-timed.first.Sub(start)).Seconds(), (folded - timed.first.Sub(start)).Round(time.Millisecond))
}

func peakRSS(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", fmt.Errorf("read peak memory: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return fmt.Sprintf("%.0f MB", float64(kb)/1024), nil
		}
	}
	return "", fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// timedStore measures the sink's inserts, and when the first batch reached the store: the
// time before it is the consumer group's join, not the sink's work.
type timedStore struct {
	zenklav.TicketStore
	mu    sync.Mutex // the sink inserts from several goroutines
	first time.Time
	calls int
	total time.Duration
}

func (t *timedStore) InsertTicketEvents(ctx context.Context, events []schemas.TicketEvent) error {
	start := time.Now()
	t.mu.Lock()
	if t.first.IsZero() {
		t.first = start
	}
	t.mu.Unlock()
	err := t.TicketStore.InsertTicketEvents(ctx, events)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	t.total += time.Since(start)
	return err
}

// webhookAccepted reads and closes a webhook's answer and says whether it was 202 Accepted.
func webhookAccepted(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
