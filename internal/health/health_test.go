package health

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A part's outage is two log lines however many retries it takes: one when it starts
// waiting, one when it works again; the metric and the states follow each change.
func TestTrackerLogsOncePerChange(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	tr := NewTracker(slog.New(slog.NewTextHandler(&logs, nil)), reg)
	p := tr.Part("zenklav-sink")
	up := func() float64 {
		return testutil.ToFloat64(tr.up.WithLabelValues("zenklav-sink"))
	}
	if up() != 1 || tr.States()["zenklav-sink"].Condition != Working {
		t.Fatalf("a new part works: up=%v states=%v", up(), tr.States())
	}
	for i := range 10 {
		p.Waiting(errors.New("dial tcp: connection refused " + strings.Repeat("!", i)))
	}
	st := tr.States()["zenklav-sink"]
	if st.Condition != Waiting || !strings.HasSuffix(st.Err, "!!!!!!!!!") || up() != 0 {
		t.Fatalf("waiting part: %+v up=%v", st, up())
	}
	p.Working()
	p.Working()
	if got := strings.Count(logs.String(), "waiting for a dependency"); got != 1 {
		t.Errorf("ten failures logged %d waiting lines, want 1:\n%s", got, logs.String())
	}
	if got := strings.Count(logs.String(), "working again"); got != 1 {
		t.Errorf("logged %d working-again lines, want 1:\n%s", got, logs.String())
	}
	if st := tr.States()["zenklav-sink"]; st.Condition != Working || st.Err != "" || up() != 1 {
		t.Errorf("after recovery: %+v up=%v", st, up())
	}
	tr.Part("zenklav-sink").Stopped(errors.New("bad config"))
	if st := tr.States()["zenklav-sink"]; st.Condition != Stopped || p.working.Load() {
		t.Errorf("a second handle on the same part changes the same state: %+v", st)
	}
}
