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

// seedColumns are the columns the tables had when migration 0005 filled them; later
// migrations added columns (0006, fold_batch), which the seeded rows have at their defaults.
var seedColumns = map[string]string{
	"INSERT INTO ticket_rows\n":   "INSERT INTO ticket_rows (" + ticketRowColumns + ", sign)\n",
	"INSERT INTO customer_rows\n": "INSERT INTO customer_rows (tenant, requester_id, ticket_ids, created, brands, channels, tag_sets, sign)\n",
}

// SeedStatements are the statements of migration 0005 that fill ticket_rows and
// customer_rows from what ticket_events holds, to run on tables migrated to the end.
func SeedStatements() ([]string, error) {
	sql, err := fs.ReadFile(schemas.Migrations(), "0005_ticket_rows.sql")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, stmt := range statements(string(sql)) {
		if strings.HasPrefix(stmt, "INSERT INTO") {
			for from, to := range seedColumns {
				stmt = strings.Replace(stmt, from, to, 1)
			}
			out = append(out, stmt)
		}
	}
	return out, nil
}
