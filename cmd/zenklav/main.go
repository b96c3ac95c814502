// Command zenklav is the Zendesk ⇄ Klaviyo integration: one binary whose roles (api, sink,
// …) run together in `zenklav all` or apart in production, and whose tools (migrate,
// replay, …) do one job and exit.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
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
	{"migrate", "applies the ClickHouse migrations and exits", migrate},
	{"replay", "sends dead letters back to the topic they came from (zenklav replay -h)", replay},
	{"backfill", "writes a connection's Zendesk ticket history to Kafka (zenklav backfill -h)", backfill},
	{"token", "prints a report token for the reports API and page (zenklav token -h)", token},
	{"report", "prints a ticket report from ClickHouse (zenklav report trends -h)", report},
}

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
func migrate(ctx context.Context, c call) error {
	e, err := c.start(envOptions{})
	if err != nil {
		return err
	}
	defer e.close()
	if _, err := e.ticketStore(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "ClickHouse database %s at %s is up to date\n", e.cfg.ClickHouseDatabase, e.cfg.ClickHouseAddr)
	return nil
}
