package analytics_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/reports"
	"github.com/zenklav/zenklav/schemas"
)

// The report tests generate tickets, store their events (with duplicates, out of order),
// and compare every report row with answers computed here in Go from the same events.

var (
	la, _      = time.LoadLocation("America/Los_Angeles")
	kolkata, _ = time.LoadLocation("Asia/Kolkata")
)

type snapshot struct {
	tenant    string
	requester int64
	at        time.Time
	kind      string
	names     []string
}

type dataset struct {
	events    []schemas.TicketEvent
	snapshots []snapshot
}

// generate makes tickets for three tenants from late 2025 to spring 2026: statuses that
// move new → open → pending → solved → closed, some reopened (half of them told by a
// delivery without the previous status), some left open, some deleted, some whose created
// event never arrives; brands, channels, tags, groups and assignees that change on the way;
// creation times near midnight in UTC, Los Angeles and Kolkata; and a small pool of
// requesters per tenant so customers come back.
func generate(seed uint64) dataset {
	r := rand.New(rand.NewPCG(seed, 7))
	var d dataset
	start := time.Date(2025, 11, 20, 0, 0, 0, 0, time.UTC)
	// Minutes past midnight UTC that sit close to a midnight somewhere: 23:59 UTC, 07:59 and
	// 08:00 UTC (Los Angeles in winter), 18:29 and 18:30 UTC (Kolkata).
	nearMidnight := []int{0, 1, 23*60 + 59, 7*60 + 59, 8 * 60, 18*60 + 29, 18*60 + 30, 6*60 + 59, 7 * 60}
	tagSets := [][]string{{"order"}, {"order", "vip"}, {"refund"}, {}, {"sms", "vip"}}
	for ti, tenant := range []string{"acme", "globex", "initech"} {
		n := 260 + 40*ti
		for i := range n {
			ticket := int64(1000 + i)
			requester := int64(100 + r.IntN(60))
			dayOff := r.IntN(150)
			minute := r.IntN(24 * 60)
			if r.IntN(3) == 0 {
				minute = nearMidnight[r.IntN(len(nearMidnight))]
			}
			created := start.Add(time.Duration(dayOff)*24*time.Hour + time.Duration(minute)*time.Minute + time.Duration(r.IntN(60))*time.Second)
			brand := int64(11 + r.IntN(3) + 10*ti)
			channel := []string{"email", "web", "sms"}[r.IntN(3)]
			priority := []string{"low", "normal", "high"}[r.IntN(3)]
			tags := tagSets[r.IntN(len(tagSets))]
			group := int64(r.IntN(3))
			assignee := int64(0)
			at := created
			seq := 0
			add := func(typ, status, previous string) {
				seq++
				d.events = append(d.events, schemas.TicketEvent{
					EventID: fmt.Sprintf("zd:%s-%d-%d", tenant, ticket, seq), Connection: tenant,
					Account: schemas.Account{Subdomain: tenant, ID: int64(ti + 1)}, BrandID: brand,
					Type: typ, Source: schemas.SourceEvent, OccurredAt: at, ReceivedAt: at.Add(time.Second),
					Ticket: schemas.Ticket{ID: ticket, Subject: "s", Status: status, PreviousStatus: previous,
						Priority: priority, Tags: slices.Clone(tags), Channel: channel, Via: channel,
						Requester: schemas.Requester{ID: requester}, AssigneeID: assignee, GroupID: group},
				})
			}
			step := func() { at = at.Add(time.Duration(1+r.IntN(60*50)) * time.Minute) }
			if r.IntN(12) != 0 {
				add(schemas.TicketCreated, zenklav.StatusNew, "")
			}
			step()
			assignee = int64(500 + r.IntN(4))
			add(schemas.TicketStatusChanged, zenklav.StatusOpen, zenklav.StatusNew)
			if r.IntN(4) == 0 {
				step()
				group, priority = int64(r.IntN(3)), "urgent"
				add(schemas.TicketFieldsChanged, zenklav.StatusOpen, "")
			}
			if r.IntN(5) == 0 {
				continue // still open
			}
			step()
			add(schemas.TicketStatusChanged, zenklav.StatusPending, zenklav.StatusOpen)
			step()
			add(schemas.TicketStatusChanged, zenklav.StatusSolved, zenklav.StatusPending)
			if r.IntN(4) == 0 { // reopened
				step()
				if r.IntN(2) == 0 {
					add(schemas.TicketStatusChanged, zenklav.StatusOpen, zenklav.StatusSolved)
				} else {
					add(schemas.TicketCommentAdded, zenklav.StatusOpen, "")
				}
				step()
				add(schemas.TicketStatusChanged, zenklav.StatusSolved, zenklav.StatusOpen)
			}
			switch r.IntN(10) {
			case 0: // deleted
				step()
				add(schemas.TicketStatusChanged, zenklav.StatusDeleted, zenklav.StatusSolved)
			case 1, 2: // solved, not closed yet
			default:
				at = at.Add(time.Duration(r.IntN(30*24)) * time.Hour)
				add(schemas.TicketStatusChanged, zenklav.StatusClosed, zenklav.StatusSolved)
				if r.IntN(8) == 0 { // Zendesk told us twice, by two webhooks
					at = at.Add(time.Minute)
					add(schemas.TicketCommentAdded, zenklav.StatusClosed, "")
				}
			}
		}
		for req := int64(100); req < 160; req++ {
			if r.IntN(4) == 0 {
				continue // never seen by the sidebar
			}
			for k := range 1 + r.IntN(3) {
				names := [][]string{{"VIP"}, {"VIP", "Newsletter"}, {}, {"Churn risk"}}[r.IntN(4)]
				if tenant == "globex" {
					names = []string{"Globex only"}
				}
				// Snapshots of one customer never share a second: which of two would be the
				// latest is not defined.
				at := start.Add(time.Duration(r.IntN(160*24))*time.Hour + time.Duration(k)*time.Second)
				d.snapshots = append(d.snapshots, snapshot{tenant, req, at, "segment", names})
				if k == 0 {
					d.snapshots = append(d.snapshots, snapshot{tenant, req, at, "list", []string{"Master list"}})
				}
			}
		}
	}
	return d
}

// load stores the data set the way production sees it: the snapshots as the sidebar records
// them, before the tickets they describe; then the events in several batches, the batches
// out of order, and a third of the events delivered twice, each batch inserted and folded
// into ticket_rows as the sink's two consumers do (only inserted, without fold).
func load(t *testing.T, s *analytics.Store, d dataset, fold bool) {
	t.Helper()
	ctx := context.Background()
	for i, sn := range d.snapshots {
		if err := s.RecordMemberships(ctx, sn.tenant, sn.requester, sn.at, sn.kind, sn.names); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 { // the sidebar showed the same card twice
			if err := s.RecordMemberships(ctx, sn.tenant, sn.requester, sn.at, sn.kind, sn.names); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, b := range loadBatches(d, 700) {
		if err := s.InsertTicketEvents(ctx, b); err != nil {
			t.Fatal(err)
		}
		if !fold {
			continue
		}
		if err := s.SummarizeTicketEvents(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
}

// loadBatches are the events in batches of size, shuffled, and a third of them again.
func loadBatches(d dataset, size int) [][]schemas.TicketEvent {
	r := rand.New(rand.NewPCG(3, 4))
	events := slices.Clone(d.events)
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	var batches [][]schemas.TicketEvent
	for off := 0; off < len(events); off += size {
		batches = append(batches, events[off:min(off+size, len(events))])
	}
	var again []schemas.TicketEvent
	for _, e := range events {
		if r.IntN(3) == 0 {
			again = append(again, e)
		}
	}
	return append(batches, again)
}

// ticket is what the expected answers know of one ticket, from its events.
type ticket struct {
	tenant                  string
	id                      int64
	created, closed         time.Time // closed zero when never
	reopened, deleted       bool
	requester, brand, group int64
	assignee                int64
	channel, priority       string
	tags                    []string
}

func tickets(events []schemas.TicketEvent) []ticket {
	type key struct {
		tenant string
		id     int64
	}
	byTicket := map[key][]schemas.TicketEvent{}
	for _, e := range events {
		k := key{e.Connection, e.Ticket.ID}
		byTicket[k] = append(byTicket[k], e)
	}
	var out []ticket
	for k, evs := range byTicket {
		sort.Slice(evs, func(i, j int) bool { return evs[i].OccurredAt.Before(evs[j].OccurredAt) })
		tk := ticket{tenant: k.tenant, id: k.id, created: evs[0].OccurredAt}
		for _, e := range evs {
			if e.Type == schemas.TicketCreated {
				tk.created = e.OccurredAt
				break
			}
		}
		var solved time.Time
		for _, e := range evs {
			st := e.Ticket.Status
			open := st == zenklav.StatusNew || st == zenklav.StatusOpen || st == zenklav.StatusPending || st == zenklav.StatusHold
			if st == zenklav.StatusClosed && tk.closed.IsZero() {
				tk.closed = e.OccurredAt
			}
			if st == zenklav.StatusSolved && solved.IsZero() {
				solved = e.OccurredAt
			}
			if open && (e.Ticket.PreviousStatus == zenklav.StatusSolved || !solved.IsZero() && e.OccurredAt.After(solved)) {
				tk.reopened = true
			}
		}
		if !tk.closed.IsZero() && tk.closed.Before(tk.created) {
			tk.closed = tk.created
		}
		last := evs[len(evs)-1]
		tk.deleted = last.Ticket.Status == zenklav.StatusDeleted
		tk.requester, tk.brand, tk.group, tk.assignee = last.Ticket.Requester.ID, last.BrandID, last.Ticket.GroupID, last.Ticket.AssigneeID
		tk.channel, tk.priority, tk.tags = last.Ticket.Channel, last.Ticket.Priority, last.Ticket.Tags
		out = append(out, tk)
	}
	return out
}

func (tk ticket) keys(by string) []string {
	switch by {
	case "brand":
		return []string{strconv.FormatInt(tk.brand, 10)}
	case "channel":
		return []string{tk.channel}
	case "priority":
		return []string{tk.priority}
	case "group":
		return []string{strconv.FormatInt(tk.group, 10)}
	case "assignee":
		return []string{strconv.FormatInt(tk.assignee, 10)}
	case "tag":
		if len(tk.tags) == 0 {
			return []string{""}
		}
		return tk.tags
	}
	return []string{""}
}

// selected is the filter's tickets, deleted ones left out.
func selected(all []ticket, f reports.Filter) []ticket {
	var out []ticket
	for _, tk := range all {
		allowed := slices.Contains(f.Connections, tk.tenant) && (f.Connection == "" || f.Connection == tk.tenant)
		if !allowed || tk.deleted || f.BrandID != 0 && tk.brand != f.BrandID || f.Channel != "" && tk.channel != f.Channel ||
			f.Tag != "" && !slices.Contains(tk.tags, f.Tag) {
			continue
		}
		out = append(out, tk)
	}
	return out
}

// bounds is the range in f.TZ as instants, and the periods as their start instants.
func bounds(f reports.Filter) (from, end time.Time, starts []time.Time) {
	y, m, d := f.From.Date()
	from = time.Date(y, m, d, 0, 0, 0, 0, f.TZ)
	y, m, d = f.To.Date()
	end = time.Date(y, m, d+1, 0, 0, 0, 0, f.TZ)
	for day := from; day.Before(end); day = day.AddDate(0, 0, 1) {
		p := reports.PeriodStart(day, f.Interval)
		if len(starts) == 0 || !starts[len(starts)-1].Equal(p) {
			starts = append(starts, p)
		}
	}
	return from, end, starts
}

func period(t time.Time, f reports.Filter) string {
	return reports.PeriodStart(t.In(f.TZ), f.Interval).Format(time.DateOnly)
}

func wantTrends(all []ticket, f reports.Filter) []reports.TrendRow {
	from, end, starts := bounds(f)
	sel := selected(all, f)
	keys := map[string]bool{}
	for _, tk := range sel {
		for _, k := range tk.keys(f.By) {
			if tk.created.Before(end) {
				keys[k] = true
			}
		}
	}
	if f.By == "" {
		keys[""] = true
	}
	var out []reports.TrendRow
	for i, p := range starts {
		pend := end
		if i+1 < len(starts) {
			pend = starts[i+1]
		}
		pstart := p
		if from.After(p) {
			pstart = from
		}
		var rows []reports.TrendRow
		for k := range keys {
			row := reports.TrendRow{Period: p.Format(time.DateOnly), Key: k}
			for _, tk := range sel {
				if !slices.Contains(tk.keys(f.By), k) {
					continue
				}
				in := func(t time.Time) bool { return !t.IsZero() && !t.Before(pstart) && t.Before(pend) }
				if in(tk.created) {
					row.Opened++
				}
				if in(tk.closed) {
					row.Resolved++
				}
				if tk.created.Before(pend) && (tk.closed.IsZero() || !tk.closed.Before(pend)) {
					row.Backlog++
				}
			}
			rows = append(rows, row)
		}
		out = append(out, rows...)
	}
	// Keys that are zero throughout are left out, as the store leaves them out.
	nonzero := map[string]bool{"": f.By == ""}
	for _, r := range out {
		if r.Opened != 0 || r.Resolved != 0 || r.Backlog != 0 {
			nonzero[r.Key] = true
		}
	}
	out = slices.DeleteFunc(out, func(r reports.TrendRow) bool { return !nonzero[r.Key] })
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Period != out[j].Period {
			return out[i].Period < out[j].Period
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// quantile is ClickHouse's quantileExact of the sorted durations in seconds, taken in whole
// minutes: the element at ⌊level × n⌋, in hours.
func quantile(sorted []int64, level float64) float64 {
	i := min(len(sorted)-1, int(level*float64(len(sorted))))
	return float64(sorted[i]/60) / 60
}

func wantCohorts(all []ticket, f reports.Filter) []reports.ResolutionCohortRow {
	from, end, _ := bounds(f)
	type acc struct {
		n, c1, c3, c7, c14, c30, reopened int64
		durs                              []int64
	}
	accs := map[string]*acc{}
	for _, tk := range selected(all, f) {
		if tk.created.Before(from) || !tk.created.Before(end) {
			continue
		}
		c := period(tk.created, f)
		if accs[c] == nil {
			accs[c] = &acc{}
		}
		a := accs[c]
		a.n++
		if tk.reopened {
			a.reopened++
		}
		if tk.closed.IsZero() {
			continue
		}
		d := int64(tk.closed.Sub(tk.created) / time.Second)
		a.durs = append(a.durs, d)
		for _, w := range []struct {
			days int64
			n    *int64
		}{{1, &a.c1}, {3, &a.c3}, {7, &a.c7}, {14, &a.c14}, {30, &a.c30}} {
			if d <= w.days*86400 {
				*w.n++
			}
		}
	}
	var out []reports.ResolutionCohortRow
	for c, a := range accs {
		n := float64(a.n)
		r := reports.ResolutionCohortRow{Cohort: c, Tickets: a.n, Closed1d: float64(a.c1) / n, Closed3d: float64(a.c3) / n,
			Closed7d: float64(a.c7) / n, Closed14d: float64(a.c14) / n, Closed30d: float64(a.c30) / n, ReopenRate: float64(a.reopened) / n}
		if len(a.durs) > 0 {
			slices.Sort(a.durs)
			m, p := quantile(a.durs, .5), quantile(a.durs, .9)
			r.MedianHours, r.P90Hours = &m, &p
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cohort < out[j].Cohort })
	return out
}

// index numbers periods consecutively: days since the epoch, weeks since the epoch's Monday,
// or months since year 0.
func index(t time.Time, f reports.Filter) int {
	p := reports.PeriodStart(t.In(f.TZ), f.Interval)
	days := int(time.Date(p.Year(), p.Month(), p.Day(), 0, 0, 0, 0, time.UTC).Unix() / 86400)
	switch f.Interval {
	case reports.Week:
		return (days + 3) / 7 // 1970-01-01 was a Thursday
	case reports.Month:
		return p.Year()*12 + int(p.Month())
	}
	return days
}

func wantRepeat(all []ticket, f reports.Filter) []reports.RepeatCohortRow {
	from, end, starts := bounds(f)
	type cust struct {
		tenant string
		id     int64
	}
	times := map[cust][]time.Time{}
	for _, tk := range selected(all, f) {
		if tk.requester == 0 || !tk.created.Before(end) {
			continue
		}
		c := cust{tk.tenant, tk.requester}
		times[c] = append(times[c], tk.created)
	}
	customers := map[string]int64{}
	returned := map[string]map[int]int64{}
	for _, ts := range times {
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		if ts[0].Before(from) {
			continue
		}
		c := period(ts[0], f)
		customers[c]++
		offs := map[int]bool{}
		for _, t := range ts[1:] {
			offs[index(t, f)-index(ts[0], f)] = true
		}
		for o := range offs {
			if returned[c] == nil {
				returned[c] = map[int]int64{}
			}
			returned[c][o]++
		}
	}
	var out []reports.RepeatCohortRow
	for i, p := range starts {
		c := p.Format(time.DateOnly)
		n := customers[c]
		if n == 0 {
			continue
		}
		for o := 0; i+o < len(starts); o++ {
			out = append(out, reports.RepeatCohortRow{Cohort: c, Customers: n, Offset: o, Returned: returned[c][o], Share: float64(returned[c][o]) / float64(n)})
		}
	}
	return out
}

func wantSegments(all []ticket, snaps []snapshot, f reports.Filter) []reports.SegmentRow {
	from, end, _ := bounds(f)
	kind := f.Kind
	if kind == "" {
		kind = "segment"
	}
	type acc struct {
		customers        map[string]bool
		opened, reopened int64
		durs             []int64
	}
	accs := map[string]*acc{}
	for _, tk := range selected(all, f) {
		if tk.requester == 0 || tk.created.Before(from) || !tk.created.Before(end) {
			continue
		}
		var latest *snapshot
		for i, s := range snaps {
			if s.tenant == tk.tenant && s.requester == tk.requester && s.kind == kind && !s.at.After(tk.created) &&
				(latest == nil || s.at.After(latest.at)) {
				latest = &snaps[i]
			}
		}
		if latest == nil {
			continue
		}
		for _, name := range latest.names {
			if accs[name] == nil {
				accs[name] = &acc{customers: map[string]bool{}}
			}
			a := accs[name]
			a.customers[fmt.Sprint(tk.tenant, tk.requester)] = true
			a.opened++
			if tk.reopened {
				a.reopened++
			}
			if !tk.closed.IsZero() {
				a.durs = append(a.durs, int64(tk.closed.Sub(tk.created)/time.Second))
			}
		}
	}
	var out []reports.SegmentRow
	for name, a := range accs {
		r := reports.SegmentRow{Segment: name, Customers: int64(len(a.customers)), Opened: a.opened, Resolved: int64(len(a.durs)),
			ReopenRate: float64(a.reopened) / float64(a.opened)}
		if len(a.durs) > 0 {
			slices.Sort(a.durs)
			m := quantile(a.durs, .5)
			r.MedianHours = &m
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Segment < out[j].Segment })
	return out
}

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestReports(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	// Merges stopped: the reports must be exact with every cancel row still beside the row
	// it cancels, which is how they find recent changes, and then after the merges.
	for _, table := range []string{"ticket_rows", "customer_rows"} {
		if err := s.Exec(ctx, "SYSTEM STOP MERGES "+table); err != nil {
			t.Fatal(err)
		}
	}
	d := generate(1)
	load(t, s, d, true)
	all := tickets(d.events)
	for what, q := range map[string]string{
		"cancel rows of closed tickets": "SELECT count() FROM ticket_rows WHERE sign < 0 AND is_closed = 1 AND deleted = 0",
		"cancel rows in a segment":      "SELECT count() FROM ticket_rows WHERE sign < 0 AND notEmpty(segments) AND deleted = 0",
		"cancel rows of customers":      "SELECT count() FROM customer_rows WHERE sign < 0",
	} {
		// Without them the slow paths of the queries (netQuantiles, the recount) go untested.
		if n, err := s.Count(ctx, q); err != nil || n == 0 {
			t.Fatalf("%s: %d, %v; the data set must make some", what, n, err)
		}
	}
	t.Run("unmerged", func(t *testing.T) { checkReports(t, s, d, all) })
	for _, table := range []string{"ticket_rows", "customer_rows"} {
		if err := s.Exec(ctx, "SYSTEM START MERGES "+table); err != nil {
			t.Fatal(err)
		}
		if err := s.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Count(ctx, "SELECT count() FROM ticket_rows WHERE sign < 0"); err != nil || n != 0 {
		t.Fatalf("cancel rows after OPTIMIZE FINAL: %d, %v", n, err)
	}
	t.Run("merged", func(t *testing.T) { checkReports(t, s, d, all) })
}

// checkReports compares every report, under many filters, with the answers computed here.
func checkReports(t *testing.T, s *analytics.Store, d dataset, all []ticket) {
	ctx := context.Background()

	base := reports.Filter{Connections: []string{"acme", "globex", "initech"}, From: date("2026-01-05"), To: date("2026-03-18"), Interval: reports.Week, TZ: time.UTC}
	with := func(change func(*reports.Filter)) reports.Filter {
		f := base
		change(&f)
		return f
	}
	filters := map[string]reports.Filter{
		"all, weeks, UTC":        base,
		"all, days, Los Angeles": with(func(f *reports.Filter) { f.Interval, f.TZ = reports.Day, la }),
		"all, days, Kolkata":     with(func(f *reports.Filter) { f.Interval, f.TZ = reports.Day, kolkata }),
		"all, months, Kolkata":   with(func(f *reports.Filter) { f.Interval, f.TZ = reports.Month, kolkata }),
		"months, Los Angeles, year": with(func(f *reports.Filter) {
			f.Interval, f.TZ, f.From, f.To = reports.Month, la, date("2025-12-01"), date("2026-04-30")
		}),
		"one connection":         with(func(f *reports.Filter) { f.Connection = "acme" }),
		"tenants asked":          with(func(f *reports.Filter) { f.Connections = []string{"globex", "initech"} }),
		"brand":                  with(func(f *reports.Filter) { f.BrandID = 12 }),
		"channel, days, LA":      with(func(f *reports.Filter) { f.Channel, f.Interval, f.TZ = "sms", reports.Day, la }),
		"tag":                    with(func(f *reports.Filter) { f.Tag = "vip" }),
		"brand and tag, Kolkata": with(func(f *reports.Filter) { f.BrandID, f.Tag, f.TZ = 21, "order", kolkata }),
		"one day": with(func(f *reports.Filter) {
			f.From, f.To, f.Interval = date("2026-02-10"), date("2026-02-10"), reports.Day
		}),
		"lists": with(func(f *reports.Filter) { f.Kind = "list" }),
	}
	for _, by := range reports.Breakdowns {
		filters["by "+by] = with(func(f *reports.Filter) { f.By = by })
	}
	filters["by tag, tag, LA"] = with(func(f *reports.Filter) { f.By, f.Tag, f.TZ = "tag", "vip", la })

	for name, f := range filters {
		t.Run(name, func(t *testing.T) {
			trends, err := s.Trends(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, "trends", trends, wantTrends(all, f))
			if f.By != "" {
				return // the other reports have no breakdown
			}
			cohorts, err := s.ResolutionCohorts(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, "resolution cohorts", cohorts, wantCohorts(all, f))
			repeat, err := s.RepeatCohorts(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, "repeat cohorts", repeat, wantRepeat(all, f))
			segments, err := s.Segments(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, "segments", segments, wantSegments(all, d.snapshots, f))
		})
	}
}

// compare reports the first rows that differ, and any difference in number.
func compare[R any](t *testing.T, what string, got, want []R) {
	t.Helper()
	if len(want) == 0 {
		t.Errorf("%s: the data set gives no rows for this filter: not a test", what)
	}
	bad := 0
	for i := range max(len(got), len(want)) {
		var g, w any = "(none)", "(none)"
		if i < len(got) {
			g = show(got[i])
		}
		if i < len(want) {
			w = show(want[i])
		}
		if g != w {
			if bad++; bad <= 5 {
				t.Errorf("%s row %d:\n got  %v\n want %v", what, i, g, w)
			}
		}
	}
	if bad > 0 || len(got) != len(want) {
		t.Errorf("%s: %d rows differ; %d rows, want %d", what, bad, len(got), len(want))
	}
}

// show prints a row with its pointers followed and floats to 9 places, so rows compare by value.
func show(row any) string {
	f := func(p *float64) string {
		if p == nil {
			return "nil"
		}
		return strconv.FormatFloat(*p, 'f', 9, 64)
	}
	r := func(x float64) string { return strconv.FormatFloat(math.Round(x*1e9)/1e9, 'f', 9, 64) }
	switch v := row.(type) {
	case reports.ResolutionCohortRow:
		return fmt.Sprintf("%s n=%d %s %s %s %s %s median=%s p90=%s reopen=%s", v.Cohort, v.Tickets, r(v.Closed1d), r(v.Closed3d), r(v.Closed7d),
			r(v.Closed14d), r(v.Closed30d), f(v.MedianHours), f(v.P90Hours), r(v.ReopenRate))
	case reports.SegmentRow:
		return fmt.Sprintf("%s customers=%d opened=%d resolved=%d median=%s reopen=%s", v.Segment, v.Customers, v.Opened, v.Resolved, f(v.MedianHours), r(v.ReopenRate))
	case reports.RepeatCohortRow:
		return fmt.Sprintf("%s customers=%d +%d returned=%d share=%s", v.Cohort, v.Customers, v.Offset, v.Returned, r(v.Share))
	}
	return fmt.Sprintf("%+v", row)
}

// TestReportsReadOnlyTheirTenants: a tenant outside Filter.Tenants (here globex, whose
// brands and segment are its own) never shows, even asked for by connection.
func TestReportsReadOnlyTheirTenants(t *testing.T) {
	s := openStore(t)
	d := generate(2)
	load(t, s, d, true)
	ctx := context.Background()
	f := reports.Filter{Connections: []string{"acme", "initech"}, From: date("2025-11-01"), To: date("2026-06-30"), Interval: reports.Month, TZ: time.UTC, By: "brand"}
	trends, err := s.Trends(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range trends {
		if r.Key == "21" || r.Key == "22" || r.Key == "23" {
			t.Errorf("globex's brand %s in %+v", r.Key, r)
		}
	}
	f.By = ""
	segments, err := s.Segments(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range segments {
		if r.Segment == "Globex only" {
			t.Errorf("globex's segment in %+v", r)
		}
	}
	f.Connection = "globex"
	if _, err := s.Trends(ctx, f); err == nil {
		t.Error("a connection outside the tenants was read")
	}
}

// Two writers that raced on a ticket (a consumer-group rebalance in the middle of a batch)
// leave it with two live rows, and its customer too; the ticket's next event, even a
// redelivered one, repairs both.
func TestTicketRowsRepairAfterRacingWriters(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	d := generate(1)
	load(t, s, d, true)
	all := tickets(d.events)
	f := reports.Filter{Connections: []string{"acme", "globex", "initech"}, From: date("2026-01-05"), To: date("2026-03-18"), Interval: reports.Week, TZ: time.UTC}
	for _, q := range []string{
		"INSERT INTO customer_rows SELECT * FROM customer_rows WHERE (tenant, requester_id) IN (SELECT tenant, requester_id FROM ticket_rows WHERE ticket_id % 3 = 0)",
		"INSERT INTO ticket_rows SELECT * FROM ticket_rows WHERE ticket_id % 3 = 0",
	} {
		if err := s.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	trends, err := s.Trends(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(trends, wantTrends(all, f)) {
		t.Fatal("the doubled rows do not show in the trends: the test tests nothing")
	}
	s.ForgetTicketRows() // as the sink's fold does after a rebalance: the rows changed behind it
	if err := s.SummarizeTicketEvents(ctx, d.events); err != nil {
		t.Fatal(err)
	}
	oneLiveRow(t, s)
	checkReports(t, s, d, all)
}

// Migration 0005 fills the report rows from the events ticket_events already holds, and the
// fold, reading the topic from its start, agrees with it.
func TestMigrationSeedsTheReportRows(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	d := generate(1)
	load(t, s, d, false)
	all := tickets(d.events)
	seeds, err := analytics.SeedStatements()
	if err != nil || len(seeds) != 2 {
		t.Fatalf("seed statements: %d, %v", len(seeds), err)
	}
	for _, q := range seeds {
		if err := s.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("seeded", func(t *testing.T) { checkReports(t, s, d, all) })
	if err := s.SummarizeTicketEvents(ctx, d.events); err != nil {
		t.Fatal(err)
	}
	oneLiveRow(t, s)
	// The fold rewrote no ticket: its rules and the migration's agree.
	if n, err := s.Count(ctx, "SELECT count() FROM ticket_rows WHERE sign < 0"); err != nil || n != 0 {
		t.Errorf("%d tickets rewritten, %v", n, err)
	}
	t.Run("folded again", func(t *testing.T) { checkReports(t, s, d, all) })
}

// oneLiveRow checks that every ticket and every customer has exactly one live row.
func oneLiveRow(t *testing.T, s *analytics.Store) {
	t.Helper()
	for what, q := range map[string]string{
		"tickets":   "SELECT count() FROM (SELECT tenant, ticket_id, sum(sign) AS n FROM ticket_rows GROUP BY tenant, ticket_id HAVING n != 1)",
		"customers": "SELECT count() FROM (SELECT tenant, requester_id, sum(sign) AS n FROM customer_rows GROUP BY tenant, requester_id HAVING n != 1)",
	} {
		if n, err := s.Count(context.Background(), q); err != nil || n != 0 {
			t.Errorf("%d %s without exactly one live row, %v", n, what, err)
		}
	}
}
