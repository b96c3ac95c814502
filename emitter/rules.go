package emitter

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
)

// properties are the fourteen event properties of the product rules, named exactly so. What
// Zendesk does not know is null, so a marketer's "is set" filter means what it says.
func properties(e *schemas.TicketEvent, assignee zenklav.Person, group, description string, custom []schemas.CustomField) map[string]any {
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

// metricsFor turns one ticket event into its metrics, given what was looked up.
func metricsFor(e *schemas.TicketEvent, ts []zenklav.Transition, requester, assignee zenklav.Person, group, description string, custom []schemas.CustomField) ([]zenklav.MetricEvent, error) {
	profile, err := zenklav.ProfileOf(requester)
	if err != nil {
		return nil, fmt.Errorf("ticket %d: %w", e.Ticket.ID, err)
	}
	out := make([]zenklav.MetricEvent, len(ts))
	for i, t := range ts {
		out[i] = zenklav.MetricEvent{
			Metric: t.Metric, Profile: profile,
			Properties: properties(e, assignee, group, description, custom),
			Time:       e.OccurredAt, UniqueID: zenklav.UniqueID(e, t),
			// History read by a backfill is recorded without triggering flows, however
			// recently it was read; later live events of the ticket share its unique ids.
			Backfill: e.Source == schemas.SourceBackfill,
		}
	}
	return out, nil
}
