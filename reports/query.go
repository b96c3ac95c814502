package reports

import (
	"cmp"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
)

const (
	// DefaultDays is the range a report covers when from is not given: 90 days, to today
	// included.
	DefaultDays = 90
	// maxFilterValue bounds a free-text filter (channel, tag).
	maxFilterValue = 200
)

// reportParams are the query parameters of a report; any other is refused, so a misspelt
// filter is not silently ignored.
var reportParams = []string{"connection", "brand", "channel", "tag", "from", "to", "interval", "tz", "by", "kind", "format"}

// ParseQuery reads a report's filters from its query parameters (the API's, and those
// `zenklav report` makes of its flags), for a caller who may read the connections tenants, with defaults: the 90 days to today (now in tz), weekly, UTC; segments by
// "segment". The Filter it returns is valid; anything wrong is EINVALID with a message that
// says what, and a connection the caller may not read is EFORBIDDEN.
func ParseQuery(kind string, q url.Values, connections []string, now time.Time) (Filter, error) {
	for name, vs := range q {
		if !slices.Contains(reportParams, name) {
			return Filter{}, zenklav.Errorf(zenklav.EINVALID, "unknown parameter %q: use %s", trim(name), strings.Join(reportParams, ", "))
		}
		if len(vs) > 1 {
			return Filter{}, zenklav.Errorf(zenklav.EINVALID, "parameter %s is given %d times: give it once", name, len(vs))
		}
	}
	f := Filter{
		Connections: connections,
		Connection:  q.Get("connection"),
		Channel:     q.Get("channel"),
		Tag:         q.Get("tag"),
		Interval:    cmp.Or(q.Get("interval"), Week),
		By:          q.Get("by"),
		Kind:        q.Get("kind"),
	}
	if f.Connection != "" && !slices.Contains(connections, f.Connection) {
		// Before any other check, so that what is wrong with the rest of a request for another
		// tenant's data tells its sender nothing.
		return Filter{}, zenklav.Errorf(zenklav.EFORBIDDEN, "connection %q is not one this token may read", trim(f.Connection))
	}
	for name, v := range map[string]string{"channel": f.Channel, "tag": f.Tag, "connection": f.Connection} {
		if len(v) > maxFilterValue || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return Filter{}, zenklav.Errorf(zenklav.EINVALID, "%s must be at most %d printable characters", name, maxFilterValue)
		}
	}
	if v := q.Get("brand"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return Filter{}, zenklav.Errorf(zenklav.EINVALID, "brand must be a Zendesk brand id, a positive integer")
		}
		f.BrandID = n
	}
	switch {
	case f.By != "" && kind != KindTrends:
		return Filter{}, zenklav.Errorf(zenklav.EINVALID, "by breaks down the trends report only")
	case f.Kind != "" && kind != KindSegments:
		return Filter{}, zenklav.Errorf(zenklav.EINVALID, "kind (segment or list) applies to the segments report only")
	case kind == KindSegments && f.Kind == "":
		f.Kind = "segment"
	}
	tz := cmp.Or(q.Get("tz"), "UTC")
	loc, err := time.LoadLocation(tz)
	if err != nil || tz == "Local" {
		return Filter{}, zenklav.Errorf(zenklav.EINVALID, "tz %q is not an IANA time zone such as Europe/Madrid or America/New_York", trim(tz))
	}
	f.TZ = loc
	y, m, d := now.In(loc).Date()
	f.To = time.Date(y, m, d, 0, 0, 0, 0, loc)
	if v := q.Get("to"); v != "" {
		if f.To, err = parseDate("to", v, loc); err != nil {
			return Filter{}, err
		}
	}
	f.From = f.To.AddDate(0, 0, -(DefaultDays - 1))
	if v := q.Get("from"); v != "" {
		if f.From, err = parseDate("from", v, loc); err != nil {
			return Filter{}, err
		}
	}
	if err := f.Validate(); err != nil {
		return Filter{}, err
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
