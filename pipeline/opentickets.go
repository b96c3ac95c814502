package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/zenklav/zenklav/schemas"
)

// OpenTicketsProperty is the profile property that holds the requester's count of tickets
// not yet closed, so marketers can segment on it without a metric filter.
const OpenTicketsProperty = "Open_tickets"

// TicketState is a ticket's latest known status.
type TicketState struct {
	Status     string
	OccurredAt time.Time
}

// TicketStates reads the latest status of each ticket of some requesters (analytics.Store,
// which the sink keeps up to date from the same topic).
type TicketStates interface {
	RequesterTickets(ctx context.Context, tenant string, requesters []int64) (map[int64]map[int64]TicketState, error)
}

// OpenTickets is one requester's count, on their Klaviyo profile.
type OpenTickets struct {
	Email, Phone string
	Count        int
}

// ProfileSender sets Open_tickets on profiles of one Klaviyo account; it waits for the
// account's rate limit itself.
type ProfileSender interface {
	SetOpenTickets(ctx context.Context, counts []OpenTickets) error
}

// updateOpenTickets recounts the open tickets of the requesters whose tickets opened or
// closed in the batch, and sets them on their profiles. ClickHouse has every ticket's latest
// status, except for what the sink has not written yet: the batch itself, which is laid over
// it. Transient failures are retried until RetryFor; it reports false when it gave up because
// of shutdown, so the batch is handled again after a restart.
func (l *lane) updateOpenTickets(ctx, sendCtx context.Context, batch []*item, delivered []*outgoing) bool {
	e := l.e
	if e.cfg.States == nil || l.route.Profiles == nil || len(delivered) == 0 {
		return true
	}
	profiles := map[int64]OpenTickets{} // by requester id
	for _, o := range delivered {
		if o.requester != 0 {
			profiles[o.requester] = OpenTickets{Email: o.metric.Email, Phone: o.metric.Phone}
		}
	}
	if len(profiles) == 0 {
		return true
	}
	ids := make([]int64, 0, len(profiles))
	for id := range profiles {
		ids = append(ids, id)
	}
	for attempt := 0; ; attempt++ {
		err := l.setOpenTickets(sendCtx, batch, ids, profiles)
		if err == nil {
			return true
		}
		if !retryable(err) || time.Since(oldest(batch)) >= e.cfg.RetryFor {
			// The metrics are in Klaviyo; only the count is stale, until the requester's next
			// ticket opens or closes.
			e.logger.Error("gave up setting Open_tickets", "connection", l.tenant, "profiles", len(ids), "err", err)
			e.metrics.profileFailures.Inc()
			return true
		}
		level := slog.LevelWarn
		if attempt >= 5 {
			level = slog.LevelError
		}
		e.logger.Log(ctx, level, "setting Open_tickets failed, retrying", "connection", l.tenant, "attempt", attempt+1, "err", err)
		if e.backoff.Sleep(ctx, attempt) != nil {
			return false
		}
	}
}

func (l *lane) setOpenTickets(ctx context.Context, batch []*item, ids []int64, profiles map[int64]OpenTickets) error {
	states, err := l.e.cfg.States.RequesterTickets(ctx, l.tenant, ids)
	if err != nil {
		return err
	}
	for _, it := range batch {
		t := &it.event.Ticket
		r := it.requester
		if _, ok := profiles[r]; !ok || t.Status == "" {
			continue
		}
		if states[r] == nil {
			states[r] = map[int64]TicketState{}
		}
		if s, ok := states[r][t.ID]; !ok || !it.event.OccurredAt.Before(s.OccurredAt) {
			states[r][t.ID] = TicketState{Status: t.Status, OccurredAt: it.event.OccurredAt}
		}
	}
	counts := make([]OpenTickets, 0, len(profiles))
	for id, p := range profiles {
		for _, s := range states[id] {
			if s.Status != schemas.StatusClosed && s.Status != schemas.StatusDeleted {
				p.Count++
			}
		}
		counts = append(counts, p)
	}
	return l.route.Profiles.SetOpenTickets(ctx, counts)
}
