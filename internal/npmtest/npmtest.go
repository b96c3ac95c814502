// Package npmtest checks, from Go tests, the files zenklav builds from npm packages and
// commits (so `make run` needs no npm): that they are what a fresh build of the pinned
// packages gives.
package npmtest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NeedNodeModules skips a test that needs the npm packages of the current directory when its
// node_modules is missing, except in CI (CI set), where it fails: `make test` installs them
// (build/deps.sh).
func NeedNodeModules(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("node_modules"); err == nil {
		return
	}
	dir, _ := os.Getwd()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s/node_modules is missing: run the tests through `make test` (or `make deps`), which runs npm ci", filepath.Base(dir))
	}
	t.Skipf("%s/node_modules is missing: `make deps` installs it", filepath.Base(dir))
}

// CheckBundle rebuilds outfile (e.g. "web/charts.js") with the esbuild command of the current
// directory's package.json "build" script and the installed packages, and fails the test
// unless the committed file is the same bytes; it returns the committed file. It also requires
// exact versions in package.json: the lock file pins them, package.json says which.
func CheckBundle(t *testing.T, outfile string) []byte {
	t.Helper()
	NeedNodeModules(t)
	var pkg struct {
		Scripts         map[string]string `json:"scripts"`
		Dependencies    map[string]string `json:"dependencies"`
		DevDependencies map[string]string `json:"devDependencies"`
	}
	data, err := os.ReadFile("package.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		t.Fatalf("package.json: %v", err)
	}
	for _, deps := range []map[string]string{pkg.Dependencies, pkg.DevDependencies} {
		for name, v := range deps {
			if strings.ContainsAny(v, "^~<>*x ") {
				t.Errorf("package.json: %s@%s is a range, want an exact version", name, v)
			}
		}
	}
	args := strings.Fields(pkg.Scripts["build"])
	if len(args) == 0 || args[0] != "esbuild" {
		t.Fatalf("package.json scripts.build = %q, want an esbuild command", pkg.Scripts["build"])
	}
	out := filepath.Join(t.TempDir(), filepath.Base(outfile))
	replaced := false
	for i, a := range args {
		if strings.HasPrefix(a, "--outfile=") {
			if a != "--outfile="+outfile {
				t.Fatalf("scripts.build writes %s, want %s", a, outfile)
			}
			args[i] = "--outfile=" + out
			replaced = true
		}
	}
	if !replaced {
		t.Fatalf("scripts.build has no --outfile=: %q", pkg.Scripts["build"])
	}
	cmd := exec.Command(filepath.Join("node_modules", ".bin", "esbuild"), args[1:]...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("esbuild: %v\n%s", err, msg)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.FromSlash(outfile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, committed) {
		t.Fatalf("%s (%d bytes) differs from a fresh build of the npm packages (%d bytes): run `make app` and commit it", outfile, len(committed), len(got))
	}
	return committed
}
