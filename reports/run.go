package reports

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
)

// Body is a report as the API answers it in JSON, and `zenklav report --format json`
// prints it.
type Body struct {
	Report  string  `json:"report"`
	Filters Filters `json:"filters"`
	Rows    any     `json:"rows"` // a slice of the kind's row type, never nil
}

// Filters echoes the filters a report was made with, defaults filled in.
type Filters struct {
	Connections []string `json:"connections"` // the connections the report covers
	Connection  string   `json:"connection,omitempty"`
	Brand       int64    `json:"brand,omitempty"`
	Channel     string   `json:"channel,omitempty"`
	Tag         string   `json:"tag,omitempty"`
	From        string   `json:"from"`
	To          string   `json:"to"`
	Interval    string   `json:"interval"`
	TZ          string   `json:"tz"`
	By          string   `json:"by,omitempty"`
	Kind        string   `json:"kind,omitempty"`
}

// Echo is f as Body shows it.
func Echo(f Filter) Filters {
	connections := f.Connections
	if f.Connection != "" {
		connections = []string{f.Connection}
	}
	return Filters{
		Connections: connections, Connection: f.Connection, Brand: f.BrandID, Channel: f.Channel, Tag: f.Tag,
		From: f.From.Format(time.DateOnly), To: f.To.Format(time.DateOnly),
		Interval: f.Interval, TZ: f.TZ.String(), By: f.By, Kind: f.Kind,
	}
}

// Run asks src for the report of kind. rows is a slice of the kind's row type
// (TrendRow, …), empty rather than nil.
func Run(ctx context.Context, src Source, kind string, f Filter) (rows any, err error) {
	switch kind {
	case KindTrends:
		return nonNil(src.Trends(ctx, f))
	case KindResolutionCohorts:
		return nonNil(src.ResolutionCohorts(ctx, f))
	case KindRepeatCohorts:
		return nonNil(src.RepeatCohorts(ctx, f))
	case KindSegments:
		return nonNil(src.Segments(ctx, f))
	}
	return nil, zenklav.Errorf(zenklav.ENOTFOUND, "no report %q", kind)
}

func nonNil[T any](rows []T, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	if rows == nil {
		rows = []T{}
	}
	return rows, nil
}

// Columns lays out rows (a slice of one of reports' row types) as a table: the
// columns are the JSON names of the row type's fields, in order, and each row's values are
// the fields' values (a *float64 may be nil).
func Columns(rows any) (header []string, values [][]any) {
	v := reflect.ValueOf(rows)
	typ := v.Type().Elem()
	var fields []int
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		header = append(header, name)
		fields = append(fields, i)
	}
	for i := range v.Len() {
		row := make([]any, len(fields))
		for j, f := range fields {
			row[j] = v.Index(i).Field(f).Interface()
		}
		values = append(values, row)
	}
	return header, values
}

// WriteCSV writes rows as CSV: a header of the JSON names, then one line per row.
// Numbers are written in full; a missing value (a nil median) is an empty cell.
func WriteCSV(w io.Writer, rows any) error {
	header, values := Columns(rows)
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	rec := make([]string, len(header))
	for _, row := range values {
		for i, v := range row {
			rec[i] = csvCell(v)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func csvCell(v any) string {
	switch v := v.(type) {
	case string:
		// A tag or segment name that starts like a formula would run as one in a
		// spreadsheet (CSV injection); a leading ' makes it text.
		if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
			return "'" + v
		}
		return v
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case *float64:
		if v == nil {
			return ""
		}
		return strconv.FormatFloat(*v, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}
