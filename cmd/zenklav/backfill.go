package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/ingest"
	"github.com/zenklav/zenklav/internal/retry"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
	"golang.org/x/term"
)

const backfillUsage = `Usage: zenklav backfill --connection ID --since DATE [--to-klaviyo] [--restart]

Reads a connection's ticket history from Zendesk's Incremental Ticket Export (the tickets that
changed since DATE) and writes it to ` + schemas.TicketEventsTopic + ` as ticket events, so reports cover
the past. Each ticket becomes a "created" event at its creation time and, unless it is still
new, a "status_changed" to its current status at its last update: what a ticket's snapshot
tells; the steps in between are not known and not invented.

Safe to repeat: event ids are deterministic, so ClickHouse keeps one row of each, and the
cursor is saved after every page Kafka acknowledged (in ZENKLAV_DATA_DIR/backfill-ID.json),
so a run that was stopped or crashed goes on where it was. Once a run has reached the end,
running it again fetches only what changed since.

Without --to-klaviyo nothing reaches Klaviyo: the emitter passes backfilled events over. With
it, the emitter sends Opened Ticket and Resolved Ticket as Klaviyo backfill (recorded, no
flows triggered) with the same unique ids as live events, so history that overlaps live
events is not counted twice.

Flags:
`

// backfillFlags are backfill's command line.
type backfillFlags struct {
	connection string
	since      time.Time
	toKlaviyo  bool
	restart    bool
	perMinute  int
}

func parseBackfillFlags(args []string, now time.Time, out io.Writer) (backfillFlags, error) {
	var f backfillFlags
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, backfillUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.connection, "connection", "", "the connection `ID` whose Zendesk history to read (required)")
	since := fs.String("since", "", "read the tickets that changed at or after `DATE`: 2025-01-01 (midnight UTC) or RFC 3339 (required)")
	fs.BoolVar(&f.toKlaviyo, "to-klaviyo", false, "also send the metrics to Klaviyo, as backfill (no flows)")
	fs.BoolVar(&f.restart, "restart", false, "ignore the saved cursor and start again from --since")
	fs.IntVar(&f.perMinute, "rate", zendesk.ExportPerMinute, "export `PAGES` a minute: Zendesk allows 10 (more with its High Volume API add-on)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, err
		}
		return f, fmt.Errorf("backfill: %w", err)
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("backfill: unexpected argument %q", fs.Arg(0))
	}
	if f.connection = strings.TrimSpace(f.connection); f.connection == "" {
		return f, errors.New("backfill: --connection is required")
	}
	s := strings.TrimSpace(*since)
	var err error
	if f.since, err = time.Parse(time.DateOnly, s); err != nil {
		if f.since, err = time.Parse(time.RFC3339, s); err != nil {
			return f, fmt.Errorf("backfill: --since=%q is neither a date such as 2025-01-01 nor an RFC 3339 time", s)
		}
	}
	f.since = f.since.UTC()
	// Zendesk exports nothing from the last minute and refuses a start time within it.
	if !f.since.Before(now.Add(-time.Minute)) {
		return f, fmt.Errorf("backfill: --since=%s is not at least a minute in the past", s)
	}
	if f.perMinute < 1 {
		return f, fmt.Errorf("backfill: --rate=%d: at least one page a minute", f.perMinute)
	}
	return f, nil
}

// backfill is `zenklav backfill`.
func backfill(ctx context.Context, e *env, f backfillFlags, stdout io.Writer) error {
	job, err := newBackfillJob(ctx, e, f)
	if err != nil {
		return err
	}
	rep := newBackfillReport(stdout, f.since, time.Now())
	job.progress = rep.progress
	st, err := job.run(ctx)
	rep.finish(job, st, err)
	return err
}

// backfillJob is one run of a backfill: everything it needs, built by newBackfillJob.
type backfillJob struct {
	logger    *slog.Logger
	conn      *zenklav.Connection
	conns     *zenklav.Connections // the brand rule decides whose a ticket of a shared account is
	zendesk   *zendesk.Client
	ingest    *ingest.Service
	flags     backfillFlags
	stateFile string
	export    zendesk.ExportOptions
	progress  func(s backfillState, runTickets int64)
	// afterPublish runs once a page is acknowledged by Kafka and before its cursor is saved:
	// the window a crash leaves the page to be written again. Tests crash there.
	afterPublish func(page int)
}

func newBackfillJob(ctx context.Context, e *env, f backfillFlags) (*backfillJob, error) {
	var err error
	if e.brokers, err = e.needBrokers("backfill writes to"); err != nil {
		return nil, err
	}
	if e.cfg.ConnectionsFile == "" {
		return nil, errors.New("ZENKLAV_CONNECTIONS_FILE is empty: backfill reads the connection's Zendesk credentials from it")
	}
	conns, err := e.connections(ctx, "backfill tool")
	if err != nil {
		return nil, err
	}
	conn := conns.ByID(f.connection)
	if conn == nil {
		return nil, zenklav.Errorf(zenklav.ENOTFOUND, "backfill: no connection %q in %s", f.connection, e.cfg.ConnectionsFile)
	}
	if conn.Zendesk.Email == "" || conn.Zendesk.APIToken == "" {
		return nil, fmt.Errorf("backfill: connection %q has no zendesk.email and zendesk.api_token to read its history with", conn.ID)
	}
	if f.toKlaviyo && conn.Klaviyo.PrivateKey == "" {
		return nil, fmt.Errorf("backfill: --to-klaviyo, but connection %q has no Klaviyo account", conn.ID)
	}
	e.logger = e.logger.With("connection", conn.ID)
	// A page of 1000 tickets is several megabytes, which Zendesk takes a while to build.
	zc, err := e.zendeskClient(*conn, time.Minute)
	if err != nil {
		return nil, err
	}
	if err := kafka.WaitForBrokers(ctx, e.logger, e.brokers); err != nil {
		return nil, err
	}
	if err := kafka.EnsureTopics(ctx, e.brokers, e.topic(schemas.TicketEventsTopic, false)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(e.cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("backfill: data dir: %w", err)
	}
	return &backfillJob{
		logger: e.logger, conn: conn, conns: conns, zendesk: zc,
		ingest: ingest.New(ingest.Config{Connections: conns, Publisher: e.kafkaProducer()}), flags: f,
		stateFile: filepath.Join(e.cfg.DataDir, "backfill-"+conn.ID+".json"),
		export:    zendesk.ExportOptions{PerMinute: f.perMinute},
	}, nil
}

// backfillState is the state file: where the export stands, saved after each page Kafka
// acknowledged, and the run's counts.
type backfillState struct {
	Connection  string    `json:"connection"`
	Since       time.Time `json:"since"`
	ToKlaviyo   bool      `json:"to_klaviyo"`
	Cursor      string    `json:"cursor"`
	Reached     time.Time `json:"reached"` // updated_at of the last ticket written
	EndOfStream bool      `json:"end_of_stream"`
	Pages       int       `json:"pages"`
	Tickets     int64     `json:"tickets"`
	Skipped     int64     `json:"skipped"` // tickets of brands another connection syncs
	Events      int64     `json:"events"`
	SavedAt     time.Time `json:"saved_at"`
}

// backfillStats is what one run did, the state's counts being over every run.
type backfillStats struct {
	state    backfillState
	resumed  bool
	tickets  int64 // written by this run
	started  time.Time
	finished time.Time
	export   zendesk.ExportStats
}

func (j *backfillJob) run(ctx context.Context) (st backfillStats, err error) {
	st.started = time.Now()
	state, err := j.loadState()
	if err != nil {
		return st, err
	}
	st.resumed = state.Cursor != ""
	st.state = state
	x, err := j.zendesk.ExportTickets(j.flags.since, state.Cursor, j.export)
	if err != nil {
		return st, err
	}
	j.logger.Info("backfill started", "since", j.flags.since, "resumed", st.resumed, "to_klaviyo", j.flags.toKlaviyo)
	defer func() { st.export, st.finished = x.Stats(), time.Now() }()
	for {
		page, err := x.Next(ctx)
		if err != nil {
			return st, fmt.Errorf("backfill: read Zendesk's export: %w", err)
		}
		events, skipped, reached, err := j.events(page.Tickets)
		if err != nil {
			return st, err
		}
		if err := j.publish(ctx, events); err != nil {
			return st, err
		}
		state.Pages++
		if j.afterPublish != nil {
			j.afterPublish(state.Pages)
		}
		if ctx.Err() != nil {
			return st, ctx.Err() // written but not saved: the next run writes this page again
		}
		written := int64(len(page.Tickets)) - skipped
		state.Tickets += written
		state.Skipped += skipped
		state.Events += int64(len(events))
		state.Cursor, state.EndOfStream = page.Cursor, page.EndOfStream
		if !reached.IsZero() {
			state.Reached = reached
		}
		if err := j.saveState(state); err != nil {
			return st, err
		}
		st.state, st.tickets = state, st.tickets+written
		if j.progress != nil {
			j.progress(state, st.tickets)
		}
		if page.EndOfStream {
			j.logger.Info("backfill reached the end", "tickets", state.Tickets, "events", state.Events, "pages", state.Pages)
			return st, nil
		}
	}
}

// events turns a page of tickets into the connection's ticket events. It returns how many
// tickets belong to another connection's brands, and the last ticket's updated_at.
func (j *backfillJob) events(tickets []zendesk.Ticket) ([]schemas.TicketEvent, int64, time.Time, error) {
	target := zendesk.BackfillTarget{Connection: j.conn.ID, Subdomain: j.conn.Zendesk.Subdomain, ReadAt: time.Now(), ToKlaviyo: j.flags.toKlaviyo}
	var out []schemas.TicketEvent
	var skipped int64
	var reached time.Time
	for _, t := range tickets {
		reached = t.UpdatedAt
		// An account shared by connections, one per brand: the ticket is the one's whose
		// brand it is, as the webhook receiver decides.
		if j.conns.Owner(j.conn.Zendesk.Subdomain, t.BrandID) != j.conn {
			skipped++
			continue
		}
		events, err := zendesk.BackfillEvents(t, target)
		if err != nil {
			// A snapshot zenklav cannot represent is the export's bug or ours; stopping keeps
			// the cursor before it, so nothing after it is passed over unnoticed.
			return nil, 0, reached, fmt.Errorf("backfill: %w", err)
		}
		out = append(out, events...)
	}
	return out, skipped, reached, nil
}

// publishRetry bounds how long a page waits for Kafka to take it.
var publishRetry = retry.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second, MaxElapsed: 2 * time.Minute}

// publish writes a page's events through the ingest service, retrying while Kafka is
// unavailable for up to two minutes.
func (j *backfillJob) publish(ctx context.Context, events []schemas.TicketEvent) error {
	if len(events) == 0 {
		return nil
	}
	err := publishRetry.Do(ctx, j.logger, "kafka write failed, retrying", func(ctx context.Context) error {
		return j.ingest.Publish(ctx, events...)
	})
	if err != nil {
		return fmt.Errorf("backfill: write %d events: %w", len(events), err)
	}
	return nil
}

// loadState reads the state file, or starts a new state when there is none or --restart.
func (j *backfillJob) loadState() (backfillState, error) {
	fresh := backfillState{Connection: j.conn.ID, Since: j.flags.since, ToKlaviyo: j.flags.toKlaviyo}
	if j.flags.restart {
		return fresh, nil
	}
	data, err := os.ReadFile(j.stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return fresh, nil
	}
	if err != nil {
		return fresh, fmt.Errorf("backfill: read state: %w", err)
	}
	var s backfillState
	if err := json.Unmarshal(data, &s); err != nil {
		return fresh, fmt.Errorf("backfill: state file %s is damaged (%v): move it away or run with --restart", j.stateFile, err)
	}
	// Resuming another backfill's cursor would skip what this one was asked for, or send to
	// Klaviyo what it was not.
	if !s.Since.Equal(j.flags.since) || s.ToKlaviyo != j.flags.toKlaviyo || s.Connection != j.conn.ID {
		return fresh, fmt.Errorf("backfill: %s holds a backfill --since %s (to Klaviyo: %v); run it with those flags to go on, or with --restart to start this one",
			j.stateFile, s.Since.Format(time.RFC3339), s.ToKlaviyo)
	}
	return s, nil
}

// saveState replaces the state file atomically: a crash leaves the old one or the new one,
// never half of either.
func (j *backfillJob) saveState(s backfillState) error {
	s.SavedAt = time.Now().UTC()
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(j.stateFile)
	tmp, err := os.CreateTemp(dir, filepath.Base(j.stateFile)+".*.tmp")
	if err != nil {
		return fmt.Errorf("backfill: save state: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing left to remove
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("backfill: save state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("backfill: save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backfill: save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), j.stateFile); err != nil {
		return fmt.Errorf("backfill: save state: %w", err)
	}
	// The rename is durable once the directory is.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("backfill: save state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("backfill: save state: %w", err)
	}
	return nil
}

// backfillReport shows a backfill's progress: a bar on a terminal, a plain line every few
// seconds otherwise. Zendesk's export says nothing of its size, so how far it got is
// estimated from time: the history up to the last ticket's updated_at, out of the history
// from --since to when the run started.
type backfillReport struct {
	out     io.Writer
	since   time.Time
	started time.Time
	bar     *progressbar.ProgressBar // nil when out is no terminal
	every   time.Duration
	last    time.Time
}

func newBackfillReport(out io.Writer, since, now time.Time) *backfillReport {
	r := &backfillReport{out: out, since: since, started: now, every: 5 * time.Second, last: now}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		r.bar = progressbar.NewOptions64(int64(now.Sub(since).Seconds()),
			progressbar.OptionSetWriter(out),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetDescription("backfill: starting"),
		)
	}
	return r
}

// fraction is how much of the history the backfill has read, by time.
func (r *backfillReport) fraction(s backfillState) float64 {
	if s.EndOfStream {
		return 1
	}
	total := r.started.Sub(r.since)
	if total <= 0 || s.Reached.IsZero() {
		return 0
	}
	return min(1, max(0, float64(s.Reached.Sub(r.since))/float64(total)))
}

func (r *backfillReport) progress(s backfillState, run int64) {
	elapsed := time.Since(r.started)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(run) / elapsed.Seconds()
	}
	f := r.fraction(s)
	if r.bar != nil {
		r.bar.Describe(fmt.Sprintf("backfill: %d tickets, %.0f/s, up to %s", s.Tickets, rate, s.Reached.Format(time.DateOnly)))
		_ = r.bar.Set64(int64(f * float64(r.bar.GetMax64()))) // a terminal that cannot be written to is no reason to stop
		return
	}
	if time.Since(r.last) < r.every && !s.EndOfStream {
		return
	}
	r.last = time.Now()
	left := "unknown"
	if f > 0 {
		left = (time.Duration(float64(elapsed) * (1 - f) / f)).Round(time.Second).String()
	}
	fmt.Fprintf(r.out, "backfill: %d tickets, %.0f/s, history read up to %s (%.0f%%), about %s left\n",
		s.Tickets, rate, s.Reached.Format(time.RFC3339), f*100, left)
}

func (r *backfillReport) finish(j *backfillJob, st backfillStats, err error) {
	if r.bar != nil {
		if err == nil {
			_ = r.bar.Finish()
		}
		_ = r.bar.Exit()
		fmt.Fprintln(r.out)
	}
	s := st.state
	took := st.finished.Sub(st.started)
	rate := 0.0
	if took > 0 {
		rate = float64(st.tickets) / took.Seconds()
	}
	how := "done"
	if err != nil {
		how = "stopped (run it again to go on)"
	}
	fmt.Fprintf(r.out, "backfill of %s %s: %d tickets written this run in %s (%.0f/s), %d in all (%d events in %d pages; %d of other connections' brands passed over); %d requests, %d answered 429, %d retried; cursor saved in %s\n",
		j.conn.ID, how, st.tickets, took.Round(time.Millisecond), rate, s.Tickets, s.Events, s.Pages, s.Skipped,
		st.export.Requests, st.export.Throttled, st.export.Retried, j.stateFile)
	if err == nil && j.flags.toKlaviyo {
		fmt.Fprintln(r.out, "the emitter sends their Opened Ticket and Resolved Ticket metrics to Klaviyo as backfill (no flows)")
	}
}
