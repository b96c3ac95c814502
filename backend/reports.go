package backend

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/reports"
	"sigs.k8s.io/yaml"
)

// Reports enables the marketers' reports API: GET /api/v1/reports/{kind}, and its OpenAPI
// document at GET /api/v1/openapi.json.
type Reports struct {
	Auth   *ReportsAuth
	Source reports.Source
}

// openAPIYAML describes the reports API (kept in YAML for people; served as JSON).
//
//go:embed openapi.yaml
var openAPIYAML []byte

// OpenAPIDocument returns the reports API's OpenAPI 3 document, as JSON.
func OpenAPIDocument() ([]byte, error) {
	b, err := yaml.YAMLToJSON(openAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	return b, nil
}

const (
	// defaultReportDays is the range a report covers when from is not given: 90 days, to
	// today included.
	defaultReportDays = 90
	// reportTimeout bounds one report's queries: a browser gives up long before this, and a
	// query nobody waits for should not keep ClickHouse busy.
	reportTimeout = 20 * time.Second
	// maxFilterValue bounds a free-text filter (channel, tag).
	maxFilterValue = 200
)

// routeReports adds the reports API.
func (s *Server) routeReports(e *gin.Engine) error {
	rp := s.opts.Reports
	if rp.Auth == nil || rp.Source == nil {
		return errors.New("the reports API needs its auth and a report source")
	}
	doc, err := OpenAPIDocument()
	if err != nil {
		return err
	}
	api := e.Group("/api/v1", noStore)
	api.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", doc) })
	api.GET("/reports/:kind", rp.Auth.RequireCaller(), s.report)
	return nil
}

// ReportBody is a report as the API answers it in JSON, and `zenklav report --format json`
// prints it.
type ReportBody struct {
	Report  string        `json:"report"`
	Filters ReportFilters `json:"filters"`
	Rows    any           `json:"rows"` // a slice of the kind's row type, never nil
}

// ReportFilters echoes the filters a report was made with, defaults filled in.
type ReportFilters struct {
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

// EchoFilters is f as ReportBody shows it.
func EchoFilters(f reports.Filter) ReportFilters {
	tenants := f.Tenants
	if f.Connection != "" {
		tenants = []string{f.Connection}
	}
	return ReportFilters{
		Connections: tenants, Connection: f.Connection, Brand: f.BrandID, Channel: f.Channel, Tag: f.Tag,
		From: f.From.Format(time.DateOnly), To: f.To.Format(time.DateOnly),
		Interval: f.Interval, TZ: f.TZ.String(), By: f.By, Kind: f.Kind,
	}
}

// report answers GET /api/v1/reports/{kind}.
func (s *Server) report(c *gin.Context) {
	caller, _ := CallerFrom(c)
	kind := c.Param("kind")
	if !slices.Contains(reports.Kinds, kind) {
		_ = c.Error(zenklav.Errorf(zenklav.ENOTFOUND, "no report %q: use one of %s", kind, strings.Join(reports.Kinds, ", ")))
		return
	}
	q := c.Request.URL.Query()
	asCSV, err := wantsCSV(q.Get("format"), c.GetHeader("Accept"))
	if err != nil {
		_ = c.Error(err)
		return
	}
	f, err := ParseReportQuery(kind, q, caller.Tenants, s.opts.Now())
	if err != nil {
		_ = c.Error(err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), reportTimeout)
	defer cancel()
	start := time.Now()
	rows, err := RunReport(ctx, s.opts.Reports.Source, kind, f)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && zenklav.ErrorCode(err) == zenklav.EINTERNAL {
			err = zenklav.Wrap(zenklav.EUNAVAILABLE, err, "the report took over %s: narrow its dates or filters", reportTimeout)
		}
		_ = c.Error(err)
		return
	}
	// Who read which tenants' reports is the audit trail; the token itself is never logged.
	s.logger.Info("report read", "sub", caller.Subject, "role", caller.Role, "kid", caller.KeyID, "report", kind,
		"filter", f.String(), "rows", reflect.ValueOf(rows).Len(), "csv", asCSV, "took", time.Since(start))
	if asCSV {
		var buf bytes.Buffer
		if err := WriteReportCSV(&buf, rows); err != nil {
			_ = c.Error(zenklav.Wrap(zenklav.EINTERNAL, err, "write csv"))
			return
		}
		name := fmt.Sprintf("zenklav-%s-%s-%s.csv", kind, f.From.Format(time.DateOnly), f.To.Format(time.DateOnly))
		c.Header("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		c.Data(http.StatusOK, "text/csv; charset=utf-8", buf.Bytes())
		return
	}
	c.JSON(http.StatusOK, ReportBody{Report: kind, Filters: EchoFilters(f), Rows: rows})
}

// wantsCSV decides the answer's format: ?format= when given, else the Accept header
// (text/csv listed, with no JSON type before it), else JSON.
func wantsCSV(format, accept string) (bool, error) {
	switch format {
	case "csv":
		return true, nil
	case "json":
		return false, nil
	case "":
	default:
		return false, zenklav.Errorf(zenklav.EINVALID, "format %q: use json or csv", format)
	}
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || params["q"] == "0" {
			continue
		}
		switch mt {
		case "text/csv":
			return true, nil
		case "application/json", "application/*":
			return false, nil
		}
	}
	return false, nil
}

// reportParams are the query parameters of a report; any other is refused, so a misspelt
// filter is not silently ignored.
var reportParams = []string{"connection", "brand", "channel", "tag", "from", "to", "interval", "tz", "by", "kind", "format"}

// ParseReportQuery reads a report's filters from its query parameters, for a caller who may
// read tenants, with defaults: the 90 days to today (now in tz), weekly, UTC; segments by
// "segment". The Filter it returns is valid; anything wrong is EINVALID with a message that
// says what, and a connection the caller may not read is EFORBIDDEN.
func ParseReportQuery(kind string, q url.Values, tenants []string, now time.Time) (reports.Filter, error) {
	for name, vs := range q {
		if !slices.Contains(reportParams, name) {
			return reports.Filter{}, zenklav.Errorf(zenklav.EINVALID, "unknown parameter %q: use %s", trim(name), strings.Join(reportParams, ", "))
		}
		if len(vs) > 1 {
			return reports.Filter{}, zenklav.Errorf(zenklav.EINVALID, "parameter %s is given %d times: give it once", name, len(vs))
		}
	}
	f := reports.Filter{
		Tenants:    tenants,
		Connection: q.Get("connection"),
		Channel:    q.Get("channel"),
		Tag:        q.Get("tag"),
		Interval:   cmp.Or(q.Get("interval"), reports.Week),
		By:         q.Get("by"),
		Kind:       q.Get("kind"),
	}
	if f.Connection != "" && !slices.Contains(tenants, f.Connection) {
		// Before any other check, so that what is wrong with the rest of a request for another
		// tenant's data tells its sender nothing.
		return reports.Filter{}, zenklav.Errorf(zenklav.EFORBIDDEN, "connection %q is not one this token may read", trim(f.Connection))
	}
	for name, v := range map[string]string{"channel": f.Channel, "tag": f.Tag, "connection": f.Connection} {
		if len(v) > maxFilterValue || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return reports.Filter{}, zenklav.Errorf(zenklav.EINVALID, "%s must be at most %d printable characters", name, maxFilterValue)
		}
	}
	if v := q.Get("brand"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return reports.Filter{}, zenklav.Errorf(zenklav.EINVALID, "brand must be a Zendesk brand id, a positive integer")
		}
		f.BrandID = n
	}
	switch {
	case f.By != "" && kind != reports.KindTrends:
		return reports.Filter{}, zenklav.Errorf(zenklav.EINVALID, "by breaks down the trends report only")
	case f.Kind != "" && kind != reports.KindSegments:
		return reports.Filter{}, zenklav.Errorf(zenklav.EINVALID, "kind (segment or list) applies to the segments report only")
	case kind == reports.KindSegments && f.Kind == "":
		f.Kind = "segment"
	}
	tz := cmp.Or(q.Get("tz"), "UTC")
	loc, err := time.LoadLocation(tz)
	if err != nil || tz == "Local" {
		return reports.Filter{}, zenklav.Errorf(zenklav.EINVALID, "tz %q is not an IANA time zone such as Europe/Madrid or America/New_York", trim(tz))
	}
	f.TZ = loc
	y, m, d := now.In(loc).Date()
	f.To = time.Date(y, m, d, 0, 0, 0, 0, loc)
	if v := q.Get("to"); v != "" {
		if f.To, err = parseDate("to", v, loc); err != nil {
			return reports.Filter{}, err
		}
	}
	f.From = f.To.AddDate(0, 0, -(defaultReportDays - 1))
	if v := q.Get("from"); v != "" {
		if f.From, err = parseDate("from", v, loc); err != nil {
			return reports.Filter{}, err
		}
	}
	if err := f.Validate(); err != nil {
		return reports.Filter{}, err
	}
	return f, nil
}

// parseDate reads a YYYY-MM-DD date, midnight in loc, within the years ClickHouse's
// DateTime holds.
func parseDate(name, v string, loc *time.Location) (time.Time, error) {
	t, err := time.ParseInLocation(time.DateOnly, v, loc)
	if err != nil || t.Year() < 1970 || t.Year() > 2105 {
		return time.Time{}, zenklav.Errorf(zenklav.EINVALID, "%s %q is not a date YYYY-MM-DD between 1970 and 2105", name, trim(v))
	}
	return t, nil
}

// trim bounds a value from the caller before it goes into a message.
func trim(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// RunReport asks src for the report of kind. rows is a slice of the kind's row type
// (reports.TrendRow, …), empty rather than nil.
func RunReport(ctx context.Context, src reports.Source, kind string, f reports.Filter) (rows any, err error) {
	switch kind {
	case reports.KindTrends:
		return nonNil(src.Trends(ctx, f))
	case reports.KindResolutionCohorts:
		return nonNil(src.ResolutionCohorts(ctx, f))
	case reports.KindRepeatCohorts:
		return nonNil(src.RepeatCohorts(ctx, f))
	case reports.KindSegments:
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

// ReportColumns lays out rows (a slice of one of reports' row types) as a table: the
// columns are the JSON names of the row type's fields, in order, and each row's values are
// the fields' values (a *float64 may be nil).
func ReportColumns(rows any) (header []string, values [][]any) {
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

// WriteReportCSV writes rows as CSV: a header of the JSON names, then one line per row.
// Numbers are written in full; a missing value (a nil median) is an empty cell.
func WriteReportCSV(w io.Writer, rows any) error {
	header, values := ReportColumns(rows)
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
