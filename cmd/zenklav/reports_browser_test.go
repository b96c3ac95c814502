package main

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	zauth "github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/reports/reportstest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/config"
	"github.com/zenklav/zenklav/reports"
	"github.com/zenklav/zenklav/reportsui"
)

// reportsResult is what reports.e2e.mjs reports of one scenario.
type reportsResult struct {
	Name        string                `json:"name"`
	Error       string                `json:"error"`
	State       string                `json:"state"`
	Reports     map[string]string     `json:"reports"`
	URL         string                `json:"url"`
	Text        string                `json:"text"`
	Alert       string                `json:"alert"`
	Who         string                `json:"who"`
	Connections []string              `json:"connections"`
	TZ          string                `json:"tz"`
	Background  string                `json:"background"`
	Tables      map[string][][]string `json:"tables"`
	Canvases    map[string]struct {
		Width, Height, Layers, Painted, Colours int
	} `json:"canvases"`
	Download *struct {
		Filename string `json:"filename"`
		Body     string `json:"body"`
	} `json:"download"`
	ReloadedState  string   `json:"reloadedState"`
	CSPViolations  []string `json:"cspViolations"`
	ConsoleErrors  []string `json:"consoleErrors"`
	FailedRequests []string `json:"failedRequests"`
}

func (b *browser) runReports(t *testing.T, sc map[string]any) reportsResult {
	t.Helper()
	b.send(t, sc)
	if !b.out.Scan() {
		t.Fatalf("the browser script ended: %v", b.out.Err())
	}
	var r reportsResult
	if err := json.Unmarshal(b.out.Bytes(), &r); err != nil {
		t.Fatalf("browser result %q: %v", b.out.Text(), err)
	}
	if r.Error != "" {
		t.Fatalf("scenario %s: %s", r.Name, r.Error)
	}
	return r
}

// fakeSource answers the reports API with fixed rows of each kind (none for globex, which
// has no tickets yet), and keeps the filters it was asked with.
func fakeSource() *reportstest.Source {
	return &reportstest.Source{Answer: func(kind string, flt reports.Filter) (any, error) {
		if flt.Connection == "globex" {
			return nil, nil
		}
		return fakeReports[kind], nil
	}}
}

var fakeReports = map[string]any{
	reports.KindTrends: []reports.TrendRow{
		{Period: "2026-01-05", Opened: 12, Resolved: 4, Backlog: 8},
		{Period: "2026-01-12", Opened: 20, Resolved: 15, Backlog: 13},
		{Period: "2026-01-19", Opened: 9, Resolved: 14, Backlog: 8},
		{Period: "2026-01-26", Opened: 17, Resolved: 11, Backlog: 14},
	},
	reports.KindResolutionCohorts: []reports.ResolutionCohortRow{
		{Cohort: "2026-01-05", Tickets: 12, Closed1d: 0.25, Closed3d: 0.5, Closed7d: 0.75, Closed14d: 0.9166, Closed30d: 1, MedianHours: ptr(40.5), P90Hours: ptr(300), ReopenRate: 0.0833},
		{Cohort: "2026-01-12", Tickets: 20, Closed1d: 0.1, Closed3d: 0.35, Closed7d: 0.6, Closed14d: 0.8, Closed30d: 0.95, MedianHours: ptr(90), P90Hours: ptr(410), ReopenRate: 0.05},
		{Cohort: "2026-01-19", Tickets: 9, Closed1d: 0, Closed3d: 0.1111, Closed7d: 0.3333, Closed14d: 0.5556, Closed30d: 0.7778, MedianHours: ptr(200), P90Hours: ptr(650), ReopenRate: 0},
		{Cohort: "2026-01-26", Tickets: 17, MedianHours: nil, P90Hours: nil},
	},
	reports.KindRepeatCohorts: []reports.RepeatCohortRow{
		{Cohort: "2026-01-05", Customers: 10, Offset: 0, Returned: 2, Share: 0.2},
		{Cohort: "2026-01-05", Customers: 10, Offset: 1, Returned: 3, Share: 0.3},
		{Cohort: "2026-01-05", Customers: 10, Offset: 2, Returned: 1, Share: 0.1},
		{Cohort: "2026-01-12", Customers: 16, Offset: 0, Returned: 4, Share: 0.25},
		{Cohort: "2026-01-12", Customers: 16, Offset: 1, Returned: 2, Share: 0.125},
		{Cohort: "2026-01-19", Customers: 8, Offset: 0, Returned: 1, Share: 0.125},
	},
	reports.KindSegments: []reports.SegmentRow{
		{Segment: "VIP customers", Customers: 14, Opened: 21, Resolved: 17, MedianHours: ptr(30), ReopenRate: 0.04},
		{Segment: `<img src=x onerror="alert(1)">`, Customers: 3, Opened: 3, Resolved: 1, ReopenRate: 0},
	},
}

func ptr(f float64) *float64 { return &f }

// TestReportsInBrowser loads the real /reports page in headless Chromium against the
// real reports API over a fake reports.Source with fixed rows, and checks what a marketer
// sees: the charts drawn, the tables, the CSV download, the token taken out of the URL, and
// a refused token. Screenshots land in reportsui/e2e/screenshots/.
func TestReportsInBrowser(t *testing.T) {
	b := startBrowserScript(t, "../../reportsui", "reports.e2e.mjs")
	conns, err := config.ParseConnections([]byte(`{"connections": [
		{"id": "acme", "zendesk": {"subdomain": "acme", "webhook_secrets": ["0123456789abcdef0123456789abcdef"], "brands": "all"}},
		{"id": "globex", "zendesk": {"subdomain": "globex", "webhook_secrets": ["0123456789abcdef0123456789abcdef"], "brands": "all"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := zauth.NewReports([]zauth.SigningKey{{ID: "k1", Secret: randomSigningKey()}}, conns, nil)
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := auth.Issue(zauth.TokenRequest{Subject: "marketer@acme.example", Role: "marketer", Connections: []string{"acme", "globex"}, TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	src := fakeSource()
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{
		Registry: prometheus.NewRegistry(), ReportsPage: reportsui.Page(),
		Reports: &backend.Reports{Auth: auth, Source: src},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	shots, err := filepath.Abs("../../reportsui/e2e/screenshots")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	clean := func(t *testing.T, r reportsResult, allowed ...string) {
		t.Helper()
		if len(r.CSPViolations) > 0 {
			t.Errorf("%s: the CSP refused: %q", r.Name, r.CSPViolations)
		}
		errs := slices.DeleteFunc(slices.Clone(r.ConsoleErrors), func(m string) bool { return slices.Contains(allowed, m) })
		if len(errs) > 0 {
			t.Errorf("%s: errors in the browser console: %q (failed requests %q)", r.Name, errs, r.FailedRequests)
		}
	}

	for _, scheme := range []string{"light", "dark"} {
		t.Run(scheme, func(t *testing.T) {
			r := b.runReports(t, map[string]any{
				"name": scheme, "url": ts.URL + "/reports?from=2026-01-05&to=2026-02-01&interval=week#token=" + token,
				"state": "ready", "colorScheme": scheme, "timezone": "Europe/Lisbon",
				"screenshot": filepath.Join(shots, "reports-"+scheme+".png"), "download": "trends", "reload": true,
			})
			clean(t, r)
			if strings.Contains(r.URL, "token") || strings.Contains(r.URL, "#") {
				t.Errorf("the token is still in the URL: %s", r.URL)
			}
			if r.ReloadedState != "ready" {
				t.Errorf("after a reload (no token in the URL) the page is %q, want ready from the tab's stored token", r.ReloadedState)
			}
			for _, kind := range reports.Kinds {
				if r.Reports[kind] != "ready" {
					t.Errorf("report %s is %q, want ready", kind, r.Reports[kind])
				}
			}
			for _, kind := range []string{reports.KindTrends, reports.KindResolutionCohorts, reports.KindRepeatCohorts} {
				c, ok := r.Canvases[kind]
				t.Logf("%s chart: %+v", kind, c)
				if !ok || c.Width < 300 || c.Height < 200 || c.Painted < 10000 || c.Colours < 4 {
					t.Errorf("the %s chart is blank or missing: %+v", kind, c)
				}
			}
			wantRows := map[string][]string{
				reports.KindTrends:            {"2026-01-12", "20", "15", "13"},
				reports.KindResolutionCohorts: {"2026-01-05", "12", "25%", "50%", "75%", "91.7%", "100%", "40.5", "300", "8.3%"},
				reports.KindRepeatCohorts:     {"2026-01-05", "10", "20%", "30%", "10%"},
				reports.KindSegments:          {`<img src=x onerror="alert(1)">`, "3", "3", "1", "—", "0%"},
			}
			for kind, want := range wantRows {
				if !slices.ContainsFunc(r.Tables[kind], func(row []string) bool { return slices.Equal(row, want) }) {
					t.Errorf("the %s table has no row %q: %q", kind, want, r.Tables[kind])
				}
			}
			if got, want := len(r.Tables[reports.KindTrends]), 1+4; got != want {
				t.Errorf("the trends table has %d rows, want %d", got, want)
			}
			if r.Download == nil || !strings.HasPrefix(r.Download.Body, "period,key,opened,resolved,backlog\n2026-01-05,,12,4,8\n") {
				t.Errorf("the CSV download: %+v", r.Download)
			} else if r.Download.Filename != "zenklav-trends-2026-01-05-2026-02-01.csv" {
				t.Errorf("the CSV is saved as %q", r.Download.Filename)
			}
			if !slices.Equal(r.Connections, []string{"", "acme", "globex"}) {
				t.Errorf("connections %q, want the token's tenants", r.Connections)
			}
			if r.TZ != "Europe/Lisbon" {
				t.Errorf("time zone %q, want the browser's", r.TZ)
			}
			if !strings.Contains(r.Who, "marketer") {
				t.Errorf("the page does not say whose token it holds: %q", r.Who)
			}
			if dark := darkColor(r.Background); dark != (scheme == "dark") {
				t.Errorf("background %s in the %s scheme", r.Background, scheme)
			}
		})
	}

	// Every report was asked with the page's filters.
	for _, f := range src.Asked() {
		if f.From.Format(time.DateOnly) != "2026-01-05" || f.To.Format(time.DateOnly) != "2026-02-01" || f.Interval != reports.Week || f.TZ.String() != "Europe/Lisbon" {
			t.Errorf("the page asked with %s", f)
		}
	}

	t.Run("empty", func(t *testing.T) {
		r := b.runReports(t, map[string]any{
			"name": "empty", "url": ts.URL + "/reports?connection=globex&from=2026-01-05&to=2026-02-01#token=" + token, "state": "ready",
			"screenshot": filepath.Join(shots, "reports-empty.png"),
		})
		clean(t, r)
		for _, kind := range reports.Kinds {
			if r.Reports[kind] != "empty" {
				t.Errorf("report %s is %q, want empty", kind, r.Reports[kind])
			}
			if len(r.Tables[kind]) != 0 || r.Canvases[kind].Painted != 0 {
				t.Errorf("report %s shows something: table %q, chart %+v", kind, r.Tables[kind], r.Canvases[kind])
			}
		}
		if n := strings.Count(r.Text, "No tickets match these filters"); n != len(reports.Kinds) {
			t.Errorf("%d reports say they are empty, want %d:\n%s", n, len(reports.Kinds), r.Text)
		}
	})

	t.Run("refused token", func(t *testing.T) {
		r := b.runReports(t, map[string]any{
			"name": "refused", "url": ts.URL + "/reports#token=not-a-valid-token", "state": "unauthorized",
			"screenshot": filepath.Join(shots, "reports-refused.png"),
		})
		clean(t, r, "Failed to load resource: the server responded with a status of 401 (Unauthorized)")
		if !strings.Contains(r.Alert, "ask your zenklav operator for a new one") && !strings.Contains(r.Alert, "Ask your zenklav operator for a new one") {
			t.Errorf("the page does not ask for a new token: alert %q", r.Alert)
		}
		if strings.Contains(r.URL, "token") {
			t.Errorf("the token is still in the URL: %s", r.URL)
		}
		for _, kind := range reports.Kinds {
			if r.Reports[kind] != "error" {
				t.Errorf("report %s is %q, want error", kind, r.Reports[kind])
			}
		}
		if len(r.Tables[reports.KindTrends]) != 0 {
			t.Errorf("rows shown without a valid token: %q", r.Tables[reports.KindTrends])
		}
	})
}
