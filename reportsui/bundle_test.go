package reportsui_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestChartsBundle rebuilds web/charts.js with package.json's build script and the installed
// npm packages, and requires the committed file to be the same bytes: the chart code the page
// loads is provably Apache ECharts from npm, pinned by package-lock.json.
func TestChartsBundle(t *testing.T) {
	needNodeModules(t)
	var pkg struct {
		Scripts      map[string]string `json:"scripts"`
		Dependencies map[string]string `json:"dependencies"`
	}
	data, err := os.ReadFile("package.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		t.Fatalf("package.json: %v", err)
	}
	args := strings.Fields(pkg.Scripts["build"])
	if len(args) == 0 || args[0] != "esbuild" {
		t.Fatalf("package.json scripts.build = %q, want an esbuild command", pkg.Scripts["build"])
	}
	out := filepath.Join(t.TempDir(), "charts.js")
	replaced := false
	for i, a := range args {
		if strings.HasPrefix(a, "--outfile=") {
			if a != "--outfile=web/charts.js" {
				t.Fatalf("scripts.build writes %s, want web/charts.js", a)
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
	committed, err := os.ReadFile(filepath.Join("web", "charts.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, committed) {
		t.Fatalf("web/charts.js (%d bytes) differs from a fresh build of the npm packages (%d bytes): run `make deps`, then `npm run build` in reportsui/, and commit it", len(committed), len(got))
	}
	if !bytes.Contains(committed, []byte("window.ZenklavCharts=")) {
		t.Error("web/charts.js does not set window.ZenklavCharts")
	}
	// Exact versions only: the lock file pins them, package.json says which.
	for name, v := range pkg.Dependencies {
		if strings.ContainsAny(v, "^~<>*x ") {
			t.Errorf("dependency %s@%s is a range, want an exact version", name, v)
		}
	}
}
