package pipeline

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/config"
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
	tenant string
	id     int64
}

type cachedUser struct {
	person Person
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
func (l *lane) enrich(ctx, sendCtx context.Context, batch []*item) (pending []*outgoing, dead []DeadLetter) {
	e := l.e
	for attempt := 0; ; attempt++ {
		pending, dead, err := l.tryEnrich(sendCtx, batch)
		if err == nil {
			return pending, dead
		}
		if time.Since(oldest(batch)) >= e.cfg.RetryFor {
			for _, it := range batch {
				dead = append(dead, l.deadLetterOf(it, "gave up looking up the ticket's details in Zendesk: "+err.Error(), err))
			}
			return nil, dead
		}
		level := slog.LevelWarn
		if attempt >= 5 {
			level = slog.LevelError // no longer a blip: someone should look
		}
		e.logger.Log(ctx, level, "zendesk lookup failed, retrying", "connection", l.tenant, "attempt", attempt+1, "err", err)
		if e.backoff.Sleep(ctx, attempt) != nil {
			return nil, nil
		}
	}
}

func oldest(batch []*item) time.Time {
	t := batch[0].fetched
	for _, it := range batch[1:] {
		if it.fetched.Before(t) {
			t = it.fetched
		}
	}
	return t
}

// tryEnrich makes one pass; a retryable lookup error fails the pass.
func (l *lane) tryEnrich(ctx context.Context, batch []*item) ([]*outgoing, []DeadLetter, error) {
	dir, cache, tenant := l.route.Directory, l.e.cache, l.tenant

	// Tickets: only for what the webhook lacked: the first comment, the custom fields (which
	// event-subscribed webhooks never carry), the requester, or the brand when the connection
	// syncs chosen brands. One call per 100 tickets.
	var lookup []int64
	for _, it := range batch {
		if needsTicket(&it.event, l.route.Brands) && !slices.Contains(lookup, it.event.Ticket.ID) {
			lookup = append(lookup, it.event.Ticket.ID)
		}
	}
	details := map[int64]TicketDetails{}
	if len(lookup) > 0 {
		found, err := dir.Tickets(ctx, lookup)
		if err := l.lookupFailed(err, "tickets"); err != nil {
			return nil, nil, err
		}
		details = found // tickets deleted since are missing: the webhook's word is all there is
	}

	// Users: assignees, and requesters the webhook did not describe; one call for all the
	// batch's cache misses.
	var missing []int64
	want := func(id int64) {
		if id != 0 && !slices.Contains(missing, id) {
			if _, ok := cache.users.Get(cacheKey{tenant, id}); !ok {
				missing = append(missing, id)
			}
		}
	}
	for _, it := range batch {
		t := &it.event.Ticket
		want(t.AssigneeID)
		if t.Requester.Email == "" && t.Requester.Phone == "" {
			want(requesterID(it, details))
		}
	}
	if len(missing) > 0 {
		found, err := dir.Users(ctx, missing)
		if err := l.lookupFailed(err, "users"); err != nil {
			return nil, nil, err
		}
		for _, id := range missing {
			p, ok := found[id]
			cache.users.Add(cacheKey{tenant, id}, cachedUser{person: p, found: ok})
		}
	}

	// Groups: few, and cached.
	groups := map[int64]string{}
	for _, it := range batch {
		id := it.event.Ticket.GroupID
		if id == 0 {
			continue
		}
		if name, ok := cache.groups.Get(cacheKey{tenant, id}); ok {
			groups[id] = name
			continue
		}
		name, err := dir.GroupName(ctx, id)
		if err := l.lookupFailed(err, "group"); err != nil {
			return nil, nil, err
		}
		cache.groups.Add(cacheKey{tenant, id}, name)
		groups[id] = name
	}

	var out []*outgoing
	var dead []DeadLetter
	for _, it := range batch {
		ev := &it.event
		d := details[ev.Ticket.ID]
		brand := ev.BrandID
		if brand == 0 {
			brand = d.BrandID
		}
		if !l.route.Brands.All && !l.route.Brands.Includes(brand) {
			l.e.offsets.done(it.msg) // a brand this connection does not sync
			continue
		}
		it.requester = requesterID(it, details)
		requester := Person{Name: ev.Ticket.Requester.Name, Email: ev.Ticket.Requester.Email, Phone: ev.Ticket.Requester.Phone}
		if requester.Email == "" && requester.Phone == "" {
			u, _ := cache.users.Get(cacheKey{tenant, it.requester})
			requester = u.person
		}
		var assignee Person
		if ev.Ticket.AssigneeID != 0 {
			u, _ := cache.users.Get(cacheKey{tenant, ev.Ticket.AssigneeID})
			assignee = u.person
		}
		description := ev.Ticket.Description
		if description == "" {
			description = d.Description
		}
		custom := ev.Ticket.CustomFields
		if len(custom) == 0 {
			custom = d.CustomFields
		}
		ms, err := metricsFor(ev, it.ts, requester, assignee, groups[ev.Ticket.GroupID], description, custom)
		if err != nil {
			dead = append(dead, l.deadLetterOf(it, err.Error(), err))
			l.e.metrics.events.WithLabelValues("dead_letter").Add(float64(len(it.ts)))
			continue
		}
		left, failed := len(ms), false
		for _, m := range ms {
			m.Backfill = m.Backfill || time.Since(ev.ReceivedAt) > l.e.cfg.BackfillAfter
			out = append(out, &outgoing{item: it, metric: m, requester: it.requester, left: &left, failed: &failed})
		}
	}
	return out, dead, nil
}

// lookupFailed sorts a lookup's error: one worth retrying fails the pass and is returned;
// otherwise (the thing is gone, or Zendesk refuses to say) the fields stay empty, and a
// refusal is logged for someone to look at the connection's Zendesk credentials.
func (l *lane) lookupFailed(err error, what string) error {
	switch {
	case err == nil || zenklav.ErrorCode(err) == zenklav.ENOTFOUND:
		return nil
	case retryable(err):
		return err
	}
	l.e.logger.Warn("zendesk lookup refused", "connection", l.tenant, "lookup", what, "err", err)
	return nil
}

// needsTicket reports whether the webhook left out something only the ticket can tell.
func needsTicket(e *schemas.TicketEvent, brands config.Brands) bool {
	t := &e.Ticket
	return t.Description == "" ||
		len(t.CustomFields) == 0 && e.Source == schemas.SourceEvent ||
		!brands.All && e.BrandID == 0 ||
		t.Requester.ID == 0 && t.Requester.Email == "" && t.Requester.Phone == ""
}

func requesterID(it *item, details map[int64]TicketDetails) int64 {
	if id := it.event.Ticket.Requester.ID; id != 0 {
		return id
	}
	return details[it.event.Ticket.ID].RequesterID
}
