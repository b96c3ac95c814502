package analytics_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/reports"
	"github.com/zenklav/zenklav/schemas"
)

// chdbPythonEnv names the Python that has chdb (PyPI chdb-core), ClickHouse embedded in
// process; `make test` sets it (build/deps.sh chdb installs it into .data/chdb).
const chdbPythonEnv = "ZENKLAV_TEST_CHDB_PYTHON"

// The tables of the migrations, and the report rows' two.
var tables = []string{"schema_migrations", "ticket_events", "ticket_requesters", "klaviyo_memberships", "ticket_rows", "customer_rows"}

// TestCurrentClickHouse checks that every statement the store sends runs on current
// ClickHouse (26.9, embedded by chdb) as on Debian's 18.16, with the same answers. On 18.16
// it migrates a database of its own, loads the reports' data set through the store's own
// writes (memberships, event batches, the fold into ticket_rows and customer_rows), and asks
// everything the store asks: every report under many filters, the fold's reads, the support
// history, requesters' tickets, counts; a recorder in front of the store's connection keeps
// each statement as the SQL clickhouse-go sends. build/chdb/replay.py then replays the
// statements in order on chdb, the batch inserts as INSERT … VALUES with the rows they sent,
// and the answers of the reads are compared with 18.16's, value for value, as are the
// tables' rows and columns. The reads are asked on both with the merges stopped (the cancel
// rows beside the rows they cancel), after OPTIMIZE … FINAL, and the migration's seeding
// INSERT … SELECTs run on both over the same events.
//
// The fold's reads take their ticket or customer ids from an external table, which a replay
// cannot send: there a table of the same name and column holds the ids below 2000 that are
// not multiples of four.
func TestCurrentClickHouse(t *testing.T) {
	python := chdbPython(t)
	script := filepath.Join(testenv.ModuleRoot(t), "build", "chdb", "replay.py")
	ctx := context.Background()
	start := time.Now()

	s, rec, db := openRecorded(t)
	rec.as("migrate", func() {
		if _, err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	})
	// With merges stopped, both servers hold the very rows the store wrote. Not the
	// memberships: each snapshot is a part, more than 18.16 takes unmerged, so after the load
	// they are put in one part of distinct rows on both, as merges would make them.
	rec.as("test: stop merges", func() {
		for _, table := range tables {
			if table != "klaviyo_memberships" {
				mustExec(t, s, "SYSTEM STOP MERGES "+table)
			}
		}
	})
	d := generate(1)
	load(t, s, d, true)
	rec.as("test: memberships merged", func() {
		mustExec(t, s, "CREATE TABLE memberships_merged AS klaviyo_memberships")
		mustExec(t, s, "INSERT INTO memberships_merged SELECT DISTINCT * FROM klaviyo_memberships")
		mustExec(t, s, "DROP TABLE klaviyo_memberships")
		mustExec(t, s, "RENAME TABLE memberships_merged TO klaviyo_memberships")
		mustExec(t, s, "SYSTEM STOP MERGES klaviyo_memberships")
	})
	rec.as("test: ids for the fold's reads", func() {
		mustExec(t, s, "CREATE TABLE ids (id Int64) ENGINE = Memory")
		mustExec(t, s, "INSERT INTO ids SELECT toInt64(number) FROM system.numbers WHERE number % 4 != 0 LIMIT 1500")
	})
	all := tickets(d.events)
	loaded := time.Now()

	t.Run("unmerged", func(t *testing.T) { askAll(t, s, rec, d, all) })
	askState(rec)
	if err := rec.checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	rec.as("test: merge", func() {
		for _, table := range tables {
			mustExec(t, s, "SYSTEM START MERGES "+table)
			mustExec(t, s, "OPTIMIZE TABLE "+table+" FINAL")
			merged(t, rec, table)
		}
	})
	t.Run("merged", func(t *testing.T) { askAll(t, s, rec, d, all) })
	askState(rec)
	if err := rec.checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// Migration 0005's seeding, on events (and snapshots) this time: its rows are added to
	// the ones the fold wrote, and the tables compared.
	seeds, err := analytics.SeedStatements()
	if err != nil {
		t.Fatal(err)
	}
	rec.as("migrate: 0005's seeding over the events", func() {
		for _, q := range seeds {
			mustExec(t, s, q)
		}
	})
	askState(rec)
	if err := rec.checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if rec.err != nil {
		t.Fatal(rec.err)
	}
	asked := time.Now()

	version, got := replay(t, python, script, db, rec.tz, rec.steps)
	replayed := time.Now()
	compareReplay(t, version, rec.steps, got)
	t.Logf("on ClickHouse 18.16 and %s, %s; load %.1fs, ask 18.16 %.1fs, replay on %s %.1fs",
		version, coverage(rec.steps), loaded.Sub(start).Seconds(), asked.Sub(loaded).Seconds(),
		version, replayed.Sub(asked).Seconds())
}

// chdbPython is the Python with chdb: ZENKLAV_TEST_CHDB_PYTHON, or the one build/deps.sh
// installs. Without it the test skips, or fails in CI.
func chdbPython(t *testing.T) string {
	t.Helper()
	python := os.Getenv(chdbPythonEnv)
	if python == "" {
		python = filepath.Join(testenv.ModuleRoot(t), ".data", "chdb", "bin", "python")
	}
	if _, err := os.Stat(python); err != nil {
		msg := fmt.Sprintf("no Python with chdb (%v): set %s, or run `bash build/deps.sh chdb` (make test does)", err, chdbPythonEnv)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return python
}

// openRecorded opens a store on a database of the test's own, not migrated yet, behind a
// recorder.
func openRecorded(t *testing.T) (*analytics.Store, *recorder, string) {
	t.Helper()
	addr := testenv.ClickHouse(t)
	ctx := context.Background()
	db := fmt.Sprintf("test_%d_%d", time.Now().UnixNano(), rand.N(1000))
	s, err := analytics.Open(ctx, slog.New(slog.DiscardHandler), analytics.Config{Addr: addr, Database: db, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		s.Close()
	})
	rec := &recorder{}
	s.WrapConn(func(c driver.Conn) driver.Conn {
		rec.Conn = c
		return rec
	})
	var tz string
	if err := rec.Conn.QueryRow(ctx, "SELECT timezone()").Scan(&tz); err != nil {
		t.Fatal(err)
	}
	if rec.tz, err = time.LoadLocation(tz); err != nil {
		t.Fatal(err)
	}
	return s, rec, db
}

func mustExec(t *testing.T, s *analytics.Store, q string) {
	t.Helper()
	if err := s.Exec(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// merged makes sure that OPTIMIZE … FINAL left the table's partitions one part each on
// 18.16, which does nothing when a background merge holds some of the parts (current
// releases wait for it), and repeats it, unrecorded, until it does.
func merged(t *testing.T, rec *recorder, table string) {
	t.Helper()
	ctx := context.Background()
	q := "SELECT count() FROM (SELECT partition FROM system.parts WHERE database = currentDatabase() AND table = '" + table +
		"' AND active GROUP BY partition HAVING count() > 1)"
	for try := 0; ; try++ {
		var n uint64
		if err := rec.Conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if try == 50 {
			t.Fatalf("%s: %d partitions of several parts after OPTIMIZE FINAL", table, n)
		}
		time.Sleep(100 * time.Millisecond)
		if err := rec.Conn.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
}

// askAll asks the store everything it asks ClickHouse. The reports are checked against the
// answers the report tests compute; everything else is asked twice, as the store asks it
// (arguments bound by clickhouse-go) and recorded (bound by the recorder), and both must
// agree: the recorded text is what clickhouse-go sends.
func askAll(t *testing.T, s *analytics.Store, rec *recorder, d dataset, all []ticket) {
	ctx := context.Background()
	checkReports(t, s, d, all)
	same := func(what string, call func() (any, error)) {
		t.Helper()
		var direct any
		var err error
		rec.passThrough(func() { direct, err = call() })
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		recorded, err := call()
		if err != nil {
			t.Fatalf("%s, recorded: %v", what, err)
		}
		if !reflect.DeepEqual(direct, recorded) {
			t.Errorf("%s: the recorded SQL answers\n %+v\nclickhouse-go's\n %+v", what, recorded, direct)
		}
	}

	// Reports as the API asks them: filters from query parameters.
	now := time.Date(2026, 3, 18, 15, 4, 5, 0, time.UTC)
	connections := []string{"acme", "globex", "initech"}
	queries := []string{
		"",
		"from=2025-11-01&to=2026-04-30&interval=month&tz=Asia/Kolkata",
		"from=2026-01-01&to=2026-02-28&interval=day&tz=America/Los_Angeles&connection=acme",
		"from=2025-12-01&brand=12&channel=email&tag=vip",
		"from=2025-11-20&to=2026-04-30&tag=it's \\ \"quoted\"?",
	}
	for _, kind := range reports.Kinds {
		extra := map[string][]string{
			reports.KindTrends:   {"by=tag&tz=Europe/Madrid&from=2025-11-01", "by=assignee&interval=day&from=2026-02-01"},
			reports.KindSegments: {"kind=list&from=2025-11-01", "kind=segment&interval=month&from=2025-11-01&tz=Pacific/Chatham"},
		}[kind]
		for _, raw := range append(slices.Clone(queries), extra...) {
			q, err := url.ParseQuery(raw)
			if err != nil {
				t.Fatal(err)
			}
			f, err := reports.ParseQuery(kind, q, connections, now)
			if err != nil {
				t.Fatalf("%s?%s: %v", kind, raw, err)
			}
			same(kind+"?"+raw, func() (any, error) { return reports.Run(ctx, s, kind, f) })
		}
	}

	// The sidebar's support history, the emitter's Open_tickets, counts.
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range connections {
		for r := int64(100); r < 160; r += 7 {
			same(fmt.Sprintf("support history of %s/%d", c, r), func() (any, error) { return s.SupportHistory(ctx, c, r, since) })
		}
		same("support history since ever", func() (any, error) { return s.SupportHistory(ctx, c, 103, time.Time{}) })
		same("support history in Madrid", func() (any, error) {
			madrid, _ := time.LoadLocation("Europe/Madrid")
			return s.SupportHistory(ctx, c, 111, since.In(madrid))
		})
		same("requesters' tickets", func() (any, error) {
			return s.RequesterTickets(ctx, c, []int64{100, 101, 102, 130, 159, 999})
		})
		same("one requester's tickets", func() (any, error) { return s.RequesterTickets(ctx, c, []int64{117}) })
		for _, f := range []analytics.EventFilter{
			{Connection: c},
			{Connection: c, Type: schemas.TicketStatusChanged},
			{Connection: c, From: since, To: since.AddDate(0, 1, 0)},
			{Connection: c, Type: schemas.TicketCreated, From: since.In(la)},
			{Connection: c, To: since},
		} {
			same(fmt.Sprintf("count %+v", f), func() (any, error) { return s.CountTicketEvents(ctx, f) })
		}
		same("count rows", func() (any, error) { return s.CountTicketEventRows(ctx, c) })
	}
	rec.as("migrate", func() {
		if applied, err := s.Migrate(ctx); err != nil || len(applied) > 0 {
			t.Errorf("migrate again: %v, %v", applied, err)
		}
	})
}

// askState records the test's own reads of what the tables hold: their columns, in order,
// and every row.
func askState(rec *recorder) {
	st := []step{{SQL: "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"}}
	for _, table := range tables {
		st = append(st,
			step{SQL: "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = '" + table + "'", inOrder: true},
			step{SQL: "SELECT * FROM " + table})
	}
	for _, s := range st {
		s.Read, s.by = true, "test: the tables"
		rec.record(s)
	}
}

// result is one line of replay.py's answer.
type result struct {
	Types []string          `json:"types"`
	Rows  []json.RawMessage `json:"rows"`
	Error *string           `json:"error"`
}

// replay runs the steps on chdb, in the server's time zone, and returns its version and a
// result per step.
func replay(t *testing.T, python, script, db string, tz *time.Location, steps []step) (string, []result) {
	t.Helper()
	plan, err := json.Marshal(map[string]any{"database": db, "steps": steps})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(path, plan, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, script, path)
	cmd.Env = append(os.Environ(), "TZ="+tz.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", python, script, err, stderr.Bytes())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<30)
	var head struct{ Version, Timezone string }
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &head) != nil {
		t.Fatalf("replay.py printed no version line:\n%.2000s\n%s", out, stderr.Bytes())
	}
	if head.Timezone != tz.String() {
		t.Fatalf("chdb runs in time zone %s, 18.16 in %s", head.Timezone, tz)
	}
	var results []result
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("replay.py line %d: %v", len(results)+2, err)
		}
		results = append(results, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(results) != len(steps) {
		t.Fatalf("replay.py answered %d of %d steps\n%s", len(results), len(steps), stderr.Bytes())
	}
	return "ClickHouse " + head.Version, results
}

// compareReplay fails the test for each statement that failed on chdb or answered otherwise
// than 18.16.
func compareReplay(t *testing.T, version string, steps []step, got []result) {
	t.Helper()
	failed := 0
	report := func(format string, args ...any) {
		if failed++; failed <= 20 {
			t.Errorf(format, args...)
		}
	}
	for i, st := range steps {
		r := got[i]
		if r.Error != nil {
			report("%s fails on %s: %s\n%s", st.by, version, firstLine(*r.Error), clip(st.SQL))
			continue
		}
		if !st.Read {
			continue
		}
		a, err := canonicalAnswer(r, st)
		if err != nil {
			t.Fatalf("%s: %v", st.by, err)
		}
		if diff := differ(*st.want, a); diff != "" {
			report("%s answers otherwise on %s than on 18.16: %s\n%s", st.by, version, diff, clip(st.SQL))
		}
	}
	if failed > 20 {
		t.Errorf("and %d more", failed-20)
	}
}

func canonicalAnswer(r result, st step) (answer, error) {
	a := answer{types: r.Types}
	for _, raw := range r.Rows {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var values []any
		if err := dec.Decode(&values); err != nil {
			return answer{}, err
		}
		if len(values) != len(r.Types) {
			return answer{}, fmt.Errorf("a row of %d values for %d columns", len(values), len(r.Types))
		}
		for i := range values {
			var err error
			if values[i], err = canonicalJSON(values[i], r.Types[i]); err != nil {
				return answer{}, err
			}
		}
		if err := a.add(values, st.SQL); err != nil {
			return answer{}, err
		}
	}
	a.finish(st)
	return a, nil
}

// differ says how got differs from want, or "" when it does not.
func differ(want, got answer) string {
	if !slices.Equal(want.types, got.types) {
		return fmt.Sprintf("columns of types %v, on 18.16 %v", got.types, want.types)
	}
	if len(want.rows) != len(got.rows) {
		return fmt.Sprintf("%d rows, on 18.16 %d", len(got.rows), len(want.rows))
	}
	for i := range want.rows {
		if want.rows[i] != got.rows[i] {
			return fmt.Sprintf("row %d is\n %.500s\non 18.16\n %.500s", i, got.rows[i], want.rows[i])
		}
	}
	return ""
}

// coverage says how many statements ran on both, and how many distinct ones each function
// sent.
func coverage(steps []step) string {
	n := map[string]map[string]bool{}
	reads := 0
	for _, st := range steps {
		kind := "writes"
		if st.Read {
			kind = "reads"
			reads++
		}
		k := st.by + " " + kind
		if n[k] == nil {
			n[k] = map[string]bool{}
		}
		n[k][st.SQL] = true
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, len(n[k])))
	}
	return fmt.Sprintf("%d writes and %d reads answered alike; distinct statements by sender: %s",
		len(steps)-reads, reads, strings.Join(parts, ", "))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func clip(sql string) string {
	if len(sql) > 1500 {
		return sql[:1500] + " …"
	}
	return sql
}
