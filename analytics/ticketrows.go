package analytics

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

// ticketRow is a ticket's row in ticket_rows (migration 0005 says what each column means):
// the state its events fold into, then what the reports read, derived from that state.
type ticketRow struct {
	Tenant       string
	TicketID     int64
	OpenedKey    uint64
	ClosedMin    uint32
	SolvedMin    uint32
	OpenMax      uint32
	ReopenedFlag uint8
	LatestKey    uint64
	DimsAt       uint32
	BrandID      int64
	Channel      string
	Priority     string
	Tags         []string
	GroupID      int64
	AssigneeID   int64
	RequesterAt  uint32
	RequesterID  int64
	// Derived when the row is written.
	CreatedS     uint32
	ClosedS      uint32
	IsClosed     uint8
	CloseBucket  uint8
	CloseMinutes uint32
	Reopened     uint8
	Deleted      uint8
	Segments     []string
	Lists        []string
}

const ticketRowColumns = `tenant, ticket_id, opened_key, closed_min, solved_min, open_max, reopened_flag, latest_key,
    dims_at, brand_id, channel, priority, tags, group_id, assignee_id, requester_at, requester_id, created_s,
    closed_s, is_closed, close_bucket, close_minutes, reopened, deleted, segments, lists`

func (r *ticketRow) fields() []any {
	return []any{&r.Tenant, &r.TicketID, &r.OpenedKey, &r.ClosedMin, &r.SolvedMin, &r.OpenMax, &r.ReopenedFlag, &r.LatestKey,
		&r.DimsAt, &r.BrandID, &r.Channel, &r.Priority, &r.Tags, &r.GroupID, &r.AssigneeID, &r.RequesterAt, &r.RequesterID, &r.CreatedS,
		&r.ClosedS, &r.IsClosed, &r.CloseBucket, &r.CloseMinutes, &r.Reopened, &r.Deleted, &r.Segments, &r.Lists}
}

const never = math.MaxUint32

// newTicketRow is the state of a ticket no event has been folded into.
func newTicketRow(connection string, id int64) ticketRow {
	return ticketRow{Tenant: connection, TicketID: id, OpenedKey: math.MaxUint64, ClosedMin: never, SolvedMin: never,
		Tags: []string{}, Segments: []string{}, Lists: []string{}}
}

// fold folds one event into the state. Folding an event twice, or events in another order,
// gives the same state: every field is a min, a max, or the value of the latest event with
// ties within one second broken by the values themselves.
func (r *ticketRow) fold(e *schemas.TicketEvent) {
	at := uint32(max(e.OccurredAt.Unix(), 0))
	opened := uint64(at)
	if e.Type != schemas.TicketCreated {
		opened |= 1 << 32
	}
	r.OpenedKey = min(r.OpenedKey, opened)
	t := &e.Ticket
	switch {
	case t.Status == zenklav.StatusClosed:
		r.ClosedMin = min(r.ClosedMin, at)
	case t.Status == zenklav.StatusSolved:
		r.SolvedMin = min(r.SolvedMin, at)
	case zenklav.IsUnsolved(t.Status):
		r.OpenMax = max(r.OpenMax, at)
		if t.PreviousStatus == zenklav.StatusSolved {
			r.ReopenedFlag = 1
		}
	}
	if t.Status != "" {
		latest := uint64(at) << 1
		if t.Status == zenklav.StatusDeleted {
			latest |= 1
		}
		r.LatestKey = max(r.LatestKey, latest)
	}
	tags := t.Tags
	if tags == nil {
		tags = []string{}
	}
	r.takeDims(ticketRow{DimsAt: at, BrandID: e.BrandID, Channel: t.Channel, Priority: t.Priority, Tags: tags, GroupID: t.GroupID, AssigneeID: t.AssigneeID})
	r.takeRequester(at, t.Requester.ID)
}

// takeDims takes o's brand, channel, priority, tags, group and assignee when o is later.
// The strings are copied: a decoded event's strings may share its whole buffer, which the
// row, remembered after the batch, would keep alive.
func (r *ticketRow) takeDims(o ticketRow) {
	if o.DimsAt < r.DimsAt || o.DimsAt == r.DimsAt && compareDims(&o, r) <= 0 {
		return
	}
	tags := make([]string, len(o.Tags))
	for i, t := range o.Tags {
		tags[i] = strings.Clone(t)
	}
	r.DimsAt, r.BrandID, r.Channel, r.Priority, r.Tags, r.GroupID, r.AssigneeID = o.DimsAt, o.BrandID, strings.Clone(o.Channel), strings.Clone(o.Priority), tags, o.GroupID, o.AssigneeID
}

func compareDims(a, b *ticketRow) int {
	return cmp.Or(cmp.Compare(a.BrandID, b.BrandID), cmp.Compare(a.Channel, b.Channel), cmp.Compare(a.Priority, b.Priority),
		slices.Compare(a.Tags, b.Tags), cmp.Compare(a.GroupID, b.GroupID), cmp.Compare(a.AssigneeID, b.AssigneeID))
}

func (r *ticketRow) takeRequester(at uint32, id int64) {
	if id != 0 && (at > r.RequesterAt || at == r.RequesterAt && id > r.RequesterID) {
		r.RequesterAt, r.RequesterID = at, id
	}
}

// merge joins another row's state into r, as if r had folded o's events too. Two live rows
// of one ticket exist only when two writers raced on it (see SummarizeTicketEvents).
func (r *ticketRow) merge(o ticketRow) {
	r.OpenedKey = min(r.OpenedKey, o.OpenedKey)
	r.ClosedMin, r.SolvedMin = min(r.ClosedMin, o.ClosedMin), min(r.SolvedMin, o.SolvedMin)
	r.OpenMax, r.ReopenedFlag, r.LatestKey = max(r.OpenMax, o.OpenMax), max(r.ReopenedFlag, o.ReopenedFlag), max(r.LatestKey, o.LatestKey)
	r.takeDims(o)
	r.takeRequester(o.RequesterAt, o.RequesterID)
}

// derive fills in what the reports read from the state (not segments and lists).
func (r *ticketRow) derive() {
	r.CreatedS = uint32(r.OpenedKey) // the low half: the time
	r.IsClosed, r.ClosedS, r.CloseBucket, r.CloseMinutes = 0, 0, 0, 0
	if r.ClosedMin != never {
		// A close stamped before the creation counts at the creation.
		r.IsClosed, r.ClosedS = 1, max(r.ClosedMin, r.CreatedS)
		d := r.ClosedS - r.CreatedS
		r.CloseMinutes = d / 60
		r.CloseBucket = 31
		for _, days := range []uint32{30, 14, 7, 3, 1} {
			if d <= days*86400 {
				r.CloseBucket = uint8(days)
			}
		}
	}
	r.Reopened = 0
	if r.ReopenedFlag == 1 || r.SolvedMin != never && r.OpenMax > r.SolvedMin {
		r.Reopened = 1
	}
	r.Deleted = uint8(r.LatestKey & 1)
}

func (r *ticketRow) equal(o *ticketRow) bool {
	return r.Tenant == o.Tenant && r.TicketID == o.TicketID && r.OpenedKey == o.OpenedKey && r.ClosedMin == o.ClosedMin &&
		r.SolvedMin == o.SolvedMin && r.OpenMax == o.OpenMax && r.ReopenedFlag == o.ReopenedFlag && r.LatestKey == o.LatestKey &&
		r.DimsAt == o.DimsAt && compareDims(r, o) == 0 && r.RequesterAt == o.RequesterAt && r.RequesterID == o.RequesterID &&
		r.CreatedS == o.CreatedS && r.ClosedS == o.ClosedS && r.IsClosed == o.IsClosed && r.CloseBucket == o.CloseBucket &&
		r.CloseMinutes == o.CloseMinutes && r.Reopened == o.Reopened && r.Deleted == o.Deleted &&
		slices.Equal(r.Segments, o.Segments) && slices.Equal(r.Lists, o.Lists)
}

// sameForCustomer says whether customer_rows lists the ticket the same way after a change.
func sameForCustomer(a, b *ticketRow) bool {
	return a.RequesterID == b.RequesterID && a.Deleted == b.Deleted && a.CreatedS == b.CreatedS && a.BrandID == b.BrandID &&
		a.Channel == b.Channel && slices.Equal(a.Tags, b.Tags)
}

// customerTicket is what customer_rows keeps of one of a customer's tickets.
type customerTicket struct {
	id      int64
	created uint32
	brand   int64
	channel string
	tags    []string
}

func (a customerTicket) equal(b customerTicket) bool {
	return a.id == b.id && a.created == b.created && a.brand == b.brand && a.channel == b.channel && slices.Equal(a.tags, b.tags)
}

// customerRow is a customer's row in customer_rows: their tickets that are not deleted,
// sorted by creation, then id.
type customerRow struct {
	connection string
	requester  int64
	tickets    []customerTicket
}

func (c *customerRow) equal(o *customerRow) bool {
	return c.connection == o.connection && c.requester == o.requester && slices.EqualFunc(c.tickets, o.tickets, customerTicket.equal)
}

// stored is a row as ClickHouse holds it, with its net sign: 1 for a live row, 0 once
// cancelled; anything else is left by writers that raced, and is repaired.
type stored[R any] struct {
	row R
	n   int64
}

// ticketKey names a ticket, or a customer, of a tenant: the tenant by its number in the
// Store's list (hashing a number, not a name, is a good part of a batch's map work).
type ticketKey struct {
	connection uint32
	id         int64
}

// key is the ticketKey of the tenant's ticket or customer id.
func (s *Store) key(connection string, id int64) ticketKey {
	n, ok := s.connections[connection]
	if !ok {
		n = uint32(len(s.tenantNames))
		s.connections[connection] = n
		s.tenantNames = append(s.tenantNames, connection)
	}
	return ticketKey{n, id}
}

// SummarizeTicketEvents folds events into ticket_rows and customer_rows, the tables the
// reports read (migration 0005). It reads the live rows of the events' tickets, folds the
// events into them, and for each ticket whose row changes writes a cancel row and the new row;
// the customers whose tickets changed get the same. Folding is idempotent and order-free, so
// a batch handled again (a redelivery, a retry after a failed insert) writes nothing new.
//
// One writer per ticket at a time: the sink's ticket-rows consumer handles each ticket's
// partition alone. Should two writers still race on a ticket (a consumer-group rebalance in
// the middle of a batch), its next event repairs its rows: every live row is read (the sink
// calls ForgetTicketRows after a rebalance), merged and cancelled.
func (s *Store) SummarizeTicketEvents(ctx context.Context, events []schemas.TicketEvent) (err error) {
	if len(events) == 0 {
		return nil
	}
	s.summarizing.Lock()
	defer s.summarizing.Unlock()
	defer func() {
		if err != nil {
			s.rows.clear() // what was written is unknown
		}
	}()

	old, rows, err := s.foldRows(ctx, events)
	if err != nil {
		return err
	}
	if err := s.resolveMemberships(ctx, rows); err != nil {
		return err
	}
	ticketWrites, involved := ticketChanges(old, rows)
	customerWrites, customers, err := s.customerChanges(ctx, involved)
	if err != nil {
		return err
	}
	if s.cluster != "" {
		sortWrites(customerWrites, func(c *customerRow) (string, int64) { return c.connection, c.requester })
		sortWrites(ticketWrites, func(r *ticketRow) (string, int64) { return r.Tenant, r.TicketID })
	}
	// Customers first: should the second insert fail, the batch is handled again, finds its
	// tickets' rows unchanged, and brings the customers (already right) to the same place.
	b := foldBatch(events)
	if err := s.insertCustomerRows(ctx, customerWrites, b); err != nil {
		return err
	}
	if err := s.insertTicketRows(ctx, ticketWrites, b); err != nil {
		return err
	}
	for k, r := range rows {
		s.rows.tickets.put(k, r)
	}
	for k, c := range customers {
		s.rows.customers.put(k, &c)
	}
	return nil
}

// foldRows folds events into their tickets' rows: the live rows read back (old, from the
// cache or ClickHouse), and the rows they become.
func (s *Store) foldRows(ctx context.Context, events []schemas.TicketEvent) (map[ticketKey][]stored[ticketRow], map[ticketKey]*ticketRow, error) {
	byTicket := make(map[ticketKey][]*schemas.TicketEvent, len(events)/2)
	for i := range events {
		e := &events[i]
		k := s.key(e.Connection, e.Ticket.ID)
		byTicket[k] = append(byTicket[k], e)
	}
	old := make(map[ticketKey][]stored[ticketRow], len(byTicket))
	missing := make(map[ticketKey]bool, len(byTicket))
	for k := range byTicket {
		if r, ok := s.rows.tickets.get(k); ok {
			old[k] = []stored[ticketRow]{{*r, 1}}
		} else {
			missing[k] = true
		}
	}
	if err := s.liveTicketRows(ctx, keysByTenant(s, missing), old); err != nil {
		return nil, nil, err
	}
	rows := make(map[ticketKey]*ticketRow, len(byTicket))
	for k, evs := range byTicket {
		r := newTicketRow(s.tenantNames[k.connection], k.id)
		for _, st := range old[k] {
			if st.n > 0 {
				r.merge(st.row)
			}
		}
		for _, e := range evs {
			r.fold(e)
		}
		r.derive()
		rows[k] = &r
	}
	return old, rows, nil
}

// ticketChanges returns the writes of the tickets whose rows changed (cancel rows, then the
// new row), and per customer, the changed tickets that were or are theirs.
func ticketChanges(old map[ticketKey][]stored[ticketRow], rows map[ticketKey]*ticketRow) ([]signed[ticketRow], map[ticketKey][]*ticketRow) {
	var writes []signed[ticketRow]
	involved := make(map[ticketKey][]*ticketRow, len(rows)/4)
	for k, r := range rows {
		prev := old[k]
		if len(prev) == 1 && prev[0].n == 1 && prev[0].row.equal(r) {
			continue
		}
		customers := map[int64]bool{r.RequesterID: true}
		for _, st := range prev {
			writes = append(writes, cancel(st)...)
			customers[st.row.RequesterID] = true
		}
		writes = append(writes, signed[ticketRow]{*r, 1})
		if len(prev) == 1 && prev[0].n == 1 && sameForCustomer(&prev[0].row, r) {
			continue // most changes are of status: the customer's row stays as it is
		}
		delete(customers, 0)
		for c := range customers {
			ck := ticketKey{k.connection, c}
			involved[ck] = append(involved[ck], r)
		}
	}
	return writes, involved
}

// rowCache keeps the live rows the fold last read or wrote, so that the next batch of a
// ticket or customer need not read them back: most of a ticket's events come within days of
// each other. Only the ticket's one writer may trust it (the sink's fold, which owns the
// ticket's partition): ForgetTicketRows empties it whenever that may no longer hold, and a
// failed batch does. Each table keeps at most its max entries, the most recently used.
type rowCache struct {
	tickets   recent[ticketKey, *ticketRow]
	customers recent[ticketKey, *customerRow] // a customer without tickets has no row
}

func newRowCache() *rowCache {
	// About 40 MB at most: a ticket's row is some 300 bytes, most customers' less. A week of
	// a busy account's tickets.
	return &rowCache{tickets: recent[ticketKey, *ticketRow]{max: 100_000}, customers: recent[ticketKey, *customerRow]{max: 100_000}}
}

func (c *rowCache) clear() {
	c.tickets.clear()
	c.customers.clear()
}

// recent is a map that forgets what was not used lately: two generations, the older
// dropped when the newer is full.
type recent[K comparable, V any] struct {
	max      int
	cur, old map[K]V
}

func (r *recent[K, V]) get(k K) (V, bool) {
	if v, ok := r.cur[k]; ok {
		return v, true
	}
	v, ok := r.old[k]
	if ok {
		r.put(k, v)
	}
	return v, ok
}

func (r *recent[K, V]) put(k K, v V) {
	if r.cur == nil {
		r.cur = make(map[K]V, r.max/8)
	}
	r.cur[k] = v
	if len(r.cur) >= r.max/2 {
		r.old, r.cur = r.cur, nil
	}
}

func (r *recent[K, V]) clear() { r.cur, r.old = nil, nil }

// ForgetTicketRows forgets the rows SummarizeTicketEvents remembers, so that it reads them
// from ClickHouse again: call it when another writer may have folded the same tickets since
// (the sink's fold, after its consumer group rebalanced).
func (s *Store) ForgetTicketRows() {
	s.summarizing.Lock()
	defer s.summarizing.Unlock()
	s.rows.clear()
}

// signed is a row to insert with its sign.
type signed[R any] struct {
	row  R
	sign int8
}

// cancel is what takes a stored row's net sign to zero.
func cancel[R any](st stored[R]) []signed[R] {
	var out []signed[R]
	for n := st.n; n != 0; {
		if n > 0 {
			out, n = append(out, signed[R]{st.row, -1}), n-1
		} else {
			out, n = append(out, signed[R]{st.row, 1}), n+1
		}
	}
	return out
}

func keysByTenant[V any](s *Store, m map[ticketKey]V) map[string][]int64 {
	out := map[string][]int64{}
	for k := range m {
		out[s.tenantNames[k.connection]] = append(out[s.tenantNames[k.connection]], k.id)
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// queryByIDs runs q, which names the external table "ids" (a column id Int64), once per
// tenant with the tenant as its one argument and that tenant's ids in "ids", and hands
// each row to scan. An external table rather than an IN list: the ids travel as a column,
// not as SQL text to parse, and the primary key still narrows the read.
func (s *Store) queryByIDs(ctx context.Context, q string, ids map[string][]int64, scan func(connection string, rows driver.Rows) error) error {
	for tenant, all := range ids {
		t, err := ext.NewTable("ids", ext.Column("id", "Int64"))
		if err != nil {
			return err
		}
		for _, id := range all {
			if err := t.Append(id); err != nil {
				return err
			}
		}
		qctx := clickhouse.Context(ctx, clickhouse.WithExternalTable(t))
		if err := s.query(qctx, q, []any{tenant}, func(rows driver.Rows) error { return scan(tenant, rows) }); err != nil {
			return err
		}
	}
	return nil
}

// liveTicketRows reads the rows of the tickets whose net sign is not zero, into out. Rows are
// netted here, not by a GROUP BY over every column, which cost ClickHouse more than the read.
func (s *Store) liveTicketRows(ctx context.Context, ids map[string][]int64, out map[ticketKey][]stored[ticketRow]) error {
	if len(ids) == 0 {
		return nil
	}
	q := fmt.Sprintf(`SELECT %s, sign FROM ticket_rows WHERE tenant = ? AND ticket_id IN (SELECT id FROM ids)`, ticketRowColumns)
	read := map[ticketKey][]stored[ticketRow]{}
	err := s.queryByIDs(ctx, q, ids, func(_ string, rows driver.Rows) error {
		var r ticketRow
		var sign int8
		if err := rows.Scan(append(r.fields(), &sign)...); err != nil {
			return err
		}
		k := s.key(r.Tenant, r.TicketID)
		read[k] = net(read[k], r, sign, (*ticketRow).equal)
		return nil
	})
	if err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "read the rows of tickets")
	}
	for k, st := range read {
		out[k] = slices.DeleteFunc(st, func(st stored[ticketRow]) bool { return st.n == 0 })
	}
	return nil
}

// net adds a row read with its sign to the rows read before it of the same ticket (or
// customer): a row's copies and cancel rows add up.
func net[R any](rows []stored[R], r R, sign int8, equal func(*R, *R) bool) []stored[R] {
	for i := range rows {
		if equal(&rows[i].row, &r) {
			rows[i].n += int64(sign)
			return rows
		}
	}
	return append(rows, stored[R]{r, int64(sign)})
}

// snapshot is one klaviyo_memberships row.
type snapshot struct {
	kind  string
	at    uint32
	names []string
}

// resolveMemberships sets each row's segments and lists: the names of its requester's latest
// snapshot of each kind at or before the ticket's creation (of two in the same second, the
// one whose names sort last).
func (s *Store) resolveMemberships(ctx context.Context, rows map[ticketKey]*ticketRow) error {
	requesters := make(map[ticketKey]bool, len(rows)/2)
	for k, r := range rows {
		if r.RequesterID != 0 {
			requesters[ticketKey{k.connection, r.RequesterID}] = true
		}
	}
	snaps := map[ticketKey][]snapshot{}
	err := s.queryByIDs(ctx, `SELECT requester_id, kind, toUInt32(at), names FROM klaviyo_memberships
WHERE tenant = ? AND requester_id IN (SELECT id FROM ids)`, keysByTenant(s, requesters), func(connection string, rows driver.Rows) error {
		var id int64
		var sn snapshot
		if err := rows.Scan(&id, &sn.kind, &sn.at, &sn.names); err != nil {
			return err
		}
		k := s.key(connection, id)
		snaps[k] = append(snaps[k], sn)
		return nil
	})
	if err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "read the memberships of %d customers", len(requesters))
	}
	for k, r := range rows {
		r.Segments, r.Lists = []string{}, []string{}
		var seg, list *snapshot
		mine := snaps[ticketKey{k.connection, r.RequesterID}]
		for i := range mine {
			sn := &mine[i]
			if sn.at > r.CreatedS {
				continue
			}
			latest := &seg
			if sn.kind == "list" {
				latest = &list
			}
			if *latest == nil || sn.at > (*latest).at || sn.at == (*latest).at && slices.Compare(sn.names, (*latest).names) > 0 {
				*latest = sn
			}
		}
		if seg != nil {
			r.Segments = seg.names
		}
		if list != nil {
			r.Lists = list.names
		}
	}
	return nil
}

// customerChanges brings the rows of the customers in involved up to date with their changed
// tickets: each is listed under its requester, unless deleted, and under no one else. It
// returns the rows to write, and every involved customer's row as it will be.
func (s *Store) customerChanges(ctx context.Context, involved map[ticketKey][]*ticketRow) ([]signed[customerRow], map[ticketKey]customerRow, error) {
	old := make(map[ticketKey][]stored[customerRow], len(involved))
	missing := make(map[ticketKey]bool, len(involved))
	for c := range involved {
		if row, ok := s.rows.customers.get(c); !ok {
			missing[c] = true
		} else if len(row.tickets) > 0 {
			old[c] = []stored[customerRow]{{*row, 1}}
		}
	}
	if err := s.liveCustomerRows(ctx, keysByTenant(s, missing), old); err != nil {
		return nil, nil, err
	}
	var out []signed[customerRow]
	after := make(map[ticketKey]customerRow, len(involved))
	for c, changed := range involved {
		// The live row's tickets (merged, should writers have raced), less the changed ones,
		// plus those of them that are the customer's now.
		var tickets []customerTicket
		for _, st := range old[c] {
			if st.n > 0 {
				tickets = append(tickets, st.row.tickets...)
			}
		}
		tickets = slices.DeleteFunc(tickets, func(t customerTicket) bool {
			return slices.ContainsFunc(changed, func(r *ticketRow) bool { return r.TicketID == t.id })
		})
		for _, r := range changed {
			if r.RequesterID == c.id && r.Deleted == 0 {
				tickets = append(tickets, customerTicket{id: r.TicketID, created: r.CreatedS, brand: r.BrandID, channel: r.Channel, tags: r.Tags})
			}
		}
		if len(old[c]) > 1 { // rows of racing writers may list a ticket twice
			slices.SortStableFunc(tickets, func(a, b customerTicket) int { return cmp.Compare(a.id, b.id) })
			tickets = slices.CompactFunc(tickets, func(a, b customerTicket) bool { return a.id == b.id })
		}
		slices.SortFunc(tickets, func(a, b customerTicket) int {
			return cmp.Or(cmp.Compare(a.created, b.created), cmp.Compare(a.id, b.id))
		})
		next := customerRow{connection: s.tenantNames[c.connection], requester: c.id, tickets: tickets}
		after[c] = next
		prev := old[c]
		if len(prev) == 1 && prev[0].n == 1 && prev[0].row.equal(&next) || len(prev) == 0 && len(next.tickets) == 0 {
			continue
		}
		for _, st := range prev {
			out = append(out, cancel(st)...)
		}
		if len(next.tickets) > 0 {
			out = append(out, signed[customerRow]{next, 1})
		}
	}
	return out, after, nil
}

func (s *Store) liveCustomerRows(ctx context.Context, ids map[string][]int64, out map[ticketKey][]stored[customerRow]) error {
	if len(ids) == 0 {
		return nil
	}
	read := map[ticketKey][]stored[customerRow]{}
	const q = `SELECT requester_id, ticket_ids, created, brands, channels, tag_sets, sign FROM customer_rows
WHERE tenant = ? AND requester_id IN (SELECT id FROM ids)`
	err := s.queryByIDs(ctx, q, ids, func(connection string, rows driver.Rows) error {
		var (
			id       int64
			tickets  []int64
			created  []uint32
			brands   []int64
			channels []string
			tags     [][]string
			sign     int8
		)
		if err := rows.Scan(&id, &tickets, &created, &brands, &channels, &tags, &sign); err != nil {
			return err
		}
		c := customerRow{connection: connection, requester: id, tickets: make([]customerTicket, len(tickets))}
		for i := range tickets {
			c.tickets[i] = customerTicket{id: tickets[i], created: created[i], brand: brands[i], channel: channels[i], tags: tags[i]}
		}
		k := s.key(connection, id)
		read[k] = net(read[k], c, sign, (*customerRow).equal)
		return nil
	})
	if err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "read the rows of customers")
	}
	for k, st := range read {
		out[k] = slices.DeleteFunc(st, func(st stored[customerRow]) bool { return st.n == 0 })
	}
	return nil
}

// foldBatch names a batch in the rows it writes (the column fold_batch, migration 0006): a
// hash of its events' ids, so the same batch folded again writes the same blocks, which a
// replicated table drops as duplicates, and another batch never does.
func foldBatch(events []schemas.TicketEvent) uint64 {
	h := fnv.New64a()
	for i := range events {
		h.Write([]byte(events[i].EventID))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// insertTicketRows writes rows column by column (row by row costs a reflection call a value),
// each marked with the batch that writes them.
func (s *Store) insertTicketRows(ctx context.Context, rows []signed[ticketRow], batch uint64) error {
	n := len(rows)
	var (
		connection, channel, priority                     = make([]string, n), make([]string, n), make([]string, n)
		ticketID, brand, group, assignee, requester       = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		openedKey, latestKey                              = make([]uint64, n), make([]uint64, n)
		closedMin, solvedMin, openMax, dimsAt, reqAt      = make([]uint32, n), make([]uint32, n), make([]uint32, n), make([]uint32, n), make([]uint32, n)
		created, closed, minutes                          = make([]uint32, n), make([]uint32, n), make([]uint32, n)
		reopenedFlag, isClosed, bucket, reopened, deleted = make([]uint8, n), make([]uint8, n), make([]uint8, n), make([]uint8, n), make([]uint8, n)
		tags, segments, lists                             = make([][]string, n), make([][]string, n), make([][]string, n)
		sign                                              = make([]int8, n)
	)
	for i, w := range rows {
		r := &w.row
		connection[i], ticketID[i], openedKey[i], closedMin[i], solvedMin[i], openMax[i] = r.Tenant, r.TicketID, r.OpenedKey, r.ClosedMin, r.SolvedMin, r.OpenMax
		reopenedFlag[i], latestKey[i], dimsAt[i], brand[i], channel[i], priority[i] = r.ReopenedFlag, r.LatestKey, r.DimsAt, r.BrandID, r.Channel, r.Priority
		tags[i], group[i], assignee[i], reqAt[i], requester[i] = r.Tags, r.GroupID, r.AssigneeID, r.RequesterAt, r.RequesterID
		created[i], closed[i], isClosed[i], bucket[i], minutes[i] = r.CreatedS, r.ClosedS, r.IsClosed, r.CloseBucket, r.CloseMinutes
		reopened[i], deleted[i], segments[i], lists[i], sign[i] = r.Reopened, r.Deleted, r.Segments, r.Lists, w.sign
	}
	return s.insertColumns(ctx, "ticket_rows ("+ticketRowColumns+", sign, fold_batch)", n, connection, ticketID, openedKey, closedMin, solvedMin, openMax,
		reopenedFlag, latestKey, dimsAt, brand, channel, priority, tags, group, assignee, reqAt, requester, created, closed,
		isClosed, bucket, minutes, reopened, deleted, segments, lists, sign, repeat(batch, n))
}

func (s *Store) insertCustomerRows(ctx context.Context, rows []signed[customerRow], batch uint64) error {
	n := len(rows)
	connection, requester, sign := make([]string, n), make([]int64, n), make([]int8, n)
	ids, created, brands, channels, tags := make([][]int64, n), make([][]uint32, n), make([][]int64, n), make([][]string, n), make([][][]string, n)
	for i, w := range rows {
		connection[i], requester[i], sign[i] = w.row.connection, w.row.requester, w.sign
		for _, t := range w.row.tickets {
			ids[i], created[i], brands[i] = append(ids[i], t.id), append(created[i], t.created), append(brands[i], t.brand)
			channels[i], tags[i] = append(channels[i], t.channel), append(tags[i], t.tags)
		}
	}
	return s.insertColumns(ctx, "customer_rows (tenant, requester_id, ticket_ids, created, brands, channels, tag_sets, sign, fold_batch)", n,
		connection, requester, ids, created, brands, channels, tags, sign, repeat(batch, n))
}

// repeat is a column of n copies of v.
func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// insertColumns inserts n rows given as whole columns, in one block.
func (s *Store) insertColumns(ctx context.Context, into string, n int, columns ...any) error {
	if n == 0 {
		return nil
	}
	what := strings.Fields(into)[0]
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+into)
	if err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "prepare insert of %d %s", n, what)
	}
	defer batch.Abort() //nolint:errcheck // no-op after Send
	for i, col := range columns {
		if err := batch.Column(i).Append(col); err != nil {
			return zenklav.Wrap(zenklav.EINVALID, err, "append column %d of %d %s", i, n, what)
		}
	}
	if err := batch.Send(); err != nil {
		return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "insert %d %s", n, what)
	}
	return nil
}
