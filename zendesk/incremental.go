package zendesk

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/retry"
	"github.com/zenklav/zenklav/schemas"
)

// ExportPerMinute is Zendesk's limit for the incremental export endpoints: "You can make up
// to 10 requests per minute to these endpoints" (developer.zendesk.com/api-reference/
// ticketing/ticket-management/incremental_exports/, "Rate limits"). It is the account's, on
// top of the account's limit for the whole API.
const ExportPerMinute = 10

// ExportPageSize is how many tickets a page of the cursor-based export holds (Zendesk's
// default and maximum, 1000): ExportPerMinute pages of it make the export's ceiling of
// 10,000 tickets a minute.
const ExportPageSize = 1000

// exportPath is the cursor-based Incremental Ticket Export (operation
// IncrementalTicketExportCursor). Zendesk answers it with or without ".json".
const exportPath = "/api/v2/incremental/tickets/cursor"

// ExportOptions tunes a TicketExport. The zero value is what Zendesk documents.
type ExportOptions struct {
	// PerMinute is how many pages a minute the export asks for: ExportPerMinute when 0.
	PerMinute int
	// RetryFor bounds how long one page is retried after 429s, 5xx answers and timeouts,
	// counted from its first try: 10 minutes when 0. Another kind of failure (credentials,
	// a refused request) is returned at once.
	RetryFor time.Duration
	// Now and Sleep are the clock the export paces and waits by: time.Now and a timer when
	// nil. Tests give both a simulated clock, so waiting a minute for the limit takes none.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// ExportPage is one page of the export.
type ExportPage struct {
	Tickets []Ticket
	// Cursor is where the page after this one starts. Keep it once the page's tickets are
	// safe: a new export from it resumes right after them.
	Cursor string
	// EndOfStream says the export has every change up to a minute ago (Zendesk leaves out
	// the last minute). Cursor still works: an export from it later gets what changed since.
	EndOfStream bool
}

// ExportStats counts what the export met on the way.
type ExportStats struct {
	Requests  int // HTTP requests sent, retries included
	Throttled int // 429 answers, each waited out as Retry-After said
	Retried   int // other transient failures (5xx, timeouts, network), retried with backoff
}

// TicketExport reads Zendesk's cursor-based Incremental Ticket Export page by page, paced to
// the endpoint's own rate limit. It is not safe for concurrent use; one export of an account
// at a time is what the limit allows anyway.
type TicketExport struct {
	c       *Client
	start   time.Time
	cursor  string
	opts    ExportOptions
	limiter *rate.Limiter
	stats   ExportStats
}

// ExportTickets starts an export of the tickets that changed at or after start, or resumes
// one after cursor when cursor is not empty (the Cursor of the last page kept). start must be
// a minute or more in the past, as Zendesk requires.
func (c *Client) ExportTickets(start time.Time, cursor string, opts ExportOptions) (*TicketExport, error) {
	if start.IsZero() || start.Unix() < 0 {
		return nil, zenklav.Errorf(zenklav.EINVALID, "export tickets: start time %s is not a time Zendesk can export from", start)
	}
	if opts.PerMinute < 0 || opts.RetryFor < 0 {
		return nil, zenklav.Errorf(zenklav.EINVALID, "export tickets: negative pace or retry bound")
	}
	if opts.PerMinute == 0 {
		opts.PerMinute = ExportPerMinute
	}
	if opts.RetryFor == 0 {
		opts.RetryFor = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = retry.Wait
	}
	return &TicketExport{
		c: c, start: start, cursor: cursor, opts: opts,
		// A burst of one spaces the requests evenly (one every 6 s at 10 a minute): a burst
		// of ten would be followed by a refill within the same minute, and Zendesk counts
		// the minute as a whole, so it would answer 429 for every eleventh request.
		limiter: rate.NewLimiter(rate.Limit(float64(opts.PerMinute)/60), 1),
	}, nil
}

// Cursor is where the export stands: the Cursor of the last page read, or the cursor it was
// resumed from.
func (x *TicketExport) Cursor() string { return x.cursor }

// Stats says how many requests the export sent and how many of them were retried.
func (x *TicketExport) Stats() ExportStats { return x.stats }

// exportAnswer is CursorBasedExportIncrementalTicketsResponse.
type exportAnswer struct {
	Tickets     []Ticket `json:"tickets"`
	AfterCursor *string  `json:"after_cursor"`
	EndOfStream bool     `json:"end_of_stream"`
}

// Next reads the next page. It waits for the endpoint's pace, honours Retry-After on 429 and
// backs off with jitter on 5xx answers and timeouts, for up to RetryFor.
func (x *TicketExport) Next(ctx context.Context) (ExportPage, error) {
	// Zendesk's after_url carries the cursor alone, and the cursor wins when both are sent;
	// the OpenAPI document marks start_time required on every request, so it goes along.
	q := url.Values{"start_time": {strconv.FormatInt(x.start.Unix(), 10)}}
	if x.cursor != "" {
		q.Set("cursor", x.cursor)
	}
	op := "export tickets"
	began := x.opts.Now()
	for attempt := 0; ; attempt++ {
		if err := x.pace(ctx); err != nil {
			return ExportPage{}, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s", op)
		}
		x.stats.Requests++
		var body exportAnswer
		err := x.c.get(ctx, op, x.c.endpoint(exportPath, q), &body)
		if err == nil {
			page := ExportPage{Tickets: body.Tickets, EndOfStream: body.EndOfStream}
			if body.AfterCursor != nil {
				page.Cursor = *body.AfterCursor
			}
			if page.Cursor == "" {
				if !page.EndOfStream {
					return ExportPage{}, zenklav.Errorf(zenklav.EUNAVAILABLE, "%s: a page before the end has no after_cursor", op)
				}
				page.Cursor = x.cursor // nothing new since: the next export starts where this one did
			}
			x.cursor = page.Cursor
			return page, nil
		}
		if ctx.Err() != nil || zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE {
			return ExportPage{}, err
		}
		wait := zenklav.RetryAfter(err)
		if zenklav.Throttled(err) {
			x.stats.Throttled++
			if wait == 0 {
				wait = time.Minute // the length of the window Zendesk counts in
			}
		} else {
			x.stats.Retried++
			wait = max(wait, exportRetry.Delay(attempt))
		}
		if x.opts.Now().Add(wait).Sub(began) > x.opts.RetryFor {
			return ExportPage{}, fmt.Errorf("%w (gave up after %d tries in %s)", err, attempt+1, x.opts.Now().Sub(began).Round(time.Second))
		}
		x.c.logger.DebugContext(ctx, "zendesk export retry", "attempt", attempt+1, "wait", wait, "err", err)
		if err := x.opts.Sleep(ctx, wait); err != nil {
			return ExportPage{}, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s", op)
		}
	}
}

// pace waits until the limiter lets one more request go.
func (x *TicketExport) pace(ctx context.Context) error {
	now := x.opts.Now()
	r := x.limiter.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		if err := x.opts.Sleep(ctx, d); err != nil {
			r.CancelAt(x.opts.Now())
			return err
		}
	}
	return nil
}

// exportRetry is the wait before retry number attempt of a transient failure: between half
// and all of 1 s·2^attempt, at most a minute.
var exportRetry = retry.Policy{Initial: time.Second, Max: time.Minute}

// BackfillTarget says whose events BackfillEvents writes.
type BackfillTarget struct {
	Connection string    // the connection id
	Subdomain  string    // the Zendesk account
	ReadAt     time.Time // when the backfill read the ticket: the events' received_at
	ToKlaviyo  bool      // whether the emitter sends their metrics to Klaviyo (as backfill)
}

// BackfillEvents rebuilds from a ticket snapshot the ticket_event.v1 events its history can be
// told from:
//
//   - created at created_at, with status "new" (how Zendesk's own created events start);
//   - when the ticket is no longer new, a status_changed to its current status at updated_at.
//     For a closed ticket that is when it closed (Zendesk changes a closed ticket no more);
//     for a solved or deleted one, when that last change happened, or later if it was
//     commented on since.
//
// The steps in between (open, pending, a solve that was reopened) are not in a snapshot and
// are not invented; the previous status is left empty, since it is not known. Both events
// carry the snapshot's fields (subject, tags, priority, assignee…), as of updated_at.
//
// Event ids are deterministic, so a rerun writes the same ids and ClickHouse keeps one row of
// each: "zb:{tenant}:{ticket}:created", and "zb:{tenant}:{ticket}:{status}:{updated_at unix}"
// — the status and its time, so a later backfill that finds the ticket changed adds the new
// observation and keeps the old one. They differ from the ids of live webhooks on purpose:
// the same change seen both ways is two rows, which per-ticket reports (first created, first
// closed) count once, and whose Klaviyo metrics share one unique_id.
func BackfillEvents(t Ticket, target BackfillTarget) ([]schemas.TicketEvent, error) {
	if t.ID <= 0 {
		return nil, zenklav.Errorf(zenklav.EINVALID, "backfill: ticket without an id")
	}
	status, err := normalizeStatus(t.Status)
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EINVALID, err, "backfill ticket %d", t.ID)
	}
	for _, at := range []time.Time{t.CreatedAt, t.UpdatedAt} {
		if at.Before(minTime) || at.After(maxTime) {
			return nil, zenklav.Errorf(zenklav.EINVALID, "backfill ticket %d: time %s is outside what ClickHouse stores", t.ID, at)
		}
	}
	via := strings.ToLower(t.Via.Channel)
	custom := make([]schemas.CustomField, 0, len(t.CustomFields))
	for _, f := range t.CustomFields {
		if f.ID > 0 {
			custom = append(custom, schemas.CustomField{ID: f.ID, Value: f.Value})
		}
	}
	ticket := schemas.Ticket{
		ID:           t.ID,
		URL:          AgentURL(target.Subdomain, t.ID),
		Subject:      t.Subject,
		Description:  t.Description,
		Status:       zenklav.StatusNew,
		Priority:     normalizeEnum(t.Priority, priorities),
		Type:         normalizeEnum(t.Type, ticketTypes),
		Tags:         t.Tags,
		Channel:      channelOf(via, t.Tags),
		Via:          via,
		Requester:    schemas.Requester{ID: t.RequesterID},
		AssigneeID:   t.AssigneeID,
		GroupID:      t.GroupID,
		CustomFields: custom,
	}
	if len(ticket.CustomFields) == 0 {
		ticket.CustomFields = nil
	}
	prefix := "zb:" + target.Connection + ":" + strconv.FormatInt(t.ID, 10) + ":"
	event := func(id, typ string, at time.Time, tk schemas.Ticket) schemas.TicketEvent {
		return schemas.TicketEvent{
			EventID: prefix + id, Connection: target.Connection, Account: schemas.Account{Subdomain: target.Subdomain},
			BrandID: t.BrandID, Type: typ, Source: schemas.SourceBackfill, Klaviyo: target.ToKlaviyo,
			OccurredAt: at.UTC(), ReceivedAt: target.ReadAt.UTC(), Ticket: tk,
		}
	}
	out := []schemas.TicketEvent{event("created", schemas.TicketCreated, t.CreatedAt, ticket)}
	if status != "" && status != zenklav.StatusNew {
		now := ticket
		now.Status = status
		// updated_at is never before created_at in Zendesk; a snapshot that says otherwise
		// must still not close a ticket before it opened.
		at := t.UpdatedAt
		if at.Before(t.CreatedAt) {
			at = t.CreatedAt
		}
		out = append(out, event(status+":"+strconv.FormatInt(at.Unix(), 10), schemas.TicketStatusChanged, at, now))
	}
	return out, nil
}
