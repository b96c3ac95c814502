package sidebar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/zenklav/zenklav"
	"golang.org/x/sync/singleflight"
)

// Account is what one connection reads from: its Zendesk, and its Klaviyo (nil when the
// connection has no Klaviyo key).
type Account struct {
	Zendesk zenklav.Directory
	Klaviyo zenklav.Klaviyo
}

// Viewer is who asks for a card: an agent of a connection's app installation, through a
// session of the app's page, and the ticket Zendesk signed that page for (0 when Zendesk's
// token named none).
type Viewer struct {
	Connection string
	Session    string // the session's id
	TicketID   int64
}

// Query names the card asked for: a ticket's requester, or (on a new, unsaved ticket,
// which has no id yet) a requester by their Zendesk user id and the ticket's brand. With a
// ticket, RequesterID is the requester the page sees, which makes a cached ticket whose
// requester changed be read again.
type Query struct {
	TicketID    int64
	RequesterID int64
	BrandID     int64
}

// Config is the Service's dependencies and limits; zero limits take the defaults.
type Config struct {
	Connections *zenklav.Connections
	Accounts    *zenklav.Routes[Account] // by connection id, as the connections stand now
	// Store is zenklav's ticket store: it gives the support history, and is told the
	// segments and lists of every card built with them, for the segments report.
	Store    zenklav.TicketStore
	Now      func() time.Time
	Registry prometheus.Registerer // when set, gets the card metrics

	// CacheTTL is how long a complete card is served from memory (default a minute);
	// PartialTTL how long one with missing sections is (default 5 s, so a recovered
	// Klaviyo shows soon, while a failing one is not asked again for every agent).
	CacheTTL, PartialTTL time.Duration
	CacheSize            int // cards kept (default 10,000)
	// ZendeskTimeout bounds each Zendesk lookup, ProfileTimeout the Klaviyo profile
	// search, SectionTimeout each other Klaviyo call and the ClickHouse query.
	ZendeskTimeout, ProfileTimeout, SectionTimeout time.Duration
	// KlaviyoAppURL is Klaviyo's web app, for the card's links (default https://www.klaviyo.com).
	KlaviyoAppURL string
}

const (
	// RecentDays is the window of the support history's recent tickets.
	RecentDays = 90
	// activityShown is how many recent Klaviyo events the card lists.
	activityShown = 10
)

// Service builds profile cards.
type Service struct {
	logger *slog.Logger
	cfg    Config
	cards  *lru.Cache[cardKey, cachedCard]
	// tickets keeps ticket → requester and brand, and users the requester's details, for
	// CacheTTL: a warm card needs no Zendesk call.
	tickets *lru.Cache[ticketKey, cachedValue[zenklav.TicketDetails]]
	users   *lru.Cache[ticketKey, cachedValue[zenklav.Person]]
	flight  singleflight.Group
	// sessions holds each session to the ticket it read first (see Card); bindMu makes
	// the check and the hold one step.
	sessions *lru.Cache[string, int64]
	bindMu   sync.Mutex

	cardsServed *prometheus.CounterVec // by where from: cache or built
	unavailable *prometheus.CounterVec // built cards' missing sections, by section
}

type cardKey struct {
	conn      string
	requester int64
}

type ticketKey struct {
	subdomain string
	id        int64
}

type cachedCard struct {
	card    Card
	expires time.Time
}

type cachedValue[T any] struct {
	v       T
	expires time.Time
}

// New returns a Service.
func New(logger *slog.Logger, cfg Config) (*Service, error) {
	if cfg.Connections == nil || cfg.Store == nil {
		return nil, errors.New("sidebar needs the connections and the ticket store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.CacheTTL, time.Minute)
	def(&cfg.PartialTTL, 5*time.Second)
	def(&cfg.ZendeskTimeout, 2*time.Second)
	def(&cfg.ProfileTimeout, 2*time.Second)
	def(&cfg.SectionTimeout, 1500*time.Millisecond)
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10_000
	}
	if cfg.KlaviyoAppURL == "" {
		cfg.KlaviyoAppURL = "https://www.klaviyo.com"
	}
	cfg.KlaviyoAppURL = strings.TrimRight(cfg.KlaviyoAppURL, "/")
	f := promauto.With(cfg.Registry) // nil registers nothing
	s := &Service{
		logger: logger, cfg: cfg,
		cardsServed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "zenklav_sidebar_cards_total",
			Help: "Sidebar profile cards served, by where from: cache or built.",
		}, []string{"from"}),
		unavailable: f.NewCounterVec(prometheus.CounterOpts{
			Name: "zenklav_sidebar_sections_unavailable_total",
			Help: "Sections left out of built sidebar cards because Klaviyo or ClickHouse failed or was too slow, by section.",
		}, []string{"section"}),
	}
	var err error
	if s.cards, err = lru.New[cardKey, cachedCard](cfg.CacheSize); err != nil {
		return nil, err
	}
	if s.tickets, err = lru.New[ticketKey, cachedValue[zenklav.TicketDetails]](cfg.CacheSize); err != nil {
		return nil, err
	}
	if s.users, err = lru.New[ticketKey, cachedValue[zenklav.Person]](cfg.CacheSize); err != nil {
		return nil, err
	}
	// Sessions live 15 minutes, renewed for at most a few hours: room for every agent's
	// open tabs many times over.
	if s.sessions, err = lru.New[string, int64](100_000); err != nil {
		return nil, err
	}
	return s, nil
}

// Card returns the profile card of the requester q names, for v. The requester is always
// the one Zendesk says: the ticket's (read from Zendesk, never taken from the page), or on a
// new ticket the end-user the page names by Zendesk id (also read from Zendesk).
//
// A session reads one ticket: the one Zendesk's token named, or else the first it asks for
// (the app has one page per ticket tab, and every page load starts a new session). It may
// ask by requester only until then, as the page of a new ticket does. The card is the
// viewer's connection's only: a ticket (or a new ticket's brand) that another connection
// of the same Zendesk account syncs is refused, since its customer belongs to that
// connection's Klaviyo account and installation.
//
// Errors are for the card as a whole (bad query, another ticket, Zendesk failing); a
// Klaviyo or ClickHouse failure only leaves its section out and names it in Unavailable.
func (s *Service) Card(ctx context.Context, v Viewer, q Query) (Card, error) {
	home := s.cfg.Connections.ByID(v.Connection)
	if home == nil {
		return Card{}, zenklav.Errorf(zenklav.EFORBIDDEN, "no connection %q", v.Connection)
	}
	if q.TicketID < 0 || q.RequesterID < 0 || q.BrandID < 0 {
		return Card{}, zenklav.Errorf(zenklav.EINVALID, "ticket_id, requester_id and brand_id are positive Zendesk ids")
	}
	bound := v.TicketID
	if bound == 0 && v.Session != "" {
		bound, _ = s.sessions.Get(v.Session)
	}
	if bound != 0 {
		if q.TicketID == 0 && q.RequesterID != 0 {
			return Card{}, zenklav.Errorf(zenklav.EFORBIDDEN, "this session is for ticket %d: ask by ticket_id", bound)
		}
		if q.TicketID != 0 && q.TicketID != bound {
			return Card{}, zenklav.Errorf(zenklav.EFORBIDDEN, "this session is for ticket %d, not %d", bound, q.TicketID)
		}
		q.TicketID = bound
	}
	if q.TicketID == 0 && q.RequesterID == 0 {
		return Card{}, zenklav.Errorf(zenklav.EINVALID, "give ticket_id, or requester_id for a new ticket")
	}
	acct, _ := s.cfg.Accounts.Current(home.ID)
	dir := acct.Zendesk
	if dir == nil {
		return Card{}, zenklav.Errorf(zenklav.EUNAVAILABLE, "connection %q has no Zendesk API credentials", home.ID)
	}
	sub := home.Zendesk.Subdomain
	others := func(brand int64) error {
		if c := s.cfg.Connections.Owner(sub, brand); c != nil && c != home {
			return zenklav.Errorf(zenklav.EFORBIDDEN, "brand %d belongs to another connection of this Zendesk account: its app installation shows this customer", brand)
		}
		return nil
	}

	requesterID := q.RequesterID
	if q.TicketID != 0 {
		t, err := s.ticket(ctx, dir, sub, q.TicketID, q.RequesterID)
		if err != nil {
			return Card{}, err
		}
		if err := others(t.BrandID); err != nil {
			return Card{}, err
		}
		if err := s.bind(v, q.TicketID); err != nil {
			return Card{}, err
		}
		requesterID = t.RequesterID
	} else if q.BrandID != 0 {
		if err := others(q.BrandID); err != nil {
			return Card{}, err
		}
	}
	if requesterID == 0 {
		return Card{}, zenklav.Errorf(zenklav.ENOTFOUND, "ticket %d has no requester", q.TicketID)
	}
	requester, err := cached(ctx, s, s.users, ticketKey{sub, requesterID}, func(ctx context.Context) (zenklav.Person, error) {
		return dir.FindUser(ctx, requesterID)
	})
	if err != nil {
		return Card{}, err
	}
	if q.TicketID == 0 && requester.Role != "end-user" {
		// On a new ticket the page names the requester: only a customer's card, never an
		// agent's, is shown that way.
		return Card{}, zenklav.Errorf(zenklav.EFORBIDDEN, "user %d is not an end-user", requesterID)
	}

	card, err := s.card(ctx, home, requester)
	if err != nil {
		return Card{}, err
	}
	card.TicketID = q.TicketID
	return card, nil
}

// bind holds the viewer's session to ticket, the first it reads; another ticket is refused.
func (s *Service) bind(v Viewer, ticket int64) error {
	if v.TicketID != 0 || v.Session == "" {
		return nil // held by Zendesk's own token, or not a session at all
	}
	s.bindMu.Lock()
	defer s.bindMu.Unlock()
	t, ok := s.sessions.Get(v.Session)
	if ok && t != ticket {
		return zenklav.Errorf(zenklav.EFORBIDDEN, "this session is for ticket %d, not %d", t, ticket)
	}
	if !ok {
		// The audit trail of which agent session read which customer.
		s.logger.Info("sidebar session reads ticket", "connection", v.Connection, "session", v.Session, "ticket", ticket)
		s.sessions.Add(v.Session, ticket)
	}
	return nil
}

// ticket reads a ticket's requester and brand, from the cache when it is fresh and names
// the requester the page saw (a requester changed in Zendesk since is read again).
func (s *Service) ticket(ctx context.Context, dir zenklav.Directory, sub string, id, seen int64) (zenklav.TicketDetails, error) {
	key := ticketKey{sub, id}
	if seen != 0 {
		if c, ok := s.tickets.Get(key); ok && c.v.RequesterID != seen {
			s.tickets.Remove(key)
		}
	}
	return cached(ctx, s, s.tickets, key, func(ctx context.Context) (zenklav.TicketDetails, error) { return dir.FindTicket(ctx, id) })
}

// cached returns the fresh cached value of key, or reads it with its own timeout (one read
// per key at a time) and keeps it for CacheTTL.
func cached[T any](ctx context.Context, s *Service, cache *lru.Cache[ticketKey, cachedValue[T]], key ticketKey, read func(context.Context) (T, error)) (T, error) {
	if c, ok := cache.Get(key); ok && s.cfg.Now().Before(c.expires) {
		return c.v, nil
	}
	flightKey := fmt.Sprintf("%T/%s/%d", *new(T), key.subdomain, key.id)
	v, err := s.share(ctx, flightKey, func(ctx context.Context) (any, error) {
		// A caller that missed the cache just before the last flight filled it starts a
		// flight of its own after that one ended: look again.
		if c, ok := cache.Get(key); ok && s.cfg.Now().Before(c.expires) {
			return c.v, nil
		}
		ctx, cancel := context.WithTimeout(ctx, s.cfg.ZendeskTimeout)
		defer cancel()
		v, err := read(ctx)
		if err != nil {
			if zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
				// Whatever else Zendesk answered (a revoked API token's 401 too) is
				// zenklav's dependency failing, not the agent's request or session.
				err = zenklav.Wrap(zenklav.EUNAVAILABLE, err, "Zendesk did not answer")
			}
			return v, err
		}
		cache.Add(key, cachedValue[T]{v: v, expires: s.cfg.Now().Add(s.cfg.CacheTTL)})
		return v, nil
	})
	if err != nil {
		var zero T
		return zero, err
	}
	return v.(T), nil
}

// share runs f once for all callers of key at a time. f runs detached from any one
// caller's cancellation (its own timeouts bound it), so an agent closing the ticket does
// not fail the card for a colleague waiting on the same read; each caller still stops
// waiting when its own ctx ends.
func (s *Service) share(ctx context.Context, key string, f func(context.Context) (any, error)) (any, error) {
	ch := s.flight.DoChan(key, func() (any, error) { return f(context.WithoutCancel(ctx)) })
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, zenklav.Wrap(zenklav.EUNAVAILABLE, ctx.Err(), "card request ended")
	}
}

// card returns the requester's card on conn, cached.
func (s *Service) card(ctx context.Context, conn *zenklav.Connection, requester zenklav.Person) (Card, error) {
	key := cardKey{conn.ID, requester.ID}
	if c, ok := s.cards.Get(key); ok && s.cfg.Now().Before(c.expires) && c.card.Requester == requester {
		s.cardsServed.WithLabelValues("cache").Inc()
		return c.card, nil
	}
	// The key holds what the card is built from: a requester whose email changed joins no
	// build for the old one.
	flightKey := "card/" + conn.ID + "/" + strconv.FormatInt(requester.ID, 10) + "/" + requester.Email + "/" + requester.Phone
	v, err := s.share(ctx, flightKey, func(ctx context.Context) (any, error) {
		if c, ok := s.cards.Get(key); ok && s.cfg.Now().Before(c.expires) && c.card.Requester == requester {
			s.cardsServed.WithLabelValues("cache").Inc() // filled by the flight that ended just before
			return c.card, nil
		}
		card := s.build(ctx, conn, requester)
		s.cardsServed.WithLabelValues("built").Inc()
		for _, section := range card.Unavailable {
			s.unavailable.WithLabelValues(section).Inc()
		}
		ttl := s.cfg.CacheTTL
		if len(card.Unavailable) > 0 {
			ttl = s.cfg.PartialTTL
		}
		s.cards.Add(key, cachedCard{card: card, expires: s.cfg.Now().Add(ttl)})
		return card, nil
	})
	if err != nil {
		return Card{}, err
	}
	return v.(Card), nil
}

// build reads the card's sections, in parallel, each with its own timeout: the support
// history from ClickHouse beside the Klaviyo profile search, then the profile's activity,
// segments and lists beside each other.
func (s *Service) build(ctx context.Context, conn *zenklav.Connection, requester zenklav.Person) Card {
	card := Card{
		Requester: requester, Klaviyo: KlaviyoUnavailable,
		Activity: []Activity{}, Segments: []Membership{}, Lists: []Membership{}, Unavailable: []string{},
		CreateProfileURL: s.cfg.KlaviyoAppURL + "/profiles",
	}
	b := &sections{ctx: ctx, logger: s.logger.With("connection", conn.ID, "requester", requester.ID), unavailable: map[string]bool{}}
	b.run(s.cfg.SectionTimeout, SectionSupport, func(ctx context.Context) error {
		h, err := s.cfg.Store.SupportHistory(ctx, conn.ID, requester.ID, s.cfg.Now().AddDate(0, 0, -RecentDays))
		if err == nil {
			card.Support = supportView(h)
		}
		return err
	})
	s.klaviyoSections(b, conn, requester, &card)
	b.wg.Wait()
	for _, name := range []string{SectionProfile, SectionActivity, SectionSegments, SectionLists, SectionSupport} {
		if b.unavailable[name] {
			card.Unavailable = append(card.Unavailable, name)
		}
	}
	if card.Klaviyo == KlaviyoFound {
		var seen []snapshot
		if !b.unavailable[SectionSegments] {
			seen = append(seen, snapshot{"segment", card.Segments})
		}
		if !b.unavailable[SectionLists] {
			seen = append(seen, snapshot{"list", card.Lists})
		}
		s.recordMemberships(ctx, conn.ID, requester.ID, seen)
	}
	return card
}

// sections reads a card's sections side by side, each with its own timeout, and keeps the
// names of those that failed.
type sections struct {
	ctx         context.Context
	logger      *slog.Logger
	wg          sync.WaitGroup
	mu          sync.Mutex
	unavailable map[string]bool
}

// fail leaves section out of the card.
func (b *sections) fail(section string, err error) {
	b.logger.Warn("sidebar section unavailable", "section", section, "err", err)
	b.mu.Lock()
	b.unavailable[section] = true
	b.mu.Unlock()
}

// run reads section with f, within timeout, beside the others.
func (b *sections) run(timeout time.Duration, section string, f func(context.Context) error) {
	b.wg.Go(func() {
		ctx, cancel := context.WithTimeout(b.ctx, timeout)
		defer cancel()
		if err := f(ctx); err != nil {
			b.fail(section, err)
		}
	})
}

// klaviyoSections finds the requester's Klaviyo profile, then reads its activity, segments
// and lists beside each other.
func (s *Service) klaviyoSections(b *sections, conn *zenklav.Connection, requester zenklav.Person, card *Card) {
	acct, _ := s.cfg.Accounts.Current(conn.ID)
	kl := acct.Klaviyo
	key, idErr := zenklav.ProfileOf(requester)
	switch {
	case kl == nil:
		b.fail(SectionProfile, fmt.Errorf("connection %q has no Klaviyo account", conn.ID))
		return
	case idErr != nil:
		// No email and no usable phone: Klaviyo cannot hold a profile the emitter would
		// write to, so there is none to show.
		card.Klaviyo = KlaviyoNotFound
		return
	}
	pctx, cancel := context.WithTimeout(b.ctx, s.cfg.ProfileTimeout)
	found, ok, err := kl.FindProfile(pctx, key)
	cancel()
	switch {
	case err != nil:
		b.fail(SectionProfile, err)
		return
	case !ok:
		card.Klaviyo = KlaviyoNotFound
		return
	}
	card.Klaviyo = KlaviyoFound
	p := profileView(found)
	p.URL = s.cfg.KlaviyoAppURL + "/profile/" + p.ID
	card.Profile = &p
	b.run(s.cfg.SectionTimeout, SectionActivity, func(ctx context.Context) error {
		a, err := kl.RecentEvents(ctx, p.ID, activityShown)
		if err == nil {
			card.Activity = activityView(a)
		}
		return err
	})
	b.run(s.cfg.SectionTimeout, SectionSegments, func(ctx context.Context) error {
		m, err := kl.ProfileSegments(ctx, p.ID)
		if err == nil {
			card.Segments = m
		}
		return err
	})
	b.run(s.cfg.SectionTimeout, SectionLists, func(ctx context.Context) error {
		m, err := kl.ProfileLists(ctx, p.ID)
		if err == nil {
			card.Lists = m
		}
		return err
	})
}

// snapshot is the segments (kind "segment") or lists ("list") a card read.
type snapshot struct {
	kind string
	ms   []Membership
}

// recordMemberships keeps the segments and lists a card read (a section Klaviyo did not
// give is no snapshot, rather than a false "in none"), for the segments report, without
// holding the card up: it is written in the background, and one that fails is only logged
// (the report then counts the ticket under the customer's previous snapshot).
func (s *Service) recordMemberships(ctx context.Context, connection string, requester int64, seen []snapshot) {
	if len(seen) == 0 {
		return
	}
	at := s.cfg.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for _, sn := range seen {
			names := make([]string, len(sn.ms))
			for i, m := range sn.ms {
				names[i] = m.Name
			}
			if err := s.cfg.Store.RecordMemberships(ctx, connection, requester, at, sn.kind, names); err != nil {
				s.logger.Warn("record memberships", "connection", connection, "requester", requester, "kind", sn.kind, "err", err)
			}
		}
	}()
}

// ConsentState turns Klaviyo's consent word (SUBSCRIBED, UNSUBSCRIBED, NEVER_SUBSCRIBED, …)
// into the card's three states; anything but a subscription or its withdrawal reads as
// never subscribed.
func ConsentState(klaviyo string) string {
	switch strings.ToUpper(klaviyo) {
	case "SUBSCRIBED":
		return ConsentSubscribed
	case "UNSUBSCRIBED":
		return ConsentUnsubscribed
	default:
		return ConsentNever
	}
}
