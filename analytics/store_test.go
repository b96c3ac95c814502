package analytics_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/analytics/analyticstest"
	"github.com/zenklav/zenklav/schemas"
)

// openStore opens a store on a database of the test's own on the real ClickHouse.
func openStore(t *testing.T) *analytics.Store {
	s, _ := analyticstest.Open(t)
	return s
}

func event(tenant string, ticket int64, id string, typ string, at time.Time) schemas.TicketEvent {
	return schemas.TicketEvent{
		EventID: id, Connection: tenant, Account: schemas.Account{Subdomain: tenant, ID: 7},
		BrandID: 360001, Type: typ, ZendeskType: "zen:event-type:ticket." + typ, Source: schemas.SourceEvent,
		OccurredAt: at, ReceivedAt: at.Add(time.Second),
		Ticket: schemas.Ticket{
			ID: ticket, Subject: "Where is my order?", Status: zenklav.StatusOpen, Priority: "high",
			Tags: []string{"order", "vip"}, Channel: "email", Via: "email",
			Requester:    schemas.Requester{ID: 5, Email: "ana@example.com"},
			CustomFields: []schemas.CustomField{{ID: 1, Value: "x"}, {ID: 2, Value: 3.5}, {ID: 3, Value: nil}},
		},
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	s := openStore(t)
	applied, err := s.Migrate(context.Background())
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, %v; want nothing", applied, err)
	}
}

// TestMigrateAddsAColumnOnce applies migration 0006 again to tables that have its columns,
// as a second process migrating at the same time does: ClickHouse 18.16 has no ADD COLUMN IF
// NOT EXISTS, so Migrate skips an added column that is there.
func TestMigrateAddsAColumnOnce(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	for _, q := range []string{ // schema_migrations without 0006's record
		"CREATE TABLE before_0006 AS schema_migrations",
		"INSERT INTO before_0006 SELECT * FROM schema_migrations WHERE version < 6",
		"DROP TABLE schema_migrations",
		"RENAME TABLE before_0006 TO schema_migrations",
	} {
		if err := s.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	applied, err := s.Migrate(ctx)
	if err != nil || len(applied) != 1 || applied[0] != "0006_fold_batch.sql" {
		t.Fatalf("Migrate over migrated tables applied %v, %v; want 0006 alone", applied, err)
	}
	if n, err := s.Count(ctx, "SELECT count() FROM system.columns WHERE database = currentDatabase() AND name = 'fold_batch'"); err != nil || n != 2 {
		t.Errorf("%d tables with fold_batch, %v; want 2", n, err)
	}
}

// TestDuplicatesCountOnce is the exactness mechanism on the real server: the same events
// inserted twice (a redelivery, or a batch re-inserted after a crash) count once.
func TestDuplicatesCountOnce(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	at := time.Date(2025, 1, 8, 10, 0, 0, 0, time.UTC)
	var batch []schemas.TicketEvent
	for i := range 100 {
		typ := schemas.TicketCreated
		if i%4 == 0 {
			typ = schemas.TicketStatusChanged
		}
		batch = append(batch, event("acme", int64(1000+i%30), fmt.Sprintf("zd:e-%d", i), typ, at.Add(time.Duration(i)*time.Hour*24)))
	}
	batch = append(batch, event("globex", 1, "zd:g-1", schemas.TicketCreated, at))
	for range 3 {
		if err := s.InsertTicketEvents(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.CountTicketEventRows(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if rows < 100 {
		t.Fatalf("%d rows stored for 100 events", rows)
	}
	for _, tc := range []struct {
		name string
		f    analytics.EventFilter
		want uint64
	}{
		{"all of a tenant", analytics.EventFilter{Connection: "acme"}, 100},
		{"one type", analytics.EventFilter{Connection: "acme", Type: schemas.TicketStatusChanged}, 25},
		{"a time range", analytics.EventFilter{Connection: "acme", From: at, To: at.Add(10 * 24 * time.Hour)}, 10},
		{"another tenant", analytics.EventFilter{Connection: "globex"}, 1},
		{"unknown tenant", analytics.EventFilter{Connection: "initech"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.CountTicketEvents(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("count = %d, want %d (rows stored: %d)", got, tc.want, rows)
			}
		})
	}
}

func TestOpenRejectsBadDatabaseName(t *testing.T) {
	_, err := analytics.Open(context.Background(), slog.New(slog.DiscardHandler), analytics.Config{Addr: "127.0.0.1:1", Database: "x; DROP TABLE y"})
	if err == nil {
		t.Fatal("accepted a database name with SQL in it")
	}
}

// TestConformance runs the ticket store's conformance suite on ClickHouse: the in-memory
// store the other packages' tests use passes the same one.
func TestConformance(t *testing.T) {
	analyticstest.Conformance(t, func(t *testing.T) zenklav.TicketStore { return openStore(t) })
}
