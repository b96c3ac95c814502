package zendesk_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// TestMetrics: a connection's requests are counted by outcome, 429 included, and the account's
// limit and what remains of it are Zendesk's headers; the remainder is dropped once it is
// older than Zendesk's minute.
func TestMetrics(t *testing.T) {
	sim := newSim(t)
	sim.SetRateLimit(3)
	var mu sync.Mutex
	now := time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	reg := prometheus.NewRegistry()
	c, err := zendesk.NewClient(slog.New(slog.DiscardHandler), zendesk.ClientConfig{
		BaseURL: sim.URL, Email: zendesktest.DefaultEmail, APIToken: zendesktest.DefaultAPIToken,
		Metrics: zendesk.NewMetrics(reg, clock), Connection: "acme",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	group := sim.AddGroup(zendesk.Group{Name: "Tier 1"})
	if _, err := c.Group(ctx, group.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Group(ctx, group.ID+1000); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Fatalf("Group of no group = %v, want not found", err)
	}
	want := `
# HELP zenklav_zendesk_rate_limit The requests a minute the connection's Zendesk plan allows (X-Rate-Limit of Zendesk's last answer to this process).
# TYPE zenklav_zendesk_rate_limit gauge
zenklav_zendesk_rate_limit{connection="acme"} 3
# HELP zenklav_zendesk_rate_limit_remaining The requests left in the connection's Zendesk account this minute (X-Rate-Limit-Remaining), as Zendesk's last answer to this process said; gone when that answer is over a minute old. Every process calling the account sees the same count: take the min, not the sum.
# TYPE zenklav_zendesk_rate_limit_remaining gauge
zenklav_zendesk_rate_limit_remaining{connection="acme"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "zenklav_zendesk_rate_limit", "zenklav_zendesk_rate_limit_remaining"); err != nil {
		t.Errorf("after two requests of three: %v", err)
	}

	// The third request uses the minute up; the fourth is refused.
	if _, err := c.Group(ctx, group.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Group(ctx, group.ID); !zenklav.Throttled(err) {
		t.Fatalf("fourth request of three a minute = %v, want throttled", err)
	}
	for outcome, n := range map[string]float64{"ok": 2, "not_found": 1, "throttled": 1} {
		if got := requests(t, reg, outcome); got != n {
			t.Errorf("requests %s = %v, want %v", outcome, got, n)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.Replace(want, "} 1\n", "} 0\n", 1)),
		"zenklav_zendesk_rate_limit", "zenklav_zendesk_rate_limit_remaining"); err != nil {
		t.Errorf("after the 429: %v", err)
	}

	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if n, err := testutil.GatherAndCount(reg, "zenklav_zendesk_rate_limit_remaining"); err != nil || n != 0 {
		t.Errorf("a minute later, %d remaining series (%v): want none, the reading says nothing of this minute", n, err)
	}
	if n, err := testutil.GatherAndCount(reg, "zenklav_zendesk_rate_limit"); err != nil || n != 1 {
		t.Errorf("a minute later, %d limit series (%v): want the plan's limit still", n, err)
	}
}

// requests is the count of connection acme's requests of outcome, read from reg.
func requests(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != "zenklav_zendesk_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["connection"] == "acme" && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
