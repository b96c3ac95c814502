package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
	"golang.org/x/term"
)

const replayUsage = `Usage: zenklav replay [flags]

Sends the dead letters of ` + schemas.TicketEventsDLQTopic + ` (those of --role sms: of
` + schemas.SMSEventsDLQTopic + `) back to the topic they came from (header
zenklav-origin-topic), with their original key and value. It reads the topic up to
where it ended when the run started, so a message that fails again waits for the next run.
Replaying twice is safe: Klaviyo and ClickHouse drop the copies.

Flags (all optional; together they must all match):
`

// replay is `zenklav replay`.
func replay(ctx context.Context, e *env, opts kafka.ReplayOptions, stdout io.Writer) error {
	var err error
	if e.brokers, err = e.needBrokers("replay reads and writes"); err != nil {
		return err
	}
	var pub zenklav.Publisher
	if !opts.DryRun {
		pub = e.kafkaProducer()
	}
	rep := newReplayReport(stdout, opts.DryRun)
	opts.Progress = rep.progress
	if opts.DryRun {
		opts.Match = rep.match
	}
	st, err := kafka.Replay(ctx, e.logger, e.brokers, pub, opts)
	// The summary comes even after a failure: it says how far the run got.
	rep.finish(st, err == nil)
	return err
}

// parseReplayFlags reads replay's flags; durations in --since and --until count back from now.
func parseReplayFlags(args []string, now time.Time, out io.Writer) (kafka.ReplayOptions, error) {
	opts := kafka.ReplayOptions{Topic: schemas.TicketEventsDLQTopic, Roles: replayRoles("")}
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, replayUsage)
		fs.PrintDefaults()
	}
	connection := fs.String("connection", "", "only the dead letters of this connection `ID` (header "+kafka.HeaderConnection+")")
	ticket := fs.String("ticket", "", "only the dead letters of ticket `N` (header zenklav-ticket)")
	since := fs.String("since", "", "only those that failed at or after `TIME`: RFC 3339 (2025-03-01T00:00:00Z), or a duration back from now (24h, 7d)")
	until := fs.String("until", "", "only those that failed at or before `TIME`, as for --since")
	role := fs.String("role", "", "only those the `ROLE` gave up on: "+strings.Join(replayRoles(""), " or "))
	fs.BoolVar(&opts.DryRun, "dry-run", false, "count and list what would be replayed; send nothing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return opts, err
		}
		return opts, fmt.Errorf("replay: %w", err)
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("replay: unexpected argument %q (filters are flags, such as --ticket %s)", fs.Arg(0), fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	f := &opts.Filter
	if set["connection"] {
		if f.Connection = strings.TrimSpace(*connection); f.Connection == "" {
			return opts, errors.New("replay: --connection is empty")
		}
	}
	if set["ticket"] {
		n, err := strconv.ParseInt(strings.TrimSpace(*ticket), 10, 64)
		if err != nil || n <= 0 {
			return opts, fmt.Errorf("replay: --ticket=%q is not a ticket id (a positive whole number)", *ticket)
		}
		f.Ticket = n
	}
	var err error
	if set["since"] {
		if f.Since, err = parseWhen("since", *since, now); err != nil {
			return opts, err
		}
	}
	if set["until"] {
		if f.Until, err = parseWhen("until", *until, now); err != nil {
			return opts, err
		}
	}
	f.Role = *role
	if err := f.Validate(opts.Roles); err != nil {
		return opts, fmt.Errorf("replay: %w", err)
	}
	if f.Role != "" {
		// Each role's dead letters are in its role's topic.
		opts.Topic = rolesNamed(f.Role)[0].dlq
	}
	opts.Roles = replayRoles(opts.Topic)
	return opts, nil
}

// parseWhen reads an RFC 3339 time, or a duration that counts back from now. Days are
// allowed (7d) because that is how an operator thinks of a dead-letter backlog.
func parseWhen(name, v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if days, ok := strings.CutSuffix(v, "d"); ok && err != nil {
		var n int
		if n, err = strconv.Atoi(days); err == nil {
			d = time.Duration(n) * 24 * time.Hour
		}
	}
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("replay: --%s=%q is neither an RFC 3339 time such as 2025-03-01T00:00:00Z nor a positive duration such as 24h or 7d", name, v)
	}
	return now.Add(-d), nil
}

// replayReport shows a replay's progress: a bar on a terminal, otherwise a plain line every
// few seconds (a bar's carriage returns make a mess of logs and files).
type replayReport struct {
	out    io.Writer
	dryRun bool
	bar    *progressbar.ProgressBar // nil until the total is known, and when out is no terminal
	tty    bool
	every  time.Duration // between plain lines
	last   time.Time     // when the last plain line was written
}

func newReplayReport(out io.Writer, dryRun bool) *replayReport {
	f, ok := out.(*os.File)
	return &replayReport{out: out, dryRun: dryRun, tty: ok && term.IsTerminal(int(f.Fd())), every: 5 * time.Second, last: time.Now()}
}

func (r *replayReport) progress(st kafka.ReplayStats) {
	verb, n := "replayed", st.Replayed
	if r.dryRun {
		verb, n = "matched", st.Matched
	}
	if !r.tty {
		if time.Since(r.last) >= r.every {
			r.last = time.Now()
			fmt.Fprintf(r.out, "replay: scanned %d/%d, %s %d\n", st.Scanned, st.Total, verb, n)
		}
		return
	}
	if r.bar == nil {
		if st.Total == 0 {
			return // progressbar refuses an empty bar, and there is nothing to show
		}
		r.bar = progressbar.NewOptions64(st.Total,
			progressbar.OptionSetWriter(r.out),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetItsString("messages"),
			progressbar.OptionShowIts(),
		)
	}
	r.bar.Describe(fmt.Sprintf("%s %d:", verb, n))
	_ = r.bar.Set64(st.Scanned) // a terminal that cannot be written to is no reason to stop
}

// match lists one dead letter of a dry run.
func (r *replayReport) match(m kafka.ReplayMatch) {
	if r.bar != nil {
		_ = r.bar.Clear() // the line goes above the bar, which redraws below it
	}
	what := "would replay " + m.From + " → " + m.To
	if m.To == "" {
		what = "would skip " + m.From + " (no zenklav-origin-topic header)"
	}
	fmt.Fprintf(r.out, "%s connection=%s ticket=%s role=%s failed-at=%s reason=%q\n",
		what, dash(m.Connection), dash(m.Ticket), dash(m.Role), dash(m.FailedAt), m.Reason)
}

// dash stands in for a header the dead letter lacks, so the listing keeps its columns.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// finish ends the bar and prints the summary line.
func (r *replayReport) finish(st kafka.ReplayStats, ok bool) {
	if r.bar != nil {
		if ok {
			_ = r.bar.Finish()
		}
		_ = r.bar.Exit()
		fmt.Fprintln(r.out)
	}
	if r.dryRun {
		fmt.Fprintf(r.out, "dry run, nothing sent: scanned %d/%d, matched %d, would replay %d, skipped %d (no origin topic header)\n",
			st.Scanned, st.Total, st.Matched, st.Matched-st.Skipped, st.Skipped)
		return
	}
	fmt.Fprintf(r.out, "scanned %d/%d, matched %d, replayed %d, skipped %d (no origin topic header)\n",
		st.Scanned, st.Total, st.Matched, st.Replayed, st.Skipped)
}
