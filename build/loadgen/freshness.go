package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	zauth "github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/zendesk"
)

// freshness measures how long a ticket takes from an accepted webhook to the trends report:
// signed ticket.created webhooks into `zenklav all` at a steady rate, while the report API
// (GET /api/v1/reports/trends, with a marketer's token) is asked every 50 ms how many
// tickets opened. The i-th ticket counts as shown at the first answer that counts i+1 or
// more: tickets of one second reach ClickHouse in the sink's batches, in about the order
// they were sent.
func freshness(args []string) error {
	fs := flag.NewFlagSet("freshness", flag.ExitOnError)
	var zf zenklavFlags
	zf.register(fs, "bench_freshness", "127.0.0.1:18094")
	rate := fs.Int("rate", 20, "webhooks per second")
	duration := fs.Duration("duration", 30*time.Second, "how long to send")
	fs.Parse(args)
	if zf.brokers == "" || zf.clickhouse == "" || *rate <= 0 {
		return fmt.Errorf("freshness needs -brokers, -clickhouse and a positive -rate")
	}
	ctx, _, bs, dir, s, done, err := prepare("freshness", zf.brokers)
	if err != nil {
		return err
	}
	defer done()
	s.zendesk.SetRateLimit(1_000_000)
	run := time.Now().Unix()
	conn := benchConnection{id: fmt.Sprintf("fresh%d", run), secret: "freshness-webhook-signing-secret", klaviyoKey: fmt.Sprintf("pk_fresh_%d", run)}
	connsFile, err := s.addConnections(dir, []benchConnection{conn})
	if err != nil {
		return err
	}
	n := *rate * int(duration.Seconds())
	_, bodies, err := s.ticketWebhooks(n, freshnessCustomer, freshnessTicket)
	if err != nil {
		return err
	}

	token, err := marketerToken(conn.id)
	if err != nil {
		return err
	}
	env := s.env(zf, connsFile)
	env["ZENKLAV_JWT_SIGNING_KEY"] = "bench:" + freshnessKey
	p, err := startAll(ctx, zf.bin, dir, bs, env)
	if err != nil {
		return err
	}
	defer p.stop()

	trends := newTrendsReport(ctx, zf.httpAddr, conn.id, token)
	if got, err := trends.opened(); err != nil || got != 0 {
		return fmt.Errorf("the report counts %d tickets before any was sent (%v)", got, err)
	}
	w := newWebhookSender(ctx, s, zf.httpAddr, conn, bodies)
	sent := make([]time.Time, n)
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() { paceWebhooks(start, time.Second/time.Duration(*rate), 0, n, sent, w.send) })
	shown, polls, err := trends.watch(n, start.Add(*duration+time.Minute), &w.failed)
	if err != nil {
		return err
	}
	wg.Wait()
	if err := w.err(); err != nil {
		return err
	}
	if len(shown) < n {
		return fmt.Errorf("the report shows %d of %d tickets a minute after the last was sent", len(shown), n)
	}
	lat := make([]time.Duration, n)
	for i := range n {
		lat[i] = shown[i].Sub(sent[i])
	}
	slices.Sort(lat)
	fmt.Printf("| freshness: webhook → trends report, `zenklav all` | %d ticket.created webhooks at %d/s, the report API asked every 50 ms (%d answers) | — | p50 %s, p95 %s, max %s |\n",
		n, *rate, polls, secs(quantile(lat, .5)), secs(quantile(lat, .95)), secs(lat[n-1]))
	return nil
}

// freshnessCustomer is the requester of ticket i.
func freshnessCustomer(i int) zendesk.User {
	return zendesk.User{Name: fmt.Sprintf("Customer %d", i), Email: fmt.Sprintf("fresh%d@example.com", i)}
}

// freshnessTicket is ticket i: a new one, as the trends report counts it opened.
func freshnessTicket(_ int, requester int64) zendesk.Ticket {
	return zendesk.Ticket{Subject: "Where is my order?", Status: "new", Via: zendesk.Via{Channel: "web"}, RequesterID: requester}
}

// freshnessKey signs the marketer's token the report API is asked with; zenklav is started
// with it.
const freshnessKey = "loadgen-freshness-report-signing-key-0123456789"

// marketerToken is a marketer's token for tenant's reports, for an hour: what a dashboard
// asks the report API with.
func marketerToken(tenant string) (string, error) {
	keys := []zauth.SigningKey{{ID: "bench", Secret: freshnessKey}}
	auth, err := zauth.NewReports(keys, nil, nil)
	if err != nil {
		return "", err
	}
	token, _, err := auth.Issue(zauth.TokenRequest{Subject: "loadgen", Role: zauth.RoleMarketer, Connections: []string{tenant}, TTL: time.Hour})
	return token, err
}

// trendsReport asks zenklav's trends report how many of one connection's tickets opened.
type trendsReport struct {
	ctx    context.Context
	client *http.Client
	url    string
	token  string
}

func newTrendsReport(ctx context.Context, httpAddr, tenant, token string) *trendsReport {
	// The report of the days around now (a run may cross midnight).
	day := func(d int) string { return time.Now().UTC().AddDate(0, 0, d).Format(time.DateOnly) }
	reportURL := fmt.Sprintf("http://%s/api/v1/reports/trends?connection=%s&from=%s&to=%s&interval=day&tz=UTC", httpAddr, tenant, day(-1), day(1))
	return &trendsReport{ctx: ctx, client: &http.Client{Timeout: 5 * time.Second}, url: reportURL, token: token}
}

// opened is how many tickets the report counts opened, over all its rows.
func (r *trendsReport) opened() (int64, error) {
	req, _ := http.NewRequestWithContext(r.ctx, http.MethodGet, r.url, nil)
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
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
	for _, row := range doc.Rows {
		sum += row.Opened
	}
	return sum, nil
}

// watch asks the report every 50 ms until it counts n tickets, the deadline passes or a
// webhook failed. shown holds, for each ticket the report came to count, the time of the
// first answer that counted it; polls is how many answers there were.
func (r *trendsReport) watch(n int, deadline time.Time, failed *atomic.Int64) (shown []time.Time, polls int, err error) {
	shown = make([]time.Time, 0, n)
	for len(shown) < n && time.Now().Before(deadline) && failed.Load() == 0 {
		got, err := r.opened()
		now := time.Now()
		polls++
		if err != nil {
			return nil, polls, err
		}
		for len(shown) < n && int64(len(shown)) < got {
			shown = append(shown, now)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return shown, polls, nil
}
