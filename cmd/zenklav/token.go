package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/auth"
)

const tokenUsage = `Usage: zenklav token --role marketer|admin --tenant ID [--tenant ID …] [--ttl 24h] [--sub NAME]

Prints a report token for the reports API and the /reports page, signed with the current
key of ZENKLAV_JWT_SIGNING_KEY, and on a second line the page's URL with the token in it
(from ZENKLAV_HTTP_ADDR; put your public address in its place). For the token alone:
zenklav token … | head -n1

A marketer reads the reports of its tenants (connection ids of ZENKLAV_CONNECTIONS_FILE);
an admin may be given every tenant with --tenant '*'. The token cannot be revoked: it lasts
until it expires, or until its key is dropped from ZENKLAV_JWT_SIGNING_KEY.

Flags:
`

// token is `zenklav token`.
func token(ctx context.Context, e *env, req auth.TokenRequest, stdout io.Writer) error {
	cfg := e.cfg
	var err error
	if len(cfg.JWTKeys) == 0 {
		return errors.New("token: ZENKLAV_JWT_SIGNING_KEY is empty: set it here and for the api role (or zenklav all) alike; " +
			"sandbox mode's own key is made up at start and dies with the process")
	}
	var conns *zenklav.Connections
	if cfg.ConnectionsFile != "" {
		if conns, err = e.connections(ctx, "token tool"); err != nil {
			return fmt.Errorf("token: %w", err)
		}
	}
	tokens, err := auth.NewReports(cfg.JWTKeys, conns, nil)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	signed, _, err := tokens.Issue(req)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, signed)
	fmt.Fprintf(stdout, "%s/reports#token=%s\n", baseURL(cfg.HTTPAddr), signed)
	return nil
}

// parseTokenFlags reads token's flags; the subject defaults to $USER.
func parseTokenFlags(args []string, getenv func(string) string, out io.Writer) (auth.TokenRequest, error) {
	var req auth.TokenRequest
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, tokenUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&req.Role, "role", "", "`ROLE`: marketer (reads its tenants' reports) or admin (may read every tenant)")
	fs.Func("tenant", "a connection `ID` the token may read; repeat for more; '*' for every one (admin only)", func(v string) error {
		req.Connections = append(req.Connections, strings.TrimSpace(v))
		return nil
	})
	ttl := fs.String("ttl", "24h", "how long the token lasts: a `DURATION` such as 8h or 30d, at most 90d")
	fs.StringVar(&req.Subject, "sub", cmp.Or(getenv("USER"), "operator"), "who the token is for (`NAME`, an email): the reports' log names it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return req, err
		}
		return req, fmt.Errorf("token: %w", err)
	}
	if fs.NArg() > 0 {
		return req, fmt.Errorf("token: unexpected argument %q (tenants are flags: --tenant %s)", fs.Arg(0), fs.Arg(0))
	}
	if req.Role == "" {
		return req, errors.New("token: --role is required: marketer or admin")
	}
	if len(req.Connections) == 0 {
		return req, errors.New("token: --tenant is required: a connection id, repeated for more")
	}
	d, err := parseDays(*ttl)
	if err != nil {
		return req, fmt.Errorf("token: --ttl=%q is not a duration such as 24h or 30d", *ttl)
	}
	req.TTL = d
	return req, nil
}

// parseDays reads a time.Duration, or a whole number of days (30d): a token's life is
// thought of in days.
func parseDays(v string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

// baseURL is where a person reaches zenklav that listens on addr (ZENKLAV_HTTP_ADDR): a
// listener on every interface is reached on localhost.
func baseURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}
