// Command zenklav is the Zendesk ⇄ Klaviyo integration: one binary whose roles (api, sink,
// …) run together in `zenklav all` or apart in production.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "zenklav:", err)
		os.Exit(1)
	}
}

const usage = `zenklav: the Zendesk ⇄ Klaviyo integration

Usage: zenklav <command>

Roles (run until stopped):
  all       every role in one process; embedded Kafka and sandbox mode when not configured
  api       HTTP: Zendesk webhooks in, the sidebar, the reports API and page, health, metrics
  emitter   turns ticket events into Klaviyo metrics (Opened Ticket, Resolved Ticket)
  sink      copies ticket events from Kafka into ClickHouse

Tools:
  migrate   applies the ClickHouse migrations and exits
  replay    sends dead letters back to the topic they came from (zenklav replay -h)
  backfill  writes a connection's Zendesk ticket history to Kafka (zenklav backfill -h)
  token     prints a report token for the reports API and page (zenklav token -h)
  report    prints a ticket report from ClickHouse (zenklav report trends -h)
  help      prints this

Configuration is read from the environment (see README.md, "Configuration").
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return fmt.Errorf("no command given")
	}
	switch args[0] {
	case "all", "api", "emitter", "sink":
		return runRoles(ctx, args[0], getenv, stdout)
	case "migrate":
		return migrate(ctx, getenv, stdout)
	case "replay":
		return replay(ctx, args[1:], getenv, stdout)
	case "backfill":
		return backfill(ctx, args[1:], getenv, stdout)
	case "token":
		return token(ctx, args[1:], getenv, stdout)
	case "report":
		return report(ctx, args[1:], getenv, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stdout, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
