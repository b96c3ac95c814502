package analytics

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/reports"
)

// The Store answers the reports from ticket_facts, one row per ticket (migration 0003 says
// what opened, resolved, reopened and deleted mean there).
var _ reports.Source = (*Store)(nil)

// span is a Filter turned into what the SQL needs: the tenants it may read, the range as
// Unix seconds [from, end), and the time zone's name.
type span struct {
	tenants  clickhouse.GroupSet
	from     int64
	end      int64 // the first second after To's day in TZ
	tz       string
	interval string
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
	tenants := f.Tenants
	if f.Connection != "" {
		tenants = []string{f.Connection}
	}
	set := make([]any, len(tenants))
	for i, t := range tenants {
		set[i] = t
	}
	from, to := day(f.From, f.TZ), day(f.To, f.TZ).AddDate(0, 0, 1)
	return span{tenants: clickhouse.GroupSet{Value: set}, from: from.Unix(), end: to.Unix(), tz: tz, interval: f.Interval}, nil
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

// ticketsSQL is the tickets of the filter's tenants, brand, channel and tag, deleted ones
// left out, one row each with created_s, is_closed, closed_s, and reopened and requester when
// need names them (0 otherwise), plus key when by names a breakdown (one row per tag for "tag"). closed_s is never before
// created_s, so a ticket is never resolved before it is opened. Times are Unix seconds:
// they compare without a time zone.
//
// The aliases differ from ticket_facts' column names on purpose (see the migration).
func ticketsSQL(f reports.Filter, sp span, by string, need ...string) (string, []any) {
	var having []string
	args := []any{sp.tenants}
	if f.BrandID != 0 {
		having = append(having, "brand = ?")
		args = append(args, f.BrandID)
	}
	if f.Channel != "" {
		having = append(having, "chan = ?")
		args = append(args, f.Channel)
	}
	if f.Tag != "" {
		having = append(having, "has(tag_list, ?)")
		args = append(args, f.Tag)
	}
	// Each state merged costs a good part of the query: only those the report reads are.
	cols := []string{
		"bitAnd(minMerge(opened_state), 4294967295) AS created_s",
		"minMerge(closed_state) AS closed_raw",
		"bitAnd(maxMerge(latest_state), 1) AS deleted",
	}
	reopened, requester := "0", "toInt64(0)"
	if slices.Contains(need, "reopened") {
		cols = append(cols, "maxMerge(reopened_state) = 1 OR maxMerge(open_state) > minMerge(solved_state) AS reopened_flag")
		reopened = "reopened_flag"
	}
	if slices.Contains(need, "requester") {
		cols = append(cols, "argMaxIfMerge(requester_state) AS requester_id_latest")
		requester = "requester_id_latest"
	}
	if f.BrandID != 0 || by == "brand" {
		cols = append(cols, "argMaxMerge(brand_state) AS brand")
	}
	if f.Channel != "" || by == "channel" {
		cols = append(cols, "argMaxMerge(channel_state) AS chan")
	}
	if f.Tag != "" || by == "tag" {
		cols = append(cols, "argMaxMerge(tags_state) AS tag_list")
	}
	key := "''"
	switch by {
	case "brand":
		key = "toString(brand)"
	case "channel":
		key = "chan"
	case "priority":
		cols = append(cols, "argMaxMerge(priority_state) AS prio")
		key = "prio"
	case "group":
		cols = append(cols, "argMaxMerge(group_state) AS grp")
		key = "toString(grp)"
	case "assignee":
		cols = append(cols, "argMaxMerge(assignee_state) AS asg")
		key = "toString(asg)"
	case "tag":
		// A ticket without tags is counted under "", so every ticket is under some key.
		key = "arrayJoin(if(empty(tag_list), [''], tag_list))"
	}
	having = append([]string{"deleted = 0"}, having...)
	inner := fmt.Sprintf(`SELECT tenant, ticket_id, %s
FROM ticket_facts
WHERE tenant IN ?
GROUP BY tenant, ticket_id
HAVING %s`, strings.Join(cols, ",\n    "), strings.Join(having, " AND "))
	q := fmt.Sprintf(`SELECT tenant, ticket_id, created_s, closed_raw != 4294967295 AS is_closed,
    toUInt32(greatest(closed_raw, created_s)) AS closed_s, %s AS reopened, %s AS requester, %s AS key
FROM (%s)`, reopened, requester, key, inner)
	return q, args
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
	tickets, args := ticketsSQL(f, sp, f.By)
	// Each ticket is an opening (what 1, at created_s) and maybe a resolution (what 2); before
	// From they only make the starting backlog, period ''.
	q := fmt.Sprintf(`SELECT key, if(t < ?, '', toString(%s)) AS p, countIf(what = 1), countIf(what = 2)
FROM
(
    SELECT key, ev.1 AS what, ev.2 AS t
    FROM (%s)
    ARRAY JOIN if(is_closed, [(1, created_s), (2, closed_s)], [(1, created_s)]) AS ev
)
WHERE t < ?
GROUP BY key, p`, sp.periodSQL("t"), tickets)
	args = append([]any{sp.from}, args...)
	args = append(args, sp.end)
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "trends %s", f)
	}
	defer rows.Close()
	type cell struct{ opened, resolved int64 }
	cells := map[[2]string]cell{}
	keys := map[string]bool{}
	for rows.Next() {
		var key, period string
		var opened, resolved uint64
		if err := rows.Scan(&key, &period, &opened, &resolved); err != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "trends %s", f)
		}
		cells[[2]string{key, period}] = cell{int64(opened), int64(resolved)}
		keys[key] = true
	}
	if err := rows.Err(); err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "trends %s", f)
	}
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
	return out, nil
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
// percentile hours to close over those closed so far (ClickHouse's quantileExact: the
// element at ⌊level × n⌋ of the sorted times), and the share reopened. Periods without
// tickets have no row.
func (s *Store) ResolutionCohorts(ctx context.Context, f reports.Filter) ([]reports.ResolutionCohortRow, error) {
	sp, err := newSpan(f)
	if err != nil {
		return nil, err
	}
	tickets, args := ticketsSQL(f, sp, "", "reopened")
	q := fmt.Sprintf(`SELECT toString(%s) AS cohort, count(),
    countIf(is_closed AND dur <= 86400), countIf(is_closed AND dur <= 3 * 86400), countIf(is_closed AND dur <= 7 * 86400),
    countIf(is_closed AND dur <= 14 * 86400), countIf(is_closed AND dur <= 30 * 86400),
    countIf(is_closed), quantileExactIf(0.5)(dur, is_closed), quantileExactIf(0.9)(dur, is_closed), countIf(reopened)
FROM (SELECT created_s, is_closed, toUInt32(closed_s - created_s) AS dur, reopened FROM (%s))
WHERE created_s >= ? AND created_s < ?
GROUP BY cohort
ORDER BY cohort`, sp.periodSQL("created_s"), tickets)
	args = append(args, sp.from, sp.end)
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "resolution cohorts %s", f)
	}
	defer rows.Close()
	var out []reports.ResolutionCohortRow
	for rows.Next() {
		var r reports.ResolutionCohortRow
		var n, c1, c3, c7, c14, c30, closed, reopened uint64
		var median, p90 uint32
		if err := rows.Scan(&r.Cohort, &n, &c1, &c3, &c7, &c14, &c30, &closed, &median, &p90, &reopened); err != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "resolution cohorts %s", f)
		}
		share := func(k uint64) float64 { return float64(k) / float64(n) }
		r.Tickets = int64(n)
		r.Closed1d, r.Closed3d, r.Closed7d, r.Closed14d, r.Closed30d = share(c1), share(c3), share(c7), share(c14), share(c30)
		r.ReopenRate = share(reopened)
		if closed > 0 {
			r.MedianHours, r.P90Hours = hours(median), hours(p90)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "resolution cohorts %s", f)
	}
	return out, nil
}

func hours(seconds uint32) *float64 {
	h := float64(seconds) / 3600
	return &h
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
	tickets, args := ticketsSQL(f, sp, "", "requester")
	// Per customer, their tickets' creation times in order; the first is their cohort, the
	// rest become the distinct offsets they came back in. Offset -1 counts the cohort.
	q := fmt.Sprintf(`SELECT toString(%s) AS cohort, off, count()
FROM
(
    SELECT ts[1] AS first_s, arrayDistinct(arrayMap(t -> toInt64(%s) - toInt64(%s), arraySlice(ts, 2))) AS offs
    FROM
    (
        SELECT arraySort(groupArray(created_s)) AS ts
        FROM (%s)
        WHERE requester != 0 AND created_s < ?
        GROUP BY tenant, requester
    )
    WHERE ts[1] >= ?
)
ARRAY JOIN arrayConcat([-1], offs) AS off
GROUP BY cohort, off`, sp.periodSQL("first_s"), sp.indexSQL("t"), sp.indexSQL("ts[1]"), tickets)
	args = append(args, sp.end, sp.from)
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "repeat cohorts %s", f)
	}
	defer rows.Close()
	customers := map[string]int64{}
	returned := map[string]map[int]int64{}
	for rows.Next() {
		var cohort string
		var off int64
		var n uint64
		if err := rows.Scan(&cohort, &off, &n); err != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "repeat cohorts %s", f)
		}
		if off < 0 {
			customers[cohort] = int64(n)
			continue
		}
		if returned[cohort] == nil {
			returned[cohort] = map[int]int64{}
		}
		returned[cohort][int(off)] = int64(n)
	}
	if err := rows.Err(); err != nil {
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
// requester's latest snapshot (RecordMemberships) at or before that second. A ticket counts
// under each of those names; a ticket whose requester had no snapshot yet counts under none.
// Resolved, median hours and reopen rate are as in ResolutionCohorts. Rows are sorted by
// segment name.
func (s *Store) Segments(ctx context.Context, f reports.Filter) ([]reports.SegmentRow, error) {
	sp, err := newSpan(f)
	if err != nil {
		return nil, err
	}
	kind := f.Kind
	if kind == "" {
		kind = "segment"
	}
	tickets, args := ticketsSQL(f, sp, "", "reopened", "requester")
	// No ASOF JOIN in 18.16: every snapshot of the ticket's requester joins the ticket, those
	// after its creation are dropped, and argMax keeps the latest of the rest. The right side
	// is the snapshots of the tenants asked for, which the join holds in memory.
	q := fmt.Sprintf(`SELECT segment, uniqExact(tenant, t_requester), count(), countIf(t_closed),
    quantileExactIf(0.5)(t_dur, t_closed), countIf(t_reopened)
FROM
(
    SELECT tenant, ticket_id, any(requester_id) AS t_requester, any(is_closed) AS t_closed, any(dur) AS t_dur,
        any(reopened) AS t_reopened, argMax(names, snap_s) AS seg_names
    FROM
    (
        SELECT tenant, ticket_id, requester AS requester_id, created_s, is_closed, toUInt32(closed_s - created_s) AS dur, reopened
        FROM (%s)
        WHERE requester != 0 AND created_s >= ? AND created_s < ?
    )
    ALL INNER JOIN
    (
        SELECT tenant, requester_id, toUInt32(at) AS snap_s, names
        FROM klaviyo_memberships
        WHERE tenant IN ? AND kind = ?
    ) USING (tenant, requester_id)
    WHERE snap_s <= created_s
    GROUP BY tenant, ticket_id
)
ARRAY JOIN seg_names AS segment
GROUP BY segment
ORDER BY segment`, tickets)
	args = append(args, sp.from, sp.end, sp.tenants, kind)
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "segments %s", f)
	}
	defer rows.Close()
	var out []reports.SegmentRow
	for rows.Next() {
		var r reports.SegmentRow
		var customers, opened, resolved, reopened uint64
		var median uint32
		if err := rows.Scan(&r.Segment, &customers, &opened, &resolved, &median, &reopened); err != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "segments %s", f)
		}
		r.Customers, r.Opened, r.Resolved = int64(customers), int64(opened), int64(resolved)
		r.ReopenRate = float64(reopened) / float64(opened)
		if resolved > 0 {
			r.MedianHours = hours(median)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "segments %s", f)
	}
	return out, nil
}
