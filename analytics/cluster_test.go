package analytics_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/analytics/analyticstest"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/reports"
	"github.com/zenklav/zenklav/schemas"
)

// TestClusterMigrations checks the rendering of every migration for a cluster without a
// server: each table becomes a replicated local table and a Distributed table over it,
// sharded by ticket or by customer; views read and fill the local tables.
func TestClusterMigrations(t *testing.T) {
	all, err := analytics.ClusterMigrations("c", "db")
	if err != nil {
		t.Fatal(err)
	}
	var stmts []string
	for _, ss := range all {
		stmts = append(stmts, ss...)
	}
	text := strings.Join(stmts, "\n;\n")
	for _, want := range []string{
		"CREATE TABLE IF NOT EXISTS db.ticket_events_local ON CLUSTER c\n",
		"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/ticket_events', '{replica}')",
		"ENGINE = Distributed(c, db, ticket_events_local, cityHash64(tenant, ticket_id))",
		"ENGINE = ReplicatedCollapsingMergeTree('/clickhouse/tables/{shard}/db/ticket_rows', '{replica}', sign)",
		"ENGINE = Distributed(c, db, ticket_rows_local, cityHash64(tenant, ticket_id))",
		"ENGINE = Distributed(c, db, customer_rows_local, cityHash64(tenant, requester_id))",
		"ENGINE = Distributed(c, db, klaviyo_memberships_local, cityHash64(tenant, requester_id))",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS db.ticket_requesters_mv ON CLUSTER c TO db.ticket_requesters_local AS",
		"FROM db.ticket_events_local\nWHERE requester_id != 0",
		"DROP TABLE IF EXISTS db.ticket_facts_mv ON CLUSTER c",
		"DROP TABLE IF EXISTS db.ticket_facts_local ON CLUSTER c",
		"ALTER TABLE db.customer_rows_local ON CLUSTER c ADD COLUMN fold_batch UInt64 DEFAULT 0",
		"DROP TABLE IF EXISTS db.customer_rows ON CLUSTER c",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in the cluster migrations:\n%s", want, text)
		}
	}
	if strings.Contains(text, "DROP TABLE IF EXISTS db.ticket_facts_mv_local") {
		t.Error("a view has no local table to drop")
	}
	for _, s := range stmts {
		if (strings.HasPrefix(s, "CREATE") || strings.HasPrefix(s, "ALTER")) && !strings.Contains(s, " ON CLUSTER c") {
			t.Errorf("DDL not ON CLUSTER: %.80s", s)
		}
	}
}

// TestCluster runs the report fixture on a cluster of 2 shards × 2 replicas of ClickHouse
// 18.16 with one replica killed (SIGKILL) while the fixture loads and started again: every
// report equals the single server's answers, and every replica of a shard ends with the same
// rows. It starts five servers of its own, so it runs only with ZENKLAV_TEST_CLICKHOUSE_CLUSTER
// set (`make test` sets it; `make test-cluster` runs it alone).
func TestCluster(t *testing.T) {
	testenv.ClickHouseClusterOn(t)
	c := testenv.StartClickHouseCluster(t, 2, 2)
	ctx := context.Background()
	db := fmt.Sprintf("test_%d_%d", time.Now().UnixNano(), rand.N(1000))
	start := time.Now()
	s, err := analytics.Open(ctx, slog.New(slog.DiscardHandler), analytics.Config{Addr: c.Addr(), Database: db, User: "default", Cluster: c.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("migrated on the cluster in %v", time.Since(start))

	single, _ := analyticstest.Open(t)
	d := generate(1)
	load(t, single, d, true)

	// The second replica of the second shard dies while the fold writes, stays down longer
	// than its ZooKeeper session (so its shard refuses writes for want of a quorum), and
	// comes back.
	victim := c.Shards[1][1]
	start = time.Now()
	var wg sync.WaitGroup
	var killedAt, restartedAt time.Time
	rec := &recovery{}
	loadRetrying(t, s, d, rec, func(batch int) {
		if batch != 3 {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(100 * time.Millisecond)
			killedAt = time.Now()
			victim.Kill()
			t.Logf("killed %s", victim.Addr)
			time.Sleep(12 * time.Second)
			restartedAt = time.Now()
			victim.Start()
		}()
	})
	wg.Wait()
	t.Logf("loaded on the cluster in %v", time.Since(start))
	// Every replica has every part before the replicas are compared.
	tables := []string{"ticket_events_local", "ticket_requesters_local", "ticket_rows_local", "customer_rows_local", "klaviyo_memberships_local"}
	synced := waitSynced(t, victim.Addr, db, tables)
	// The row make bench prints (build/bench.sh, bench_cluster).
	writes := "no write refused"
	if !rec.failed.IsZero() && !rec.recovered.IsZero() {
		writes = fmt.Sprintf("writes refused from %.1f s, accepted again %.1f s after the kill", rec.failed.Sub(killedAt).Seconds(), rec.recovered.Sub(killedAt).Seconds())
	}
	t.Logf("| ClickHouse replica killed (SIGKILL; 2 shards × 2 replicas), restarted 12 s later | %s; the replica in sync again %.1f s after its restart |",
		writes, synced.Sub(restartedAt).Seconds())
	counts := make([][]uint64, 2)
	for sh, row := range c.Shards {
		for _, srv := range row {
			r, err := analytics.Open(ctx, slog.New(slog.DiscardHandler), analytics.Config{Addr: srv.Addr, Database: db, User: "default"})
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, table := range tables {
				if err := r.Exec(ctx, "SYSTEM SYNC REPLICA "+table); err != nil {
					t.Fatal(err)
				}
				q := fmt.Sprintf("SELECT toUInt64(count()) FROM %s", table)
				if strings.Contains(table, "rows") {
					q = fmt.Sprintf("SELECT toUInt64(sum(sign)) FROM %s", table)
				}
				n, err := r.Count(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, n)
			}
			r.Close()
			if counts[sh] == nil {
				counts[sh] = got
			} else if !reflect.DeepEqual(counts[sh], got) {
				t.Errorf("shard %d: replica %s holds %v of %v, another %v", sh+1, srv.Addr, got, tables, counts[sh])
			}
		}
	}
	t.Logf("shards hold %v of %v", counts, tables)

	// Exactly one live row per ticket and per customer, across the shards.
	for what, q := range map[string]string{
		"tickets whose rows do not sum to one":   "SELECT toUInt64(count()) FROM (SELECT tenant, ticket_id, sum(sign) AS n FROM ticket_rows GROUP BY tenant, ticket_id HAVING n != 1)",
		"customers whose rows do not sum to one": "SELECT toUInt64(count()) FROM (SELECT tenant, requester_id, sum(sign) AS n FROM customer_rows GROUP BY tenant, requester_id HAVING n != 1)",
	} {
		if n, err := s.Count(ctx, q); err != nil || n != 0 {
			t.Errorf("%s: %d, %v", what, n, err)
		}
	}
	for _, tenant := range []string{"acme", "globex", "initech"} {
		want, err := single.CountTicketEvents(ctx, analytics.EventFilter{Connection: tenant})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.CountTicketEvents(ctx, analytics.EventFilter{Connection: tenant})
		if err != nil || got != want {
			t.Errorf("%s: %d events on the cluster, %v; %d on one server", tenant, got, err, want)
		}
	}

	all := tickets(d.events)
	t.Run("reports", func(t *testing.T) { checkReports(t, s, d, all) })
	t.Run("same as one server", func(t *testing.T) {
		f := reports.Filter{Connections: []string{"acme", "globex", "initech"}, From: date("2026-01-05"), To: date("2026-03-18"), Interval: reports.Week, TZ: time.UTC}
		for name, ask := range map[string]func(*analytics.Store) (any, error){
			"trends":             func(st *analytics.Store) (any, error) { return st.Trends(ctx, f) },
			"resolution cohorts": func(st *analytics.Store) (any, error) { return st.ResolutionCohorts(ctx, f) },
			"repeat cohorts":     func(st *analytics.Store) (any, error) { return st.RepeatCohorts(ctx, f) },
			"segments":           func(st *analytics.Store) (any, error) { return st.Segments(ctx, f) },
		} {
			got, err := ask(s)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ask(single)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s on the cluster:\n%v\none server:\n%v", name, got, want)
			}
		}
	})
	t.Run("support history", func(t *testing.T) {
		since := date("2025-01-01")
		for req := int64(100); req < 110; req++ {
			want, err := single.SupportHistory(ctx, "acme", req, since)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.SupportHistory(ctx, "acme", req, since)
			if err != nil || got != want {
				t.Errorf("requester %d: %+v, %v on the cluster; %+v on one server", req, got, err, want)
			}
		}
	})
	t.Run("a change and its undoing, twice", func(t *testing.T) { checkRepeatedBlocks(t, s) })
	t.Run("requesters the view missed", func(t *testing.T) { checkViewMissed(t, s, c, db) })
	if err := s.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+c.Name); err != nil {
		t.Log(err)
	}
}

// loadRetrying loads d as load does, each step retried as the sink retries a batch (the data
// waits in Kafka) while a shard cannot take writes.
func loadRetrying(t *testing.T, s *analytics.Store, d dataset, rec *recovery, before func(batch int)) {
	t.Helper()
	ctx := context.Background()
	retry := func(what string, f func() error) {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			err := f()
			rec.note(err)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			t.Logf("%s: %v; again", what, firstLineOf(err.Error()))
			time.Sleep(500 * time.Millisecond)
		}
	}
	for _, sn := range d.snapshots {
		retry("record memberships", func() error {
			return s.RecordMemberships(ctx, sn.tenant, sn.requester, sn.at, sn.kind, sn.names)
		})
	}
	for i, b := range loadBatches(d, 300) {
		before(i)
		retry("insert events", func() error { return s.InsertTicketEvents(ctx, b) })
		retry("fold events", func() error { return s.SummarizeTicketEvents(ctx, b) })
	}
}

func firstLineOf(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// recovery is when the first write failed, and when one succeeded after that.
type recovery struct {
	mu                sync.Mutex
	failed, recovered time.Time
}

func (r *recovery) note(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil && r.failed.IsZero():
		r.failed = time.Now()
	case err == nil && !r.failed.IsZero() && r.recovered.IsZero():
		r.recovered = time.Now()
	}
}

// waitSynced waits until the restarted replica at addr answers and has fetched every part of
// tables (SYSTEM SYNC REPLICA), and says when.
func waitSynced(t *testing.T, addr, db string, tables []string) time.Time {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := func() error {
			r, err := analytics.Open(ctx, slog.New(slog.DiscardHandler), analytics.Config{Addr: addr, Database: db, User: "default"})
			if err != nil {
				return err
			}
			defer r.Close()
			for _, table := range tables {
				if err := r.Exec(ctx, "SYSTEM SYNC REPLICA "+table); err != nil {
					return err
				}
			}
			return nil
		}()
		if err == nil {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted replica %s is not in sync after 2 minutes: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkRepeatedBlocks moves a ticket between two requesters and back, a batch a move. Each
// move writes the same customer rows as the move two before it, which a replicated table
// would drop as a duplicate block were the rows not marked with their batch: the customers'
// rows would then say the ticket is the wrong one's.
func checkRepeatedBlocks(t *testing.T, s *analytics.Store) {
	ctx := context.Background()
	at := time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)
	requesters := []int64{7001, 7002}
	for i := range 6 {
		e := event("moves", 42, fmt.Sprintf("zd:move-%d", i), schemas.TicketCreated, at.Add(time.Duration(i)*time.Minute))
		e.Ticket.Requester.ID = requesters[i%2]
		if i > 0 {
			e.Type, e.ZendeskType = schemas.TicketStatusChanged, "zen:event-type:ticket.status_changed"
		}
		if err := s.SummarizeTicketEvents(ctx, []schemas.TicketEvent{e}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range requesters {
		want := uint64(0)
		if r == requesters[1] { // the last move's
			want = 1
		}
		q := fmt.Sprintf("SELECT toUInt64(greatest(sum(sign), 0)) FROM customer_rows WHERE tenant = 'moves' AND requester_id = %d", r)
		if n, err := s.Count(ctx, q); err != nil || n != want {
			t.Errorf("customer %d: %d live rows, %v; want %d", r, n, err, want)
		}
	}
	if n, err := s.Count(ctx, "SELECT toUInt64(count()) FROM customer_rows WHERE tenant = 'moves' AND sign < 0"); err != nil || n != 5 {
		t.Errorf("%d cancel rows, %v; want 5, one a move", n, err)
	}
}

// checkViewMissed inserts events while the view that fills ticket_requesters is detached on
// every server, as it misses a block when a replica dies between storing the events and
// the view's rows and the retry's events are dropped as duplicates: the store's own insert
// of the requesters still lists the tickets.
func checkViewMissed(t *testing.T, s *analytics.Store, c *testenv.ClickHouseCluster, db string) {
	ctx := context.Background()
	var servers []*analytics.Store
	for _, row := range c.Shards {
		for _, srv := range row {
			r, err := analytics.Open(ctx, slog.New(slog.DiscardHandler), analytics.Config{Addr: srv.Addr, Database: db, User: "default"})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			servers = append(servers, r)
		}
	}
	view := func(how string) {
		for _, r := range servers {
			if err := r.Exec(ctx, how+" TABLE "+db+".ticket_requesters_mv"); err != nil {
				t.Fatal(err)
			}
		}
	}
	view("DETACH")
	at := time.Date(2026, 2, 2, 9, 0, 0, 0, time.UTC)
	var events []schemas.TicketEvent
	for id := int64(1); id <= 8; id++ {
		e := event("missed", id, fmt.Sprintf("zd:missed-%d", id), schemas.TicketCreated, at)
		e.Ticket.Requester.ID = 8000 + id%2
		events = append(events, e)
	}
	err := s.InsertTicketEvents(ctx, events)
	view("ATTACH")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.RequesterTickets(ctx, "missed", []int64{8000, 8001})
	if err != nil {
		t.Fatal(err)
	}
	if len(got[8000]) != 4 || len(got[8001]) != 4 {
		t.Errorf("requesters' tickets %v; want 4 each", got)
	}
}
