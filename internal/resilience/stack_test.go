package resilience_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// binDir holds the zenklav binary the tests run, built once per test binary.
var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zenklav-resilience-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// zenklavBinary builds cmd/zenklav, once for every test of the package.
func zenklavBinary(t *testing.T) string {
	t.Helper()
	root := testenv.ModuleRoot(t)
	buildOnce.Do(func() {
		bin := filepath.Join(binDir, "zenklav")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/zenklav")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/zenklav: %v\n%s", err, out)
			return
		}
		binPath = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// The one connection of every test: the broker and ClickHouse are the test's own, so fixed
// names cannot meet another test's.
const (
	tenant     = "resilience"
	secret     = "resilience-webhook-signing-secret"
	klaviyoKey = "pk_resilience_test_account"
)

// stack is what a test runs zenklav against: a broker (or a cluster) and a ClickHouse of its
// own, the Zendesk and Klaviyo simulators, the connections file.
type stack struct {
	t          *testing.T
	bin        string
	dir        string
	kafka      *testenv.Server // nil on a cluster
	brokers    string          // ZENKLAV_KAFKA_BROKERS
	clickhouse *testenv.Server
	zd         *zendesktest.Server
	kl         *klaviyotest.Server
	conns      string
	sample     zendesktest.Sample
	customers  []zendesk.User
	accepted   *acceptLog
	starts     map[string]int // by role: a log file for each start
}

func newStack(t *testing.T) *stack {
	t.Helper()
	return newStackOn(t, func(s *stack) {
		s.kafka = testenv.StartKafka(t)
		s.brokers = s.kafka.Addr
	})
}

// newStackOn is a stack whose Kafka startKafka starts, setting s.brokers.
func newStackOn(t *testing.T, startKafka func(s *stack)) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("starts servers of its own and keeps them down for a while")
	}
	s := &stack{t: t, dir: t.TempDir(), starts: map[string]int{}}
	s.clickhouse = testenv.StartClickHouse(t)
	startKafka(s)
	s.bin = zenklavBinary(t)
	s.zd = zendesktest.NewServer()
	t.Cleanup(s.zd.Close)
	// The emitter looks up requesters, assignees and groups; the load is ours, not Zendesk's
	// limit's to test.
	s.zd.SetRateLimit(1_000_000)
	s.sample = s.zd.Seed()
	for i := range 20 {
		s.customers = append(s.customers, s.zd.AddUser(zendesk.User{
			Name: fmt.Sprintf("Customer %d", i), Email: fmt.Sprintf("customer%d@example.com", i), Role: "end-user",
		}))
	}
	s.kl = klaviyotest.NewServer()
	t.Cleanup(s.kl.Close)
	s.kl.AddAccount(klaviyoKey)
	s.accepted = &acceptLog{}
	s.kl.OnAccept(s.accepted.add)
	s.conns = filepath.Join(s.dir, "connections.json")
	if err := os.WriteFile(s.conns, fmt.Appendf(nil, `{"connections":[{"id":%q,"zendesk":{"subdomain":%q,
		"email":%q,"api_token":%q,"webhook_secrets":[%q],"brands":"all"},"klaviyo":{"private_key":%q},"sms":{"enabled":false}}]}`,
		tenant, tenant, zendesktest.DefaultEmail, zendesktest.DefaultAPIToken, secret, klaviyoKey), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// env is zenklav's whole configuration: this process's environment without its ZENKLAV_
// settings, then the stack's.
func (s *stack) env(httpAddr string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ZENKLAV_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"ZENKLAV_HTTP_ADDR="+httpAddr,
		"ZENKLAV_KAFKA_BROKERS="+s.brokers,
		"ZENKLAV_CLICKHOUSE_ADDR="+s.clickhouse.Addr,
		"ZENKLAV_CLICKHOUSE_DATABASE=zenklav",
		"ZENKLAV_CONNECTIONS_FILE="+s.conns,
		"ZENKLAV_ZENDESK_BASE_URL="+s.zd.URL,
		"ZENKLAV_KLAVIYO_BASE_URL="+s.kl.URL,
		"ZENKLAV_DATA_DIR="+s.dir,
		"ZENKLAV_LOG_LEVEL=info",
	)
}

// process is zenklav run as a child of the test, so the test can kill it as a crash does.
type process struct {
	t      *testing.T
	role   string
	log    string
	cmd    *exec.Cmd
	done   chan struct{} // closed when it has exited
	since  time.Time     // when it started
	exitAt time.Time     // when it exited, once done is closed
}

// start runs `zenklav role` listening on addr. It returns at once; waitStarted waits.
func (s *stack) start(role, addr string) *process {
	s.t.Helper()
	return s.startWith(role, addr)
}

// startWith is start with settings of its own (KEY=value) over the stack's.
func (s *stack) startWith(role, addr string, env ...string) *process {
	s.t.Helper()
	s.starts[role]++
	p := &process{
		t: s.t, role: role, done: make(chan struct{}),
		log: filepath.Join(s.dir, fmt.Sprintf("zenklav-%s-%d.log", role, s.starts[role])),
	}
	out, err := os.Create(p.log)
	if err != nil {
		s.t.Fatal(err)
	}
	defer out.Close()
	p.cmd = exec.Command(s.bin, role)
	// The last of a key's values is the one exec passes on.
	p.cmd.Env = append(s.env(addr), env...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	// A zenklav left behind would hold the test's ports and consumer groups: it dies with
	// the test binary.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		s.t.Fatalf("start zenklav %s: %v", role, err)
	}
	p.since = time.Now()
	go func() {
		_ = p.cmd.Wait()
		p.exitAt = time.Now()
		close(p.done)
	}()
	s.t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if s.t.Failed() {
			s.t.Logf("last lines of zenklav %s (%s):\n%s", role, p.log, p.tail(25))
		}
	})
	return p
}

// startAndWait is start, then waitStarted.
func (s *stack) startAndWait(role, addr string) *process {
	s.t.Helper()
	p := s.start(role, addr)
	p.waitStarted(time.Minute)
	return p
}

// waitStarted waits until zenklav logs that it started.
func (p *process) waitStarted(within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for !p.logged("zenklav started") {
		if p.exited() {
			p.t.Fatalf("zenklav %s exited at start (%v):\n%s", p.role, p.cmd.ProcessState, p.tail(40))
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("zenklav %s did not start within %s:\n%s", p.role, within, p.tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logged reports whether a JSON log line of the process has msg.
func (p *process) logged(msg string) bool {
	f, err := os.Open(p.log)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct{ Msg string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == msg {
			return true
		}
	}
	return false
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill kills it with SIGKILL: no shutdown, no last commit, no leaving the group.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop ends it as an operator does (SIGTERM) and checks that it exits cleanly. (An exit
// before is the test's to report, with what it means there.)
func (p *process) stop() {
	p.t.Helper()
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("zenklav %s did not stop within 30 s of SIGTERM:\n%s", p.role, p.tail(40))
		return
	}
	if !p.cmd.ProcessState.Success() {
		p.t.Errorf("zenklav %s exited with %v after SIGTERM:\n%s", p.role, p.cmd.ProcessState, p.tail(40))
	}
}

// tail is the last lines of the process's output.
func (p *process) tail(lines int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// exitErr says how the process ended, with its last lines; nil while it runs.
func (p *process) exitErr() error {
	if !p.exited() {
		return nil
	}
	return fmt.Errorf("zenklav %s exited %s after it started (%v); its last lines:\n%s",
		p.role, p.exitAt.Sub(p.since).Round(100*time.Millisecond), p.cmd.ProcessState, p.tail(25))
}

// onExit calls f if the process exits before the test ends.
func (p *process) onExit(f func()) {
	ended := make(chan struct{})
	p.t.Cleanup(func() { close(ended) })
	go func() {
		select {
		case <-p.done:
			f()
		case <-ended:
		}
	}()
}

// acceptLog is when the Klaviyo simulator accepted each event (after deduplication).
type acceptLog struct {
	mu     sync.Mutex
	events []accepted
}

type accepted struct {
	uniqueID string
	at       time.Time
}

func (l *acceptLog) add(_ string, events []klaviyo.Event) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range events {
		l.events = append(l.events, accepted{e.UniqueID, now})
	}
}

// since returns the events accepted at or after t.
func (l *acceptLog) since(t time.Time) []accepted {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []accepted
	for _, e := range l.events {
		if !e.at.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// rel is t as seconds since start, for messages.
func rel(t, start time.Time) string {
	return fmt.Sprintf("+%.2fs", t.Sub(start).Seconds())
}
