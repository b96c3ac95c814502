package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
	"github.com/zenklav/zenklav/sms"
)

// The connections measurements (issue 15) run zenklav against a connections store of their
// own: a fresh compacted topic (ZENKLAV_CONNECTIONS_TOPIC) filled with `zenklav connections
// apply`, its secrets sealed under a fresh ZENKLAV_SECRETS_KEY, and no connections file.

// connectionsFlags are the sizes of the measurements.
type connectionsFlags struct {
	zenklavFlags
	apiHTTP            string
	n, starts, repeats int
	poll, give         time.Duration
	settle             time.Duration
}

func (f *connectionsFlags) parse(args []string) error {
	fs := flag.NewFlagSet("connections", flag.ExitOnError)
	f.register(fs, "bench_connections", "127.0.0.1:18095")
	fs.StringVar(&f.apiHTTP, "api-http", "127.0.0.1:18096", "the HTTP listener of the second process, zenklav api")
	fs.IntVar(&f.n, "n", 1000, "connections in the store")
	fs.IntVar(&f.starts, "starts", 3, "start-ups of zenklav all timed with each store (1 connection, then -n)")
	fs.IntVar(&f.repeats, "repeats", 3, "new connections applied, one at a time, beside the two running processes")
	fs.DurationVar(&f.poll, "poll", 20*time.Millisecond, "how often a new connection's webhook is tried")
	fs.DurationVar(&f.settle, "settle", 5*time.Second, "how long after ready zenklav all's peak memory is read again")
	fs.DurationVar(&f.give, "give-up", 30*time.Second, "how long a new connection's webhook is tried before the run fails")
	fs.Parse(args)
	if f.brokers == "" || f.clickhouse == "" || f.n < 1 || f.starts < 1 || f.repeats < 1 || f.poll <= 0 {
		return fmt.Errorf("connections needs -brokers, -clickhouse and positive -n, -starts, -repeats and -poll")
	}
	return nil
}

// connectionsAtRunTime is `loadgen connections`: `zenklav connections apply` of -n
// connections into a fresh store; start-up time and memory of `zenklav all` with 1 stored
// connection and with -n; then, with `zenklav all` (-n connections) and `zenklav api`
// running, the time from applying a new connection to its first webhook accepted by each.
func connectionsAtRunTime(args []string) error {
	var f connectionsFlags
	if err := f.parse(args); err != nil {
		return err
	}
	ctx, _, bs, dir, s, done, err := prepare("connections", f.brokers)
	if err != nil {
		return err
	}
	defer done()
	for _, g := range []string{emitter.Group, sms.Group, sms.ReplyGroup} {
		if err := requireIdleGroup(ctx, bs, g); err != nil {
			return err
		}
	}
	b := &connBench{ctx: ctx, f: f, s: s, dir: dir, stamp: time.Now().Unix()}
	out, err := b.cli(map[string]string{}, "secrets", "new-key")
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	b.key = lines[len(lines)-1]

	one, err := b.fill("one", 1)
	if err != nil {
		return err
	}
	many, err := b.fill("many", f.n)
	if err != nil {
		return err
	}
	// A first start, untimed, migrates ClickHouse and catches up with what the shared topics
	// hold, so the timed ones start with no backlog.
	if err := b.warmUp(one); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if err := b.startUps(one, 1, false); err != nil {
		return err
	}
	if err := b.startUps(many, f.n, true); err != nil {
		return err
	}
	defer b.all.stop()
	api, _, err := b.start("api", f.apiHTTP, many)
	if err != nil {
		return err
	}
	defer api.stop()
	for i := range f.repeats {
		if err := b.applyNew(many, i+1, api); err != nil {
			return err
		}
	}
	return nil
}

// connBench is one run of the connections measurements.
type connBench struct {
	ctx   context.Context
	f     connectionsFlags
	s     *sims
	dir   string
	stamp int64
	key   string          // ZENKLAV_SECRETS_KEY
	all   *zenklavProcess // zenklav all on the big store, left running by startUps
}

// connStore is a connections store of the run: its topic, and the connections applied to it.
type connStore struct {
	topic string
	conns []benchConnection
}

// env is zenklav's environment against store: the store's topic and key, no connections
// file, the role's HTTP listener at addr.
func (b *connBench) env(store connStore, addr string) map[string]string {
	zf := b.f.zenklavFlags
	zf.httpAddr = addr
	env := b.s.env(zf, "")
	delete(env, "ZENKLAV_CONNECTIONS_FILE")
	env["ZENKLAV_SECRETS_KEY"] = b.key
	env["ZENKLAV_CONNECTIONS_TOPIC"] = store.topic
	env["ZENKLAV_DATA_DIR"] = b.dir
	return env
}

// cli runs a zenklav command to its end with env (ZENKLAV_LOG_LEVEL warn added) and returns
// what it printed.
func (b *connBench) cli(env map[string]string, args ...string) (string, error) {
	env = maps.Clone(env)
	env["ZENKLAV_LOG_LEVEL"] = "warn"
	path := filepath.Join(b.dir, "cli.out")
	out, err := os.Create(path)
	if err != nil {
		return "", err
	}
	var kvs []string
	for k, v := range env {
		kvs = append(kvs, k+"="+v)
	}
	err = zenklavCommand(b.f.bin, out, kvs, args...).Run()
	out.Close()
	printed, rerr := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("zenklav %s: %w\n%s", strings.Join(args, " "), err, printed)
	}
	return string(printed), rerr
}

// apply writes conns to a file, opens their Klaviyo accounts in the simulator and runs
// `zenklav connections apply -f FILE` into store; it returns how long the command took.
func (b *connBench) apply(store connStore, conns []benchConnection) (time.Duration, error) {
	path := filepath.Join(b.dir, fmt.Sprintf("apply-%s.json", conns[0].id))
	for _, c := range conns {
		b.s.klaviyo.AddAccount(c.klaviyoKey)
	}
	if err := writeConnections(path, conns); err != nil {
		return 0, err
	}
	env := map[string]string{"ZENKLAV_KAFKA_BROKERS": b.f.brokers, "ZENKLAV_SECRETS_KEY": b.key, "ZENKLAV_CONNECTIONS_TOPIC": store.topic}
	start := time.Now()
	out, err := b.cli(env, "connections", "apply", "-f", path)
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	if want := fmt.Sprintf("%d of %d connection(s) changed", len(conns), len(conns)); !strings.Contains(out, want) {
		return 0, fmt.Errorf("connections apply printed no %q:\n%s", want, out)
	}
	return took, nil
}

// connection is connection i of the run's store called name: its id (and subdomain), a
// webhook secret and a Klaviyo key of its own; Zendesk's API token is the simulator's.
func (b *connBench) connection(name string, i int) benchConnection {
	id := fmt.Sprintf("%s%d-%05d", name, b.stamp, i)
	return benchConnection{id: id, secret: "webhook-secret-" + id, klaviyoKey: "pk_" + strings.ReplaceAll(id, "-", "_")}
}

// fill applies n connections to a fresh store called name, and prints how long the apply
// took.
func (b *connBench) fill(name string, n int) (connStore, error) {
	store := connStore{topic: fmt.Sprintf("bench-connections-%s-%d", name, b.stamp)}
	for i := range n {
		store.conns = append(store.conns, b.connection(name, i))
	}
	took, err := b.apply(store, store.conns)
	if err != nil {
		return store, err
	}
	rate := ""
	if n > 1 {
		rate = fmt.Sprintf("%.0f connections/s", float64(n)/took.Seconds())
	}
	fmt.Printf("| connections: `zenklav connections apply -f FILE` | %s into a fresh store, secrets sealed | %s | %s for the command, from its start to its exit |\n",
		plural(n, "new connection"), rate, secs(took))
	return store, nil
}

// warmUp starts zenklav all on store and stops it once its groups have caught up with the
// shared topics.
func (b *connBench) warmUp(store connStore) error {
	p, _, err := b.start("all", b.f.httpAddr, store)
	if err != nil {
		return err
	}
	defer p.stop()
	if err := waitCaughtUp(b.ctx, strings.Split(b.f.brokers, ","), p, emitter.Group, sink.Group, sink.Group+sink.TicketRowsSuffix); err != nil {
		return err
	}
	if err := waitGroupCaughtUp(b.ctx, strings.Split(b.f.brokers, ","), p, schemas.TicketEventsTopic, sms.ReplyGroup); err != nil {
		return err
	}
	return waitGroupCaughtUp(b.ctx, strings.Split(b.f.brokers, ","), p, schemas.SMSEventsTopic, sms.Group)
}

// startUps starts zenklav all on store -starts times, each from the process's start to its
// first /readyz 200, and prints the times, the memory each had then, and its peak 5 s later
// (the roles' readers and pools are made as they start working); with keep, the last one
// is left running in b.all.
func (b *connBench) startUps(store connStore, n int, keep bool) error {
	var took []time.Duration
	var hwm, rss, later []int
	_, bodies, err := b.s.ticketWebhooks(1, latencyCustomer, latencyTicket)
	if err != nil {
		return err
	}
	last := store.conns[len(store.conns)-1]
	for i := range b.f.starts {
		p, startUp, err := b.start("all", b.f.httpAddr, store)
		if err != nil {
			return err
		}
		h, r, err := procMemory(p.pid())
		if err == nil {
			// Ready means every stored connection is in force: the last one's webhook is
			// accepted at once.
			err = webhookAccepted(b.s.zendesk.SendWebhook(b.ctx, "http://"+p.http+"/webhooks/zendesk/"+last.id, last.secret, bodies[0]))
			if err != nil {
				err = fmt.Errorf("the webhook of %s, the last stored connection, at ready: %w", last.id, err)
			}
		}
		if err == nil {
			time.Sleep(b.f.settle)
			var l int
			l, _, err = procMemory(p.pid())
			later = append(later, l)
		}
		if err != nil {
			p.stop()
			return err
		}
		took, hwm, rss = append(took, startUp), append(hwm, h), append(rss, r)
		if keep && i == b.f.starts-1 {
			b.all = p
			break
		}
		p.stop()
	}
	fmt.Printf("| connections: `zenklav all` start-up, %s stored | process start → /readyz 200, %d starts | | %s; at ready VmRSS %s, VmHWM %s; %.0f s later VmHWM %s |\n",
		plural(n, "connection"), b.f.starts, joinSecs(took), joinMB(rss), joinMB(hwm), b.f.settle.Seconds(), joinMB(later))
	return nil
}

// applyNew applies one new connection to store beside the running zenklav all and api, and
// prints, for each, the time from the apply's exit to the first webhook of that
// connection it accepted.
func (b *connBench) applyNew(store connStore, run int, api *zenklavProcess) error {
	c := b.connection("new", run)
	// A ticket of the simulator's own, so the emitter finds what the webhook names.
	_, bodies, err := b.s.ticketWebhooks(1, latencyCustomer, latencyTicket)
	if err != nil {
		return err
	}
	took, err := b.apply(store, []benchConnection{c})
	if err != nil {
		return err
	}
	applied := time.Now()
	procs := []*zenklavProcess{b.all, api}
	got := make([]time.Duration, len(procs))
	tries := make([]int, len(procs))
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() { got[i], tries[i], errs[i] = b.firstAccepted(p, c, bodies[0], applied) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	fmt.Printf("| connections: apply → first accepted webhook, run %d | 1 new connection beside %s, signed webhooks tried every %d ms in both processes | | `zenklav all` %s (%d tries), `zenklav api` %s (%d tries) after the apply's exit; the apply took %s; target ≤ 5 s |\n",
		run, plural(len(store.conns)+run-1, "connection"), b.f.poll.Milliseconds(), secs(got[0]), tries[0], secs(got[1]), tries[1], secs(took))
	return nil
}

// firstAccepted sends c's webhook to p every -poll until p accepts it (202), and returns
// how long after applied that was and how many it sent.
func (b *connBench) firstAccepted(p *zenklavProcess, c benchConnection, body []byte, applied time.Time) (time.Duration, int, error) {
	url := "http://" + p.http + "/webhooks/zendesk/" + c.id
	for tries := 1; ; tries++ {
		resp, err := b.s.zendesk.SendWebhook(b.ctx, url, c.secret, body)
		if err != nil {
			return 0, tries, err
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			return time.Since(applied), tries, nil
		case http.StatusNotFound: // not in force there yet
		default:
			return 0, tries, fmt.Errorf("a webhook of %s to %s: status %d", c.id, p.http, resp.StatusCode)
		}
		if time.Since(applied) > b.f.give {
			return 0, tries, fmt.Errorf("%s still refuses the webhooks of %s %s after its apply", p.http, c.id, b.f.give)
		}
		select {
		case <-b.ctx.Done():
			return 0, tries, b.ctx.Err()
		case <-p.exited():
			return 0, tries, fmt.Errorf("zenklav at %s exited:\n%s", p.http, p.tail(30))
		case <-time.After(b.f.poll):
		}
	}
}

// start starts role on store, listening on addr, and waits until it answers /readyz 200,
// asking every 10 ms; startUp is the time from the process's start to then.
func (b *connBench) start(role, addr string, store connStore) (p *zenklavProcess, startUp time.Duration, err error) {
	p = &zenklavProcess{log: filepath.Join(b.dir, fmt.Sprintf("zenklav-%s-%d.log", role, time.Now().UnixNano())), http: addr, done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		return nil, 0, err
	}
	defer out.Close()
	var kvs []string
	for k, v := range b.env(store, addr) {
		kvs = append(kvs, k+"="+v)
	}
	p.cmd = zenklavCommand(b.f.bin, out, kvs, role)
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("start zenklav %s: %w", role, err)
	}
	go func() {
		p.cmd.Wait() //nolint:errcheck // the exit is reported through done
		close(p.done)
	}()
	client := &http.Client{Timeout: time.Second}
	for deadline := start.Add(2 * time.Minute); ; {
		if resp, err := client.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, time.Since(start), nil
			}
		}
		select {
		case <-p.done:
			return nil, 0, fmt.Errorf("zenklav %s exited at start:\n%s", role, p.tail(30))
		case <-b.ctx.Done():
			p.stop()
			return nil, 0, b.ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, 0, fmt.Errorf("zenklav %s was not ready within 2 minutes:\n%s", role, p.tail(30))
		}
	}
}

// procMemory is the peak and the current resident memory of pid, in kB (VmHWM and VmRSS of
// /proc/PID/status).
func procMemory(pid int) (hwm, rss int, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory: %w", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		if err != nil {
			return 0, 0, fmt.Errorf("%s in /proc/%d/status: %w", k, pid, err)
		}
		if k == "VmHWM" {
			hwm = kb
		} else {
			rss = kb
		}
	}
	if hwm == 0 || rss == 0 {
		return 0, 0, fmt.Errorf("no VmHWM or VmRSS in /proc/%d/status", pid)
	}
	return hwm, rss, nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return thousands(n) + " " + what + "s"
}

func joinSecs(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, secs(d))
	}
	return strings.Join(parts, ", ")
}

// joinMB prints kB values as MB, and their median when there are several.
func joinMB(kbs []int) string {
	var parts []string
	for _, kb := range kbs {
		parts = append(parts, fmt.Sprintf("%.0f", float64(kb)/1024))
	}
	s := strings.Join(parts, ", ") + " MB"
	if len(kbs) > 2 {
		sorted := slices.Sorted(slices.Values(kbs))
		s += fmt.Sprintf(" (median %.0f MB)", float64(sorted[len(sorted)/2])/1024)
	}
	return s
}
