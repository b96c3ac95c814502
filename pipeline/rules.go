package pipeline

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

// The two metrics zenklav records in Klaviyo, named as Klaviyo's own Zendesk integration
// names them.
const (
	MetricOpened   = "Opened Ticket"
	MetricResolved = "Resolved Ticket"
)

// Metric is one Klaviyo event on the profile of a ticket's requester.
type Metric struct {
	Name       string
	Email      string // the profile: email, else Phone
	Phone      string // E.164
	Properties map[string]any
	Time       time.Time // Zendesk's time of the change
	UniqueID   string
	Backfill   bool // record without triggering flows: the change is long past
}

// transition is a change of a ticket that becomes a metric.
type transition struct {
	metric string
	name   string // in the unique id
}

var (
	opened   = transition{MetricOpened, "opened"}
	resolved = transition{MetricResolved, "resolved"}
)

// transitions applies the product rules: a created ticket is opened; a ticket whose status
// becomes closed is resolved (solved is not: Zendesk closes solved tickets later, by
// automation). A ticket created already closed, as imports do, is both. Nothing else
// reaches Klaviyo.
//
// A backfilled event reaches Klaviyo only when its backfill was asked to send it there
// (`zenklav backfill --to-klaviyo`), and then as a Klaviyo backfill (see metricsFor).
func transitions(e *schemas.TicketEvent) []transition {
	if e.Source == schemas.SourceBackfill && !e.Klaviyo {
		return nil
	}
	closed := e.Ticket.Status == schemas.StatusClosed
	switch {
	case e.Type == schemas.TicketCreated && closed:
		return []transition{opened, resolved}
	case e.Type == schemas.TicketCreated:
		return []transition{opened}
	case e.Type == schemas.TicketStatusChanged && closed:
		return []transition{resolved}
	}
	return nil
}

// uniqueID is the event's Klaviyo unique_id: Klaviyo keeps only the first event of a profile
// and metric with one id, so a redelivered, replayed or doubly delivered change counts once.
// It names the connection, the ticket and the transition, and not the Zendesk event: a ticket
// opens once and closes once (a closed ticket cannot be reopened; a follow-up is a new
// ticket), while one change can reach zenklav under two Zendesk event ids, by an
// event-subscribed webhook and by a trigger.
func uniqueID(e *schemas.TicketEvent, t transition) string {
	return "zendesk:" + e.Tenant + ":" + strconv.FormatInt(e.Ticket.ID, 10) + ":" + t.name
}

// Person is a Zendesk user as the emitter needs one.
type Person struct {
	Name  string
	Email string
	Phone string
}

// TicketDetails is what the emitter may need to look up about a ticket when the webhook did
// not say it.
type TicketDetails struct {
	Description  string
	BrandID      int64
	RequesterID  int64
	CustomFields []schemas.CustomField
}

// Directory looks up what webhooks leave out, in one Zendesk account. Errors keep their
// kinds: ENOTFOUND when the thing does not exist (any more), EUNAVAILABLE when worth retrying.
type Directory interface {
	// Users returns the users that exist among ids.
	Users(ctx context.Context, ids []int64) (map[int64]Person, error)
	GroupName(ctx context.Context, id int64) (string, error)
	// Tickets returns the tickets that exist among ids.
	Tickets(ctx context.Context, ids []int64) (map[int64]TicketDetails, error)
}

// properties are the fourteen event properties of the product rules, named exactly so. What
// Zendesk does not know is null, so a marketer's "is set" filter means what it says.
func properties(e *schemas.TicketEvent, assignee Person, group, description string, custom []schemas.CustomField) map[string]any {
	t := &e.Ticket
	fields := make(map[string]any, len(custom))
	for _, f := range custom {
		fields[strconv.FormatInt(f.ID, 10)] = f.Value
	}
	tags := t.Tags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{
		"Assignee_email": orNull(assignee.Email),
		"Assignee_name":  orNull(assignee.Name),
		"Channel":        orNull(t.Channel),
		"Description":    orNull(truncate(description, maxStringBytes)),
		"Fields":         fields,
		"Group_name":     orNull(group),
		"Priority":       orNull(t.Priority),
		"Subject":        orNull(truncate(t.Subject, maxStringBytes)),
		"Tags":           tags,
		"Ticket_id":      t.ID,
		"Type":           orNull(t.Type),
		"Via":            orNull(t.Via),
		"Zendesk_URL":    orNull(t.URL),
		"Status":         orNull(t.Status),
	}
}

// maxStringBytes is Klaviyo's limit on one string in an event (100 KB); a longer
// description would make Klaviyo refuse the whole event.
const maxStringBytes = 100_000

func orNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// truncate cuts s to at most n bytes on a character boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

var (
	phoneNoise = strings.NewReplacer(" ", "", "-", "", "(", "", ")", "", ".", "", "\u00a0", "")
	e164       = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
)

// toE164 returns phone in E.164 form, or "" when it cannot be: Klaviyo identifies profiles
// by E.164 numbers only, and guessing a country code would attach events to a stranger.
func toE164(phone string) string {
	p := phoneNoise.Replace(strings.TrimSpace(phone))
	if strings.HasPrefix(p, "00") {
		p = "+" + p[2:]
	}
	if e164.MatchString(p) {
		return p
	}
	return ""
}

// ProfileOf picks the requester's Klaviyo identifier: email, else phone (SMS tickets). The
// emitter writes metrics to that profile and the sidebar reads it, so both find the same one.
func ProfileOf(r Person) (email, phone string, err error) {
	if email = strings.TrimSpace(r.Email); email != "" {
		return email, "", nil
	}
	if phone = toE164(r.Phone); phone != "" {
		return "", phone, nil
	}
	if r.Phone != "" {
		return "", "", zenklav.Errorf(zenklav.EINVALID, "requester has no email, and phone %q is not a full international number", r.Phone)
	}
	return "", "", zenklav.Errorf(zenklav.EINVALID, "requester has no email or phone: no Klaviyo profile to record the event on")
}

// metricsFor turns one ticket event into its metrics, given what was looked up.
func metricsFor(e *schemas.TicketEvent, ts []transition, requester, assignee Person, group, description string, custom []schemas.CustomField) ([]Metric, error) {
	email, phone, err := ProfileOf(requester)
	if err != nil {
		return nil, fmt.Errorf("ticket %d: %w", e.Ticket.ID, err)
	}
	out := make([]Metric, len(ts))
	for i, t := range ts {
		out[i] = Metric{
			Name: t.metric, Email: email, Phone: phone,
			Properties: properties(e, assignee, group, description, custom),
			Time:       e.OccurredAt, UniqueID: uniqueID(e, t),
			// History read by a backfill is recorded without triggering flows, however
			// recently it was read; later live events of the ticket share its unique ids.
			Backfill: e.Source == schemas.SourceBackfill,
		}
	}
	return out, nil
}
