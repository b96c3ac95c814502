package zendesktest

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav/internal/apispec"
	"github.com/zenklav/zenklav/zendesk"
)

// DefaultExportRateLimit is the requests per minute the Incremental Ticket Export answers
// before 429: Zendesk's documented limit for the incremental export endpoints.
const DefaultExportRateLimit = zendesk.ExportPerMinute

// exportState is the export endpoint's own rate-limit minute and page size; zero values
// mean Zendesk's. Guarded by Server.mu.
type exportState struct {
	window   apispec.Window
	limit    int // requests per minute; DefaultExportRateLimit when 0
	pageSize int // tickets per page; zendesk.ExportPageSize when 0
	requests int // answered requests, 429s included
}

// SetExportRateLimit sets how many requests a minute the Incremental Ticket Export answers
// before 429 (Zendesk's 10 by default). They count against SetRateLimit's limit too, as on
// Zendesk.
func (s *Server) SetExportRateLimit(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.export.limit = perMinute
}

// SetExportPageSize sets how many tickets a page of the Incremental Ticket Export holds
// (Zendesk's 1000 by default), so a test can page through a few tickets.
func (s *Server) SetExportPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.export.pageSize = n
}

// ExportRequests is how many requests the Incremental Ticket Export has answered, 429s
// included.
func (s *Server) ExportRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.export.requests
}

// exportPosition is a place in the export's order, (generated_timestamp, id): the export
// goes on after it.
type exportPosition struct {
	ts int64
	id int64
}

func (p exportPosition) before(t zendesk.Ticket) bool {
	return cmp.Or(cmp.Compare(p.ts, t.UpdatedAt.Unix()), cmp.Compare(p.id, t.ID)) < 0
}

// Export cursors are opaque to clients, as Zendesk's are; here they name the last position
// served.
func encodeExportCursor(p exportPosition) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "x%d.%d", p.ts, p.id))
}

func decodeExportCursor(c string) (exportPosition, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 4 || b[0] != 'x' {
		return exportPosition{}, fmt.Errorf("bad cursor")
	}
	ts, id, ok := strings.Cut(string(b[1:]), ".")
	var p exportPosition
	if p.ts, err = strconv.ParseInt(ts, 10, 64); err != nil || !ok {
		return exportPosition{}, fmt.Errorf("bad cursor")
	}
	if p.id, err = strconv.ParseInt(id, 10, 64); err != nil {
		return exportPosition{}, fmt.Errorf("bad cursor")
	}
	return p, nil
}

// exportTickets answers the cursor-based Incremental Ticket Export as Zendesk documents it:
// tickets in the order of their generated_timestamp (here updated_at) and id, from start_time
// or after the cursor (which wins when both are given), a page at a time; nothing from the
// last minute, "to ensure the accuracy of the data"; end_of_stream once a page reaches
// that point, with an after_cursor to poll from later. Its own limit of 10 requests a minute
// answers 429 with Retry-After.
func (s *Server) exportTickets(c *call) (int, any) {
	s.mu.Lock()
	now := s.now()
	limit := cmp.Or(s.export.limit, DefaultExportRateLimit)
	size := cmp.Or(s.export.pageSize, zendesk.ExportPageSize)
	s.export.requests++
	c.header.Set("X-Rate-Limit", strconv.Itoa(limit))
	if wait := s.export.window.Wait(now, time.Minute, limit); wait > 0 {
		s.mu.Unlock()
		c.header.Set("X-Rate-Limit-Remaining", "0")
		c.header.Set("Retry-After", strconv.Itoa(apispec.RetryAfterSeconds(wait)))
		return http.StatusTooManyRequests, errorBody("TooManyRequests", "Incremental export rate limit exceeded; retry after the number of seconds in Retry-After")
	}
	s.export.window.Take()
	c.header.Set("X-Rate-Limit-Remaining", strconv.Itoa(limit-s.export.window.Used()))
	all := make([]zendesk.Ticket, 0, len(s.tickets))
	for _, t := range s.tickets {
		all = append(all, t)
	}
	s.mu.Unlock()

	q := c.r.URL.Query()
	var from exportPosition
	if v := q.Get("cursor"); v != "" {
		p, err := decodeExportCursor(v)
		if err != nil {
			return http.StatusBadRequest, errorBody("InvalidPaginationParameter", "cursor is not a cursor of this export")
		}
		from = p
	} else {
		start, _ := strconv.ParseInt(q.Get("start_time"), 10, 64) // the spec checked it is an integer
		if start > now.Add(-time.Minute).Unix() {
			return http.StatusBadRequest, errorBody("InvalidValue", "Too recent start_time. Use a start_time at least one minute in the past")
		}
		// generated_timestamp >= start_time is after (start_time-1, the largest id).
		from = exportPosition{ts: start - 1, id: math.MaxInt64}
	}
	cutoff := now.Add(-time.Minute).Unix()
	slices.SortFunc(all, func(a, b zendesk.Ticket) int {
		return cmp.Or(a.UpdatedAt.Compare(b.UpdatedAt), cmp.Compare(a.ID, b.ID))
	})
	tickets := make([]any, 0, min(size, len(all)))
	last, end := from, true
	for _, t := range all {
		if !from.before(t) {
			continue
		}
		if t.UpdatedAt.Unix() > cutoff {
			break // the last minute is not exported yet: the stream ends here for now
		}
		if len(tickets) == size {
			end = false
			break
		}
		tickets = append(tickets, ticketJSON(t, c.base))
		last = exportPosition{ts: t.UpdatedAt.Unix(), id: t.ID}
	}
	after := encodeExportCursor(last)
	return http.StatusOK, map[string]any{
		"tickets":       tickets,
		"after_cursor":  after,
		"after_url":     c.base + "/api/v2/incremental/tickets/cursor.json?" + url.Values{"cursor": {after}}.Encode(),
		"before_cursor": nil,
		"before_url":    nil,
		"end_of_stream": end,
	}
}
