package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a Kafka broker or a ClickHouse server of one test's own, on free loopback
// ports, started with the repository's scripts (build/kafka.sh, build/clickhouse.sh). A
// test that kills, freezes or stops a server needs one of its own: the shared servers of
// `make test` serve other packages' tests at the same time.
//
// The server lives in a temporary folder of the test; Start after Kill or Stop starts it
// again on the same data. The test's cleanup stops it, frozen or not.
type Server struct {
	// Addr is where clients reach it: the broker, or ClickHouse's native protocol.
	Addr string

	t      testing.TB
	name   string // kafka or clickhouse: the script's SERVICE, its pid file's name
	script string
	dir    string
	ports  []string // the script's start arguments after DIR
	env    []string // the script's environment besides this process's
}

// StartKafka starts a single-node Kafka broker (KRaft) of the test's own and returns once it
// has started. Without the test servers' environment (KafkaEnv), it skips the test, or fails
// it in CI, as Kafka does.
func StartKafka(t testing.TB) *Server {
	t.Helper()
	need(t, KafkaEnv, "Kafka")
	return start(t, "kafka", "kafka.sh")
}

// StartClickHouse starts a ClickHouse server of the test's own and returns once it answers.
// Without the test servers' environment (ClickHouseEnv), it skips the test, or fails it in
// CI, as ClickHouse does.
func StartClickHouse(t testing.TB) *Server {
	t.Helper()
	need(t, ClickHouseEnv, "ClickHouse")
	return start(t, "clickhouse", "clickhouse.sh")
}

func start(t testing.TB, name, script string) *Server {
	t.Helper()
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, name, script, filepath.Join(t.TempDir(), name), ports, nil)
	s.Start()
	return s
}

// newServer makes the server of script (not started yet) in dir, with the script's start
// arguments ports (the first is Addr's) and environment env, and registers its cleanup.
func newServer(t testing.TB, name, script, dir string, ports, env []string) *Server {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Addr: "127.0.0.1:" + ports[0],
		t:    t, name: name, script: filepath.Join(root, "build", script),
		dir: dir, ports: ports, env: env,
	}
	// Registered after TempDir's own cleanup, so it runs first: the server stops before its
	// folder is removed.
	t.Cleanup(s.cleanup)
	s.watchdog()
	return s
}

// watchdog stops the server if the test binary dies before its cleanup runs (go test's
// -timeout, a crash): the server is not the test's child (the scripts start it in a session
// of its own), and would outlive it. The watchdog is a child that the kernel sends SIGTERM
// when the test binary dies; a cleanup that ran kills it first.
func (s *Server) watchdog() {
	s.t.Helper()
	const script = `trap 'kill -CONT "$(cat "$2/$3.pid" 2>/dev/null)" 2>/dev/null; bash "$1" stop "$2"; exit 0' TERM
while :; do sleep 1; done`
	cmd := exec.Command("bash", "-c", script, "watchdog", s.script, s.dir, s.name)
	cmd.Env = s.environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start the watchdog of %s: %v", s.name, err)
	}
	s.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

// Start starts the server, again on the same data after Kill or Stop, and returns once it
// is ready: for Kafka, once the broker logged that it started.
func (s *Server) Start() {
	s.t.Helper()
	out, err := s.run(append([]string{"start", s.dir}, s.ports...)...)
	if err != nil {
		s.t.Fatalf("start %s: %v\n%s", s.name, err, out)
	}
	s.t.Logf("%s", bytes.TrimSpace(out))
}

// Stop stops the server as an operator does (SIGTERM, then SIGKILL if it takes too long).
func (s *Server) Stop() {
	s.t.Helper()
	out, err := s.run("stop", s.dir)
	if err != nil {
		s.t.Fatalf("stop %s: %v\n%s", s.name, err, out)
	}
	s.t.Logf("%s", bytes.TrimSpace(out))
}

// Kill kills the server with SIGKILL, as a crash or the OOM killer does, and returns once it
// is gone.
func (s *Server) Kill() {
	s.t.Helper()
	pid := s.pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		s.t.Fatalf("kill %s (pid %d): %v", s.name, pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			s.t.Fatalf("%s (pid %d) still runs 30 s after SIGKILL", s.name, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Freeze stops the server with SIGSTOP, and returns once it is stopped: its sockets stay
// open, and nothing answers.
func (s *Server) Freeze() {
	s.t.Helper()
	s.signal(syscall.SIGSTOP)
	pid := s.pid()
	deadline := time.Now().Add(10 * time.Second)
	for state(pid) != 'T' {
		if time.Now().After(deadline) {
			s.t.Fatalf("%s (pid %d) is not stopped 10 s after SIGSTOP", s.name, pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Thaw lets a frozen server go on (SIGCONT).
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

// Dir is the server's folder: its config, data and logs.
func (s *Server) Dir() string { return s.dir }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	pid := s.pid()
	if err := syscall.Kill(pid, sig); err != nil {
		s.t.Fatalf("%v to %s (pid %d): %v", sig, s.name, pid, err)
	}
}

// pid is the server's process, from the pid file the script wrote.
func (s *Server) pid() int {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, s.name+".pid"))
	if err != nil {
		s.t.Fatalf("%s is not running: %v", s.name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		s.t.Fatalf("%s's pid file holds %q", s.name, b)
	}
	return pid
}

// cleanup stops the server whatever state the test left it in; a frozen server is thawed
// first, or SIGTERM would wait for the script's whole stop timeout.
func (s *Server) cleanup() {
	if b, err := os.ReadFile(filepath.Join(s.dir, s.name+".pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	if out, err := s.run("stop", s.dir); err != nil {
		s.t.Errorf("stop %s: %v\n%s", s.name, err, out)
	}
}

func (s *Server) run(args ...string) ([]byte, error) {
	cmd := exec.Command("bash", append([]string{s.script}, args...)...)
	cmd.Env = s.environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// environ is the scripts' environment. The data goes when the test ends: a short clean stop
// is enough.
func (s *Server) environ() []string {
	return append(append(os.Environ(), "KAFKA_STOP_TIMEOUT=10", "CLICKHOUSE_STOP_TIMEOUT=10"), s.env...)
}

// alive reports whether pid runs; a zombie does not (the server is not our child, and its
// reaper may be slow).
func alive(pid int) bool {
	st := state(pid)
	return st != 0 && st != 'Z'
}

// state is the state letter of pid in /proc (R, S, T, Z, …), or 0 when there is no pid.
func state(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The state follows the command name in parentheses, which may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return '?'
	}
	return b[i+2]
}

// freePorts returns n loopback ports nothing listens on, all different.
func freePorts(n int) ([]string, error) {
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports, nil
}

// FreeAddr returns a loopback address nothing listens on, for a server the test starts and
// starts again on the same address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + ports[0]
}

// ModuleRoot returns the folder of zenklav's go.mod, found from the working directory up.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/zenklav/zenklav\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no zenklav go.mod above the working directory")
		}
		dir = parent
	}
}
