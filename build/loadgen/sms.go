package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/apispec"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sms"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// The SMS measurements run `zenklav api` and `zenklav sms` as two children against the
// simulators of Zendesk (its plan's limit: 700 requests a minute) and Klaviyo, served from
// this process. Every text and reply carries a mark of its own (T000123, R000045): the
// simulators' handlers are wrapped so that the moment the Zendesk simulator answered the
// write holding a text's mark, or the Klaviyo simulator accepted the conversation message
// holding a reply's, is when that text or reply arrived. The same wrappers count each
// simulator's requests and 429 answers by endpoint.

// smsFlags are the sizes of the four measurements.
type smsFlags struct {
	zenklavFlags
	smsHTTP                    string
	texts, customers           int
	textRate                   float64
	replies                    int
	replyRate                  float64
	burst, replyBurst, zdLimit int
}

func (f *smsFlags) parse(args []string) error {
	fs := flag.NewFlagSet("sms", flag.ExitOnError)
	f.register(fs, "bench_sms", "127.0.0.1:18093")
	fs.StringVar(&f.smsHTTP, "sms-http", "127.0.0.1:18094", "the sms role's HTTP listener (health)")
	fs.IntVar(&f.texts, "texts", 200, "texts of the inbound latency run")
	fs.IntVar(&f.customers, "customers", 50, "customers who send them, in turn")
	fs.Float64Var(&f.textRate, "text-rate", 5, "texts per second")
	fs.IntVar(&f.replies, "replies", 20, "agent replies of the reply latency run")
	fs.Float64Var(&f.replyRate, "reply-rate", 0.5, "replies per second")
	fs.IntVar(&f.burst, "burst", 500, "customers texting at once (new to Zendesk, one text each)")
	fs.IntVar(&f.replyBurst, "reply-burst", 120, "agent replies at once, one on each of as many tickets")
	fs.IntVar(&f.zdLimit, "zendesk-limit", 700, "the Zendesk simulator's requests per minute (Enterprise: 700)")
	fs.Parse(args)
	if f.brokers == "" || f.clickhouse == "" || f.textRate <= 0 || f.replyRate <= 0 || f.customers <= 0 {
		return fmt.Errorf("sms needs -brokers, -clickhouse, positive rates and -customers")
	}
	if f.replyBurst > f.burst {
		return fmt.Errorf("-reply-burst %d needs as many tickets: -burst is %d", f.replyBurst, f.burst)
	}
	return nil
}

// smsConversations is `loadgen sms`.
func smsConversations(args []string) error {
	var f smsFlags
	if err := f.parse(args); err != nil {
		return err
	}
	b, done, err := startSMSBench(f)
	if err != nil {
		return err
	}
	defer done()
	if err := b.warmUp(); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if err := b.inboundLatency(f.texts, f.customers, f.textRate); err != nil {
		return err
	}
	if err := b.replyLatency(f.replies, f.replyRate); err != nil {
		return err
	}
	burst, err := b.inboundBurst(f.burst)
	if err != nil {
		return err
	}
	if err := b.replyBurst(burst[:f.replyBurst]); err != nil {
		return err
	}
	return b.violations()
}

// smsBench is one run: the simulators, the taps on them, the connection and the two zenklav
// processes.
type smsBench struct {
	ctx        context.Context
	s          *smsSims
	zd, kl     *simTap
	conn       string // the connection's id, also its Zendesk subdomain
	key        string // its Klaviyo private key
	hookSecret string // its Klaviyo webhook secret
	hookURL    string
	agent      int64
	api, role  *zenklavProcess
	zdLimit    int
	// latencyPhones are the customers of inboundLatency, whom replyLatency answers.
	latencyPhones []string
	next          atomic.Int64 // the next mark's number
	phones        atomic.Int64 // the next customer's number
}

const (
	smsBrand         = 360001
	smsZendeskSecret = "sms-bench-zendesk-webhook-secret"
	smsKlaviyoSecret = "sms-bench-klaviyo-webhook-secret"
)

// startSMSBench serves the simulators, writes the connections file and starts both roles,
// once no other sms role consumes the shared topics and the new ones have caught up with
// them. done stops everything.
func startSMSBench(f smsFlags) (b *smsBench, done func(), err error) {
	ctx, bs, dir, s, undo, err := prepareSMS(f.brokers)
	if err != nil {
		return nil, nil, err
	}
	stamp := time.Now().Unix()
	b = &smsBench{ctx: ctx, s: s, zd: s.zdTap, kl: s.klTap, conn: fmt.Sprintf("sms%d", stamp), key: fmt.Sprintf("pk_sms_%d", stamp),
		hookSecret: smsKlaviyoSecret, zdLimit: f.zdLimit}
	b.hookURL = "http://" + f.httpAddr + "/webhooks/klaviyo/" + b.conn
	s.zendesk.SetRateLimit(f.zdLimit)
	s.zendesk.AddBrand(zendesk.Brand{ID: smsBrand, Name: "Bench SMS"})
	b.agent = s.zendesk.AddUser(zendesk.User{Name: "Grace Agent", Email: "grace@bench.example", Role: "agent"}).ID
	s.klaviyo.AddAccount(b.key)
	conns, err := b.writeConnections(dir)
	if err == nil {
		for _, g := range []string{sms.Group, sms.ReplyGroup} {
			if err = requireIdleGroup(ctx, bs, g); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = b.start(f, dir, conns, bs)
	}
	done = func() {
		for _, p := range []*zenklavProcess{b.role, b.api} {
			if p != nil {
				p.stop()
			}
		}
		undo()
	}
	if err != nil {
		done()
		return nil, nil, err
	}
	s.zendesk.SetWebhookTarget("http://"+f.httpAddr+"/webhooks/zendesk/"+b.conn, smsZendeskSecret)
	return b, done, nil
}

// start starts `zenklav api` and `zenklav sms`, and waits until the sms role's groups have
// caught up with what their topics held before.
func (b *smsBench) start(f smsFlags, dir, conns string, brokers []string) error {
	env := b.s.env(f.zenklavFlags, conns)
	env["ZENKLAV_DATA_DIR"] = dir
	var err error
	if b.api, err = startZenklav(b.ctx, f.bin, "api", dir, env); err != nil {
		return err
	}
	roleEnv := maps.Clone(env)
	roleEnv["ZENKLAV_HTTP_ADDR"] = f.smsHTTP
	if b.role, err = startZenklav(b.ctx, f.bin, "sms", dir, roleEnv); err != nil {
		return err
	}
	if err := waitGroupCaughtUp(b.ctx, brokers, b.role, schemas.TicketEventsTopic, sms.ReplyGroup); err != nil {
		return err
	}
	return waitGroupCaughtUp(b.ctx, brokers, b.role, sms.EventsTopic, sms.Group)
}

// writeConnections writes the connections file: one connection with SMS on.
func (b *smsBench) writeConnections(dir string) (string, error) {
	type obj = map[string]any
	file := obj{"connections": []obj{{
		"id": b.conn,
		"zendesk": obj{"subdomain": b.conn, "email": zendesktest.DefaultEmail, "api_token": zendesktest.DefaultAPIToken,
			"webhook_secrets": []string{smsZendeskSecret}, "brands": "all"},
		"klaviyo": obj{"private_key": b.key, "webhook_secrets": []string{b.hookSecret}},
		"sms":     obj{"enabled": true, "brand": smsBrand},
	}}}
	raw, err := json.Marshal(file)
	if err != nil {
		return "", err
	}
	path := dir + "/connections.json"
	return path, os.WriteFile(path, raw, 0o600)
}

// prepareSMS is prepare with both simulators tapped.
func prepareSMS(brokers string) (ctx context.Context, bs []string, dir string, s *smsSims, done func(), err error) {
	ctx, _, bs, dir, base, undo, err := prepare("sms", brokers)
	if err != nil {
		return nil, nil, "", nil, nil, err
	}
	s = &smsSims{sims: base, zdTap: newSimTap(), klTap: newSimTap()}
	// prepare serves the simulators untapped; serve them again, tapped, and point zenklav
	// there.
	if s.zendeskURL, err = base.serve(s.zdTap.wrap(base.zendesk)); err == nil {
		s.klaviyoURL, err = base.serve(s.klTap.wrap(base.klaviyo))
	}
	if err != nil {
		undo()
		return nil, nil, "", nil, nil, err
	}
	return ctx, bs, dir, s, undo, nil
}

// smsSims are the simulators with their taps; zendeskURL and klaviyoURL are the tapped ones.
type smsSims struct {
	*sims
	zdTap, klTap *simTap
}

// waitGroupCaughtUp waits until group has committed the whole of topic, for 5 minutes at
// most.
func waitGroupCaughtUp(ctx context.Context, brokers []string, p *zenklavProcess, topic, group string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		prog, err := kafka.GroupProgress(ctx, brokers, topic, group)
		if err == nil && prog.Committed >= prog.End {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("group %s has not caught up with %s within 5 minutes: %+v (%v)", group, topic, prog, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited():
			return fmt.Errorf("zenklav sms exited:\n%s", p.tail(30))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// markRE finds the marks of texts (T), replies (R) and warm-ups (W).
var markRE = regexp.MustCompile(`\b[TRW]\d{6}\b`)

// simTap wraps a simulator: it counts requests and 429 answers by endpoint, and notes when a
// successful write first held each mark.
type simTap struct {
	mu    sync.Mutex
	ops   map[string]answerCount // by method and path, ids replaced by {id}
	marks map[string]time.Time
	log   []tapped // every request, in order
}

// tapped is one request: when it came, and whether it was answered 429.
type tapped struct {
	at        time.Time
	throttled bool
}

func newSimTap() *simTap {
	return &simTap{ops: map[string]answerCount{}, marks: map[string]time.Time{}}
}

func (t *simTap) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			body, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		came := time.Now()
		sw := &apispec.StatusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		now := time.Now()
		op := r.Method + " " + opPath(r.URL.Path)
		t.mu.Lock()
		defer t.mu.Unlock()
		n := t.ops[op]
		n.requests++
		if sw.Status == http.StatusTooManyRequests {
			n.throttled++
		}
		t.ops[op] = n
		t.log = append(t.log, tapped{at: came, throttled: sw.Status == http.StatusTooManyRequests})
		if sw.Status == 0 || sw.Status/100 == 2 {
			for _, m := range markRE.FindAll(body, -1) {
				if _, ok := t.marks[string(m)]; !ok {
					t.marks[string(m)] = now
				}
			}
		}
	})
}

// opPath is path with its ids (segments holding a digit, but the API version) as {id}.
func opPath(path string) string {
	parts := strings.Split(strings.TrimSuffix(path, ".json"), "/")
	for i, p := range parts {
		if p != "v2" && strings.ContainsAny(p, "0123456789") {
			parts[i] = "{id}"
		}
	}
	return strings.Join(parts, "/")
}

// minutes counts the requests admitted in each fixed minute that overlaps [from, to], as the
// Zendesk simulator (and Zendesk's plan limit) counts them: a minute begins with the first
// request after the last one ended, and a request answered 429 counts in none. The first
// minute may have begun before from, with requests of its own.
func (t *simTap) minutes(from, to time.Time) []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []int
	var start time.Time
	used := 0
	for _, r := range t.log {
		if r.at.Sub(start) >= time.Minute {
			if used > 0 && !start.Add(time.Minute).Before(from) && !start.After(to) {
				out = append(out, used)
			}
			start, used = r.at, 0
		}
		if !r.throttled {
			used++
		}
	}
	if used > 0 && !start.Add(time.Minute).Before(from) && !start.After(to) {
		out = append(out, used)
	}
	return out
}

// counts is a copy of the request counts.
func (t *simTap) counts() map[string]answerCount {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.ops)
}

// at is when mark arrived; zero when it has not.
func (t *simTap) at(mark string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.marks[mark]
}

// since sums the counts of the ops matching prefix (all, with "") since before.
func since(before, after map[string]answerCount, prefix string) answerCount {
	var n answerCount
	for op, a := range after {
		if strings.HasPrefix(op, prefix) {
			n.requests += a.requests - before[op].requests
			n.throttled += a.throttled - before[op].throttled
		}
	}
	return n
}

// breakdown names each op's requests since before, most first.
func breakdown(before, after map[string]answerCount) string {
	type row struct {
		op string
		n  int
	}
	var rows []row
	for op, a := range after {
		if d := a.requests - before[op].requests; d > 0 {
			rows = append(rows, row{op, d})
		}
	}
	slices.SortFunc(rows, func(x, y row) int { return y.n - x.n })
	var parts []string
	for _, r := range rows {
		parts = append(parts, fmt.Sprintf("%s %d", r.op, r.n))
	}
	return strings.Join(parts, ", ")
}

// waitMarks waits until every mark has arrived at tap, within the given time.
func (b *smsBench) waitMarks(tap *simTap, marks []string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		missing := 0
		for _, m := range marks {
			if tap.at(m).IsZero() {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d marks had not arrived after %s; zenklav sms's log:\n%s", missing, len(marks), within, b.role.tail(30))
		}
		select {
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-b.role.exited():
			return fmt.Errorf("zenklav sms exited:\n%s", b.role.tail(30))
		case <-b.api.exited():
			return fmt.Errorf("zenklav api exited:\n%s", b.api.tail(30))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// mark is a new mark of kind T, R or W.
func (b *smsBench) mark(kind byte) string {
	return fmt.Sprintf("%c%06d", kind, b.next.Add(1))
}

// newCustomers adds n consented SMS subscribers to the Klaviyo account, none of them known
// to Zendesk, and returns their phones.
func (b *smsBench) newCustomers(n int) []string {
	phones := make([]string, n)
	for i := range phones {
		k := b.phones.Add(1)
		phones[i] = fmt.Sprintf("+1555%07d", 1_000_000+k)
		b.s.klaviyo.SetSMSProfile(b.key, klaviyotest.SMSProfile{Phone: phones[i], Email: fmt.Sprintf("texter%d@example.com", k),
			FirstName: "Texter", LastName: fmt.Sprint(k), Consent: klaviyotest.Subscribed})
	}
	return phones
}

// text sends one customer's text as one signed Klaviyo webhook; zenklav must accept it.
func (b *smsBench) text(phone, body string) error {
	item := b.s.klaviyo.InboundSMSItem(klaviyotest.InboundSMS{From: phone, To: klaviyotest.DefaultSMSNumber, Body: body,
		SenderType: zenklav.SenderTollFree})
	resp, err := b.s.klaviyo.SendWebhook(b.hookURL, b.hookSecret, item)
	if err := webhookAccepted(resp, err); err != nil {
		return fmt.Errorf("text webhook: %w", err)
	}
	return nil
}

// ticketsByPhone are the SMS tickets by their requesters' phones.
func (b *smsBench) ticketsByPhone() map[string]int64 {
	out := map[string]int64{}
	for _, t := range b.s.zendesk.Tickets() {
		if u, ok := b.s.zendesk.User(t.RequesterID); ok && slices.Contains(t.Tags, zenklav.TagSMS) {
			out[zenklav.E164(u.Phone)] = t.ID
		}
	}
	return out
}

// violations fails the run when either simulator saw a request, or made an answer, that
// breaks its API's published spec.
func (b *smsBench) violations() error {
	if v := append(b.s.zendesk.Violations(), b.s.klaviyo.Violations()...); len(v) > 0 {
		return fmt.Errorf("%d spec violations, the first: %+v", len(v), v[0])
	}
	return nil
}

// warmUp has three new customers text and an agent answer one of them, and waits until
// each arrived: both roles have joined their groups and every connection on the way is
// open before the clock starts.
func (b *smsBench) warmUp() error {
	phones := b.newCustomers(3)
	var marks []string
	for _, p := range phones {
		marks = append(marks, b.mark('W'))
		if err := b.text(p, "Hello, is anyone there? "+marks[len(marks)-1]); err != nil {
			return err
		}
	}
	if err := b.waitMarks(b.zd, marks, 2*time.Minute); err != nil {
		return err
	}
	m := b.mark('W')
	if _, err := b.s.zendesk.AgentReply(b.ticketsByPhone()[phones[0]], b.agent, "Yes, how can we help? "+m, true); err != nil {
		return err
	}
	return b.waitMarks(b.kl, []string{m}, 2*time.Minute)
}

// inboundLatency: customers text one at a time, n texts from customers consented subscribers
// in turn at rate a second; each is timed from its webhook's sending to the Zendesk
// simulator answering the write (a new ticket, or a comment) that holds it.
func (b *smsBench) inboundLatency(n, customers int, rate float64) error {
	phones := b.newCustomers(customers)
	b.latencyPhones = phones
	marks := b.marks('T', n)
	sent := make([]time.Time, n)
	zb, kb, cpu0 := b.zd.counts(), b.kl.counts(), sampleCPU()
	var failed atomic.Int64
	start := time.Now()
	paceWebhooks(start, time.Duration(float64(time.Second)/rate), 0, n, sent, func(i int) {
		if err := b.text(phones[i%customers], "Where is my order? It was due on Monday. "+marks[i]); err != nil {
			failed.Add(1)
			fmt.Fprintln(os.Stderr, "loadgen:", err)
		}
	})
	sending := time.Since(start)
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d text webhooks were not accepted", f, n)
	}
	if err := b.waitMarks(b.zd, marks, 2*time.Minute); err != nil {
		return err
	}
	cpu1, za, ka := sampleCPU(), b.zd.counts(), b.kl.counts()
	lat := arrivalsAfter(b.zd, marks, sent)
	zd := since(zb, za, "")
	fmt.Printf("| SMS text → Zendesk, no backlog | %d texts from %d consented customers in turn at %g/s; each customer's first a new ticket | %.1f/s | "+
		"**p50 %s, p95 %s**, max %s; Zendesk: %d requests (%.1f a text: %s), %d answered 429; Klaviyo: %s; %s |\n",
		n, customers, rate, float64(n)/sending.Seconds(), secs(quantile(lat, .50)), secs(quantile(lat, .95)), secs(lat[len(lat)-1]),
		zd.requests, float64(zd.requests)/float64(n), breakdown(zb, za), zd.throttled, breakdown(kb, ka), b.cpu(cpu0, cpu1))
	return nil
}

// replyLatency: an agent answers the customers of inboundLatency publicly, n replies at rate a
// second; each is timed from the agent's reply to the Klaviyo simulator accepting its
// conversation message.
func (b *smsBench) replyLatency(n int, rate float64) error {
	byPhone := b.ticketsByPhone()
	var tickets []int64
	for _, p := range b.latencyPhones {
		tickets = append(tickets, byPhone[p])
	}
	marks := b.marks('R', n)
	sent := make([]time.Time, n)
	zb, kb, cpu0 := b.zd.counts(), b.kl.counts(), sampleCPU()
	var failed atomic.Int64
	start := time.Now()
	paceWebhooks(start, time.Duration(float64(time.Second)/rate), 0, n, sent, func(i int) {
		body := "Thanks for waiting: it ships **tomorrow**, <a href=\"https://track.example/1\">track it</a>. " + marks[i]
		if _, err := b.s.zendesk.AgentReply(tickets[i%len(tickets)], b.agent, body, true); err != nil {
			failed.Add(1)
			fmt.Fprintln(os.Stderr, "loadgen:", err)
		}
	})
	sending := time.Since(start)
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d agent replies failed", f, n)
	}
	if err := b.waitMarks(b.kl, marks, 2*time.Minute); err != nil {
		return err
	}
	cpu1, za, ka := sampleCPU(), b.zd.counts(), b.kl.counts()
	lat := arrivalsAfter(b.kl, marks, sent)
	fmt.Printf("| SMS agent reply → Klaviyo, no backlog | %d public replies at %g/s on %d SMS tickets | %.2f/s | "+
		"**p50 %s, p95 %s**, max %s; Klaviyo: %s, %d answered 429; Zendesk: %s; %s |\n",
		n, rate, len(tickets), float64(n)/sending.Seconds(), secs(quantile(lat, .50)), secs(quantile(lat, .95)), secs(lat[len(lat)-1]),
		breakdown(kb, ka), since(kb, ka, "").throttled, breakdown(zb, za), b.cpu(cpu0, cpu1))
	return nil
}

// inboundBurst: n customers new to Zendesk text at once, one text each, sent as fast as 32
// senders go; it measures the time until every text is on a ticket, and the Zendesk
// requests that took against the plan's limit. It returns the customers' phones.
func (b *smsBench) inboundBurst(n int) ([]string, error) {
	phones := b.newCustomers(n)
	marks := b.marks('T', n)
	sent := make([]time.Time, n)
	zb, kb, cpu0 := b.zd.counts(), b.kl.counts(), sampleCPU()
	start := time.Now()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				sent[i] = time.Now()
				if err := b.text(phones[i], "Hi, I need help with my order, please call me back. "+marks[i]); err != nil {
					failed.Add(1)
					fmt.Fprintln(os.Stderr, "loadgen:", err)
				}
			}
		})
	}
	wg.Wait()
	sending := time.Since(start)
	if f := failed.Load(); f > 0 {
		return nil, fmt.Errorf("%d of %d text webhooks were not accepted", f, n)
	}
	if err := b.waitMarks(b.zd, marks, 8*time.Minute); err != nil {
		return nil, err
	}
	cpu1, za, ka := sampleCPU(), b.zd.counts(), b.kl.counts()
	lat := arrivalsAfter(b.zd, marks, sent)
	drain := slices.MaxFunc(arrivalTimes(b.zd, marks), time.Time.Compare).Sub(start)
	zd := since(zb, za, "")
	perMinute := float64(zd.requests) / drain.Minutes()
	var minutes []string
	for _, m := range b.zd.minutes(start, start.Add(drain)) {
		minutes = append(minutes, fmt.Sprint(m))
	}
	fmt.Printf("| SMS: %d customers texting at once, one connection | %d customers new to Zendesk, one text each, all sent in %s | "+
		"**drained in %s**, %.0f texts/min | each text on its ticket after p50 %s, p95 %s; Zendesk: **%d requests, %.0f/min averaged**; "+
		"**in the plan's minutes the drain spanned: %s of %d** (the first begun before it); **%d answered 429** (%s); Klaviyo: %s, %d answered 429; %s |\n",
		n, n, sending.Round(10*time.Millisecond), drain.Round(100*time.Millisecond), float64(n)/drain.Minutes(),
		secs(quantile(lat, .50)), secs(quantile(lat, .95)), zd.requests, perMinute, strings.Join(minutes, ", "), b.zdLimit, zd.throttled,
		breakdown(zb, za), breakdown(kb, ka), since(kb, ka, "").throttled, b.cpu(cpu0, cpu1))
	return phones, nil
}

// replyBurst: an agent answers each of tickets at once, as fast as the Zendesk simulator
// sends the webhooks; it measures the rate the replies reach Klaviyo at against the
// account's 60 conversation messages a minute, and the 429s on the way.
func (b *smsBench) replyBurst(phones []string) error {
	byPhone := b.ticketsByPhone()
	n := len(phones)
	marks := b.marks('R', n)
	zb, kb, cpu0 := b.zd.counts(), b.kl.counts(), sampleCPU()
	start := time.Now()
	for i, p := range phones {
		if _, err := b.s.zendesk.AgentReply(byPhone[p], b.agent, "We are on it: a courier picks it up today. "+marks[i], true); err != nil {
			return err
		}
	}
	posting := time.Since(start)
	if err := b.waitMarks(b.kl, marks, time.Duration(n)*1500*time.Millisecond+time.Minute); err != nil {
		return err
	}
	cpu1, za, ka := sampleCPU(), b.zd.counts(), b.kl.counts()
	ats := arrivalTimes(b.kl, marks)
	slices.SortFunc(ats, time.Time.Compare)
	first, last := ats[0], ats[n-1]
	inMinute := 0
	for _, at := range ats {
		if at.Before(first.Add(time.Minute)) {
			inMinute++
		}
	}
	rate := float64(n-1) / last.Sub(first).Minutes()
	msgs := since(kb, ka, "POST /api/conversation-messages")
	delayed := 0
	for _, p := range phones {
		for _, c := range b.s.zendesk.Comments(byPhone[p]) {
			if !c.Public && strings.Contains(c.Body, "waits about") {
				delayed++
			}
		}
	}
	fmt.Printf("| SMS replies at Klaviyo's limit | %d public replies at once, one on each of %d SMS tickets, posted in %s | "+
		"**%.1f/min = %.0f %% of 60/min** | the last sent %s after the first reply was posted; %d sent in the minute from the first; "+
		"conversation messages: %d requests, **%d answered 429**; Klaviyo in all: %s, %d answered 429; %d \"waits\" notes; Zendesk: %s, %d answered 429; %s |\n",
		n, n, posting.Round(10*time.Millisecond), rate, 100*rate/60, last.Sub(start).Round(100*time.Millisecond), inMinute,
		msgs.requests, msgs.throttled, breakdown(kb, ka), since(kb, ka, "").throttled, delayed, breakdown(zb, za), since(zb, za, "").throttled, b.cpu(cpu0, cpu1))
	return nil
}

// marks returns n new marks of kind.
func (b *smsBench) marks(kind byte, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = b.mark(kind)
	}
	return out
}

// arrivalTimes is when each mark arrived at tap.
func arrivalTimes(tap *simTap, marks []string) []time.Time {
	out := make([]time.Time, len(marks))
	for i, m := range marks {
		out[i] = tap.at(m)
	}
	return out
}

// arrivalsAfter is, sorted, how long after sent[i] each marks[i] arrived at tap.
func arrivalsAfter(tap *simTap, marks []string, sent []time.Time) []time.Duration {
	out := make([]time.Duration, len(marks))
	for i, m := range marks {
		out[i] = tap.at(m).Sub(sent[i])
	}
	slices.Sort(out)
	return out
}

// cpu says how many cores the two roles, the load generator with its simulators, and Kafka
// (the JVMs) used between x and y, and the machine in all.
func (b *smsBench) cpu(x, y cpuSample) string {
	secs := y.at.Sub(x.at).Seconds()
	cores := func(match func(pid int, name string) bool) float64 {
		var ticks uint64
		for pid, p := range y.procs {
			if before, ok := x.procs[pid]; ok && before.name == p.name && match(pid, p.name) {
				ticks += p.ticks - before.ticks
			}
		}
		return float64(ticks) / clockTicks / secs
	}
	pid := func(want int) func(int, string) bool { return func(p int, _ string) bool { return p == want } }
	machine := 0.0
	if y.total > x.total {
		machine = float64(y.busy-x.busy) / float64(y.total-x.total) * float64(runtime.NumCPU())
	}
	return fmt.Sprintf("CPU in cores: zenklav api %.2f, zenklav sms %.2f, loadgen (simulators) %.2f, Kafka %.2f; machine %.2f of %d",
		cores(pid(b.api.pid())), cores(pid(b.role.pid())), cores(pid(os.Getpid())),
		cores(func(_ int, name string) bool { return name == "java" }), machine, runtime.NumCPU())
}
