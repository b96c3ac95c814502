package reportsui_test

import (
	"bytes"
	"testing"

	"github.com/zenklav/zenklav/internal/npmtest"
)

// TestChartsBundle: the chart code the page loads is provably Apache ECharts from npm, pinned
// by package-lock.json, and sets the global reports.js calls.
func TestChartsBundle(t *testing.T) {
	committed := npmtest.CheckBundle(t, "web/charts.js")
	if !bytes.Contains(committed, []byte("window.ZenklavCharts=")) {
		t.Error("web/charts.js does not set window.ZenklavCharts")
	}
}
