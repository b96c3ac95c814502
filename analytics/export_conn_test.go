package analytics

import "github.com/ClickHouse/clickhouse-go/v2/lib/driver"

// WrapConn puts wrap's decorator between the store and its connection:
// TestCurrentClickHouse records through it every statement the store sends.
func (s *Store) WrapConn(wrap func(driver.Conn) driver.Conn) { s.conn = wrap(s.conn) }
