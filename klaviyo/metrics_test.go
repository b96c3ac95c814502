package klaviyo_test

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

// sample is one series of a gathered metric: its value (a histogram's count) and, for a
// histogram, its sum.
type sample struct{ value, sum float64 }

// gather reads reg's series of metric name whose labels include want.
func gather(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) (sample, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if !contains(labels, want) {
				continue
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return sample{value: m.GetCounter().GetValue()}, true
			case dto.MetricType_GAUGE:
				return sample{value: m.GetGauge().GetValue()}, true
			case dto.MetricType_HISTOGRAM:
				return sample{value: float64(m.GetHistogram().GetSampleCount()), sum: m.GetHistogram().GetSampleSum()}, true
			}
		}
	}
	return sample{}, false
}

// contains says whether labels has every label of want, with its value.
func contains(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestMetrics: the rate-limit metrics follow what the account's requests met: each request
// counted by outcome, a 429 counted as throttled and slowing the bucket's allowed rate, the
// share and the rate it makes, and every wait for the limit observed.
func TestMetrics(t *testing.T) {
	sim := klaviyotest.NewServer()
	t.Cleanup(sim.Close)
	sim.AddAccount(testKey)
	reg := prometheus.NewRegistry()
	c, err := klaviyo.NewClient(slog.New(slog.DiscardHandler), klaviyo.ClientConfig{BaseURL: sim.URL, PrivateKey: testKey,
		Timeout: 5 * time.Second, Metrics: klaviyo.NewMetrics(reg), Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const endpoint = "/api/events"
	account := map[string]string{"account": "acme", "endpoint": endpoint}
	if _, ok := gather(t, reg, "zenklav_klaviyo_limit_allowed_per_second", account); ok {
		t.Error("an endpoint never called has an allowed rate: every account would show all sixteen")
	}
	if got, _ := gather(t, reg, "zenklav_klaviyo_limit_per_minute", map[string]string{"endpoint": endpoint}); got.value != float64(klaviyo.EventLimit.PerMinute) {
		t.Errorf("limit per minute of %s = %v, want %d", endpoint, got.value, klaviyo.EventLimit.PerMinute)
	}

	if err := c.CreateEvent(ctx, event("a@example.com", "Opened Ticket", "u1")); err != nil {
		t.Fatal(err)
	}
	full, ok := gather(t, reg, "zenklav_klaviyo_limit_allowed_per_second", account)
	if !ok || full.value <= 0 || full.value > float64(klaviyo.EventLimit.PerMinute)/60 {
		t.Fatalf("allowed rate after a request = %v (%t), want a rate within the limit's %d a minute", full.value, ok, klaviyo.EventLimit.PerMinute)
	}

	sim.FailNext(1, http.StatusTooManyRequests)
	if err := c.CreateEvent(ctx, event("b@example.com", "Opened Ticket", "u2")); !zenklav.Throttled(err) {
		t.Fatalf("CreateEvent = %v, want throttled", err)
	}
	slowed, _ := gather(t, reg, "zenklav_klaviyo_limit_allowed_per_second", account)
	if slowed.value >= full.value {
		t.Errorf("allowed rate after a 429 = %v, want below %v", slowed.value, full.value)
	}
	// The next request waits out the 429's pause; the wait is observed with the others.
	if err := c.CreateEvent(ctx, event("c@example.com", "Opened Ticket", "u3")); err != nil {
		t.Fatal(err)
	}
	for outcome, want := range map[string]float64{"ok": 2, "throttled": 1} {
		got, _ := gather(t, reg, "zenklav_klaviyo_requests_total", map[string]string{"account": "acme", "endpoint": endpoint, "outcome": outcome})
		if got.value != want {
			t.Errorf("requests %s = %v, want %v", outcome, got.value, want)
		}
	}
	hist, _ := gather(t, reg, "zenklav_klaviyo_limit_wait_seconds", map[string]string{"endpoint": endpoint})
	waited, _ := gather(t, reg, "zenklav_klaviyo_limit_waited_seconds_total", account)
	if hist.value != 3 || waited.value <= 0 || waited.value != hist.sum {
		t.Errorf("waits: %v observed, summing %v; waited %v: want the 3 requests' waits in both", hist.value, hist.sum, waited.value)
	}

	c.ShareLimits(3)
	if got, _ := gather(t, reg, "zenklav_klaviyo_limit_share", map[string]string{"account": "acme"}); got.value != 3 {
		t.Errorf("share = %v, want 3", got.value)
	}
	third, _ := gather(t, reg, "zenklav_klaviyo_limit_allowed_per_second", account)
	if third.value < full.value/4 || third.value > full.value/2 {
		t.Errorf("allowed rate of a third share = %v, want about a third of %v", third.value, full.value)
	}
}
