// Command zenklav is the Zendesk ⇄ Klaviyo integration: one binary whose roles (api, sink,
// …) run together in `zenklav all` or apart in production, and whose tools (migrate,
// replay, …) do one job and exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/kafka"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "zenklav:", err)
		os.Exit(1)
	}
}

// tool is one row of the tool table: a command that does one job and exits. It parses its
// flags first, then calls call.start, the one start-up path every command shares.
type tool struct {
	name  string
	usage string
	run   func(ctx context.Context, c call) error
}

// call is how a tool was called.
type call struct {
	args   []string // after the tool's name
	stdout io.Writer
	getenv func(string) string
}

// start reads the configuration into an env; o says where the command's logs go.
func (c call) start(o envOptions) (*env, error) { return newEnv(c.getenv, c.stdout, o) }

var tools = []tool{
	{"migrate", "applies the ClickHouse migrations and exits", withFlags(envOptions{}, noFlags, migrate)},
	{"replay", "sends dead letters back to the topic they came from (zenklav replay -h)", withFlags(envOptions{},
		func(c call) (kafka.ReplayOptions, error) { return parseReplayFlags(c.args, time.Now(), c.stdout) }, replay)},
	{"backfill", "writes a connection's Zendesk ticket history to Kafka (zenklav backfill -h)", withFlags(envOptions{},
		func(c call) (backfillFlags, error) { return parseBackfillFlags(c.args, time.Now(), c.stdout) }, backfill)},
	{"token", "prints a report token for the reports API and page (zenklav token -h)", withFlags(envOptions{},
		func(c call) (auth.TokenRequest, error) { return parseTokenFlags(c.args, c.getenv, c.stdout) }, token)},
	// The report goes to stdout, so the logs go to stderr, and only when they matter.
	{"connections", "keeps the connections in the shared store: apply -f FILE, list, show, disable, enable, remove (zenklav connections -h)",
		withFlags(envOptions{logTo: os.Stderr, minLevel: slog.LevelWarn}, parseConnectionsFlags, connections)},
	// The questions and the changes go to stdout, the logs to stderr, and only when they matter.
	{"setup", "connects a Zendesk and a Klaviyo account step by step, as /admin does; --disconnect ID undoes it (zenklav setup -h)",
		withFlags(envOptions{logTo: os.Stderr, minLevel: slog.LevelWarn}, parseSetupFlags, setupTool)},
	{"secrets", "new-key prints a key for ZENKLAV_SECRETS_KEY; rotate re-seals the stored secrets under the current one",
		withFlags(envOptions{logTo: os.Stderr, minLevel: slog.LevelWarn}, parseSecretsFlags, secrets)},
	{"report", "prints a ticket report from ClickHouse (zenklav report trends -h)", withFlags(envOptions{logTo: os.Stderr, minLevel: slog.LevelWarn},
		func(c call) (reportRequest, error) { return parseReportFlags(c.args, c.stdout) }, report)},
}

// withFlags makes a tool that reads its flags first, so that a mistake in them stops it
// before it touches anything (and -h prints its help), then starts its env with o and runs
// body with what the flags said.
func withFlags[F any](o envOptions, parse func(c call) (F, error), body func(ctx context.Context, e *env, f F, out io.Writer) error) func(context.Context, call) error {
	return func(ctx context.Context, c call) error {
		f, err := parse(c)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		if err != nil {
			return err
		}
		e, err := c.start(o)
		if err != nil {
			return err
		}
		defer e.close()
		return body(ctx, e, f, c.stdout)
	}
}

// noFlags is the flags of a tool that takes none.
func noFlags(call) (struct{}, error) { return struct{}{}, nil }

// usage is the help, read from the role and tool tables.
func usage() string {
	var s strings.Builder
	s.WriteString("zenklav: the Zendesk ⇄ Klaviyo integration\n\nUsage: zenklav <command>\n\nRoles (run until stopped):\n")
	fmt.Fprintf(&s, "  %-9s every role in one process; embedded Kafka and sandbox mode when not configured\n", "all")
	for _, r := range roles {
		fmt.Fprintf(&s, "  %-9s %s\n", r.name, r.usage)
	}
	s.WriteString("\nTools:\n")
	for _, t := range tools {
		fmt.Fprintf(&s, "  %-9s %s\n", t.name, t.usage)
	}
	fmt.Fprintf(&s, "  %-9s prints this\n\nConfiguration is read from the environment (see README.md, \"Configuration\").\n", "help")
	return s.String()
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage())
		return fmt.Errorf("no command given")
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage())
		return nil
	}
	if len(rolesNamed(name)) > 0 {
		return runRoles(ctx, name, getenv, stdout)
	}
	for _, t := range tools {
		if t.name == name {
			return t.run(ctx, call{args: args[1:], stdout: stdout, getenv: getenv})
		}
	}
	fmt.Fprint(stdout, usage())
	return fmt.Errorf("unknown command %q", name)
}

// migrate is `zenklav migrate`.
func migrate(ctx context.Context, e *env, _ struct{}, stdout io.Writer) error {
	if _, err := e.ticketStore(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ClickHouse database %s at %s is up to date\n", e.cfg.ClickHouseDatabase, e.cfg.ClickHouseAddr)
	return nil
}
