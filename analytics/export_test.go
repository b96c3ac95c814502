package analytics

import (
	"context"
	"io/fs"
	"strings"

	"github.com/zenklav/zenklav/schemas"
)

// Count runs a query that answers one count (tests look at the tables' state with it).
func (s *Store) Count(ctx context.Context, q string, args ...any) (n uint64, err error) {
	err = s.conn.QueryRow(ctx, q, args...).Scan(&n)
	return n, err
}

// SeedStatements are the statements of migration 0005 that fill ticket_rows and
// customer_rows from what ticket_events holds.
func SeedStatements() ([]string, error) {
	sql, err := fs.ReadFile(schemas.Migrations(), "0005_ticket_rows.sql")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, stmt := range statements(string(sql)) {
		if strings.HasPrefix(stmt, "INSERT INTO") {
			out = append(out, stmt)
		}
	}
	return out, nil
}
