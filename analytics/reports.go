package analytics

import (
	"context"
	"fmt"
	"maps"
	"slices"
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

// where is the WHERE clause (and its arguments) that selects ticket_rows for the filter:
// its tenants, brand, channel and tag, deleted tickets left out.
func where(f reports.Filter, sp span) (string, []any) {
	conds := []string{"tenant IN ?", "deleted = 0"}
	args := []any{sp.tenants}
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
	cond, args := where(f, sp)
	// One pass: per key, the tickets by the period they opened in and the one they closed in
	// (0 = before From, 65535 = not closed by To's end), so both counts and the backlog come
	// from one grouping. Periods are Dates, compared as day numbers.
	key, outer := "toUInt8(0)", "''"
	switch f.By {
	case "brand":
		key, outer = "brand_id", "toString(k)"
	case "channel":
		key, outer = "channel", "k"
	case "priority":
		key, outer = "priority", "k"
	case "group":
		key, outer = "group_id", "toString(k)"
	case "assignee":
		key, outer = "assignee_id", "toString(k)"
	case "tag":
		// A ticket without tags is counted under "", so every ticket is under some key.
		key, outer = "tags", "arrayJoin(if(empty(k), [''], k))"
	}
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
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "trends %s", f)
	}
	defer rows.Close()
	type cell struct{ opened, resolved int64 }
	cells := map[[2]string]cell{}
	keys := map[string]bool{}
	period := func(d uint16) string {
		if d == 0 {
			return "" // before From: the starting backlog
		}
		return dayNumber(d)
	}
	for rows.Next() {
		var key string
		var pc, pr uint16
		var n int64
		if err := rows.Scan(&key, &pc, &pr, &n); err != nil {
			return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "trends %s", f)
		}
		if n == 0 {
			continue // rows that cancelled out
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
// percentile hours to close over those closed so far (in whole minutes, nearest rank: the
// smallest time with at least ⌈level × n⌉ of the n times at or below it), and the share
// reopened. Periods without tickets have no row.
func (s *Store) ResolutionCohorts(ctx context.Context, f reports.Filter) ([]reports.ResolutionCohortRow, error) {
	sp, err := newSpan(f)
	if err != nil {
		return nil, err
	}
	cond, args := where(f, sp)
	args = append(args, sp.from, sp.end)
	period := sp.periodSQL("created_s")
	// Counts by the close bucket (0 = open) and reopened, then quantiles, each one pass.
	q := fmt.Sprintf(`SELECT toUInt16(%s) AS cohort, close_bucket, reopened, sum(sign)
FROM ticket_rows
WHERE %s AND created_s >= ? AND created_s < ?
GROUP BY cohort, close_bucket, reopened`, period, cond)
	type cohort struct {
		n, closed, reopened int64
		within              map[uint8]int64 // closed within N days, for the bucket N
		minutes             []uint32
	}
	cohorts := map[uint16]*cohort{}
	err = s.query(ctx, q, args, func(rows driver.Rows) error {
		var c uint16
		var bucket, reopened uint8
		var n int64
		if err := rows.Scan(&c, &bucket, &reopened, &n); err != nil {
			return err
		}
		if cohorts[c] == nil {
			cohorts[c] = &cohort{within: map[uint8]int64{}}
		}
		co := cohorts[c]
		co.n += n
		if bucket != 0 {
			co.closed += n
			co.within[bucket] += n
		}
		if reopened == 1 {
			co.reopened += n
		}
		return nil
	})
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "resolution cohorts %s", f)
	}
	q = fmt.Sprintf(`SELECT toUInt16(%s) AS cohort, quantilesExactWeighted(0.5, 0.9)(close_minutes, sign)
FROM ticket_rows
WHERE %s AND is_closed = 1 AND created_s >= ? AND created_s < ?
GROUP BY cohort`, period, cond)
	err = s.query(ctx, q, args, func(rows driver.Rows) error {
		var c uint16
		var qs []uint32
		if err := rows.Scan(&c, &qs); err != nil {
			return err
		}
		if co := cohorts[c]; co != nil {
			co.minutes = qs
		}
		return nil
	})
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "resolution cohorts %s", f)
	}
	var out []reports.ResolutionCohortRow
	for _, c := range slices.Sorted(maps.Keys(cohorts)) {
		co := cohorts[c]
		if co.n == 0 {
			continue // only rows that cancelled out
		}
		share := func(k int64) float64 { return float64(k) / float64(co.n) }
		upTo := func(days uint8) float64 {
			var k int64
			for b, n := range co.within {
				if b <= days {
					k += n
				}
			}
			return share(k)
		}
		r := reports.ResolutionCohortRow{Cohort: dayNumber(c), Tickets: co.n, ReopenRate: share(co.reopened),
			Closed1d: upTo(1), Closed3d: upTo(3), Closed7d: upTo(7), Closed14d: upTo(14), Closed30d: upTo(30)}
		if co.closed > 0 && len(co.minutes) == 2 {
			r.MedianHours, r.P90Hours = hours(co.minutes[0]), hours(co.minutes[1])
		}
		out = append(out, r)
	}
	return out, nil
}

func hours(minutes uint32) *float64 {
	h := float64(minutes) / 60
	return &h
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
	conds := []string{"t < ?"}
	args := []any{sp.end}
	if f.BrandID != 0 {
		conds, args = append(conds, "b = ?"), append(args, f.BrandID)
	}
	if f.Channel != "" {
		conds, args = append(conds, "ch = ?"), append(args, f.Channel)
	}
	if f.Tag != "" {
		conds, args = append(conds, "has(g, ?)"), append(args, f.Tag)
	}
	q := fmt.Sprintf(`SELECT toUInt16(%s) AS cohort, off, sum(sign)
FROM
(
    SELECT sign, ts[1] AS first_s, arrayMap(t -> toInt64(%s), ts) AS ps
    FROM
    (
        SELECT sign, arrayFilter((t, b, ch, g) -> %s, created, brands, channels, tag_sets) AS ts
        FROM customer_rows
        WHERE tenant IN ?
    )
    WHERE notEmpty(ts) AND ts[1] >= ?
)
ARRAY JOIN arrayConcat([-1], arrayDistinct(arrayMap(p -> p - ps[1], arraySlice(ps, 2)))) AS off
GROUP BY cohort, off`, sp.periodSQL("first_s"), sp.indexSQL("t"), strings.Join(conds, " AND "))
	args = append(args, sp.tenants, sp.from)
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
	args = append(args, sp.from, sp.end)
	// Tickets, then customers: a customer counts in a segment while any of their tickets
	// there is live (sum(sign) > 0).
	q := fmt.Sprintf(`SELECT segment, sum(sign), sumIf(sign, is_closed = 1), quantileExactWeightedIf(0.5)(close_minutes, sign, is_closed = 1),
    sumIf(sign, reopened = 1)
FROM ticket_rows
ARRAY JOIN %s AS segment
WHERE %s AND requester_id != 0 AND created_s >= ? AND created_s < ?
GROUP BY segment`, names, cond)
	bySegment := map[string]*reports.SegmentRow{}
	err = s.query(ctx, q, args, func(rows driver.Rows) error {
		var r reports.SegmentRow
		var resolved, reopened int64
		var median uint32
		if err := rows.Scan(&r.Segment, &r.Opened, &resolved, &median, &reopened); err != nil {
			return err
		}
		if r.Opened == 0 {
			return nil
		}
		r.Resolved = resolved
		r.ReopenRate = float64(reopened) / float64(r.Opened)
		if resolved > 0 {
			r.MedianHours = hours(median)
		}
		bySegment[r.Segment] = &r
		return nil
	})
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "segments %s", f)
	}
	q = fmt.Sprintf(`SELECT segment, countIf(n > 0)
FROM
(
    SELECT segment, tenant, requester_id, sum(sign) AS n
    FROM ticket_rows
    ARRAY JOIN %s AS segment
    WHERE %s AND requester_id != 0 AND created_s >= ? AND created_s < ?
    GROUP BY segment, tenant, requester_id
)
GROUP BY segment`, names, cond)
	err = s.query(ctx, q, args, func(rows driver.Rows) error {
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
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "segments %s", f)
	}
	out := make([]reports.SegmentRow, 0, len(bySegment))
	for _, name := range slices.Sorted(maps.Keys(bySegment)) {
		out = append(out, *bySegment[name])
	}
	return out, nil
}
