package emitter

import (
	"context"
	"slices"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstatus"
	"github.com/zenklav/zenklav/schemas"
)

// directoryCache remembers Zendesk users and groups for a while, so a busy agent or group
// costs one lookup every cacheTTL rather than one per ticket. It is bounded: a directory of
// millions of customers cannot grow it past cacheSize entries a kind.
type directoryCache struct {
	users  *expirable.LRU[cacheKey, cachedUser]
	groups *expirable.LRU[cacheKey, string]
}

type cacheKey struct {
	connection string
	id         int64
}

type cachedUser struct {
	person zenklav.Person
	found  bool // false: Zendesk has no such user (deleted), which is worth remembering too
}

const (
	cacheSize = 100_000
	cacheTTL  = 10 * time.Minute
)

func newDirectoryCache() *directoryCache {
	return &directoryCache{
		users:  expirable.NewLRU[cacheKey, cachedUser](cacheSize, nil, cacheTTL),
		groups: expirable.NewLRU[cacheKey, string](cacheSize, nil, cacheTTL),
	}
}

// enrich looks up what the batch's webhooks left out and builds its metrics. Lookups that
// fail transiently are retried with backoff (what was found is kept in the cache) until
// RetryFor, after which the batch's events are dead letters; on shutdown it returns nothing,
// and the batch is handled again after a restart.
func (e *Emitter) enrich(ctx, sendCtx context.Context, r *route, batch []*delivery) (pending []*outgoing, dead []failure) {
	for attempt := 0; ; attempt++ {
		pending, dead, err := e.tryEnrich(sendCtx, r, batch)
		if err == nil {
			r.zendesk.Working()
			return pending, dead
		}
		e.cfg.Status.Failed(r.id, connstatus.Zendesk, err)
		if time.Since(oldest(batch)) >= e.cfg.RetryFor {
			for _, d := range batch {
				dead = append(dead, failure{d, "gave up looking up the ticket's details in Zendesk: " + err.Error(), err})
			}
			return nil, dead
		}
		e.logger.Debug("zendesk lookup failed, retrying", "connection", r.id, "attempt", attempt+1, "err", err)
		r.zendesk.Retrying(attempt, err)
		if e.retry.Sleep(ctx, attempt) != nil {
			return nil, nil
		}
	}
}

func oldest(batch []*delivery) time.Time {
	t := batch[0].Fetched
	for _, d := range batch[1:] {
		if d.Fetched.Before(t) {
			t = d.Fetched
		}
	}
	return t
}

// found is what one pass of lookups learnt: tickets by id and group names by id; users are
// in the cache.
type found struct {
	tickets map[int64]zenklav.TicketDetails
	groups  map[int64]string
}

// tryEnrich makes one pass; a retryable lookup error fails the pass.
func (e *Emitter) tryEnrich(ctx context.Context, r *route, batch []*delivery) ([]*outgoing, []failure, error) {
	f := found{groups: map[int64]string{}}
	var err error
	if f.tickets, err = e.lookupTickets(ctx, r, batch); err != nil {
		return nil, nil, err
	}
	if err := e.lookupUsers(ctx, r, batch, f.tickets); err != nil {
		return nil, nil, err
	}
	if err := e.lookupGroups(ctx, r, batch, f.groups); err != nil {
		return nil, nil, err
	}
	var out []*outgoing
	var dead []failure
	for _, d := range batch {
		ms, skip, err := e.metricsOf(r, d, f)
		switch {
		case skip:
			d.Done() // a brand this connection does not sync
		case err != nil:
			dead = append(dead, failure{d, err.Error(), err})
			e.metrics.events.WithLabelValues(r.id, "dead_letter").Add(float64(len(d.Value.ts)))
		default:
			d.Value.left, d.Value.failed = len(ms), false
			for _, m := range ms {
				out = append(out, &outgoing{d: d, metric: m})
			}
		}
	}
	return out, dead, nil
}

// lookupTickets reads only what the webhooks lacked: the first comment, the custom fields
// (which event-subscribed webhooks never carry), the requester, or the brand when the
// connection syncs chosen brands. One call per 100 tickets. Tickets deleted since are
// missing from the answer: the webhook's word is all there is.
func (e *Emitter) lookupTickets(ctx context.Context, r *route, batch []*delivery) (map[int64]zenklav.TicketDetails, error) {
	var lookup []int64
	for _, d := range batch {
		if id := d.Value.event.Ticket.ID; needsTicket(&d.Value.event, r.Connection.Zendesk.Brands) && !slices.Contains(lookup, id) {
			lookup = append(lookup, id)
		}
	}
	if len(lookup) == 0 {
		return map[int64]zenklav.TicketDetails{}, nil
	}
	found, err := r.Directory.FindTickets(ctx, lookup)
	if err := e.lookupFailed(r, err, "tickets"); err != nil {
		return nil, err
	}
	if found == nil {
		found = map[int64]zenklav.TicketDetails{}
	}
	return found, nil
}

// lookupUsers reads assignees, and requesters the webhooks did not describe, into the cache:
// one call for all the batch's cache misses.
func (e *Emitter) lookupUsers(ctx context.Context, r *route, batch []*delivery, tickets map[int64]zenklav.TicketDetails) error {
	var missing []int64
	want := func(id int64) {
		if id != 0 && !slices.Contains(missing, id) {
			if _, ok := e.cache.users.Get(cacheKey{r.id, id}); !ok {
				missing = append(missing, id)
			}
		}
	}
	for _, d := range batch {
		t := &d.Value.event.Ticket
		want(t.AssigneeID)
		if t.Requester.Email == "" && t.Requester.Phone == "" {
			want(requesterID(d.Value, tickets))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	found, err := r.Directory.FindUsers(ctx, missing)
	if err := e.lookupFailed(r, err, "users"); err != nil {
		return err
	}
	for _, id := range missing {
		p, ok := found[id]
		e.cache.users.Add(cacheKey{r.id, id}, cachedUser{person: p, found: ok})
	}
	return nil
}

// lookupGroups reads the batch's group names: few, and cached.
func (e *Emitter) lookupGroups(ctx context.Context, r *route, batch []*delivery, groups map[int64]string) error {
	for _, d := range batch {
		id := d.Value.event.Ticket.GroupID
		if id == 0 {
			continue
		}
		if name, ok := e.cache.groups.Get(cacheKey{r.id, id}); ok {
			groups[id] = name
			continue
		}
		name, err := r.Directory.GroupName(ctx, id)
		if err := e.lookupFailed(r, err, "group"); err != nil {
			return err
		}
		e.cache.groups.Add(cacheKey{r.id, id}, name)
		groups[id] = name
	}
	return nil
}

// metricsOf builds a delivery's metrics from what was looked up. skip is true for a ticket
// of a brand the connection does not sync; an error (no profile to record on) is final.
func (e *Emitter) metricsOf(r *route, d *delivery, f found) (_ []zenklav.MetricEvent, skip bool, _ error) {
	it := d.Value
	ev := &it.event
	details := f.tickets[ev.Ticket.ID]
	brand := ev.BrandID
	if brand == 0 {
		brand = details.BrandID
	}
	if !r.Connection.Syncs(brand) {
		return nil, true, nil
	}
	it.requester = requesterID(it, f.tickets)
	requester := zenklav.Person{Name: ev.Ticket.Requester.Name, Email: ev.Ticket.Requester.Email, Phone: ev.Ticket.Requester.Phone}
	if requester.Email == "" && requester.Phone == "" {
		u, _ := e.cache.users.Get(cacheKey{r.id, it.requester})
		requester = u.person
	}
	var assignee zenklav.Person
	if ev.Ticket.AssigneeID != 0 {
		u, _ := e.cache.users.Get(cacheKey{r.id, ev.Ticket.AssigneeID})
		assignee = u.person
	}
	description := ev.Ticket.Description
	if description == "" {
		description = details.Description
	}
	custom := ev.Ticket.CustomFields
	if len(custom) == 0 {
		custom = details.CustomFields
	}
	ms, err := metricsFor(ev, it.ts, requester, assignee, f.groups[ev.Ticket.GroupID], description, custom)
	for i := range ms {
		ms[i].Backfill = ms[i].Backfill || time.Since(ev.ReceivedAt) > e.cfg.BackfillAfter
	}
	return ms, false, err
}

// lookupFailed sorts a lookup's error: one worth retrying fails the pass and is returned;
// otherwise (the thing is gone, or Zendesk refuses to say) the fields stay empty, and a
// refusal is logged for someone to look at the connection's Zendesk credentials.
func (e *Emitter) lookupFailed(r *route, err error, what string) error {
	switch {
	case err == nil || zenklav.ErrorCode(err) == zenklav.ENOTFOUND:
		return nil
	case zenklav.Transient(err):
		return err
	}
	e.cfg.Status.Failed(r.id, connstatus.Zendesk, err)
	e.logger.Warn("zendesk lookup refused", "connection", r.id, "lookup", what, "err", err)
	return nil
}

// needsTicket reports whether the webhook left out something only the ticket can tell.
func needsTicket(e *schemas.TicketEvent, brands zenklav.Brands) bool {
	t := &e.Ticket
	return t.Description == "" ||
		len(t.CustomFields) == 0 && e.Source == schemas.SourceEvent ||
		!brands.All && e.BrandID == 0 ||
		t.Requester.ID == 0 && t.Requester.Email == "" && t.Requester.Phone == ""
}

func requesterID(it *item, tickets map[int64]zenklav.TicketDetails) int64 {
	if id := it.event.Ticket.Requester.ID; id != 0 {
		return id
	}
	return tickets[it.event.Ticket.ID].RequesterID
}
