package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/zenklav/zenklav/zendesk"
)

// exportCeiling is what Zendesk's Incremental Ticket Export lets through at most: 10
// requests a minute of 1,000 tickets.
const exportCeiling = zendesk.ExportPerMinute * zendesk.ExportPageSize / 60.0

// backfillRate measures `zenklav backfill` (bin/zenklav, a child process) reading the
// Zendesk simulator's tickets at Zendesk's own export limits, into Kafka, as a fraction of
// those limits. The rate is taken from the state file the backfill saves after each page
// Kafka acknowledged: tickets between the first saved page and the last, over the time
// between them.
func backfillRate(args []string) error {
	fs := flag.NewFlagSet("backfill", flag.ExitOnError)
	bin := fs.String("zenklav", "bin/zenklav", "the zenklav binary")
	brokers := fs.String("brokers", "", "Kafka brokers")
	n := fs.Int("tickets", 20_000, "tickets in the simulated Zendesk account")
	duration := fs.Duration("duration", 65*time.Second, "how long the backfill runs before it is stopped (at most)")
	fs.Parse(args)
	if *brokers == "" {
		return fmt.Errorf("backfill needs -brokers")
	}
	ctx, _, _, dir, s, done, err := prepare("backfill", *brokers)
	if err != nil {
		return err
	}
	defer done()
	// The simulator keeps Zendesk's export limit (10 a minute) and page size (1,000).
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	addBackfillTickets(s, *n, base)
	// A connection new to every run: its state file and events are its own.
	tenant := fmt.Sprintf("backfill%d", time.Now().Unix())
	conns, err := writeConnectionsIn(dir, []benchConnection{{id: tenant, secret: "backfill-webhook-signing-secret"}})
	if err != nil {
		return err
	}
	logPath := filepath.Join(dir, "zenklav-backfill.log")
	out, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := zenklavCommand(*bin, out, []string{"ZENKLAV_KAFKA_BROKERS=" + *brokers, "ZENKLAV_CONNECTIONS_FILE=" + conns,
		"ZENKLAV_ZENDESK_BASE_URL=" + s.zendeskURL, "ZENKLAV_DATA_DIR=" + dir, "ZENKLAV_LOG_LEVEL=warn"},
		"backfill", "--connection", tenant, "--since", base.Format(time.DateOnly))
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start zenklav backfill: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	samples, exitErr, err := watchBackfill(ctx, cmd, exited, filepath.Join(dir, "backfill-"+tenant+".json"), *duration)
	if err != nil {
		return err
	}
	if len(samples) < 2 {
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("the backfill saved %d pages (%v):\n%s", len(samples), exitErr, log)
	}
	printBackfill(samples, *n, started, logPath)
	return nil
}

// addBackfillTickets adds n tickets to the Zendesk simulator, created 17 minutes apart from
// base, in every status.
func addBackfillTickets(s *sims, n int, base time.Time) {
	statuses := []string{"new", "open", "pending", "solved", "closed", "closed"}
	for i := range n {
		created := base.Add(time.Duration(i) * 17 * time.Minute)
		s.zendesk.AddTicket(zendesk.Ticket{
			Subject: fmt.Sprint("Order ", i), Description: "Where is my order?", Status: statuses[i%len(statuses)],
			Via: zendesk.Via{Channel: "email"}, RequesterID: 1, Tags: []string{"order"},
			CreatedAt: created, UpdatedAt: created.Add(time.Duration(i%72) * time.Hour),
		})
	}
}

// backfillSample is the backfill's progress, as its state file said at one moment.
type backfillSample struct {
	at      time.Time
	pages   int
	tickets int64
}

// watchBackfill reads the backfill's state file every 20 ms until the backfill exits, or
// until duration has passed and it has exited on SIGINT, and returns a sample for each
// page it saved, with the backfill's exit. It kills the backfill when ctx ends.
func watchBackfill(ctx context.Context, cmd *exec.Cmd, exited <-chan error, statePath string, duration time.Duration) (samples []backfillSample, exitErr error, err error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	stop := time.After(duration)
	running := true
	for running {
		select {
		case <-tick.C:
		case <-stop:
			cmd.Process.Signal(syscall.SIGINT) //nolint:errcheck // it may have exited already
			exitErr = <-exited
			running = false
		case exitErr = <-exited:
			running = false
		case <-ctx.Done():
			cmd.Process.Kill() //nolint:errcheck
			<-exited
			return nil, nil, ctx.Err()
		}
		var st struct {
			Pages   int   `json:"pages"`
			Tickets int64 `json:"tickets"`
		}
		if data, err := os.ReadFile(statePath); err == nil && json.Unmarshal(data, &st) == nil {
			if len(samples) == 0 || samples[len(samples)-1].pages != st.Pages {
				samples = append(samples, backfillSample{time.Now(), st.Pages, st.Tickets})
			}
		}
	}
	return samples, exitErr, nil
}

// printBackfill prints the backfill's row: its rate between the first saved page and the
// last, and from the process's start, as fractions of the export's ceiling.
func printBackfill(samples []backfillSample, n int, started time.Time, logPath string) {
	first, last := samples[0], samples[len(samples)-1]
	steady := float64(last.tickets-first.tickets) / last.at.Sub(first.at).Seconds()
	overall := float64(last.tickets) / last.at.Sub(started).Seconds()
	// The backfill's own summary says what its export met, also when it was stopped.
	log, _ := os.ReadFile(logPath)
	met := "its summary line is missing"
	if m := regexp.MustCompile(`(\d+) requests, (\d+) answered 429, (\d+) retried`).FindSubmatch(log); m != nil {
		met = fmt.Sprintf("%s export requests, %s answered 429, %s retried", m[1], m[2], m[3])
	}
	fmt.Printf("| backfill: Zendesk export → Kafka, `zenklav backfill` | %d tickets in the simulator, its export limited as Zendesk's (10 requests/min, 1,000 tickets a page) | %.0f tickets/s = %.1f %% of %.0f/s | %d tickets in %d pages in %.1f s; from process start %.0f tickets/s (%.1f %%); %s |\n",
		n, steady, 100*steady/exportCeiling, exportCeiling, last.tickets, last.pages, last.at.Sub(started).Seconds(),
		overall, 100*overall/exportCeiling, met)
}
