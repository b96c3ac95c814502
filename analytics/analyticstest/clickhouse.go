// Package analyticstest helps test what reads and writes the ticket store: a store of the
// test's own on the real ClickHouse that `make test` starts, an in-memory store for tests
// that need none, and the conformance suite both pass.
package analyticstest

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/internal/testenv"
)

// Open opens a store on a migrated database of the test's own on the test ClickHouse,
// dropped when the test ends, and returns it with the database's name. It skips the test
// (fails it in CI) when there is no test ClickHouse.
func Open(t testing.TB) (*analytics.Store, string) {
	t.Helper()
	db := fmt.Sprintf("test_%d_%d", time.Now().UnixNano(), rand.N(1000))
	ctx := context.Background()
	s, err := analytics.Open(ctx, slog.New(slog.DiscardHandler), analytics.Config{Addr: testenv.ClickHouse(t), Database: db, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		s.Close()
	})
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s, db
}
