package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// unitLine is one Key=value of a unit file.
type unitLine struct {
	section, key, value string
}

func readUnit(t *testing.T, path string) []unitLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []unitLine
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[' && l[len(l)-1] == ']':
			section = l[1 : len(l)-1]
		case strings.HasSuffix(l, `\`):
			t.Errorf("%s:%d: a continued line; keep each setting on one", path, n)
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Errorf("%s:%d: %q is not Key=value in a section", path, n, l)
				continue
			}
			out = append(out, unitLine{section, strings.TrimSpace(k), strings.TrimSpace(v)})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// values are the values of a key in a section, in order.
func values(lines []unitLine, section, key string) []string {
	var out []string
	for _, l := range lines {
		if l.section == section && l.key == key {
			out = append(out, l.value)
		}
	}
	return out
}

// hardening is what every unit must say, exactly so.
var hardening = map[string]string{
	"User": "zenklav", "Group": "zenklav", "Restart": "on-failure",
	"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
	"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
	"ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
	"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces": "yes",
	"LockPersonality": "yes", "MemoryDenyWriteExecute": "yes", "CapabilityBoundingSet": "",
	"AmbientCapabilities": "",
}

// perRole are the [Service] keys a unit may set its own way; the rest is the same in all.
var perRole = []string{"ExecStart", "EnvironmentFile", "TimeoutStopSec", "LimitNOFILE", "SyslogIdentifier", "Environment"}

// TestSystemdUnits: one unit per role of the role table, each starting its role with the
// shared settings and its own, hardened the same way, given time for its graceful stop.
func TestSystemdUnits(t *testing.T) {
	roles := roleNames(t)
	units, _ := filepath.Glob(filepath.Join("systemd", "*.service"))
	var want []string
	for _, r := range roles {
		want = append(want, filepath.Join("systemd", "zenklav-"+r+".service"))
	}
	slices.Sort(want)
	if !slices.Equal(units, want) {
		t.Fatalf("units %q, want one per role: %q", units, want)
	}
	read := settingsRead(t)
	var shared []string // the [Service] lines not per role, of the first unit
	for _, r := range roles {
		path := filepath.Join("systemd", "zenklav-"+r+".service")
		u := readUnit(t, path)
		check := func(key string, want ...string) {
			t.Helper()
			if got := values(u, "Service", key); !slices.Equal(got, want) {
				t.Errorf("%s: %s = %q, want %q", path, key, got, want)
			}
		}
		check("ExecStart", "/usr/local/bin/zenklav "+r)
		check("EnvironmentFile", "/etc/zenklav/zenklav.env", "-/etc/zenklav/"+r+".env")
		for k, v := range hardening {
			check(k, v)
		}
		if _, err := os.Stat(filepath.Join("env", r+".env.example")); err != nil {
			t.Errorf("%s reads /etc/zenklav/%s.env: want env/%s.env.example: %v", path, r, r, err)
		}
		for _, e := range values(u, "Service", "Environment") {
			for _, kv := range strings.Fields(e) {
				if k, _, _ := strings.Cut(strings.Trim(kv, `"`), "="); read[k] == "" && !slices.Contains(goRuntimeSettings, k) {
					t.Errorf("%s: Environment names %s, not a setting zenklav reads", path, k)
				}
			}
		}
		// The longest graceful stop is the emitter's and the sms role's: 10 s for the requests
		// under way, up to 10 s for the last commit, 3 s for the status (docs/operations.md).
		stop, err := time.ParseDuration(strings.Join(values(u, "Service", "TimeoutStopSec"), ""))
		if err != nil || stop < 25*time.Second {
			t.Errorf("%s: TimeoutStopSec %v (%v): want at least 25s, the graceful stop's bound", path, stop, err)
		}
		if r == "api" && len(values(u, "Service", "LimitNOFILE")) != 1 {
			t.Errorf("%s: want a LimitNOFILE for the clients' connections", path)
		}
		var rest []string
		for _, l := range u {
			if l.section == "Service" && !slices.Contains(perRole, l.key) {
				rest = append(rest, l.key+"="+l.value)
			}
		}
		if shared == nil {
			shared = rest
		} else if !slices.Equal(rest, shared) {
			t.Errorf("%s: its [Service] settings differ from zenklav-%s.service's beyond %q:\n%q\n%q", path, roles[0], perRole, rest, shared)
		}
	}
	sysusers, err := os.ReadFile(filepath.Join("systemd", "zenklav.sysusers"))
	if err != nil || !strings.Contains(string(sysusers), "\nu zenklav ") {
		t.Errorf("systemd/zenklav.sysusers does not make the zenklav user (%v)", err)
	}
	verifyUnits(t, want)
}

// verifyUnits runs systemd-analyze verify on the units when it is installed, with ExecStart
// pointed at a program that exists (zenklav is not installed here).
func verifyUnits(t *testing.T, units []string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze not installed: the units are checked by the rules above only")
		return
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var copies []string
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/zenklav", truePath)), 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, copies...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
