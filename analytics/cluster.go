package analytics

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

// On a cluster (Config.Cluster, docs/clickhouse-cluster.md) every table of the migrations is
// two: NAME_local, a Replicated*MergeTree on every server, and NAME, a Distributed table over
// the cluster's shards that every query and insert goes through, so the store's SQL stays
// the same. The migrations are not edited for it: Migrate renders each statement for the
// cluster (clusterStatements), and a statement it has no rule for stops the migration.

// shardKeys are the Distributed tables' sharding keys. A ticket's events, its requester
// index and its ticket_rows live on one shard, a customer's customer_rows and Klaviyo
// snapshots on one shard: a cancel row reaches the shard of the row it cancels, and
// ReplacingMergeTree, FINAL and CollapsingMergeTree work per shard. ticket_requesters is
// filled by a materialized view on each shard's ticket_events, so it shards as they do.
var shardKeys = map[string]string{
	"ticket_events":       "cityHash64(tenant, ticket_id)",
	"ticket_requesters":   "cityHash64(tenant, ticket_id)",
	"ticket_facts":        "cityHash64(tenant, ticket_id)",
	"ticket_rows":         "cityHash64(tenant, ticket_id)",
	"customer_rows":       "cityHash64(tenant, requester_id)",
	"klaviyo_memberships": "cityHash64(tenant, requester_id)",
}

var (
	createTable = regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS (\w+)\s*\n`)
	engine      = regexp.MustCompile(`(?m)^ENGINE = (\w*)MergeTree\(([^)]*)\)`)
	createView  = regexp.MustCompile(`^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS\b`)
	viewFrom    = regexp.MustCompile(`(?m)^FROM (\w+)\b`)
	dropTable   = regexp.MustCompile(`^DROP TABLE IF EXISTS (\w+)$`)
	insertInto  = regexp.MustCompile(`^INSERT INTO \w+\b`)
	addColumn   = regexp.MustCompile(`^ALTER TABLE (\w+) (ADD COLUMN \w+\b[^;]*)$`)
)

// clusterDDL renders one migration statement for the cluster c and database db. views are the
// names of the migrations' materialized views, which have no local table.
func clusterDDL(stmt, c, db string, views map[string]bool) ([]string, error) {
	on := " ON CLUSTER " + c
	switch {
	case createTable.MatchString(stmt):
		name := createTable.FindStringSubmatch(stmt)[1]
		_, ok := shardKeys[name]
		m := engine.FindStringSubmatch(stmt)
		if !ok || m == nil {
			return nil, fmt.Errorf("table %s has no sharding key or no MergeTree engine for a cluster", name)
		}
		args := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", db, name)
		if m[2] != "" {
			args += ", " + m[2]
		}
		local := createTable.ReplaceAllString(stmt, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s_local%s\n", db, name, on))
		local = engine.ReplaceAllString(local, fmt.Sprintf("ENGINE = Replicated%sMergeTree(%s)", m[1], args))
		return []string{local, distributed(name, c, db)}, nil
	case createView.MatchString(stmt):
		m := createView.FindStringSubmatch(stmt)
		from := viewFrom.FindAllStringSubmatch(stmt, -1)
		if len(from) != 1 {
			return nil, fmt.Errorf("view %s reads %d tables; a cluster needs exactly one", m[1], len(from))
		}
		v := createView.ReplaceAllString(stmt, fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s.%s%s TO %s.%s_local AS", db, m[1], on, db, m[2]))
		return []string{viewFrom.ReplaceAllString(v, fmt.Sprintf("FROM %s.%s_local", db, from[0][1]))}, nil
	case dropTable.MatchString(stmt):
		name := dropTable.FindStringSubmatch(stmt)[1]
		if views[name] {
			return []string{fmt.Sprintf("DROP TABLE IF EXISTS %s.%s%s", db, name, on)}, nil
		}
		return []string{fmt.Sprintf("DROP TABLE IF EXISTS %s.%s%s", db, name, on), fmt.Sprintf("DROP TABLE IF EXISTS %s.%s_local%s", db, name, on)}, nil
	case insertInto.MatchString(stmt):
		return []string{stmt}, nil // once, through the Distributed tables
	case addColumn.MatchString(stmt):
		m := addColumn.FindStringSubmatch(stmt)
		if _, ok := shardKeys[m[1]]; !ok {
			return nil, fmt.Errorf("ALTER of %s, which is not a table of the migrations", m[1])
		}
		// The local tables, then the Distributed table made again over them, with their
		// columns: 18.16 refuses an ALTER ON CLUSTER of a table that is not replicated on a
		// cluster whose shards are. Writes through it fail for that moment, and are retried.
		return []string{
			fmt.Sprintf("ALTER TABLE %s.%s_local%s %s", db, m[1], on, m[2]),
			fmt.Sprintf("DROP TABLE IF EXISTS %s.%s%s", db, m[1], on),
			distributed(m[1], c, db),
		}, nil
	}
	return nil, fmt.Errorf("no cluster form for the statement %.60q", stmt)
}

// distributed is the Distributed table name over the local tables name_local of the cluster c.
func distributed(name, c, db string) string {
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER %s AS %s.%s_local ENGINE = Distributed(%s, %s, %s_local, %s)",
		db, name, c, db, name, c, db, name, shardKeys[name])
}

// migrationViews are the names of the materialized views the migrations create.
func migrationViews() (map[string]bool, error) {
	files, err := fs.Glob(schemas.Migrations(), "*.sql")
	if err != nil {
		return nil, err
	}
	views := map[string]bool{}
	for _, name := range files {
		sql, err := fs.ReadFile(schemas.Migrations(), name)
		if err != nil {
			return nil, err
		}
		for _, stmt := range statements(string(sql)) {
			if m := createView.FindStringSubmatch(stmt); m != nil {
				views[m[1]] = true
			}
		}
	}
	return views, nil
}

// ClusterMigrations renders every migration for the cluster c and the database db, as
// Migrate runs them: for tests and for operators who want to read them first.
func ClusterMigrations(c, db string) (map[string][]string, error) {
	views, err := migrationViews()
	if err != nil {
		return nil, err
	}
	files, err := fs.Glob(schemas.Migrations(), "*.sql")
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, name := range files {
		sql, err := fs.ReadFile(schemas.Migrations(), name)
		if err != nil {
			return nil, err
		}
		for _, stmt := range statements(string(sql)) {
			r, err := clusterDDL(stmt, c, db, views)
			if err != nil {
				return nil, fmt.Errorf("migration %s: %w", name, err)
			}
			out[name] = append(out[name], r...)
		}
	}
	return out, nil
}

// schemaMigrationsDDL is where Migrate records what it applied. On a cluster every server
// holds the whole table, as a replica of one ZooKeeper path shared by all shards (the replica
// name is {shard}-{replica}, unique in the cluster), so a process migrating through any
// server sees what another applied through another.
func (s *Store) schemaMigrationsDDL() string {
	if s.cluster == "" {
		return `CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime)
ENGINE = ReplacingMergeTree() ORDER BY version`
	}
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.schema_migrations ON CLUSTER %s (version UInt32, name String, applied_at DateTime)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/%s/schema_migrations', '{shard}-{replica}') ORDER BY version`,
		s.db, s.cluster, s.db)
}

// migrationStatements are the statements Migrate runs for one migration file.
func (s *Store) migrationStatements(name, sql string) ([]string, error) {
	stmts := statements(sql)
	if s.cluster == "" {
		return stmts, nil
	}
	views, err := migrationViews()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, stmt := range stmts {
		r, err := clusterDDL(stmt, s.cluster, s.db, views)
		if err != nil {
			return nil, zenklav.Wrap(zenklav.EINTERNAL, err, "render migration %s for cluster %s", name, s.cluster)
		}
		out = append(out, r...)
	}
	return out, nil
}

// sortWrites orders a fold's writes by key and sign, cancel rows first: a batch folded again
// after an insert that failed midway sends the same block as before, which the replicated
// tables then drop as a duplicate (insert_deduplicate) instead of counting it twice. The
// rows carry their batch (fold_batch), so another batch's block is never the same.
func sortWrites[R any](rows []signed[R], key func(*R) (string, int64)) {
	slices.SortStableFunc(rows, func(a, b signed[R]) int {
		at, ai := key(&a.row)
		bt, bi := key(&b.row)
		return cmp.Or(strings.Compare(at, bt), cmp.Compare(ai, bi), cmp.Compare(a.sign, b.sign))
	})
}

// clusterSettings are the session's settings on a cluster (none on one server):
//   - insert_distributed_sync: an insert into a Distributed table returns once every shard
//     has its rows, so an acknowledged write is stored, not queued on the server that took it;
//   - insert_quorum, the replicas of a shard: the fold reads back what it wrote (the rows a
//     cancel row cancels) from whichever replica a query reaches, so a write is acknowledged
//     only once every replica of its shard has it. While a replica is down its shard takes no
//     writes, and the sink retries them until it is back (the data waits in Kafka);
//     insert_quorum_timeout bounds the wait of a write caught by the failure.
//
// 18.16 takes only numbers as settings of a session; distributed_product_mode is a string, so
// it goes with the queries that need it (perShard).
func clusterSettings(c string, replicas uint64) clickhouse.Settings {
	if c == "" {
		return nil
	}
	set := clickhouse.Settings{"insert_distributed_sync": 1}
	if replicas > 1 {
		set["insert_quorum"] = int(replicas)
		set["insert_quorum_timeout"] = 60000
	}
	return set
}

// replicasPerShard is the fewest replicas a shard of the cluster c has, as the server knows
// the cluster (remote_servers).
func replicasPerShard(ctx context.Context, conn driver.Conn, c string) (uint64, error) {
	var n uint64
	err := conn.QueryRow(ctx, `SELECT toUInt64(min(n)) FROM (SELECT shard_num, count() AS n FROM system.clusters WHERE cluster = ? GROUP BY shard_num)`, c).Scan(&n)
	if err != nil {
		return 0, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "read cluster %s", c)
	}
	if n == 0 {
		return 0, zenklav.Errorf(zenklav.EINVALID, "ClickHouse knows no cluster %q: it must be in the servers' remote_servers", c)
	}
	return n, nil
}

// perShard makes a query whose subquery reads a Distributed table (ticket_requesters) read
// each shard's local table instead (distributed_product_mode local, which a cluster refuses
// by default): RequesterTickets' and SupportHistory's index of a requester's tickets lives
// on the shard of those tickets' events, as its view fills it there. On one server the
// query stays as it is.
func (s *Store) perShard(q string) string {
	if s.cluster == "" {
		return q
	}
	return q + "\nSETTINGS distributed_product_mode = 'local'"
}
