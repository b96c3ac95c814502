// Package reports is the report service marketers read through the API, the web page and
// `zenklav report`: the questions (Filter and the report kinds, read from query parameters
// by ParseQuery), the answers (the row types, run by Run against a Source, which the
// ClickHouse store is, and laid out as JSON, CSV or a table).
package reports

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/zenklav/zenklav"
)

// Report kinds, as the API names them (GET /api/v1/reports/{kind}).
const (
	KindTrends            = "trends"
	KindResolutionCohorts = "resolution-cohorts"
	KindRepeatCohorts     = "repeat-cohorts"
	KindSegments          = "segments"
)

// Kinds lists every report kind.
var Kinds = []string{KindTrends, KindResolutionCohorts, KindRepeatCohorts, KindSegments}

// Intervals a report groups periods by.
const (
	Day   = "day"
	Week  = "week" // ISO weeks, starting on Monday
	Month = "month"
)

// Breakdowns of the trends report (Filter.By).
var Breakdowns = []string{"brand", "channel", "priority", "tag", "group", "assignee"}

// Filter is what every report is asked with. From and To are dates in TZ (To included);
// periods and cohorts are days, weeks or months in TZ. Empty filters match everything.
type Filter struct {
	Connections []string // the connections the caller may read; never empty when asked
	Connection  string   // one of them, or "" for all of them
	BrandID     int64
	Channel     string
	Tag         string
	From, To    time.Time // dates (midnight) in TZ
	Interval    string    // Day, Week or Month
	TZ          *time.Location
	By          string // trends only: one of Breakdowns, or ""
	Kind        string // segments only: "segment" or "list"
}

// MaxRange is the longest date range a report covers.
const MaxRange = 3 * 366 * 24 * time.Hour

// Validate checks f and says, as EINVALID, what is wrong.
func (f Filter) Validate() error {
	switch {
	case len(f.Connections) == 0:
		return zenklav.Errorf(zenklav.EFORBIDDEN, "no connection to read")
	case f.Connection != "" && !slices.Contains(f.Connections, f.Connection):
		return zenklav.Errorf(zenklav.EFORBIDDEN, "connection %q is not one this token may read", f.Connection)
	case f.TZ == nil:
		return zenklav.Errorf(zenklav.EINVALID, "tz is missing")
	case f.From.IsZero() || f.To.IsZero():
		return zenklav.Errorf(zenklav.EINVALID, "from and to are required dates (YYYY-MM-DD)")
	case f.To.Before(f.From):
		return zenklav.Errorf(zenklav.EINVALID, "to (%s) is before from (%s)", f.To.Format(time.DateOnly), f.From.Format(time.DateOnly))
	case f.To.Sub(f.From) > MaxRange:
		return zenklav.Errorf(zenklav.EINVALID, "from %s to %s is longer than three years", f.From.Format(time.DateOnly), f.To.Format(time.DateOnly))
	case f.Interval != Day && f.Interval != Week && f.Interval != Month:
		return zenklav.Errorf(zenklav.EINVALID, "interval %q: use day, week or month", f.Interval)
	case f.By != "" && !slices.Contains(Breakdowns, f.By):
		return zenklav.Errorf(zenklav.EINVALID, "by %q: use one of %v", f.By, Breakdowns)
	case f.Kind != "" && f.Kind != "segment" && f.Kind != "list":
		return zenklav.Errorf(zenklav.EINVALID, "kind %q: use segment or list", f.Kind)
	}
	return nil
}

// TrendRow is one period of the trends report (and one key of its breakdown, if any).
// Opened counts tickets created in the period; Resolved tickets that became closed in it
// (solved is not resolved: Zendesk closes solved tickets later); Backlog the tickets open
// (created, not yet closed, not deleted) at the period's end.
type TrendRow struct {
	Period   string `json:"period"`        // the period's first day, YYYY-MM-DD in TZ
	Key      string `json:"key,omitempty"` // the breakdown's value (brand id, channel, …)
	Opened   int64  `json:"opened"`
	Resolved int64  `json:"resolved"`
	Backlog  int64  `json:"backlog"`
}

// ResolutionCohortRow is the tickets created in one period and how fast they closed.
// The shares are of the cohort's tickets (0 to 1); hours are from creation to first close,
// over the tickets closed so far (nil when none is).
type ResolutionCohortRow struct {
	Cohort      string   `json:"cohort"`
	Tickets     int64    `json:"tickets"`
	Closed1d    float64  `json:"closed_1d"`
	Closed3d    float64  `json:"closed_3d"`
	Closed7d    float64  `json:"closed_7d"`
	Closed14d   float64  `json:"closed_14d"`
	Closed30d   float64  `json:"closed_30d"`
	MedianHours *float64 `json:"median_hours"`
	P90Hours    *float64 `json:"p90_hours"`
	// ReopenRate is the share of the cohort's tickets that went from solved back to open
	// (or new, pending, hold) at least once.
	ReopenRate float64 `json:"reopen_rate"`
}

// RepeatCohortRow is one cell of the repeat-contact triangle: the customers (requesters)
// whose first ticket fell in Cohort, and the share of them who opened another ticket
// Offset periods later (Offset 0: later in the same period).
type RepeatCohortRow struct {
	Cohort    string  `json:"cohort"`
	Customers int64   `json:"customers"`
	Offset    int     `json:"offset"`
	Returned  int64   `json:"returned"`
	Share     float64 `json:"share"`
}

// SegmentRow is the tickets of customers who were in a Klaviyo segment (or list) when the
// ticket was created, as zenklav last saw them before then (see the store's memberships).
type SegmentRow struct {
	Segment     string   `json:"segment"`
	Customers   int64    `json:"customers"`
	Opened      int64    `json:"opened"`
	Resolved    int64    `json:"resolved"`
	MedianHours *float64 `json:"median_hours"`
	ReopenRate  float64  `json:"reopen_rate"`
}

// Source answers the reports; analytics.Store is one.
type Source interface {
	Trends(ctx context.Context, f Filter) ([]TrendRow, error)
	ResolutionCohorts(ctx context.Context, f Filter) ([]ResolutionCohortRow, error)
	RepeatCohorts(ctx context.Context, f Filter) ([]RepeatCohortRow, error)
	Segments(ctx context.Context, f Filter) ([]SegmentRow, error)
}

// PeriodStart is the first day of the period (of interval) that holds t, in t's location.
func PeriodStart(t time.Time, interval string) time.Time {
	y, m, d := t.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, t.Location())
	switch interval {
	case Week:
		return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	case Month:
		return time.Date(y, m, 1, 0, 0, 0, 0, t.Location())
	}
	return day
}

// String is the Filter for logs.
func (f Filter) String() string {
	tz := "?"
	if f.TZ != nil {
		tz = f.TZ.String()
	}
	return fmt.Sprintf("tenants=%v connection=%q brand=%d channel=%q tag=%q %s..%s %s %s by=%q kind=%q",
		f.Connections, f.Connection, f.BrandID, f.Channel, f.Tag, f.From.Format(time.DateOnly), f.To.Format(time.DateOnly), f.Interval, tz, f.By, f.Kind)
}
