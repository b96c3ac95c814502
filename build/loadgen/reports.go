package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/reports"
	"github.com/zenklav/zenklav/schemas"
)

// reportLatency generates a year of one tenant's ticket events into a ClickHouse database of
// its own, through analytics.Store.InsertTicketEvents in time order (so each ticket's events
// reach the report rows in different batches, as they do in production), and then times each
// report with the filters a marketer uses most.
func reportLatency(args []string) error {
	fs := flag.NewFlagSet("reports", flag.ExitOnError)
	ch := fs.String("clickhouse", "", "ClickHouse native address")
	events := fs.Int("events", 10_000_000, "ticket events to generate, over one year")
	runs := fs.Int("runs", 20, "runs of each report")
	batch := fs.Int("batch", 100_000, "events per insert")
	keep := fs.Bool("keep", false, "keep the database afterwards")
	loaded := fs.Bool("loaded", false, "time the reports right after loading too, before the report rows are merged")
	fs.Parse(args)
	if *ch == "" || *events < 1000 {
		return fmt.Errorf("reports needs -clickhouse and -events ≥ 1000")
	}
	ctx := context.Background()
	logger := warnLogger()
	db := fmt.Sprintf("bench_reports_%d", time.Now().UnixNano())
	store, err := analytics.Open(ctx, logger, analytics.Config{Addr: *ch, Database: db, User: "default"})
	if err != nil {
		return err
	}
	defer store.Close()
	if !*keep {
		defer store.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+db) //nolint:errcheck // best effort
	} else {
		fmt.Fprintln(os.Stderr, "loadgen: database", db)
	}
	if _, err := store.Migrate(ctx); err != nil {
		return err
	}

	start := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	g := newYear(*events, start)
	if err := seedMemberships(ctx, store, start, g.customers); err != nil {
		return err
	}
	n, copied, folded, err := g.insert(ctx, store, *batch)
	if err != nil {
		return err
	}
	fmt.Printf("| reports: load | %s events, %s tickets, %s customers, one year | copied %.0f events/s, folded %.0f events/s | batches of %s: InsertTicketEvents two at a time and SummarizeTicketEvents one at a time, side by side, as the sink's consumers |\n",
		thousands(n), thousands(g.tickets), thousands(g.customers), float64(n)/copied.Seconds(), float64(n)/folded.Seconds(), thousands(*batch))

	measures, err := reportMeasures(ctx, store, start)
	if err != nil {
		return err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{*ch}, Auth: clickhouse.Auth{Database: db, Username: "default"}})
	if err != nil {
		return err
	}
	defer conn.Close()
	b := &reportBench{ctx: ctx, store: store, conn: conn, db: db, measures: measures, events: n, runs: *runs}
	return b.timePhases(*loaded)
}

// seedMemberships snapshots segments for a fifth of the customers, as if the sidebar had
// shown them along the year, straight into ClickHouse before the tickets they describe (the
// fold reads them); their insert is not what is measured.
func seedMemberships(ctx context.Context, store *analytics.Store, start time.Time, customers int) error {
	if err := store.Exec(ctx, `INSERT INTO klaviyo_memberships (tenant, kind, requester_id, at, names)
SELECT 'bench', 'segment', toInt64(number * 5 + 1), toDateTime(?) + number % 300 * 86400,
    arrayFilter(x -> x != '', [if(number % 3 = 0, 'VIP', ''), if(number % 4 = 1, 'Newsletter', ''), if(number % 7 = 2, 'Churn risk', '')])
FROM numbers(?)`, start.Unix(), customers/5); err != nil {
		return fmt.Errorf("memberships: %w", err)
	}
	return nil
}

// reportMeasure is one report, with the filters it is timed with.
type reportMeasure struct {
	name string
	run  func() error
}

// reportMeasures are the reports of the year from start, with the filters a marketer uses
// most.
func reportMeasures(ctx context.Context, store *analytics.Store, start time.Time) ([]reportMeasure, error) {
	year := reports.Filter{Connections: []string{"bench"}, From: start, To: start.AddDate(1, 0, -1), Interval: reports.Week, TZ: time.UTC}
	month := year
	month.From, month.To, month.Interval = start.AddDate(0, 9, 0), start.AddDate(0, 10, -1), reports.Day
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		return nil, err
	}
	with := func(f reports.Filter, change func(*reports.Filter)) reports.Filter { change(&f); return f }
	trends := func(f reports.Filter) func() error {
		return func() error { _, err := store.Trends(ctx, f); return err }
	}
	return []reportMeasure{
		{"trends, a year by week", trends(year)},
		{"trends, a year by week, by brand", trends(with(year, func(f *reports.Filter) { f.By = "brand" }))},
		{"trends, a year by week, one tag, by channel", trends(with(year, func(f *reports.Filter) { f.Tag, f.By = "shipping", "channel" }))},
		{"trends, a month by day, one brand, Los Angeles", trends(with(month, func(f *reports.Filter) { f.BrandID, f.TZ = 2, la }))},
		{"resolution cohorts, a year by week", func() error { _, err := store.ResolutionCohorts(ctx, year); return err }},
		{"resolution cohorts, a year by month, one brand", func() error {
			_, err := store.ResolutionCohorts(ctx, with(year, func(f *reports.Filter) { f.Interval, f.BrandID = reports.Month, 1 }))
			return err
		}},
		{"repeat cohorts, a year by week", func() error { _, err := store.RepeatCohorts(ctx, year); return err }},
		{"repeat cohorts, a year by month, one tag", func() error {
			_, err := store.RepeatCohorts(ctx, with(year, func(f *reports.Filter) { f.Interval, f.Tag = reports.Month, "refund" }))
			return err
		}},
		{"segments, a year", func() error { _, err := store.Segments(ctx, year); return err }},
		{"segments, a month, one channel", func() error {
			_, err := store.Segments(ctx, with(month, func(f *reports.Filter) { f.Channel = "email" }))
			return err
		}},
	}, nil
}

// reportBench times the reports of one loaded database, and names the state of its report
// rows in each table row.
type reportBench struct {
	ctx      context.Context
	store    *analytics.Store
	conn     clickhouse.Conn // for ClickHouse's system tables
	db       string
	measures []reportMeasure
	events   int // in the database
	runs     int // of each report
}

// timePhases times the reports in the states the report rows go through after a load:
// just loaded (when loaded), merges settled, and merged.
func (b *reportBench) timePhases(loaded bool) error {
	if loaded {
		if err := b.timeAll(", just loaded (ticket_rows: " + b.parts() + ")"); err != nil {
			return err
		}
	}
	// Once ClickHouse's background merges are done with the load, as they are minutes after
	// any burst: some cancel rows remain, in parts not merged together yet.
	if err := b.settle(); err != nil {
		return err
	}
	var cancels uint64
	if err := b.conn.QueryRow(b.ctx, "SELECT count() FROM ticket_rows WHERE sign < 0").Scan(&cancels); err != nil {
		return err
	}
	if err := b.timeAll(fmt.Sprintf(", merges settled (ticket_rows: %s, %s cancel rows)", b.parts(), thousands(int(cancels)))); err != nil {
		return err
	}
	// A year-old store has had its merges done long ago, except for the last hours' parts.
	for _, table := range []string{"ticket_rows", "customer_rows"} {
		if err := b.store.Exec(b.ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			return err
		}
	}
	return b.timeAll(", merged (ticket_rows: " + b.parts() + ")")
}

// timeAll times each report: a first run warms the caches, then runs runs are timed. label
// says what state the database is in.
func (b *reportBench) timeAll(label string) error {
	for _, m := range b.measures {
		if err := m.run(); err != nil { // the first run warms the caches
			return fmt.Errorf("%s: %w", m.name, err)
		}
		lat := make([]time.Duration, b.runs)
		for i := range lat {
			t := time.Now()
			if err := m.run(); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			lat[i] = time.Since(t)
		}
		slices.Sort(lat)
		fmt.Printf("| report: %s | %s events%s | %d runs | p50 %s, p95 %s |\n", m.name, thousands(b.events), label, b.runs, ms(quantile(lat, .50)), ms(quantile(lat, .95)))
	}
	return nil
}

// parts says how many active parts and rows ticket_rows has: the fewer parts, the less a
// report has to merge as it reads.
func (b *reportBench) parts() string {
	var count, rows uint64
	if err := b.conn.QueryRow(b.ctx, "SELECT count(), sum(rows) FROM system.parts WHERE database = ? AND table = 'ticket_rows' AND active", b.db).Scan(&count, &rows); err != nil {
		return "parts unknown: " + err.Error()
	}
	return fmt.Sprintf("%d parts, %s rows", count, thousands(int(rows)))
}

// settle waits until ClickHouse has run no merge in the database for two checks a second
// apart, for 5 minutes at most.
func (b *reportBench) settle() error {
	for quiet, deadline := 0, time.Now().Add(5*time.Minute); quiet < 2 && time.Now().Before(deadline); time.Sleep(time.Second) {
		var merging uint64
		if err := b.conn.QueryRow(b.ctx, "SELECT count() FROM system.merges WHERE database = ?", b.db).Scan(&merging); err != nil {
			return err
		}
		if quiet = quiet + 1; merging > 0 {
			quiet = 0
		}
	}
	return nil
}

// year is a tenant's year of tickets, kept compact: each ticket's attributes, and its
// events by day as (ticket, step) pairs, turned into TicketEvents only when inserted.
type year struct {
	start     time.Time
	tickets   int
	customers int
	info      []ticketInfo
	days      [][]eventRef // by day since start; the last ones hold what spills past the year
}

type ticketInfo struct {
	created   uint32 // seconds since start
	requester int32
	brand     int8
	channel   int8
	priority  int8
	tags      int8
	group     int8
	assignee  int16
}

type eventRef struct {
	ticket int32
	step   int8   // index into steps
	at     uint32 // seconds since start
}

// A ticket's life: created, open, pending, solved, and then closed (most), or reopened once
// and solved again before closing, or still open or solved at the year's end.
var steps = []struct{ typ, status, previous string }{
	{schemas.TicketCreated, zenklav.StatusNew, ""},
	{schemas.TicketStatusChanged, zenklav.StatusOpen, zenklav.StatusNew},
	{schemas.TicketCommentAdded, zenklav.StatusOpen, ""},
	{schemas.TicketStatusChanged, zenklav.StatusPending, zenklav.StatusOpen},
	{schemas.TicketStatusChanged, zenklav.StatusSolved, zenklav.StatusPending},
	{schemas.TicketStatusChanged, zenklav.StatusOpen, zenklav.StatusSolved}, // reopened
	{schemas.TicketStatusChanged, zenklav.StatusSolved, zenklav.StatusOpen},
	{schemas.TicketStatusChanged, zenklav.StatusClosed, zenklav.StatusSolved},
}

var (
	benchChannels = []string{"email", "email", "email", "web", "web", "chat", "sms", "api"}
	benchPriority = []string{"low", "normal", "normal", "normal", "high", "urgent"}
	benchTagSets  = [][]string{{"order"}, {"order", "shipping"}, {"refund"}, {"shipping"}, {"vip", "order"}, {}, {"sms"}, {"returns", "refund"}, {"account"}, {"billing", "vip"}}
)

func newYear(events int, start time.Time) *year {
	r := rand.New(rand.NewPCG(42, 6))
	const avg = 5.3 // events per ticket, on average over the life above
	y := &year{start: start, tickets: int(float64(events) / avg)}
	y.customers = max(1, y.tickets/4)
	y.days = make([][]eventRef, 366+120)
	secs := float64(365 * 24 * 3600)
	total := 0
	for i := range y.tickets {
		created := uint32(float64(i) / float64(y.tickets) * secs)
		// Customers: most write once, a long tail many times.
		req := int32(1 + int(math.Pow(r.Float64(), 2.5)*float64(y.customers)))
		y.info = append(y.info, ticketInfo{created: created, requester: req, brand: int8(1 + min(4, int(r.ExpFloat64()))),
			channel: int8(r.IntN(len(benchChannels))), priority: int8(r.IntN(len(benchPriority))), tags: int8(r.IntN(len(benchTagSets))),
			group: int8(1 + r.IntN(8)), assignee: int16(1 + r.IntN(60))})
		at := created
		add := func(step int8) {
			if total >= events {
				return
			}
			d := int(at / 86400)
			if d < len(y.days) {
				y.days[d] = append(y.days[d], eventRef{int32(i), step, at})
				total++
			}
		}
		// Hours between steps: log-normal, a long tail of tickets that wait for weeks.
		wait := func(median float64) { at += uint32(60 + median*3600*math.Exp(r.NormFloat64())) }
		add(0)
		wait(0.5)
		add(1)
		if r.IntN(2) == 0 {
			wait(2)
			add(2)
		}
		if r.IntN(10) == 0 {
			continue // still open
		}
		wait(4)
		add(3)
		wait(12)
		add(4)
		if r.IntN(8) == 0 {
			wait(24)
			add(5)
			wait(6)
			add(6)
		}
		if r.IntN(10) == 0 {
			continue // solved, not closed
		}
		wait(72)
		add(7)
	}
	return y
}

// insert sends the events in time order, in batches, as the sink's two consumers take them:
// inserted into ticket_events two at a time, and folded into the report rows one at a time,
// side by side. It says how long each took.
func (y *year) insert(ctx context.Context, store *analytics.Store, size int) (n int, copied, folded time.Duration, err error) {
	start := time.Now()
	toCopy, toFold := make(chan []schemas.TicketEvent, 2), make(chan []schemas.TicketEvent, 4)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var copiers sync.WaitGroup
	for range 2 {
		copiers.Go(func() {
			for b := range toCopy {
				if err := store.InsertTicketEvents(ctx, b); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Go(func() {
		copiers.Wait()
		copied = time.Since(start)
	})
	wg.Go(func() {
		for b := range toFold {
			if err := store.SummarizeTicketEvents(ctx, b); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}
		folded = time.Since(start)
	})
	cur := make([]schemas.TicketEvent, 0, size)
	flush := func() {
		toCopy <- cur
		toFold <- cur
		cur = make([]schemas.TicketEvent, 0, size)
	}
	for _, day := range y.days {
		slices.SortFunc(day, func(a, b eventRef) int { return int(a.at) - int(b.at) })
		for _, e := range day {
			cur = append(cur, y.event(e))
			n++
			if len(cur) == size {
				flush()
			}
		}
	}
	if len(cur) > 0 {
		flush()
	}
	close(toCopy)
	close(toFold)
	wg.Wait()
	return n, copied, folded, errors.Join(errs...)
}

func (y *year) event(e eventRef) schemas.TicketEvent {
	t := y.info[e.ticket]
	s := steps[e.step]
	at := y.start.Add(time.Duration(e.at) * time.Second)
	id := int64(e.ticket) + 1
	return schemas.TicketEvent{
		EventID: "zd:bench-" + strconv.FormatInt(id, 10) + "-" + strconv.Itoa(int(e.step)), Connection: "bench",
		Account: schemas.Account{Subdomain: "bench", ID: 1}, BrandID: int64(t.brand), Type: s.typ, Source: schemas.SourceEvent,
		OccurredAt: at, ReceivedAt: at,
		Ticket: schemas.Ticket{ID: id, Subject: "Where is my order?", Status: s.status, PreviousStatus: s.previous,
			Priority: benchPriority[t.priority], Tags: benchTagSets[t.tags], Channel: benchChannels[t.channel], Via: benchChannels[t.channel],
			Requester: schemas.Requester{ID: int64(t.requester)}, AssigneeID: int64(t.assignee), GroupID: int64(t.group)},
	}
}
