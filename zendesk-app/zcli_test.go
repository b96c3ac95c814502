//go:build unix

package zendeskapp

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zenklav/zenklav/internal/npmtest"
)

// TestZCLIAppsServer runs `zcli apps:server` on the app as a developer would, offline and
// without a prompt: zcli.apps.config.json must hold every manifest parameter (a missing one
// makes zcli prompt, and with standard input at EOF it exits instead of serving), and the
// app.json it serves to Zendesk (?zcli_apps=true) must describe the sidebar app.
func TestZCLIAppsServer(t *testing.T) {
	npmtest.NeedNodeModules(t)

	var man struct {
		Name     string `json:"name"`
		Location struct {
			Support struct {
				TicketSidebar struct {
					URL string `json:"url"`
				} `json:"ticket_sidebar"`
			} `json:"support"`
		} `json:"location"`
		Parameters []struct {
			Name string `json:"name"`
		} `json:"parameters"`
	}
	readJSONFile(t, "manifest.json", &man)
	var conf struct {
		AppID      json.Number       `json:"app_id"`
		Parameters map[string]string `json:"parameters"`
	}
	readJSONFile(t, "zcli.apps.config.json", &conf)
	for _, p := range man.Parameters {
		if conf.Parameters[p.Name] == "" {
			t.Errorf("zcli.apps.config.json has no value for manifest parameter %q: zcli would prompt for it", p.Name)
		}
	}

	port := freePort(t)
	home := t.TempDir()
	// zcli's update check (oclif's warn-if-update-available) runs on every command and, when
	// its cache file is missing or a week old, spawns a detached process that asks the npm
	// registry for the latest version. A fresh cache file keeps the run offline.
	cache := filepath.Join(home, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "version"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	var out syncBuffer
	cmd := exec.Command(filepath.Join("node_modules", ".bin", "zcli"), "apps:server", ".",
		"--port", fmt.Sprint(port), "--bind", "127.0.0.1")
	cmd.Env = append(cleanEnv(),
		"HOME="+home,
		"ZCLI_CACHE_DIR="+cache,
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
		"XDG_CACHE_HOME="+cache,
		"DEBUG=update-check",
		"NO_COLOR=1",
	)
	cmd.Stdin = nil // /dev/null: a prompt reads EOF at once
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Output goes through pipes: do not let a straggler holding them keep Wait from returning.
	cmd.WaitDelay = 2 * time.Second
	proc := &process{done: make(chan struct{})}
	go func() {
		proc.err = cmd.Wait()
		close(proc.done)
	}()
	t.Cleanup(func() { stopGroup(t, cmd.Process.Pid, proc) })

	url := fmt.Sprintf("http://127.0.0.1:%d/app.json", port)
	body := waitForApp(t, url, proc, &out, 30*time.Second)

	var app struct {
		Apps []struct {
			Name             string `json:"name"`
			SignedURLs       bool   `json:"signed_urls"`
			FrameworkVersion string `json:"framework_version"`
			Locations        struct {
				Support struct {
					TicketSidebar struct {
						URL string `json:"url"`
					} `json:"ticket_sidebar"`
				} `json:"support"`
			} `json:"locations"`
		} `json:"apps"`
		Installations []struct {
			Settings []map[string]any `json:"settings"`
		} `json:"installations"`
	}
	if err := json.Unmarshal(body, &app); err != nil {
		t.Fatalf("app.json: %v\n%s", err, body)
	}
	if len(app.Apps) != 1 || len(app.Installations) != 1 {
		t.Fatalf("app.json has %d apps and %d installations, want 1 and 1:\n%s", len(app.Apps), len(app.Installations), body)
	}
	a := app.Apps[0]
	if a.Name != man.Name {
		t.Errorf("apps[0].name = %q, want the manifest's %q", a.Name, man.Name)
	}
	if !a.SignedURLs {
		t.Error("apps[0].signed_urls is not true")
	}
	if a.FrameworkVersion != "2.0" {
		t.Errorf("apps[0].framework_version = %q, want 2.0", a.FrameworkVersion)
	}
	if got, want := a.Locations.Support.TicketSidebar.URL, man.Location.Support.TicketSidebar.URL; got != want || want == "" {
		t.Errorf("ticket_sidebar url = %q, want the manifest's %q", got, want)
	}
	settings := map[string]any{}
	for _, s := range app.Installations[0].Settings {
		for k, v := range s {
			settings[k] = v
		}
	}
	if got, want := settings["zenklav_url"], conf.Parameters["zenklav_url"]; got != want {
		t.Errorf("installations[0].settings zenklav_url = %v, want %q from zcli.apps.config.json", got, want)
	}
	if strings.Contains(out.String(), "spawning version refresh") {
		t.Errorf("zcli started its online update check:\n%s", out.String())
	}
}

func readJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// cleanEnv is the test's environment without what would point zcli at a real account or at
// the user's own zcli files.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME", k == "DEBUG", strings.HasPrefix(k, "XDG_"), strings.HasPrefix(k, "ZCLI_"), strings.HasPrefix(k, "ZENDESK_"):
			continue
		}
		env = append(env, kv)
	}
	return env
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitForApp polls url until it answers 200 and returns the body; it fails when the process
// exits first or the deadline passes.
func waitForApp(t *testing.T, url string, proc *process, out *syncBuffer, timeout time.Duration) []byte {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-proc.done:
			t.Fatalf("zcli apps:server exited before serving (%v):\n%s", proc.err, out.String())
		default:
		}
		res, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK && rerr == nil {
				return body
			}
			err = fmt.Errorf("status %d, %v", res.StatusCode, rerr)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("zcli apps:server did not answer %s within %s (last: %v):\n%s", url, timeout, last, out.String())
	return nil
}

// stopGroup ends the process group that pid leads: SIGTERM, then SIGKILL after 5 s.
func stopGroup(t *testing.T, pid int, proc *process) {
	t.Helper()
	if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Logf("stop zcli: %v", err)
	}
	select {
	case <-proc.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-proc.done
	}
	// node may have left children in the group; make sure none outlive the test.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// process is a started command: done closes when it has exited, with err from Wait.
type process struct {
	done chan struct{}
	err  error
}

// syncBuffer is a bytes.Buffer that the process's output and the test can share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestZCLIPackage builds the zip that `zcli apps:package` and `apps:validate` would upload (with
// zcli's own code, which needs no account) and requires it to hold only the Zendesk app:
// .zcliignore must keep out the sidebar page, the npm packages and the Go files.
func TestZCLIPackage(t *testing.T) {
	npmtest.NeedNodeModules(t)
	// zcli writes the zip under the app folder; tmp/ is where it puts its own and never packs.
	if err := os.MkdirAll("tmp", 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("tmp", "test-package-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		os.Remove("tmp") // only when empty
	})
	script := `require('@zendesk/zcli-apps/dist/lib/package').createAppPkg('.', process.argv[1])` +
		`.then((p) => console.log(p), (e) => { console.error(e); process.exit(1); })`
	cmd := exec.Command("node", "-e", script, dir)
	cmd.Env = append(cleanEnv(), "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("createAppPkg: %v\n%s", err, out)
	}
	zr, err := zip.OpenReader(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var files []string
	for _, f := range zr.File {
		if !strings.HasSuffix(f.Name, "/") {
			files = append(files, f.Name)
		}
	}
	want := []string{"manifest.json"}
	for _, pattern := range []string{"translations/*", "assets/*"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, m...)
	}
	slices.Sort(files)
	slices.Sort(want)
	if !slices.Equal(files, want) {
		t.Errorf("the app package holds\n  %s\nwant\n  %s", strings.Join(files, "\n  "), strings.Join(want, "\n  "))
	}
}
