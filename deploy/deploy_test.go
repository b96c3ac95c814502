package deploy_test

import (
	"bufio"
	"go/ast"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/config"
	"github.com/zenklav/zenklav/internal/arch"
	"github.com/zenklav/zenklav/seal"
)

// goRuntimeSettings are variables the Go runtime reads, not zenklav; the example may set them.
var goRuntimeSettings = []string{"GOMEMLIMIT"}

var (
	sourcesOnce sync.Once
	sources     []arch.File
	sourcesErr  error
)

// moduleFiles are the module's Go files that make the zenklav binary: no tests, nothing under
// build/ (the load generator sets settings for the processes it starts).
func moduleFiles(t *testing.T) []arch.File {
	t.Helper()
	sourcesOnce.Do(func() {
		root, err := arch.Root()
		if err != nil {
			sourcesErr = err
			return
		}
		all, err := arch.Files(root)
		if err != nil {
			sourcesErr = err
			return
		}
		for _, f := range all {
			if !f.Test && !strings.HasPrefix(f.Path, "build/") {
				sources = append(sources, f)
			}
		}
	})
	if sourcesErr != nil {
		t.Fatal(sourcesErr)
	}
	if len(sources) < 50 {
		t.Fatalf("read %d Go files: not the module", len(sources))
	}
	return sources
}

// stringLit is the value of a string literal, or "" when e is not one.
func stringLit(e ast.Expr) string {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return ""
	}
	s, err := strconv.Unquote(lit.Value)
	if err != nil {
		return ""
	}
	return s
}

// settingsRead are the ZENKLAV_ variables the code reads: a literal name passed to getenv (the
// injected one, or os.Getenv and os.LookupEnv), or beside getenv to a helper such as
// intEnv(getenv, "ZENKLAV_…", &dst).
func settingsRead(t *testing.T) map[string]string {
	t.Helper()
	read := map[string]string{} // name → where
	for _, f := range moduleFiles(t) {
		ast.Inspect(f.AST, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			reads := isGetenv(call.Fun)
			for _, a := range call.Args {
				if id, ok := a.(*ast.Ident); ok && id.Name == "getenv" {
					reads = true
				}
			}
			if !reads {
				return true
			}
			for _, a := range call.Args {
				if s := stringLit(a); strings.HasPrefix(s, "ZENKLAV_") {
					read[s] = f.Path
				}
			}
			return true
		})
	}
	return read
}

func isGetenv(fun ast.Expr) bool {
	switch fn := fun.(type) {
	case *ast.Ident:
		return fn.Name == "getenv"
	case *ast.SelectorExpr:
		x, ok := fn.X.(*ast.Ident)
		return ok && x.Name == "os" && (fn.Sel.Name == "Getenv" || fn.Sel.Name == "LookupEnv")
	}
	return false
}

// envLine is one KEY=value of an environment file, set or commented out.
type envLine struct {
	key, value string
	commented  bool
	line       int
}

var envLineRE = regexp.MustCompile(`^(#?)\s*([A-Z][A-Z0-9_]*)=(.*)$`)

// goMemLimitRE is the form of GOMEMLIMIT (runtime/debug.SetMemoryLimit's documentation).
var goMemLimitRE = regexp.MustCompile(`^[0-9]+(B|KiB|MiB|GiB|TiB)?$`)

// readEnvFile reads the settings of a systemd environment file, the commented-out ones too.
func readEnvFile(t *testing.T, path string) []envLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []envLine
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		m := envLineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v := m[3]
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if strings.ContainsAny(v, " \t") {
			t.Errorf("%s:%d: %s has a space: quote it", path, n, m[2])
		}
		out = append(out, envLine{key: m[2], value: v, commented: m[1] == "#", line: n})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEnvExampleListsEverySetting: zenklav.env.example names every setting zenklav reads,
// once, and nothing else but the Go runtime's; the roles' own files name only settings.
func TestEnvExampleListsEverySetting(t *testing.T) {
	read := settingsRead(t)
	if len(read) < 20 {
		t.Fatalf("found %d settings read by the code: the scan is broken", len(read))
	}
	seen := map[string]int{}
	for _, l := range readEnvFile(t, "zenklav.env.example") {
		seen[l.key]++
		if _, ok := read[l.key]; !ok && !slices.Contains(goRuntimeSettings, l.key) {
			t.Errorf("zenklav.env.example:%d: %s is not a setting zenklav reads", l.line, l.key)
		}
	}
	for name, where := range read {
		switch seen[name] {
		case 0:
			t.Errorf("zenklav.env.example does not list %s (read in %s)", name, where)
		case 1:
		default:
			t.Errorf("zenklav.env.example lists %s %d times", name, seen[name])
		}
	}
	roleFiles, _ := filepath.Glob("env/*.env.example")
	if len(roleFiles) == 0 {
		t.Fatal("no env/*.env.example")
	}
	for _, p := range roleFiles {
		for _, l := range readEnvFile(t, p) {
			if _, ok := read[l.key]; !ok && !slices.Contains(goRuntimeSettings, l.key) {
				t.Errorf("%s:%d: %s is not a setting zenklav reads", p, l.line, l.key)
			}
		}
	}
}

// TestEnvExampleValues: the settings the example sets parse, its placeholders are refused
// until replaced, and what it comments out is the default.
func TestEnvExampleValues(t *testing.T) {
	lines := readEnvFile(t, "zenklav.env.example")
	set := map[string]string{}
	for _, l := range lines {
		if !l.commented {
			set[l.key] = l.value
		}
	}
	// As shipped: the JWT key's placeholder is too short to pass for a key.
	if _, err := config.FromEnv(mapEnv(set)); err == nil || !strings.Contains(err.Error(), "ZENKLAV_JWT_SIGNING_KEY") {
		t.Errorf("the example as shipped: FromEnv = %v, want the JWT key's placeholder refused", err)
	}
	if _, err := seal.ParseKeyring(zenklav.Secret(set["ZENKLAV_SECRETS_KEY"])); err == nil {
		t.Error("the example as shipped: its ZENKLAV_SECRETS_KEY placeholder passes for a key")
	}
	// Placeholders replaced: it loads.
	replaced := map[string]string{}
	for k, v := range set {
		if strings.Contains(v, "REPLACE") {
			v = map[string]string{
				"ZENKLAV_JWT_SIGNING_KEY": "k1:" + strings.Repeat("0123456789abcdef", 4),
				"ZENKLAV_SECRETS_KEY":     "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
			}[k]
			if v == "" {
				v = "secret"
			}
		}
		replaced[k] = v
	}
	want, err := config.FromEnv(mapEnv(replaced))
	if err != nil {
		t.Fatalf("the example with its placeholders replaced: %v", err)
	}
	// Each role's file on top: it loads, and its GOMEMLIMIT is one Go reads.
	roleFiles, _ := filepath.Glob("env/*.env.example")
	for _, p := range roleFiles {
		env := maps.Clone(replaced)
		for _, l := range readEnvFile(t, p) {
			switch {
			case l.commented:
			case l.key == "GOMEMLIMIT" && !goMemLimitRE.MatchString(l.value):
				t.Errorf("%s:%d: GOMEMLIMIT=%s is not a size Go reads, such as 300MiB", p, l.line, l.value)
			default:
				env[l.key] = l.value
			}
		}
		if _, err := config.FromEnv(mapEnv(env)); err != nil {
			t.Errorf("zenklav.env.example and %s: %v", p, err)
		}
	}
	// Each setting commented out, here or in a role's file, set as written: nothing changes,
	// so it shows the default.
	for _, p := range append([]string{"zenklav.env.example"}, roleFiles...) {
		for _, l := range readEnvFile(t, p) {
			if !l.commented || slices.Contains(goRuntimeSettings, l.key) {
				continue
			}
			env := maps.Clone(replaced)
			env[l.key] = l.value
			got, err := config.FromEnv(mapEnv(env))
			switch {
			case err != nil:
				t.Errorf("%s:%d: %s=%s: %v", p, l.line, l.key, l.value, err)
			case !reflect.DeepEqual(got, want):
				t.Errorf("%s:%d: %s=%s is commented out but is not the default", p, l.line, l.key, l.value)
			}
		}
	}
}

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}
