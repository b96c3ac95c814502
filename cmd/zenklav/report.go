package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	// Time zones for --tz and the API's tz, on a machine without the system's tzdata.
	_ "time/tzdata"

	"github.com/zenklav/zenklav/reports"
)

const reportUsage = `Usage: zenklav report trends|resolution-cohorts|repeat-cohorts|segments [flags]

Prints a ticket report read from ClickHouse (ZENKLAV_CLICKHOUSE_ADDR): an aligned table,
or the API's CSV or JSON. It covers the connections of ZENKLAV_CONNECTIONS_FILE, or the
one --connection names. The filters are the API's (docs/reports.md); dates are YYYY-MM-DD
in --tz, --to included; by default the 90 days to today, by week, in UTC.

Flags:
`

// reportFormats are what --format takes.
var reportFormats = []string{"table", "csv", "json"}

// reportRequest is a parsed `zenklav report` command line.
type reportRequest struct {
	kind   string
	query  url.Values // the API's query parameters
	format string
}

// report is `zenklav report`.
func report(ctx context.Context, e *env, rr reportRequest, stdout io.Writer) error {
	var connections []string
	if e.cfg.ConnectionsFile != "" {
		conns, err := e.connections(ctx, "report tool")
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		connections = conns.IDs()
	} else if c := rr.query.Get("connection"); c != "" {
		connections = []string{c}
	} else {
		return errors.New("report: give --connection, or set ZENKLAV_CONNECTIONS_FILE to cover its connections")
	}
	f, err := reports.ParseQuery(rr.kind, rr.query, connections, time.Now())
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	store, err := e.ticketStore(ctx)
	if err != nil {
		return err
	}
	return printReport(ctx, store, rr, f, stdout)
}

// parseReportFlags reads report's kind and flags into the API's query parameters.
func parseReportFlags(args []string, out io.Writer) (reportRequest, error) {
	rr := reportRequest{query: url.Values{}}
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, reportUsage)
		fs.PrintDefaults()
	}
	params := []struct{ name, usage string }{
		{"connection", "only this connection `ID`"},
		{"brand", "only this Zendesk brand `ID`"},
		{"channel", "only tickets of this `CHANNEL` (email, web, sms, …)"},
		{"tag", "only tickets with this `TAG`"},
		{"from", "first `DATE` (YYYY-MM-DD); default 89 days before --to"},
		{"to", "last `DATE`, included; default today"},
		{"interval", "`PERIOD`: day, week (ISO, from Monday) or month; default week"},
		{"tz", "the IANA time `ZONE` days are counted in, such as Europe/Madrid; default UTC"},
		{"by", "trends only: break down by `FIELD`: " + strings.Join(reports.Breakdowns, ", ")},
		{"kind", "segments only: `WHICH`, segment (default) or list"},
	}
	for _, p := range params {
		fs.Func(p.name, p.usage, func(v string) error {
			if rr.query.Has(p.name) {
				return errors.New("given twice")
			}
			rr.query.Set(p.name, v)
			return nil
		})
	}
	fs.StringVar(&rr.format, "format", "table", "`FORMAT`: table (for a terminal), csv or json (as the API answers)")
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fs.Usage()
		return rr, flag.ErrHelp
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return rr, fmt.Errorf("report: name the report first: zenklav report %s [flags]", strings.Join(reports.Kinds, "|"))
	}
	rr.kind = args[0]
	if !slices.Contains(reports.Kinds, rr.kind) {
		return rr, fmt.Errorf("report: no report %q: use one of %s", rr.kind, strings.Join(reports.Kinds, ", "))
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return rr, err
		}
		return rr, fmt.Errorf("report: %w", err)
	}
	if fs.NArg() > 0 {
		return rr, fmt.Errorf("report: unexpected argument %q (filters are flags, such as --tag %s)", fs.Arg(0), fs.Arg(0))
	}
	if !slices.Contains(reportFormats, rr.format) {
		return rr, fmt.Errorf("report: --format=%q: use table, csv or json", rr.format)
	}
	return rr, nil
}

// printReport asks src for the report and prints it in rr's format.
func printReport(ctx context.Context, src reports.Source, rr reportRequest, f reports.Filter, out io.Writer) error {
	rows, err := reports.Run(ctx, src, rr.kind, f)
	if err != nil {
		return fmt.Errorf("report %s: %w", rr.kind, err)
	}
	switch rr.format {
	case "csv":
		return reports.WriteCSV(out, rows)
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(reports.Body{Report: rr.kind, Filters: reports.Echo(f), Rows: rows})
	}
	return printTable(out, rr.kind, f, rows)
}

// printTable prints rows as an aligned table under a line that says what they cover.
func printTable(out io.Writer, kind string, f reports.Filter, rows any) error {
	echo := reports.Echo(f)
	what := []string{kind, strings.Join(echo.Connections, ", "), echo.From + " to " + echo.To, "by " + echo.Interval, echo.TZ}
	for _, x := range []struct{ name, v string }{
		{"brand", strconv.FormatInt(echo.Brand, 10)}, {"channel", echo.Channel}, {"tag", echo.Tag}, {"breakdown", echo.By}, {"kind", echo.Kind},
	} {
		if x.v != "" && x.v != "0" {
			what = append(what, x.name+" "+x.v)
		}
	}
	fmt.Fprintln(out, strings.Join(what, " · "))
	header, values := reports.Columns(rows)
	if len(values) == 0 {
		fmt.Fprintln(out, "no tickets match")
		return nil
	}
	keep := make([]bool, len(header))
	for i, h := range header {
		keep[i] = h != "key" || f.By != "" // the breakdown's column, empty without one
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	line := func(cells []string) {
		for i, c := range cells {
			if keep[i] {
				fmt.Fprint(tw, c, "\t")
			}
		}
		fmt.Fprintln(tw)
	}
	line(header)
	for _, row := range values {
		cells := make([]string, len(row))
		for i, v := range row {
			cells[i] = tableCell(header[i], v)
		}
		line(cells)
	}
	return tw.Flush()
}

// tableCell formats a value for a person: shares as percentages, hours to one decimal, a
// missing value as "-".
func tableCell(column string, v any) string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return "-"
		}
		return v
	case *float64:
		if v == nil {
			return "-"
		}
		return tableCell(column, *v)
	case float64:
		if strings.HasSuffix(column, "_hours") {
			return strconv.FormatFloat(v, 'f', 1, 64)
		}
		return strconv.FormatFloat(100*v, 'f', 1, 64) + "%" // closed_*, share, reopen_rate
	}
	return fmt.Sprint(v)
}
