package emitter

import (
	"context"
	"log/slog"
	"maps"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/health"
	"github.com/zenklav/zenklav/internal/retry"
	"github.com/zenklav/zenklav/schemas"
)

// ticketBook remembers the latest status and requester of the tickets this process fetched
// events of, most recent first, up to bookSize tickets. ClickHouse knows every ticket, but
// only once the sink has written it; the book knows what the emitter has just seen, and so
// wins over ClickHouse for the tickets it holds. One ticket's events share a partition, so
// the process that owns the partition sees all of them.
type ticketBook struct {
	mu          sync.Mutex
	tickets     *lru.Cache[cacheKey, bookEntry]
	byRequester map[cacheKey]map[int64]bool // (tenant, requester) → ticket ids in the book
}

type bookEntry struct {
	requester int64
	state     zenklav.TicketState
}

const bookSize = 50_000 // a few minutes of tickets at full speed; ClickHouse has the rest by then

func newTicketBook() *ticketBook {
	b := &ticketBook{byRequester: map[cacheKey]map[int64]bool{}}
	// The eviction callback runs inside the cache's own calls, which are made under b.mu.
	b.tickets, _ = lru.NewWithEvict(bookSize, func(k cacheKey, e bookEntry) { b.unlist(k.connection, e.requester, k.id) })
	return b
}

func (b *ticketBook) unlist(connection string, requester, ticket int64) {
	rk := cacheKey{connection, requester}
	delete(b.byRequester[rk], ticket)
	if len(b.byRequester[rk]) == 0 {
		delete(b.byRequester, rk)
	}
}

// note records what e says of its ticket, unless the book knows of a later event.
func (b *ticketBook) note(e *schemas.TicketEvent) {
	t := &e.Ticket
	if t.Status == "" || t.Requester.ID == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	k := cacheKey{e.Connection, t.ID}
	if old, ok := b.tickets.Peek(k); ok {
		if e.OccurredAt.Before(old.state.OccurredAt) {
			return // Zendesk delivered it late: the book has the newer word
		}
		b.unlist(e.Connection, old.requester, t.ID)
	}
	b.tickets.Add(k, bookEntry{requester: t.Requester.ID, state: zenklav.TicketState{Status: t.Status, OccurredAt: e.OccurredAt}})
	rk := cacheKey{e.Connection, t.Requester.ID}
	if b.byRequester[rk] == nil {
		b.byRequester[rk] = map[int64]bool{}
	}
	b.byRequester[rk][t.ID] = true
}

// count returns how many of requester's tickets are open: ClickHouse's states with the
// book's laid over them.
func (b *ticketBook) count(connection string, requester int64, stored map[int64]zenklav.TicketState) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	states := maps.Clone(stored)
	if states == nil {
		states = map[int64]zenklav.TicketState{}
	}
	for id := range stored {
		if e, ok := b.tickets.Peek(cacheKey{connection, id}); ok && e.requester != requester {
			delete(states, id) // the book saw it move to someone else
		}
	}
	for id := range b.byRequester[cacheKey{connection, requester}] {
		e, _ := b.tickets.Peek(cacheKey{connection, id})
		states[id] = e.state
	}
	n := 0
	for _, s := range states {
		if zenklav.IsOpen(s.Status) {
			n++
		}
	}
	return n
}

// profiles is a connection's worker for Open_tickets: it collects the requesters whose
// tickets opened or closed and sets their counts, one request at a time, so a later count
// never loses to an earlier one. It runs apart from metric delivery: a slow or failing
// ClickHouse or profile import never holds up the metrics, and a count is recomputed from the
// state of the moment it is sent, so nothing is lost by waiting.
type profiles struct {
	connection string
	state      *health.Part // the account's state, shared with the deliveries
	states     zenklav.TicketStore
	book       *ticketBook
	logger     *slog.Logger
	failures   prometheus.Counter
	retry      retry.Policy

	mu      sync.Mutex
	klaviyo zenklav.Klaviyo               // the connection's account, as last routed
	dirty   map[int64]zenklav.OpenTickets // by requester id; Count unset
	wake    chan struct{}
}

// use makes k the account the counts are sent to: a change of the connection may replace it.
func (p *profiles) use(k zenklav.Klaviyo) {
	p.mu.Lock()
	p.klaviyo = k
	p.mu.Unlock()
}

// account is the account the counts go to now.
func (p *profiles) account() zenklav.Klaviyo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.klaviyo
}

// mark asks for the requesters of delivered metrics to be recounted.
func (p *profiles) mark(delivered []*outgoing) {
	p.mu.Lock()
	for _, o := range delivered {
		if r := o.d.Value.requester; r != 0 {
			p.dirty[r] = zenklav.OpenTickets{Profile: o.metric.Profile}
		}
	}
	p.mu.Unlock()
	p.poke()
}

// poke wakes the worker, unless a wake is pending already.
func (p *profiles) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *profiles) take() map[int64]zenklav.OpenTickets {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.dirty
	p.dirty = map[int64]zenklav.OpenTickets{}
	return d
}

// giveBack returns requesters whose update failed, unless they were marked again meanwhile.
func (p *profiles) giveBack(d map[int64]zenklav.OpenTickets) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, o := range d {
		if _, ok := p.dirty[id]; !ok {
			p.dirty[id] = o
		}
	}
}

// run sends updates until ctx ends. Failures that may pass are retried with backoff, for as
// long as they last; others are logged and counted, and the counts are right again at the
// requester's next ticket change.
func (p *profiles) run(ctx context.Context) {
	attempt := 0
	for {
		select {
		case <-p.wake:
		case <-ctx.Done():
			if n := len(p.take()); n > 0 {
				p.logger.Warn("stopping with Open_tickets updates not sent; they are right again at each requester's next ticket change",
					"connection", p.connection, "profiles", n)
			}
			return
		}
		d := p.take()
		if len(d) == 0 {
			continue
		}
		err := p.send(ctx, d)
		switch {
		case err == nil:
			attempt = 0
			p.state.Working()
		case zenklav.Transient(err):
			p.giveBack(d)
			p.logger.Debug("setting Open_tickets failed, retrying", "connection", p.connection, "profiles", len(d), "attempt", attempt+1, "err", err)
			p.state.Retrying(attempt, err)
			if p.retry.Sleep(ctx, attempt) == nil {
				attempt++
				p.poke()
			}
		default:
			p.logger.Error("Klaviyo refused Open_tickets updates", "connection", p.connection, "profiles", len(d), "err", err)
			p.failures.Inc()
		}
	}
}

func (p *profiles) send(ctx context.Context, d map[int64]zenklav.OpenTickets) error {
	ids := make([]int64, 0, len(d))
	for id := range d {
		ids = append(ids, id)
	}
	stored, err := p.states.RequesterTickets(ctx, p.connection, ids)
	if err != nil {
		return err
	}
	counts := make([]zenklav.OpenTickets, 0, len(d))
	for id, o := range d {
		o.Count = p.book.count(p.connection, id, stored[id])
		counts = append(counts, o)
	}
	return p.account().SetOpenTickets(ctx, counts)
}
