package reportsui_test

import (
	"os"
	"testing"
)

// needNodeModules skips a test that needs the npm packages when reportsui/node_modules is
// missing, except in CI (CI set), where it fails: `make test` installs them (build/deps.sh).
func needNodeModules(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("node_modules"); err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("reportsui/node_modules is missing: run the tests through `make test` (or `make deps`), which runs npm ci")
	}
	t.Skip("reportsui/node_modules is missing: `make deps` installs it")
}
