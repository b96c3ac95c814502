package analytics

import "context"

// Count runs a query that answers one count (tests look at the tables' state with it).
func (s *Store) Count(ctx context.Context, q string, args ...any) (n uint64, err error) {
	err = s.conn.QueryRow(ctx, q, args...).Scan(&n)
	return n, err
}
