package analytics

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/reports"
)

// The Store answers the reports from ticket_rows and customer_rows, one live row per ticket
// and per customer (migration 0005 says what opened, resolved, reopened and deleted mean).
var _ reports.Source = (*Store)(nil)

// span is a Filter turned into what the SQL needs: the tenants it may read, the range as
// Unix seconds [from, end), and the time zone's name.
type span struct {
	connections clickhouse.GroupSet
	from        int64
	end         int64 // the first second after To's day in TZ
	tz          string
	interval    string
}

func newSpan(f reports.Filter) (span, error) {
	if err := f.Validate(); err != nil {
		return span{}, err
	}
	tz := f.TZ.String()
	if tz == "" || tz == "Local" {
		// ClickHouse knows zones by their IANA names only.
		return span{}, zenklav.Errorf(zenklav.EINVALID, "tz %q: use an IANA time zone name such as Europe/Madrid", tz)
	}
	connections := f.Connections
	if f.Connection != "" {
		connections = []string{f.Connection}
	}
	set := make([]any, len(connections))
	for i, t := range connections {
		set[i] = t
	}
	from, to := day(f.From, f.TZ), day(f.To, f.TZ).AddDate(0, 0, 1)
	return span{connections: clickhouse.GroupSet{Value: set}, from: from.Unix(), end: to.Unix(), tz: tz, interval: f.Interval}, nil
}

// day is midnight in tz of the date t names (in t's own location: the date as it was given).
func day(t time.Time, tz *time.Location) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, tz)
}

// periodSQL is the first day of the period that holds the Unix second expr, in TZ, as a Date.
func (s span) periodSQL(expr string) string {
	t := fmt.Sprintf("toDateTime(%s)", expr)
	switch s.interval {
	case reports.Week:
		return fmt.Sprintf("toMonday(%s, '%s')", t, s.tz)
	case reports.Month:
		return fmt.Sprintf("toStartOfMonth(%s, '%s')", t, s.tz)
	}
	return fmt.Sprintf("toDate(%s, '%s')", t, s.tz)
}

// indexSQL numbers the periods that hold the Unix second expr, consecutively, in TZ.
func (s span) indexSQL(expr string) string {
	t := fmt.Sprintf("toDateTime(%s)", expr)
	switch s.interval {
	case reports.Week:
		return fmt.Sprintf("intDiv(toUInt32(toMonday(%s, '%s')), 7)", t, s.tz)
	case reports.Month:
		return fmt.Sprintf("toRelativeMonthNum(%s, '%s')", t, s.tz)
	}
	return fmt.Sprintf("toUInt32(toDate(%s, '%s'))", t, s.tz)
}

// where is the WHERE clause (and its arguments) that selects ticket_rows for the filter:
// its tenants, brand, channel and tag, deleted tickets left out.
func where(f reports.Filter, sp span) (string, []any) {
	conds := []string{"tenant IN ?", "deleted = 0"}
	args := []any{sp.connections}
	if f.BrandID != 0 {
		conds, args = append(conds, "brand_id = ?"), append(args, f.BrandID)
	}
	if f.Channel != "" {
		conds, args = append(conds, "channel = ?"), append(args, f.Channel)
	}
	if f.Tag != "" {
		conds, args = append(conds, "has(tags, ?)"), append(args, f.Tag)
	}
	return strings.Join(conds, " AND "), args
}

// dayNumber turns a ClickHouse Date read as its day number into YYYY-MM-DD.
func dayNumber(d uint16) string {
	return time.Unix(int64(d)*86400, 0).UTC().Format(time.DateOnly)
}

// Weighing rows by sign: every query below counts with sum(sign) and takes quantiles with
// sign as the weight, so a row and its cancel row (ticket_rows and customer_rows are
// CollapsingMergeTree, collapsed in the background) add up to nothing. No query groups by
// ticket: that grouping over a year's tickets is what a report could not afford.

// breakdown is how trends group by a key: the column grouped by, then the key made of it (k).
type breakdown struct{ column, key string }

var breakdowns = map[string]breakdown{
	"brand":    {"brand_id", "toString(k)"},
	"channel":  {"channel", "k"},
	"priority": {"priority", "k"},
	"group":    {"group_id", "toString(k)"},
	"assignee": {"assignee_id", "toString(k)"},
	// A ticket without tags is counted under "", so every ticket is under some key.
	"tag": {"tags", "arrayJoin(if(empty(k), [''], k))"},
}

// Trends counts, per period of f.Interval in f.TZ (and per key of f.By), the tickets opened
// and resolved in it and the backlog at its end: tickets created and not yet closed, counting
// those created before From. Every period from the one holding From to the one holding To is
// present, zero-filled, for every key that has anything in the range or a backlog at its
// start, so a chart draws a continuous line. The first and last periods may reach beyond the
// range; they count only the days within it, and their backlog is at the range's end. Rows
// are sorted by period, then key.
func (s *Store) Trends(ctx context.Context, f reports.Filter) ([]reports.TrendRow, error) {
	sp, err := newSpan(f)
	if err != nil {
		return nil, err
	}
	cells, keys, err := s.trendCells(ctx, f, sp)
	if err != nil {
		return nil, err
	}
	return trendRows(f, cells, keys), nil
}

// trendCell is what one key opened and resolved in one period ("" for before From).
type trendCell struct{ opened, resolved int64 }

// trendCells reads, per key and period, the tickets opened and resolved, and the keys.
func (s *Store) trendCells(ctx context.Context, f reports.Filter, sp span) (map[[2]string]trendCell, map[string]bool, error) {
	cond, args := where(f, sp)
	// One pass: per key, the tickets by the period they opened in and the one they closed in
	// (0 = before From, 65535 = not closed by To's end), so both counts and the backlog come
	// from one grouping. Periods are Dates, compared as day numbers.
	by, ok := breakdowns[f.By]
	if !ok {
		by = breakdown{"toUInt8(0)", "''"} // one line
	}
	key, outer := by.column, by.key
	q := fmt.Sprintf(`SELECT key, pc, pr, sum(n)
FROM
(
    SELECT %s AS key, pc, pr, n
    FROM
    (
        SELECT %s AS k, if(created_s < ?, toUInt16(0), toUInt16(%s)) AS pc,
            if(is_closed = 0 OR closed_s >= ?, toUInt16(65535), if(closed_s < ?, toUInt16(0), toUInt16(%s))) AS pr,
            sum(sign) AS n
        FROM ticket_rows
        WHERE %s AND created_s < ?
        GROUP BY k, pc, pr
    )
)
GROUP BY key, pc, pr`, outer, key, sp.periodSQL("created_s"), sp.periodSQL("closed_s"), cond)
	args = append([]any{sp.from, sp.end, sp.from}, args...)
	args = append(args, sp.end)
	cells := map[[2]string]trendCell{}
	keys := map[string]bool{}
	period := func(d uint16) string {
		if d == 0 {
			return "" // before From: the starting backlog
		}
		return dayNumber(d)
	}
	err := s.query(ctx, q, args, func(rows driver.Rows) error {
		var key string
		var pc, pr uint16
		var n int64
		if err := rows.Scan(&key, &pc, &pr, &n); err != nil || n == 0 {
			return err // n == 0: rows that cancelled out
		}
		o := [2]string{key, period(pc)}
		c := cells[o]
		c.opened += n
		cells[o] = c
		if pr != 65535 {
			r := [2]string{key, period(pr)}
			c := cells[r]
			c.resolved += n
			cells[r] = c
		}
		keys[key] = true
		return nil
	})
	if err != nil {
		return nil, nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "trends %s", f)
	}
	return cells, keys, nil
}

// trendRows lays the cells out: every period, zero-filled, for every key worth a line.
func trendRows(f reports.Filter, cells map[[2]string]trendCell, keys map[string]bool) []reports.TrendRow {
	periods := Periods(f.From, f.To, f.Interval, f.TZ)
	if f.By == "" {
		keys[""] = true // the one line, even when there is nothing to draw
	}
	backlog := map[string]int64{}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		start := cells[[2]string{k, ""}]
		backlog[k] = start.opened - start.resolved
		// A key whose tickets were all opened and closed before From would be a line of
		// zeros: it is left out.
		if f.By != "" && backlog[k] == 0 && !slices.ContainsFunc(periods, func(p string) bool { _, ok := cells[[2]string{k, p}]; return ok }) {
			continue
		}
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	out := make([]reports.TrendRow, 0, len(periods)*len(sorted))
	for _, p := range periods {
		for _, k := range sorted {
			c := cells[[2]string{k, p}]
			backlog[k] += c.opened - c.resolved
			out = append(out, reports.TrendRow{Period: p, Key: k, Opened: c.opened, Resolved: c.resolved, Backlog: backlog[k]})
		}
	}
	return out
}

// Periods lists the first days (YYYY-MM-DD) of the periods of interval in tz from the one
// holding from's date to the one holding to's.
func Periods(from, to time.Time, interval string, tz *time.Location) []string {
	var out []string
	last := reports.PeriodStart(day(to, tz), interval)
	for p := reports.PeriodStart(day(from, tz), interval); !p.After(last); {
		out = append(out, p.Format(time.DateOnly))
		switch interval {
		case reports.Week:
			p = p.AddDate(0, 0, 7)
		case reports.Month:
			p = p.AddDate(0, 1, 0)
		default:
			p = p.AddDate(0, 0, 1)
		}
	}
	return out
}

// ResolutionCohorts groups the tickets created in the range by the period they were created
// in and says how fast they became closed, as of now: the share closed within 1, 3, 7, 14
// and 30 days of creation (closed_at - created_at ≤ N × 24 h), the median and 90th
// percentile hours to close over those closed so far (in whole minutes, as ClickHouse's
// quantileExact: the element at ⌊level × n⌋ of the sorted times), and the share reopened.
// Periods without tickets have no row.
func (s *Store) ResolutionCohorts(ctx context.Context, f reports.Filter) ([]reports.ResolutionCohortRow, error) {
	sp, err := newSpan(f)
	if err != nil {
		return nil, err
	}
	cond, args := where(f, sp)
	cond += " AND created_s >= ? AND created_s < ?"
	args = append(args, sp.from, sp.end)
	period := fmt.Sprintf("toUInt16(%s)", sp.periodSQL("created_s"))
	q := fmt.Sprintf(`SELECT %s AS cohort, sum(sign), sumIf(sign, close_bucket = 1), sumIf(sign, close_bucket = 3),
    sumIf(sign, close_bucket = 7), sumIf(sign, close_bucket = 14), sumIf(sign, close_bucket = 30), sumIf(sign, is_closed = 1),
    sumIf(sign, reopened = 1), %s
FROM ticket_rows
WHERE %s
GROUP BY cohort`, period, quantilesSQL, cond)
	var out []reports.ResolutionCohortRow
	var minutes []*durations
	err = s.query(ctx, q, args, func(rows driver.Rows) error {
		var c uint16
		var n, c1, c3, c7, c14, c30, closed, reopened int64
		d := &durations{}
		if err := rows.Scan(append([]any{&c, &n, &c1, &c3, &c7, &c14, &c30, &closed, &reopened}, d.fields()...)...); err != nil {
			return err
		}
		if n == 0 {
			return nil // only rows that cancelled out
		}
		c3, c7, c14, c30 = c1+c3, c1+c3+c7, c1+c3+c7+c14, c1+c3+c7+c14+c30
		share := func(k int64) float64 { return float64(k) / float64(n) }
		out = append(out, reports.ResolutionCohortRow{Cohort: dayNumber(c), Tickets: n, ReopenRate: share(reopened),
			Closed1d: share(c1), Closed3d: share(c3), Closed7d: share(c7), Closed14d: share(c14), Closed30d: share(c30)})
		d.group, d.closed = strconv.Itoa(int(c)), closed
		minutes = append(minutes, d)
		return nil
	})
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "resolution cohorts %s", f)
	}
	if err := s.settle(ctx, minutes, "ticket_rows", period, cond, args); err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "resolution cohorts %s", f)
	}
	slices.SortFunc(out, func(a, b reports.ResolutionCohortRow) int { return strings.Compare(a.Cohort, b.Cohort) })
	for i, d := range minutes {
		out[i].MedianHours, out[i].P90Hours = d.hours(0), d.hours(1)
	}
	return out, nil
}

// Quantiles of time to close, with cancel rows. quantilesSQL takes the median and 90th
// percentile of the live rows' minutes (sign 1) and counts the cancel rows among them: with
// none, the quantiles are exact as they are, which is nearly always (a closed ticket's row
// seldom changes again, and merges collapse the pairs). A group that has some is settled
// by reading its minutes, both signs, and taking the quantiles of the difference here:
// weighing by sign in ClickHouse (quantileExactWeighted) is exact but slower on every query.
const quantilesSQL = `countIf(sign < 0 AND is_closed = 1), quantilesExactIf(0.5, 0.9)(close_minutes, sign > 0 AND is_closed = 1)`

// durations are one group's quantiles of time to close, as quantilesSQL reads them.
type durations struct {
	group  string // the group's key as text (toString of what the query grouped by)
	closed int64  // tickets closed, net
	cancel uint64
	q      []uint32 // median and 90th percentile, minutes
}

func (d *durations) fields() []any { return []any{&d.cancel, &d.q} }

func (d *durations) hours(i int) *float64 {
	if d.closed <= 0 || i >= len(d.q) {
		return nil
	}
	h := float64(d.q[i]) / 60
	return &h
}

// settle recomputes the quantiles of the groups that have cancel rows: table's closed rows
// matching cond (with args), grouped by key.
func (s *Store) settle(ctx context.Context, ds []*durations, table, key, cond string, args []any) error {
	byGroup := map[string]*durations{}
	var groups []any
	for _, d := range ds {
		if d.cancel > 0 {
			byGroup[d.group] = d
			groups = append(groups, d.group)
		}
	}
	if len(groups) == 0 {
		return nil
	}
	q := fmt.Sprintf(`SELECT toString(%s) AS g, groupArrayIf(close_minutes, sign > 0), groupArrayIf(close_minutes, sign < 0)
FROM %s
WHERE %s AND is_closed = 1 AND g IN ?
GROUP BY g`, key, table, cond)
	return s.query(ctx, q, append(slices.Clone(args), clickhouse.GroupSet{Value: groups}), func(rows driver.Rows) error {
		var g string
		var live, cancelled []uint32
		if err := rows.Scan(&g, &live, &cancelled); err != nil {
			return err
		}
		if d := byGroup[g]; d != nil {
			d.q = netQuantiles(live, cancelled, 0.5, 0.9)
		}
		return nil
	})
}

// netQuantiles is quantileExact of live less cancelled (as multisets; every cancelled value
// is among the live ones): for each level, the element at ⌊level × n⌋ of the sorted rest.
func netQuantiles(live, cancelled []uint32, levels ...float64) []uint32 {
	slices.Sort(live)
	slices.Sort(cancelled)
	rest := live[:0]
	j := 0
	for _, v := range live {
		for j < len(cancelled) && cancelled[j] < v {
			j++ // not among the live ones: nothing to take away
		}
		if j < len(cancelled) && cancelled[j] == v {
			j++
			continue
		}
		rest = append(rest, v)
	}
	if len(rest) == 0 {
		return nil
	}
	out := make([]uint32, len(levels))
	for i, l := range levels {
		out[i] = rest[min(len(rest)-1, int(l*float64(len(rest))))]
	}
	return out
}

// query runs q and hands each row to scan.
func (s *Store) query(ctx context.Context, q string, args []any, scan func(driver.Rows) error) error {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// recountCustomers counts the customers of the segments that have cancel rows by customer: a
// customer counts in a segment while any of their tickets there is live.
func (s *Store) recountCustomers(ctx context.Context, names, cond string, args, recount []any, bySegment map[string]*reports.SegmentRow) error {
	if len(recount) == 0 {
		return nil
	}
	q := fmt.Sprintf(`SELECT segment, countIf(n > 0)
FROM
(
    SELECT segment, tenant, requester_id, sum(sign) AS n
    FROM ticket_rows
    ARRAY JOIN %s AS segment
    WHERE %s AND segment IN ?
    GROUP BY segment, tenant, requester_id
)
GROUP BY segment`, names, cond)
	return s.query(ctx, q, append(slices.Clone(args), clickhouse.GroupSet{Value: recount}), func(rows driver.Rows) error {
		var segment string
		var n uint64
		if err := rows.Scan(&segment, &n); err != nil {
			return err
		}
		if r := bySegment[segment]; r != nil {
			r.Customers = int64(n)
		}
		return nil
	})
}

// RepeatCohorts groups customers (a tenant's requesters) by the period of their first ticket
// ever, among the tickets the filter selects, for first tickets within the range; for each
// later period up to the one holding To (Offset 1, 2, …) and for the rest of the first one
// (Offset 0), it counts those who opened another ticket in it. Tickets created after To do
// not count. The triangle is zero-filled: every cohort has every offset up to To's period.
func (s *Store) RepeatCohorts(ctx context.Context, f reports.Filter) ([]reports.RepeatCohortRow, error) {
	sp, err := newSpan(f)
	if err != nil {
		return nil, err
	}
	// One row per customer: their tickets' creation times in order, filtered; the first is
	// their cohort, the rest become the distinct offsets they came back in. Offset -1 counts
	// the cohort.
	// The lambda takes only the arrays its filter reads: each array more is read and walked
	// for every customer (tag_sets alone costs half the query).
	params, arrays := []string{"t"}, []string{"created"}
	conds := []string{"t < ?"}
	args := []any{sp.end}
	for _, c := range []struct {
		on           bool
		param, array string
		cond         string
		arg          any
	}{
		{f.BrandID != 0, "b", "brands", "b = ?", f.BrandID},
		{f.Channel != "", "ch", "channels", "ch = ?", f.Channel},
		{f.Tag != "", "g", "tag_sets", "has(g, ?)", f.Tag},
	} {
		if c.on {
			params, arrays = append(params, c.param), append(arrays, c.array)
			conds, args = append(conds, c.cond), append(args, c.arg)
		}
	}
	q := fmt.Sprintf(`SELECT toUInt16(%s) AS cohort, off, sum(sign)
FROM
(
    SELECT sign, ts[1] AS first_s, arrayMap(t -> toInt64(%s), ts) AS ps
    FROM
    (
        SELECT sign, arrayFilter((%s) -> %s, %s) AS ts
        FROM customer_rows
        WHERE tenant IN ?
    )
    WHERE notEmpty(ts) AND ts[1] >= ?
)
ARRAY JOIN arrayConcat([-1], arrayDistinct(arrayMap(p -> p - ps[1], arraySlice(ps, 2)))) AS off
GROUP BY cohort, off`, sp.periodSQL("first_s"), sp.indexSQL("t"), strings.Join(params, ", "), strings.Join(conds, " AND "), strings.Join(arrays, ", "))
	args = append(args, sp.connections, sp.from)
	customers := map[string]int64{}
	returned := map[string]map[int]int64{}
	err = s.query(ctx, q, args, func(rows driver.Rows) error {
		var c uint16
		var off, n int64
		if err := rows.Scan(&c, &off, &n); err != nil {
			return err
		}
		cohort := dayNumber(c)
		if off < 0 {
			customers[cohort] += n
			return nil
		}
		if returned[cohort] == nil {
			returned[cohort] = map[int]int64{}
		}
		returned[cohort][int(off)] += n
		return nil
	})
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "repeat cohorts %s", f)
	}
	periods := Periods(f.From, f.To, f.Interval, f.TZ)
	var out []reports.RepeatCohortRow
	for i, cohort := range periods {
		n := customers[cohort]
		if n == 0 {
			continue
		}
		for off := 0; i+off < len(periods); off++ {
			r := returned[cohort][off]
			out = append(out, reports.RepeatCohortRow{Cohort: cohort, Customers: n, Offset: off, Returned: r, Share: float64(r) / float64(n)})
		}
	}
	return out, nil
}

// Segments counts the tickets created in the range by the Klaviyo segments (or lists, with
// f.Kind "list") their requester was in when the ticket was created: the names of the
// requester's latest snapshot (RecordMemberships) at or before that second, as found when the
// ticket's row was last written (SummarizeTicketEvents). A ticket counts under each of those
// names; a ticket whose requester had no snapshot yet counts under none. Resolved, median
// hours and reopen rate are as in ResolutionCohorts. Rows are sorted by segment name.
func (s *Store) Segments(ctx context.Context, f reports.Filter) ([]reports.SegmentRow, error) {
	sp, err := newSpan(f)
	if err != nil {
		return nil, err
	}
	names := "segments"
	if f.Kind == "list" {
		names = "lists"
	}
	cond, args := where(f, sp)
	cond += " AND requester_id != 0 AND created_s >= ? AND created_s < ?"
	args = append(args, sp.from, sp.end)
	// Customers are the distinct requesters of the live rows; a segment with cancel rows
	// (a ticket of it changed since the last merge) is counted again below, by customer.
	q := fmt.Sprintf(`SELECT segment, sum(sign), sumIf(sign, is_closed = 1), sumIf(sign, reopened = 1),
    countIf(sign < 0), uniqExactIf(tenant, requester_id, sign > 0), %s
FROM ticket_rows
ARRAY JOIN %s AS segment
WHERE %s
GROUP BY segment`, quantilesSQL, names, cond)
	bySegment := map[string]*reports.SegmentRow{}
	var minutes []*durations
	var recount []any
	err = s.query(ctx, q, args, func(rows driver.Rows) error {
		var r reports.SegmentRow
		var reopened int64
		var cancels, customers uint64
		d := &durations{}
		if err := rows.Scan(append([]any{&r.Segment, &r.Opened, &r.Resolved, &reopened, &cancels, &customers}, d.fields()...)...); err != nil {
			return err
		}
		if r.Opened == 0 {
			return nil
		}
		r.Customers = int64(customers)
		r.ReopenRate = float64(reopened) / float64(r.Opened)
		if cancels > 0 {
			recount = append(recount, r.Segment)
		}
		d.group, d.closed = r.Segment, r.Resolved
		minutes = append(minutes, d)
		bySegment[r.Segment] = &r
		return nil
	})
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "segments %s", f)
	}
	if err := s.recountCustomers(ctx, names, cond, args, recount, bySegment); err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "segments %s", f)
	}
	arrayJoin := fmt.Sprintf("ticket_rows ARRAY JOIN %s AS segment", names)
	if err := s.settle(ctx, minutes, arrayJoin, "segment", cond, args); err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "segments %s", f)
	}
	for _, d := range minutes {
		bySegment[d.group].MedianHours = d.hours(0)
	}
	out := make([]reports.SegmentRow, 0, len(bySegment))
	for _, name := range slices.Sorted(maps.Keys(bySegment)) {
		out = append(out, *bySegment[name])
	}
	return out, nil
}
