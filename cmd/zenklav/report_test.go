package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav/internal/golden"

	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/reports"
)

// cliSource answers reports with fixed rows, as the store would.
type cliSource struct{ asked []reports.Filter }

func cliHours(h float64) *float64 { return &h }

func (s *cliSource) Trends(_ context.Context, f reports.Filter) ([]reports.TrendRow, error) {
	s.asked = append(s.asked, f)
	if f.By != "" {
		return []reports.TrendRow{{Period: "2026-11-23", Key: "email", Opened: 120, Resolved: 97, Backlog: 31}, {Period: "2026-11-23", Key: "sms", Opened: 4, Resolved: 4}}, nil
	}
	return []reports.TrendRow{{Period: "2026-11-23", Opened: 124, Resolved: 101, Backlog: 31}, {Period: "2026-11-30", Opened: 9, Resolved: 12, Backlog: 28}}, nil
}

func (s *cliSource) ResolutionCohorts(_ context.Context, f reports.Filter) ([]reports.ResolutionCohortRow, error) {
	s.asked = append(s.asked, f)
	return []reports.ResolutionCohortRow{
		{Cohort: "2026-11-23", Tickets: 124, Closed1d: 0.25, Closed3d: 0.5, Closed7d: 0.75, Closed14d: 0.9, Closed30d: 0.95, MedianHours: cliHours(52.25), P90Hours: cliHours(301), ReopenRate: 0.0403},
		{Cohort: "2026-11-30", Tickets: 9},
	}, nil
}

func (s *cliSource) RepeatCohorts(_ context.Context, f reports.Filter) ([]reports.RepeatCohortRow, error) {
	s.asked = append(s.asked, f)
	return []reports.RepeatCohortRow{{Cohort: "2026-11-23", Customers: 100, Offset: 0, Returned: 5, Share: 0.05}, {Cohort: "2026-11-23", Customers: 100, Offset: 1, Returned: 12, Share: 0.12}}, nil
}

func (s *cliSource) Segments(_ context.Context, f reports.Filter) ([]reports.SegmentRow, error) {
	s.asked = append(s.asked, f)
	return nil, nil
}

// TestReportOutput prints each report in each format from a fake source; testdata holds
// what a person sees.
func TestReportOutput(t *testing.T) {
	now := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"trends_table", []string{"trends", "--from", "2026-11-23", "--to", "2026-12-06"}},
		{"trends_by_table", []string{"trends", "--by", "channel", "--connection", "acme", "--tag", "vip", "--tz", "Europe/Madrid", "--from", "2026-11-23", "--to", "2026-12-06"}},
		{"trends_csv", []string{"trends", "--format", "csv"}},
		{"trends_json", []string{"trends", "--format=json", "--interval", "day"}},
		{"resolution-cohorts_table", []string{"resolution-cohorts", "--interval", "week"}},
		{"repeat-cohorts_table", []string{"repeat-cohorts", "--brand", "360001"}},
		{"segments_table", []string{"segments", "--kind", "list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rr, err := parseReportFlags(tc.args, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			f, err := reports.ParseQuery(rr.kind, rr.query, []string{"acme", "globex"}, now)
			if err != nil {
				t.Fatal(err)
			}
			src := &cliSource{}
			var out bytes.Buffer
			if err := printReport(context.Background(), src, rr, f, &out); err != nil {
				t.Fatal(err)
			}
			if len(src.asked) != 1 {
				t.Errorf("asked %d times", len(src.asked))
			}
			ext := map[string]string{"table": ".txt", "csv": ".csv", "json": ".json"}[rr.format]
			golden.Check(t, filepath.Join("testdata", "report_"+tc.name+ext), out.Bytes())
		})
	}
}

// TestReportCommandRefuses: a bad command line ends with an error that names what is wrong,
// before ClickHouse is asked anything (none is configured here, which would be another error).
func TestReportCommandRefuses(t *testing.T) {
	env := map[string]string{"ZENKLAV_CONNECTIONS_FILE": "../../config/testdata/connections.yaml"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no report", nil, nil, "name the report first"},
		{"flag first", []string{"--from", "2026-01-01"}, nil, "name the report first"},
		{"unknown report", []string{"funnels"}, nil, `no report "funnels"`},
		{"unknown flag", []string{"trends", "--tenant", "acme"}, nil, "flag provided but not defined: -tenant"},
		{"flag twice", []string{"trends", "--tag", "a", "--tag", "b"}, nil, "given twice"},
		{"bad format", []string{"trends", "--format", "xlsx"}, nil, `--format="xlsx"`},
		{"bad date", []string{"trends", "--from", "01/02/2026"}, nil, `from "01/02/2026" is not a date`},
		{"bad tz", []string{"trends", "--tz", "CEST"}, nil, `tz "CEST"`},
		{"by on segments", []string{"segments", "--by", "tag"}, nil, "trends report only"},
		{"connection not in the file", []string{"trends", "--connection", "initech"}, nil, `connection "initech" is not one`},
		{"no connection at all", []string{"trends"}, map[string]string{"ZENKLAV_CONNECTIONS_FILE": ""}, "give --connection"},
		{"positional argument", []string{"trends", "acme"}, nil, `unexpected argument "acme"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			for k, v := range tc.env {
				e[k] = v
			}
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"report"}, tc.args...), func(k string) string { return e[k] }, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("report %q = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestReportCommandHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"trends", "-h"}} {
		var out bytes.Buffer
		if err := run(context.Background(), append([]string{"report"}, args...), func(string) string { return "" }, &out); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"trends|resolution-cohorts|repeat-cohorts|segments", "-connection", "-from", "-interval", "-tz", "-by", "-format"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("report %v does not mention %s:\n%s", args, want, out.String())
			}
		}
	}
}

// TestReportCommandOnClickHouse runs `zenklav report` against the real ClickHouse, on a
// database of its own with no tickets.
func TestReportCommandOnClickHouse(t *testing.T) {
	ch := testenv.ClickHouse(t)
	db := fmt.Sprintf("report_cmd_%d", rand.N(1_000_000))
	env := map[string]string{"ZENKLAV_CLICKHOUSE_ADDR": ch, "ZENKLAV_CLICKHOUSE_DATABASE": db}
	t.Cleanup(func() {
		store, err := analytics.Open(context.Background(), slog.New(slog.DiscardHandler), analytics.Config{Addr: ch, Database: db, User: "default"})
		if err == nil {
			_ = store.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
			store.Close()
		}
	})
	for _, kind := range reports.Kinds {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"report", kind, "--connection", "acme", "--format", "json"}, func(k string) string { return env[k] }, &out); err != nil {
			t.Fatalf("report %s: %v\n%s", kind, err, out.String())
		}
		var body struct {
			Report string
			Rows   []json.RawMessage
		}
		if err := json.Unmarshal(out.Bytes(), &body); err != nil || body.Report != kind {
			t.Fatalf("report %s printed %s (%v)", kind, out.String(), err)
		}
		for _, row := range body.Rows {
			var counts struct{ Opened, Tickets, Customers int64 }
			if err := json.Unmarshal(row, &counts); err != nil || counts.Opened+counts.Tickets+counts.Customers != 0 {
				t.Errorf("%s of an empty database: %s", kind, row)
			}
		}
	}
}

// TestReportsAPIInAll: `zenklav all` serves the reports API to a token of `zenklav token`
// signed with the key they share, and refuses one of a key it does not have.
func TestReportsAPIInAll(t *testing.T) {
	ch := testenv.ClickHouse(t)
	const key = "2026-11:all-reports-test-key-0123456789abcdef"
	env := map[string]string{
		"ZENKLAV_HTTP_ADDR":           "127.0.0.1:0",
		"ZENKLAV_CLICKHOUSE_ADDR":     ch,
		"ZENKLAV_CLICKHOUSE_DATABASE": fmt.Sprintf("reports_all_%d", rand.N(1_000_000)),
		"ZENKLAV_DATA_DIR":            t.TempDir(),
		"ZENKLAV_JWT_SIGNING_KEY":     key,
	}
	base := startZenklav(t, env)
	get := func(token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/reports/trends?interval=month", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	good, _, err := runToken(t, env, "--role", "marketer", "--tenant", "sandbox")
	if err != nil {
		t.Fatal(err)
	}
	if status, body := get(good); status != http.StatusOK || !strings.Contains(body, `"connections":["sandbox"]`) {
		t.Errorf("a token of zenklav token: %d %s, want 200 for the sandbox connection", status, body)
	}
	other := map[string]string{"ZENKLAV_JWT_SIGNING_KEY": "2026-11:another-key-entirely-0123456789abcdef"}
	bad, _, err := runToken(t, other, "--role", "marketer", "--tenant", "sandbox")
	if err != nil {
		t.Fatal(err)
	}
	if status, body := get(bad); status != http.StatusUnauthorized {
		t.Errorf("a token of another key: %d %s, want 401", status, body)
	}
	resp, err := http.Get(base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("openapi.json: %d", resp.StatusCode)
	}
}
