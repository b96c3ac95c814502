package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	zauth "github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/sink"

	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// freshness measures how long a ticket takes from an accepted webhook to the trends report:
// signed ticket.created webhooks into `zenklav all` at a steady rate, while the report API
// (GET /api/v1/reports/trends, with a marketer's token) is asked every 50 ms how many
// tickets opened. The i-th ticket counts as shown at the first answer that counts i+1 or
// more: tickets of one second reach ClickHouse in the sink's batches, in about the order
// they were sent.
func freshness(args []string) error {
	fs := flag.NewFlagSet("freshness", flag.ExitOnError)
	bin := fs.String("zenklav", "bin/zenklav", "the zenklav binary")
	brokers := fs.String("brokers", "", "Kafka brokers")
	ch := fs.String("clickhouse", "", "ClickHouse native address")
	database := fs.String("database", "bench_freshness", "zenklav's ClickHouse database")
	httpAddr := fs.String("http", "127.0.0.1:18094", "zenklav's HTTP listener")
	rate := fs.Int("rate", 20, "webhooks per second")
	duration := fs.Duration("duration", 30*time.Second, "how long to send")
	fs.Parse(args)
	if *brokers == "" || *ch == "" || *rate <= 0 {
		return fmt.Errorf("freshness needs -brokers, -clickhouse and a positive -rate")
	}
	ctx, _, bs, dir, s, done, err := prepare("freshness", *brokers)
	if err != nil {
		return err
	}
	defer done()
	s.zendesk.SetRateLimit(1_000_000)
	run := time.Now().Unix()
	conn := benchConnection{id: fmt.Sprintf("fresh%d", run), secret: "freshness-webhook-signing-secret", klaviyoKey: fmt.Sprintf("pk_fresh_%d", run)}
	s.klaviyo.AddAccount(conn.klaviyoKey)
	connsFile := filepath.Join(dir, "connections.json")
	if err := writeConnections(connsFile, []benchConnection{conn}); err != nil {
		return err
	}
	n := *rate * int(duration.Seconds())
	bodies := make([][]byte, n)
	for i := range bodies {
		u := s.zendesk.AddUser(zendesk.User{Name: fmt.Sprintf("Customer %d", i), Email: fmt.Sprintf("fresh%d@example.com", i)})
		t := s.zendesk.AddTicket(zendesk.Ticket{Subject: "Where is my order?", Status: "new", Via: zendesk.Via{Channel: "web"}, RequesterID: u.ID})
		if bodies[i], err = s.zendesk.TicketCreated(t.ID, zendesktest.EventMeta{}); err != nil {
			return err
		}
	}

	const key = "loadgen-freshness-report-signing-key-0123456789"
	keys := []zauth.SigningKey{{ID: "bench", Secret: key}}
	auth, err := zauth.NewReports(keys, nil, nil)
	if err != nil {
		return err
	}
	token, _, err := auth.Issue(zauth.TokenRequest{Subject: "loadgen", Role: zauth.RoleMarketer, Tenants: []string{conn.id}, TTL: time.Hour})
	if err != nil {
		return err
	}
	if err := requireIdleGroup(ctx, bs, emitter.Group); err != nil {
		return err
	}
	env := s.env(*httpAddr, *brokers, *ch, *database, connsFile)
	env["ZENKLAV_JWT_SIGNING_KEY"] = "bench:" + key
	p, err := startZenklav(ctx, *bin, "all", dir, env)
	if err != nil {
		return err
	}
	defer p.stop()
	if err := waitCaughtUp(ctx, bs, p, emitter.Group, sink.Group, sink.Group+sink.TicketRowsSuffix); err != nil {
		return err
	}

	// The report of the days around now (a run may cross midnight).
	day := func(d int) string { return time.Now().UTC().AddDate(0, 0, d).Format(time.DateOnly) }
	reportURL := fmt.Sprintf("http://%s/api/v1/reports/trends?connection=%s&from=%s&to=%s&interval=day&tz=UTC", *httpAddr, conn.id, day(-1), day(1))
	client := &http.Client{Timeout: 5 * time.Second}
	opened := func() (int64, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, reportURL, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("trends report: %s", resp.Status)
		}
		var doc struct {
			Rows []struct {
				Opened int64 `json:"opened"`
			} `json:"rows"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			return 0, err
		}
		var sum int64
		for _, r := range doc.Rows {
			sum += r.Opened
		}
		return sum, nil
	}
	if got, err := opened(); err != nil || got != 0 {
		return fmt.Errorf("the report counts %d tickets before any was sent (%v)", got, err)
	}

	url := "http://" + *httpAddr + "/webhooks/zendesk/" + conn.id
	sent := make([]time.Time, n)
	shown := make([]time.Time, n)
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		interval := time.Second / time.Duration(*rate)
		var senders sync.WaitGroup
		for i := range n {
			time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
			sent[i] = time.Now()
			senders.Go(func() {
				if err := webhookAccepted(s.zendesk.SendWebhook(ctx, url, conn.secret, bodies[i])); err != nil {
					failed.Add(1)
					fmt.Fprintln(os.Stderr, "loadgen: webhook:", err)
				}
			})
		}
		senders.Wait()
	})
	var polls, next int
	deadline := start.Add(*duration + time.Minute)
	for next < n && time.Now().Before(deadline) && failed.Load() == 0 {
		got, err := opened()
		now := time.Now()
		polls++
		if err != nil {
			return err
		}
		for ; next < n && int64(next) < got; next++ {
			shown[next] = now
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d webhooks were not accepted", f)
	}
	if next < n {
		return fmt.Errorf("the report shows %d of %d tickets a minute after the last was sent", next, n)
	}
	lat := make([]time.Duration, n)
	for i := range n {
		lat[i] = shown[i].Sub(sent[i])
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(n-1, int(float64(n)*p))] }
	fmt.Printf("| freshness: webhook → trends report, `zenklav all` | %d ticket.created webhooks at %d/s, the report API asked every 50 ms (%d answers) | — | p50 %s, p95 %s, max %s |\n",
		n, *rate, polls, secs(q(.5)), secs(q(.95)), secs(lat[n-1]))
	return nil
}
