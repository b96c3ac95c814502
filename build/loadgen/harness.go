package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zenklav/zenklav/internal/apispec"
	zkafka "github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// The emitter measurements run zenklav as a child process against the simulators of
// Klaviyo and Zendesk, served from this process on loopback: the simulators enforce
// Klaviyo's per-account limits, and their side is where a delivery is measured.

// prepare is what every emitter measurement starts with: a context that Ctrl-C ends, a
// logger, the brokers, a directory of its own and the simulators. done undoes it all.
func prepare(name, brokers string) (ctx context.Context, logger *slog.Logger, bs []string, dir string, s *sims, done func(), err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	logger = warnLogger()
	if dir, err = os.MkdirTemp("", "loadgen-"+name+"-"); err != nil {
		stop()
		return nil, nil, nil, "", nil, nil, err
	}
	if s, err = startSims(logger); err != nil {
		os.RemoveAll(dir)
		stop()
		return nil, nil, nil, "", nil, nil, err
	}
	done = func() {
		s.Close()
		os.RemoveAll(dir)
		stop()
	}
	return ctx, logger, strings.Split(brokers, ","), dir, s, done, nil
}

// warnLogger is the logger of every measurement: warnings and errors only, on stderr, so
// what a run says is its table rows and what went wrong.
func warnLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// zenklavFlags are the flags of every measurement that starts bin/zenklav against Kafka,
// ClickHouse and the simulators.
type zenklavFlags struct {
	bin, brokers, clickhouse, database, httpAddr string
}

// register defines the flags on fs, with this measurement's own defaults for zenklav's
// ClickHouse database and HTTP listener.
func (f *zenklavFlags) register(fs *flag.FlagSet, database, httpAddr string) {
	fs.StringVar(&f.bin, "zenklav", "bin/zenklav", "the zenklav binary")
	fs.StringVar(&f.brokers, "brokers", "", "Kafka brokers")
	fs.StringVar(&f.clickhouse, "clickhouse", "", "ClickHouse native address")
	fs.StringVar(&f.database, "database", database, "zenklav's ClickHouse database")
	fs.StringVar(&f.httpAddr, "http", httpAddr, "zenklav's HTTP listener")
}

// env is the environment zenklav runs with against the simulators, as f and the
// connections file say.
func (s *sims) env(f zenklavFlags, connections string) map[string]string {
	return map[string]string{
		"ZENKLAV_HTTP_ADDR":           f.httpAddr,
		"ZENKLAV_KAFKA_BROKERS":       f.brokers,
		"ZENKLAV_CLICKHOUSE_ADDR":     f.clickhouse,
		"ZENKLAV_CLICKHOUSE_DATABASE": f.database,
		"ZENKLAV_CONNECTIONS_FILE":    connections,
		"ZENKLAV_KLAVIYO_BASE_URL":    s.klaviyoURL,
		"ZENKLAV_ZENDESK_BASE_URL":    s.zendeskURL,
		"ZENKLAV_LOG_LEVEL":           "warn",
	}
}

// sims are the two simulators and where they listen.
type sims struct {
	klaviyo    *klaviyotest.Server
	zendesk    *zendesktest.Server
	klaviyoURL string
	zendeskURL string
	answers    *answerCounter
	srvs       []*http.Server
}

func startSims(logger *slog.Logger) (*sims, error) {
	k, err := klaviyotest.New(logger)
	if err != nil {
		return nil, err
	}
	z, err := zendesktest.New(logger)
	if err != nil {
		return nil, err
	}
	s := &sims{klaviyo: k, zendesk: z, answers: &answerCounter{byPath: map[string]*answerCount{}}}
	if s.klaviyoURL, err = s.serve(s.answers.wrap(k)); err != nil {
		s.Close()
		return nil, err
	}
	if s.zendeskURL, err = s.serve(z); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *sims) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen for a simulator: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	s.srvs = append(s.srvs, srv)
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	return "http://" + ln.Addr().String(), nil
}

func (s *sims) Close() {
	for _, srv := range s.srvs {
		srv.Close()
	}
	s.klaviyo.Close()
	s.zendesk.Close()
}

// answerCounter counts the Klaviyo simulator's answers by endpoint: the account's own
// counts lump bulk events and profile imports together, and each has its own limit.
type answerCounter struct {
	mu     sync.Mutex
	byPath map[string]*answerCount
}

type answerCount struct{ requests, throttled int }

func (c *answerCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &apispec.StatusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		c.mu.Lock()
		defer c.mu.Unlock()
		n := c.byPath[r.URL.Path]
		if n == nil {
			n = &answerCount{}
			c.byPath[r.URL.Path] = n
		}
		n.requests++
		if sw.Status == http.StatusTooManyRequests {
			n.throttled++
		}
	})
}

func (c *answerCounter) get(path string) answerCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.byPath[path]; n != nil {
		return *n
	}
	return answerCount{}
}

func (n answerCount) String() string {
	return fmt.Sprintf("%d, %d answered 429 (%.1f %%)", n.requests, n.throttled, pct(n.throttled, n.requests))
}

func pct(part, whole int) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

// addConnections opens each connection's Klaviyo account in the simulator and writes the
// connections file zenklav is started with, in dir; it returns the file's path.
func (s *sims) addConnections(dir string, conns []benchConnection) (string, error) {
	for _, c := range conns {
		s.klaviyo.AddAccount(c.klaviyoKey)
	}
	return writeConnectionsIn(dir, conns)
}

// writeConnectionsIn writes conns to dir/connections.json and returns its path.
func writeConnectionsIn(dir string, conns []benchConnection) (string, error) {
	path := filepath.Join(dir, "connections.json")
	return path, writeConnections(path, conns)
}

// ticketWebhooks adds n tickets to the Zendesk simulator, ticket i with a requester of its
// own (user(i)), and returns their ids and the ticket.created webhooks Zendesk sends for
// them: built before the clock starts, they cost the measurement nothing.
func (s *sims) ticketWebhooks(n int, user func(i int) zendesk.User, ticket func(i int, requester int64) zendesk.Ticket) (ids []int64, bodies [][]byte, err error) {
	ids, bodies = make([]int64, n), make([][]byte, n)
	for i := range n {
		u := s.zendesk.AddUser(user(i))
		t := s.zendesk.AddTicket(ticket(i, u.ID))
		ids[i] = t.ID
		if bodies[i], err = s.zendesk.TicketCreated(t.ID, zendesktest.EventMeta{}); err != nil {
			return nil, nil, err
		}
	}
	return ids, bodies, nil
}

// webhookSender sends a connection's prepared webhooks to zenklav, signed by the Zendesk
// simulator. A webhook zenklav does not accept is reported and counted, not fatal: the
// measurement goes on, and err fails it at its end.
type webhookSender struct {
	ctx     context.Context
	zendesk *zendesktest.Server
	url     string
	secret  string
	bodies  [][]byte
	failed  atomic.Int64
}

func newWebhookSender(ctx context.Context, s *sims, httpAddr string, conn benchConnection, bodies [][]byte) *webhookSender {
	return &webhookSender{
		ctx: ctx, zendesk: s.zendesk, url: "http://" + httpAddr + "/webhooks/zendesk/" + conn.id,
		secret: conn.secret, bodies: bodies,
	}
}

// send sends webhook i.
func (w *webhookSender) send(i int) {
	if err := webhookAccepted(w.zendesk.SendWebhook(w.ctx, w.url, w.secret, w.bodies[i])); err != nil {
		w.failed.Add(1)
		fmt.Fprintln(os.Stderr, "loadgen: webhook:", err)
	}
}

// err says how many webhooks zenklav did not accept, if any.
func (w *webhookSender) err() error {
	if f := w.failed.Load(); f > 0 {
		return fmt.Errorf("%d webhooks were not accepted", f)
	}
	return nil
}

// paceWebhooks calls send for each i in [from, to), one every interval from start, and
// notes in sent[i] when it did; it returns when every send has. Each webhook goes on its
// own goroutine, as Zendesk's senders are independent: a slow answer does not hold up the
// next one.
func paceWebhooks(start time.Time, interval time.Duration, from, to int, sent []time.Time, send func(i int)) {
	var wg sync.WaitGroup
	for i := from; i < to; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i-from) * interval)))
		sent[i] = time.Now()
		wg.Go(func() { send(i) })
	}
	wg.Wait()
}

// benchConnection is one entry of the connections file zenklav is started with.
type benchConnection struct {
	id, secret, klaviyoKey string
	// installation and publicKey, when set, install the sidebar app on the connection.
	installation int64
	publicKey    string
}

func writeConnections(path string, conns []benchConnection) error {
	type entry struct {
		ID      string `json:"id"`
		Zendesk struct {
			Subdomain      string   `json:"subdomain"`
			Email          string   `json:"email"`
			APIToken       string   `json:"api_token"`
			WebhookSecrets []string `json:"webhook_secrets"`
			Brands         string   `json:"brands"`
			App            *struct {
				InstallationID int64  `json:"installation_id"`
				PublicKey      string `json:"public_key"`
			} `json:"app,omitempty"`
		} `json:"zendesk"`
		Klaviyo struct {
			PrivateKey string `json:"private_key"`
		} `json:"klaviyo"`
	}
	var file struct {
		Connections []entry `json:"connections"`
	}
	for _, c := range conns {
		var e entry
		e.ID = c.id
		e.Zendesk.Subdomain = c.id
		e.Zendesk.Email, e.Zendesk.APIToken = zendesktest.DefaultEmail, zendesktest.DefaultAPIToken
		e.Zendesk.WebhookSecrets = []string{c.secret}
		e.Zendesk.Brands = "all"
		if c.installation != 0 {
			e.Zendesk.App = &struct {
				InstallationID int64  `json:"installation_id"`
				PublicKey      string `json:"public_key"`
			}{c.installation, c.publicKey}
		}
		e.Klaviyo.PrivateKey = c.klaviyoKey
		file.Connections = append(file.Connections, e)
	}
	b, err := json.Marshal(file)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// zenklavProcess is bin/zenklav run as a child, as in production: its CPU and memory are
// its own, apart from the simulators and the load.
type zenklavProcess struct {
	cmd  *exec.Cmd
	log  string
	http string
	done chan struct{}
}

// startZenklav runs bin ROLE with env (on top of this process's environment without its
// ZENKLAV_ settings) and waits until it answers /readyz.
func startZenklav(ctx context.Context, bin, role, dir string, env map[string]string) (*zenklavProcess, error) {
	p := &zenklavProcess{log: filepath.Join(dir, "zenklav-"+role+".log"), http: env["ZENKLAV_HTTP_ADDR"], done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	var kvs []string
	for k, v := range env {
		kvs = append(kvs, k+"="+v)
	}
	p.cmd = zenklavCommand(bin, out, kvs, role)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start zenklav %s: %w", role, err)
	}
	go func() {
		p.cmd.Wait() //nolint:errcheck // the exit is reported through done
		close(p.done)
	}()
	if err := p.waitReady(ctx, role); err != nil {
		return nil, err
	}
	return p, nil
}

// zenklavCommand is bin with args as a child of this process, its output into out. It runs
// in this process's environment without its ZENKLAV_ settings, and then env (KEY=value
// each): what the measurement sets is all of zenklav's configuration.
func zenklavCommand(bin string, out *os.File, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ZENKLAV_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = out, out
	// A zenklav left behind would keep its partitions of the shared consumer group and take
	// events from whoever runs the emitter next: it dies with the load generator.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// waitReady waits until the zenklav started as role answers /readyz, for 2 minutes at
// most; it stops the process when it gives up.
func (p *zenklavProcess) waitReady(ctx context.Context, role string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := client.Get("http://" + p.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("zenklav %s exited at start:\n%s", role, p.tail(30))
		case <-ctx.Done():
			p.stop()
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("zenklav %s was not ready within 2 minutes:\n%s", role, p.tail(30))
		}
	}
}

func (p *zenklavProcess) pid() int { return p.cmd.Process.Pid }

func (p *zenklavProcess) exited() <-chan struct{} { return p.done }

// stop ends it as an operator does (SIGTERM, so it commits what it delivered and leaves the
// group at once), and kills it if it has not exited within 30 s.
func (p *zenklavProcess) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited already
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill() //nolint:errcheck
		<-p.done
	}
}

func (p *zenklavProcess) tail(lines int) string {
	f, err := os.Open(p.log)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var all []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		all = append(all, sc.Text())
	}
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// fetchProfile saves a CPU profile of seconds from a zenklav that serves pprof at addr.
func fetchProfile(addr string, seconds int, path string) error {
	client := &http.Client{Timeout: time.Duration(seconds+30) * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds))
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch profile: status %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadFrom(resp.Body)
	return err
}

// cpuProfile starts a CPU profile of this process into path; stop ends it and closes the
// file.
func cpuProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// quantile is the p quantile of sorted, as every table row takes it: the element at
// len(sorted)·p, or the last.
func quantile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// groupMembers is how many members the consumer group has. The emitter's group is shared
// by everything on this Kafka: a second emitter would take some partitions and pass over
// our events (it knows no route for them), and the run could never finish. It asks the
// group's coordinator, retrying for a while: a fresh broker creates its offsets topic on
// the first question and is no coordinator until then.
func groupMembers(ctx context.Context, brokers []string, group string) (int, error) {
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		var n int
		if n, err = zkafka.GroupMembers(ctx, brokers, group); err == nil {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("describe group %s: %w", group, err)
}

// requireIdleGroup fails when some process is already consuming as group: zenklav
// started now would share the topic with it.
func requireIdleGroup(ctx context.Context, brokers []string, group string) error {
	n, err := groupMembers(ctx, brokers, group)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("group %s already has %d member(s): another zenklav emitter is running against this Kafka "+
			"(pgrep -fa 'zenklav (emitter|all)'); it would take partitions and pass over this run's events", group, n)
	}
	return nil
}

// clockTicks is USER_HZ, the unit of CPU times in /proc: 100 on every Linux port Go runs
// on but alpha and ia64.
const clockTicks = 100

// cpuSample is the CPU time of the machine and of every process at one moment, to say
// which process used the cores over a measurement.
type cpuSample struct {
	at          time.Time
	busy, total uint64            // machine, in ticks, from /proc/stat
	procs       map[int]procTicks // by pid
}

type procTicks struct {
	name  string
	ticks uint64
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now(), procs: map[int]procTicks{}}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		for i, f := range strings.Fields(line)[1:] {
			v, _ := strconv.ParseUint(f, 10, 64)
			s.total += v
			if i != 3 && i != 4 { // idle, iowait
				s.busy += v
			}
		}
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue // gone since
		}
		// pid (comm) state ppid … utime stime: comm may hold spaces, so split after ')'.
		open, closing := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(string(b[closing+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseUint(f[11], 10, 64)
		st, _ := strconv.ParseUint(f[12], 10, 64)
		s.procs[pid] = procTicks{name: string(b[open+1 : closing]), ticks: ut + st}
	}
	return s
}

// cpuReport names the processes that used the most CPU between a and b, with names for
// the ones this run knows by pid, and how busy the machine was.
func cpuReport(a, b cpuSample, names map[int]string) string {
	secs := b.at.Sub(a.at).Seconds()
	type use struct {
		name  string
		cores float64
	}
	var uses []use
	for pid, p := range b.procs {
		before, ok := a.procs[pid]
		if !ok || before.name != p.name { // started during the interval, or a reused pid
			before.ticks = 0
		}
		c := float64(p.ticks-before.ticks) / clockTicks / secs
		if c < 0.05 {
			continue
		}
		name := p.name
		if n, ok := names[pid]; ok {
			name = n
		}
		uses = append(uses, use{name, c})
	}
	slices.SortFunc(uses, func(x, y use) int {
		switch {
		case x.cores > y.cores:
			return -1
		case x.cores < y.cores:
			return 1
		}
		return 0
	})
	var parts []string
	for _, u := range uses[:min(len(uses), 4)] {
		parts = append(parts, fmt.Sprintf("%s %.2f", u.name, u.cores))
	}
	machine := 0.0
	if b.total > a.total {
		machine = float64(b.busy-a.busy) / float64(b.total-a.total) * float64(runtime.NumCPU())
	}
	return fmt.Sprintf("CPU in cores: %s; machine %.2f of %d", strings.Join(parts, ", "), machine, runtime.NumCPU())
}
