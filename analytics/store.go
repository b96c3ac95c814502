// Package analytics is zenklav's ClickHouse store: migrations, ticket event inserts, and the
// queries reports are built on.
package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

// Config says where ClickHouse is.
type Config struct {
	Addr     string // host:port of the native protocol
	Database string
	User     string
	Password string
	// Cluster, when set, is the name of a cluster in the servers' remote_servers: migrations
	// run ON CLUSTER, tables are replicated and sharded behind Distributed tables
	// (docs/clickhouse-cluster.md). Empty: one server, as ever.
	Cluster string
}

// Store reads and writes zenklav's tables in one ClickHouse database.
type Store struct {
	conn   driver.Conn
	db     string
	logger *slog.Logger
	// cluster is Config.Cluster: empty for one server.
	cluster string
	// summarizing keeps SummarizeTicketEvents to one batch at a time in a process, and
	// guards rows, what it remembers of the rows it read and wrote.
	summarizing sync.Mutex
	rows        *rowCache
	connections map[string]uint32 // the tenants' numbers in ticketKey, and their names
	tenantNames []string
}

// Open connects to ClickHouse and creates the database when it is missing. It does not
// migrate: call Migrate.
func Open(ctx context.Context, logger *slog.Logger, cfg Config) (*Store, error) {
	if cfg.Addr == "" {
		return nil, zenklav.Errorf(zenklav.EINVALID, "no ClickHouse address: set ZENKLAV_CLICKHOUSE_ADDR=host:9000")
	}
	if !validName(cfg.Database) {
		return nil, zenklav.Errorf(zenklav.EINVALID, "ClickHouse database name %q must be letters, digits and _", cfg.Database)
	}
	if cfg.Cluster != "" && !validName(cfg.Cluster) {
		return nil, zenklav.Errorf(zenklav.EINVALID, "ClickHouse cluster name %q must be letters, digits and _", cfg.Cluster)
	}
	var settings clickhouse.Settings
	opts := func(db string) *clickhouse.Options {
		return &clickhouse.Options{
			Settings:    settings,
			Addr:        []string{cfg.Addr},
			Auth:        clickhouse.Auth{Database: db, Username: cfg.User, Password: cfg.Password},
			DialTimeout: 5 * time.Second,
			ReadTimeout: 60 * time.Second,
			// Two connections per core is plenty: inserts are few and large.
			MaxOpenConns: 8,
			MaxIdleConns: 4,
		}
	}
	boot, err := clickhouse.Open(opts("default"))
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "connect to ClickHouse at %s", cfg.Addr)
	}
	defer boot.Close()
	create := "CREATE DATABASE IF NOT EXISTS " + cfg.Database
	if cfg.Cluster != "" {
		create += " ON CLUSTER " + cfg.Cluster
		replicas, err := replicasPerShard(ctx, boot, cfg.Cluster)
		if err != nil {
			return nil, err
		}
		settings = clusterSettings(cfg.Cluster, replicas)
	}
	if err := boot.Exec(ctx, create); err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "create database %s on %s", cfg.Database, cfg.Addr)
	}
	conn, err := clickhouse.Open(opts(cfg.Database))
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "connect to ClickHouse at %s", cfg.Addr)
	}
	return &Store{conn: conn, db: cfg.Database, cluster: cfg.Cluster, logger: logger, rows: newRowCache(), connections: map[string]uint32{}}, nil
}

// Close closes the connections.
func (s *Store) Close() error { return s.conn.Close() }

// Ping checks that ClickHouse answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "ping ClickHouse")
	}
	return nil
}

// Migrate applies the numbered migrations of schemas that are not applied yet, in order, and
// records each in schema_migrations. Migrations are never edited once applied; every one is
// written to be harmless if two processes run it at once (IF NOT EXISTS).
func (s *Store) Migrate(ctx context.Context) (applied []string, err error) {
	if err := s.conn.Exec(ctx, s.schemaMigrationsDDL()); err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "create schema_migrations")
	}
	done := map[uint32]bool{}
	rows, err := s.conn.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "read schema_migrations")
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, fmt.Errorf("scan schema_migrations: %w", err)
		}
		done[v] = true
	}
	rows.Close()

	files, err := fs.Glob(schemas.Migrations(), "*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	for _, name := range files {
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if !ok || err != nil {
			return applied, fmt.Errorf("migration %s is not named NNNN_name.sql", name)
		}
		if done[uint32(v)] {
			continue
		}
		sql, err := fs.ReadFile(schemas.Migrations(), name)
		if err != nil {
			return applied, err
		}
		stmts, err := s.migrationStatements(name, string(sql))
		if err != nil {
			return applied, err
		}
		for _, stmt := range stmts {
			if added, err := s.columnAdded(ctx, stmt); err != nil || added {
				if err != nil {
					return applied, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "apply migration %s", name)
				}
				continue
			}
			if err := s.conn.Exec(ctx, stmt); err != nil {
				return applied, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "apply migration %s", name)
			}
		}
		if err := s.recordMigration(ctx, uint32(v), name); err != nil {
			return applied, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "record migration %s", name)
		}
		s.logger.Info("applied migration", "name", name, "database", s.db)
		applied = append(applied, name)
	}
	return applied, nil
}

var alterAddColumn = regexp.MustCompile(`^ALTER TABLE (?:\w+\.)?(\w+)(?: ON CLUSTER \w+)? ADD COLUMN (\w+)\b`)

// columnAdded tells whether stmt adds a column the table has already: ClickHouse 18.16 has no
// ADD COLUMN IF NOT EXISTS, and a migration must be harmless when two processes run it at
// once, or when one runs it again after failing midway.
func (s *Store) columnAdded(ctx context.Context, stmt string) (bool, error) {
	m := alterAddColumn.FindStringSubmatch(stmt)
	if m == nil {
		return false, nil
	}
	var n uint64
	err := s.conn.QueryRow(ctx, `SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?`, s.db, m[1], m[2]).Scan(&n)
	return n > 0, err
}

// recordMigration inserts through a batch: ClickHouse 18.16 waits for a data block after an
// INSERT even when the query carries its VALUES, so every insert goes through PrepareBatch.
func (s *Store) recordMigration(ctx context.Context, version uint32, name string) error {
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, applied_at)")
	if err != nil {
		return err
	}
	if err := batch.Append(version, name, time.Now().UTC()); err != nil {
		return err
	}
	return batch.Send()
}

// statements splits a migration into statements on semicolons at line ends, dropping
// comment lines (ClickHouse runs one statement per request).
func statements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if t := strings.TrimSpace(cur.String()); t != "" {
		out = append(out, t)
	}
	return out
}

const insertTicketEvents = `ticket_events (event_id, tenant, account_subdomain, account_id, brand_id,
event_type, zendesk_type, source, occurred_at, received_at, ticket_id, subject, status, previous_status,
priority, ticket_type, tags, channel, via, requester_id, requester_email, requester_phone, assignee_id,
group_id, custom_field_ids, custom_field_values)`

// InsertTicketEvents inserts events in one batch. Inserting the same events again is harmless:
// rows with the same event id collapse (see migrations/0001_ticket_events.sql).
func (s *Store) InsertTicketEvents(ctx context.Context, events []schemas.TicketEvent) error {
	if len(events) == 0 {
		return nil
	}
	// Whole columns at once: appending row by row costs a reflection call per value, which
	// was the sink's largest cost after JSON decoding.
	if err := s.insertColumns(ctx, insertTicketEvents, len(events), ticketEventColumns(events)...); err != nil {
		return err
	}
	if s.cluster != "" {
		return s.insertRequesters(ctx, events)
	}
	return nil
}

// insertRequesters writes the events' ticket_requesters rows, which the view writes too. On a
// cluster the view can miss them: a replica that dies after storing the events' block and
// before the view's, and the retry of that insert, whose events the replicated table drops as
// a duplicate (ClickHouse feeds no view from a dropped block). Writing them again is harmless:
// the same block is dropped as a duplicate of the view's, and rows of the same key merge
// (ReplacingMergeTree), where the queries read tickets by IN anyway. One server stores every
// block it is given, and so feeds the view from every retry.
func (s *Store) insertRequesters(ctx context.Context, events []schemas.TicketEvent) error {
	var connection []string
	var requester, ticket []int64
	for i := range events {
		if id := events[i].Ticket.Requester.ID; id != 0 {
			connection, requester, ticket = append(connection, events[i].Connection), append(requester, id), append(ticket, events[i].Ticket.ID)
		}
	}
	return s.insertColumns(ctx, "ticket_requesters (tenant, requester_id, ticket_id)", len(ticket), connection, requester, ticket)
}

// ticketEventColumns lays events out as the columns of insertTicketEvents, in its order.
func ticketEventColumns(events []schemas.TicketEvent) []any {
	n := len(events)
	var (
		eventID, connection, subdomain, typ, zendeskType, source = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		subject, status, previous, priority, ticketType          = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		channel, via, email, phone                               = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		accountID, brandID, ticketID, requesterID                = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		assigneeID, groupID                                      = make([]int64, n), make([]int64, n)
		occurred, received                                       = make([]time.Time, n), make([]time.Time, n)
		tags, fieldValues                                        = make([][]string, n), make([][]string, n)
		fieldIDs                                                 = make([][]int64, n)
	)
	for i := range events {
		e := &events[i]
		t := &e.Ticket
		eventID[i], connection[i], subdomain[i], typ[i], zendeskType[i], source[i] = e.EventID, e.Connection, e.Account.Subdomain, e.Type, e.ZendeskType, e.Source
		subject[i], status[i], previous[i], priority[i], ticketType[i] = t.Subject, t.Status, t.PreviousStatus, t.Priority, t.Type
		channel[i], via[i], email[i], phone[i] = t.Channel, t.Via, t.Requester.Email, t.Requester.Phone
		accountID[i], brandID[i], ticketID[i], requesterID[i] = e.Account.ID, e.BrandID, t.ID, t.Requester.ID
		assigneeID[i], groupID[i] = t.AssigneeID, t.GroupID
		occurred[i], received[i] = e.OccurredAt, e.ReceivedAt
		tags[i] = t.Tags
		if tags[i] == nil {
			tags[i] = []string{}
		}
		fieldIDs[i], fieldValues[i] = make([]int64, len(t.CustomFields)), make([]string, len(t.CustomFields))
		for j, f := range t.CustomFields {
			fieldIDs[i][j], fieldValues[i][j] = f.ID, fieldValue(f.Value)
		}
	}
	return []any{eventID, connection, subdomain, accountID, brandID, typ, zendeskType, source, occurred, received,
		ticketID, subject, status, previous, priority, ticketType, tags, channel, via, requesterID, email, phone,
		assigneeID, groupID, fieldIDs, fieldValues}
}

// fieldValue renders a custom field value as text: strings as they are, anything else as JSON.
func fieldValue(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// EventFilter selects ticket events for counting.
type EventFilter struct {
	Connection string
	Type       string    // empty = all types
	From       time.Time // occurred_at >= From, when set
	To         time.Time // occurred_at < To, when set
}

// CountTicketEvents counts distinct ticket events, as every report does: FINAL collapses
// duplicates that background merges have not removed yet, so the count is exact at any moment.
func (s *Store) CountTicketEvents(ctx context.Context, f EventFilter) (uint64, error) {
	q := "SELECT count() FROM ticket_events FINAL WHERE tenant = ?"
	args := []any{f.Connection}
	if f.Type != "" {
		q += " AND event_type = ?"
		args = append(args, f.Type)
	}
	if !f.From.IsZero() {
		q += " AND occurred_at >= ?"
		args = append(args, f.From.UTC())
	}
	if !f.To.IsZero() {
		q += " AND occurred_at < ?"
		args = append(args, f.To.UTC())
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "count ticket events")
	}
	return n, nil
}

// CountTicketEventRows counts stored rows, duplicates included: for tests and operators who
// want to see how much deduplication is still pending.
func (s *Store) CountTicketEventRows(ctx context.Context, connection string) (uint64, error) {
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM ticket_events WHERE tenant = ?", connection).Scan(&n); err != nil {
		return 0, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "count ticket event rows")
	}
	return n, nil
}

// namePattern keeps a database name that is spliced into DDL from carrying anything else.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

func validName(s string) bool { return namePattern.MatchString(s) }

// Exec runs a statement on the store's database: for tools and tests.
func (s *Store) Exec(ctx context.Context, query string, args ...any) error {
	return s.conn.Exec(ctx, query, args...)
}

var _ zenklav.TicketStore = (*Store)(nil)

// RequesterTickets returns, for each of the requesters, the latest status of each ticket
// whose latest requester they are. Events that say nothing of the status do not count as
// its latest; events of one second are not ordered among themselves (ClickHouse keeps
// seconds), which only matters for a ticket opened and closed within one.
func (s *Store) RequesterTickets(ctx context.Context, connection string, requesters []int64) (map[int64]map[int64]zenklav.TicketState, error) {
	out := map[int64]map[int64]zenklav.TicketState{}
	if len(requesters) == 0 {
		return out, nil
	}
	ids := make([]any, len(requesters))
	for i, r := range requesters {
		ids[i] = r
	}
	rows, err := s.conn.Query(ctx, s.perShard(`SELECT ticket_id, argMax(requester_id, occurred_at), argMaxIf(status, occurred_at, status != ''), max(occurred_at)
FROM ticket_events
WHERE tenant = ? AND ticket_id IN (SELECT ticket_id FROM ticket_requesters WHERE tenant = ? AND requester_id IN ?)
GROUP BY ticket_id`), connection, connection, clickhouse.GroupSet{Value: ids})
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "read requesters' tickets")
	}
	defer rows.Close()
	asked := make(map[int64]bool, len(requesters))
	for _, r := range requesters {
		asked[r] = true
	}
	for rows.Next() {
		var ticket, requester int64
		var st zenklav.TicketState
		if err := rows.Scan(&ticket, &requester, &st.Status, &st.OccurredAt); err != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "read requesters' tickets")
		}
		if !asked[requester] {
			continue // moved to someone else since
		}
		if out[requester] == nil {
			out[requester] = map[int64]zenklav.TicketState{}
		}
		out[requester][ticket] = st
	}
	if err := rows.Err(); err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "read requesters' tickets")
	}
	return out, nil
}

// supportHistory sums up one requester's tickets. The inner query is RequesterTickets' for one
// requester: ticket_requesters lists the tickets by its primary key, ticket_events reads theirs
// by its own, and it yields one row per ticket, so a redelivered event (stored twice until
// merges collapse it) changes no count. The aliases differ from the column names on purpose:
// in ClickHouse an alias replaces the column of the same name throughout the query.
// A ticket's creation is its created event, or its earliest event when the created one never
// arrived; it became closed at its first closed event, as two webhooks may both report it.
// The ticket and subject of the last resolved one share one ordering key, (closed_at,
// ticket_id), so they come from the same ticket even when two closed in the same second.
var supportHistory = `SELECT
    countIf(latest_status != ` + sqlString(zenklav.StatusDeleted) + `),
    countIf(latest_status NOT IN (` + sqlStrings(zenklav.FinalStatuses) + `)),
    countIf(latest_status != ` + sqlString(zenklav.StatusDeleted) + ` AND created_at >= ?),
    maxIf(closed_at, was_closed),
    argMaxIf(ticket_id, (closed_at, ticket_id), was_closed),
    argMaxIf(last_subject, (closed_at, ticket_id), was_closed)
FROM
(
    SELECT
        ticket_id,
        argMax(requester_id, occurred_at) AS latest_requester,
        argMaxIf(status, occurred_at, status != '') AS latest_status,
        if(countIf(event_type = 'created') > 0, minIf(occurred_at, event_type = 'created'), min(occurred_at)) AS created_at,
        countIf(status = ` + sqlString(zenklav.StatusClosed) + `) > 0 AS was_closed,
        minIf(occurred_at, status = ` + sqlString(zenklav.StatusClosed) + `) AS closed_at,
        argMaxIf(subject, occurred_at, subject != '') AS last_subject
    FROM ticket_events
    WHERE tenant = ? AND ticket_id IN (SELECT ticket_id FROM ticket_requesters WHERE tenant = ? AND requester_id = ?)
    GROUP BY ticket_id
)
WHERE latest_requester = ?`

// SupportHistory returns the requester's open tickets, the tickets they opened since the
// given time (now minus 90 days on the card), and the ticket of theirs closed last. Deleted
// tickets count nowhere: Zendesk no longer shows them, and they are mostly spam. Like
// RequesterTickets, it does not order events of one second among themselves.
func (s *Store) SupportHistory(ctx context.Context, connection string, requesterID int64, since time.Time) (zenklav.SupportHistory, error) {
	if since.Before(time.Unix(0, 0)) {
		since = time.Unix(0, 0) // DateTime starts at the epoch
	}
	var (
		h                   zenklav.SupportHistory
		total, open, recent uint64
		r                   = &h.LastResolved
	)
	err := s.conn.QueryRow(ctx, s.perShard(supportHistory), since.UTC().Truncate(time.Second), connection, connection, requesterID, requesterID).
		Scan(&total, &open, &recent, &r.At, &r.TicketID, &r.Subject)
	if err != nil {
		return zenklav.SupportHistory{}, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "read support history of requester %d", requesterID)
	}
	h.Total, h.Open, h.Recent = int(total), int(open), int(recent)
	if r.TicketID == 0 {
		h.LastResolved = zenklav.ResolvedTicket{} // maxIf of nothing is the epoch, not the zero time
	}
	return h, nil
}

// sqlString quotes a constant of zenklav's for a query; the constants hold no quotes.
func sqlString(s string) string { return "'" + s + "'" }

// sqlStrings is ss as a list of quoted strings, for IN (…).
func sqlStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = sqlString(s)
	}
	return strings.Join(q, ", ")
}
