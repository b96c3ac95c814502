package zendeskapp

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestZAFSDKBundle rebuilds web/zaf_sdk.js with package.json's build script and the installed
// npm packages, and requires the committed file to be the same bytes: the SDK the sidebar
// loads is provably zendesk_app_framework_sdk from npm, pinned by package-lock.json.
func TestZAFSDKBundle(t *testing.T) {
	needNodeModules(t)
	var pkg struct {
		Scripts map[string]string `json:"scripts"`
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
	out := filepath.Join(t.TempDir(), "zaf_sdk.js")
	replaced := false
	for i, a := range args {
		if strings.HasPrefix(a, "--outfile=") {
			if a != "--outfile=web/zaf_sdk.js" {
				t.Fatalf("scripts.build writes %s, want web/zaf_sdk.js", a)
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
	committed, err := os.ReadFile(filepath.Join("web", "zaf_sdk.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, committed) {
		t.Fatalf("web/zaf_sdk.js (%d bytes) differs from a fresh build of the npm package (%d bytes): run `make app` and commit it", len(committed), len(got))
	}
	// The bundle must set the global that sidebar.js calls.
	if !bytes.Contains(committed, []byte("window.ZAFClient=")) {
		t.Error("web/zaf_sdk.js does not set window.ZAFClient")
	}
}
