package setup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/zenklav/zenklav"
)

// Refreshing the grants. zenklav asks Zendesk for access tokens of 30 minutes, and Klaviyo's
// last about an hour; both rotate the refresh token with each use, and Zendesk revokes the
// old pair at once. The grants are kept
// alive by whichever api process gets there first, optimistically: no lock, no leader.
//
// Why that is safe enough: a refresh is a single request, made some minutes before the token
// expires, and its result goes to the connections store, where every process reads it within
// about a second. Two processes rarely try the same grant in the same minute, because each
// process draws its own lead time (RefreshWindow/2 to RefreshWindow before the expiry) and
// its own period around the one asked for, and each reads the store to its end before it
// decides. When two do collide, one wins; with rotation the other's refresh token is refused
// (invalid_grant, EUNAUTHORIZED). The loser then reads the store again: the winner's token is
// there (or arrives within a moment), so it has nothing to do. Only when the stored refresh
// token is still the one refused has the grant truly ended (revoked, the app uninstalled, a
// refresh token unused past its lifetime); that is said once per process, at error level, and
// left for the admin to reconnect: the connection's 401s show on the health page as
// "reconnect Zendesk/Klaviyo".
//
// The one race that costs something: a process that refreshes and dies before it stores the
// new tokens loses the grant, since the provider has already revoked the old refresh token.
// The window is a single write to Kafka, and the outcome is the same as a revoked grant: the
// admin connects again. A lease in the store would narrow the window but not close it, and
// would hold every refresh up behind a process that died holding the lease.

// RefreshWindow is how long before its expiry a grant's access token is refreshed by
// Refresh; RunRefresher draws each process's lead between half of it and all of it.
const RefreshWindow = 10 * time.Minute

// settle is how long a process whose refresh was refused waits before it reads the store
// again, when the store still holds the refresh token refused: the process that refreshed
// first may be between its refresh and its write.
const settle = time.Second

// Refresh renews, once, every grant of an enabled stored connection whose access token
// expires within RefreshWindow of now, and stores the connection with the new tokens (the
// refresh token returned replaces the old one). It returns how many grants it renewed. A
// grant the provider refuses is left as it is and logged (see above); the error joins the
// failures that may pass (a provider unavailable, the store), which the next round retries.
func (s *Service) Refresh(ctx context.Context, now time.Time) (int, error) {
	return s.newRefresher(RefreshWindow).round(ctx, now)
}

// RunRefresher runs Refresh about every period until ctx ends, with a lead of its own
// between RefreshWindow/2 and RefreshWindow and each wait drawn between period/2 and
// 3·period/2, so that the processes that run it rarely refresh the same grant at once. A
// period over RefreshWindow/4 is taken as RefreshWindow/4, so that a token is looked at
// more than once within the lead.
func (s *Service) RunRefresher(ctx context.Context, period time.Duration) {
	if period <= 0 || period > RefreshWindow/4 {
		period = RefreshWindow / 4
	}
	r := s.newRefresher(RefreshWindow/2 + rand.N(RefreshWindow/2))
	wait := rand.N(period) // processes started together do not look together
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		n, err := r.round(ctx, time.Now())
		if err != nil && ctx.Err() == nil {
			s.logger.Warn("refreshing OAuth grants failed; retrying at the next round", "refreshed", n, "err", err)
		}
		wait = period/2 + rand.N(period)
	}
}

// refresher is a round of refreshing with a lead.
type refresher struct {
	s    *Service
	lead time.Duration
	// refused holds the grants the service found ended (refused, and not renewed by another
	// process), by connection, vendor and refresh token: each is said once, and not tried
	// again until the admin reconnects (a new refresh token) or the process restarts (a
	// fixed OAuth client).
	refused *sync.Map
}

// refusedBy keeps each Service's refused grants from one round to the next.
var refusedBy sync.Map // *Service → *sync.Map

func (s *Service) newRefresher(lead time.Duration) *refresher {
	m, _ := refusedBy.LoadOrStore(s, &sync.Map{})
	return &refresher{s: s, lead: lead, refused: m.(*sync.Map)}
}

// side is a connection's Zendesk or Klaviyo side, as far as grants go.
type side struct {
	vendor   string
	provider zenklav.OAuthProvider
	account  func(c *zenklav.Connection) string
	grant    func(c *zenklav.Connection) **zenklav.OAuthToken
}

func (s *Service) sides() []side {
	return []side{
		{vendor: "Zendesk", provider: s.cfg.ZendeskOAuth,
			account: func(c *zenklav.Connection) string { return c.Zendesk.Subdomain },
			grant:   func(c *zenklav.Connection) **zenklav.OAuthToken { return &c.Zendesk.OAuth }},
		{vendor: "Klaviyo", provider: s.cfg.KlaviyoOAuth,
			account: func(*zenklav.Connection) string { return "" },
			grant:   func(c *zenklav.Connection) **zenklav.OAuthToken { return &c.Klaviyo.OAuth }},
	}
}

// round refreshes the grants that expire within the lead of now.
func (r *refresher) round(ctx context.Context, now time.Time) (int, error) {
	entries, err := r.s.cfg.Store.List(ctx) // read to its end: what another process stored counts
	if err != nil {
		return 0, fmt.Errorf("refresh grants: %w", err)
	}
	refreshed := 0
	var errs []error
	for _, e := range entries {
		if e.Err != nil || e.Disabled {
			continue
		}
		for _, sd := range r.s.sides() {
			t := *sd.grant(&e.Connection)
			if t == nil || !t.ExpiresWithin(now, r.lead) {
				continue
			}
			done, err := r.refresh(ctx, e.Connection, sd, *t)
			if err != nil {
				errs = append(errs, err)
			}
			if done {
				refreshed++
			}
		}
	}
	if len(errs) > 0 {
		return refreshed, fmt.Errorf("refresh grants: %w", errors.Join(errs...))
	}
	return refreshed, nil
}

// refresh renews one grant of c and stores it; it says whether it did.
func (r *refresher) refresh(ctx context.Context, c zenklav.Connection, sd side, old zenklav.OAuthToken) (bool, error) {
	key := c.ID + "/" + sd.vendor + "/" + fingerprint(old.RefreshToken)
	if _, ok := r.refused.Load(key); ok {
		return false, nil
	}
	if sd.provider == nil {
		r.refused.Store(key, true)
		r.s.logger.Error("a grant expires but zenklav has no OAuth client to refresh it with: set the "+sd.vendor+
			" OAuth client id and secret, or reconnect the connection with an API key", "connection", c.ID, "vendor", sd.vendor)
		return false, nil
	}
	fresh, err := sd.provider.Refresh(ctx, sd.account(&c), old.RefreshToken)
	if zenklav.ErrorCode(err) == zenklav.EUNAUTHORIZED {
		return false, r.refusedGrant(ctx, c.ID, sd, old, key, err)
	}
	if err != nil {
		return false, fmt.Errorf("connection %q, %s: %w", c.ID, sd.vendor, err)
	}
	if fresh.RefreshToken == "" {
		fresh.RefreshToken = old.RefreshToken // not rotated: the old one still renews
	}
	if fresh.Scope == "" {
		fresh.Scope = old.Scope
	}
	return r.store(ctx, c.ID, sd, old, fresh)
}

// store puts the renewed grant in the connection as it stands now. Should the stored grant
// be another than the one renewed (the admin connected again meanwhile, or another process
// renewed it too), that one stays: it is the one every process already uses.
func (r *refresher) store(ctx context.Context, id string, sd side, old, fresh zenklav.OAuthToken) (bool, error) {
	e, err := r.s.cfg.Store.Get(id)
	if zenklav.ErrorCode(err) == zenklav.ENOTFOUND {
		return false, nil // disconnected meanwhile
	} else if err != nil {
		return false, fmt.Errorf("connection %q, %s: %w", id, sd.vendor, err)
	}
	g := sd.grant(&e.Connection)
	if *g == nil || (*g).RefreshToken != old.RefreshToken {
		r.s.logger.Info("a grant changed while it was being refreshed; keeping the stored one", "connection", id, "vendor", sd.vendor)
		return false, nil
	}
	*g = &fresh
	if err := r.s.cfg.Store.Put(ctx, e.Connection, e.Disabled); err != nil {
		// The provider may have revoked the old tokens already: the next round cannot renew
		// them, and says so.
		return false, fmt.Errorf("connection %q, %s: store the refreshed grant: %w", id, sd.vendor, err)
	}
	r.s.logger.Info("refreshed an OAuth grant", "connection", id, "vendor", sd.vendor, "expires_at", fresh.ExpiresAt)
	return true, nil
}

// refusedGrant handles a refresh the provider refused: another process may have renewed the
// grant first (its refresh token then replaced the one refused in the store), else the grant
// has ended.
func (r *refresher) refusedGrant(ctx context.Context, id string, sd side, old zenklav.OAuthToken, key string, refusal error) error {
	for attempt := 0; attempt < 2; attempt++ {
		if attempt > 0 {
			t := time.NewTimer(settle)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		current, err := r.storedGrant(ctx, id, sd)
		if err != nil {
			return err
		}
		if current == nil || current.RefreshToken != old.RefreshToken {
			r.s.logger.Debug("a grant was refreshed by another process", "connection", id, "vendor", sd.vendor)
			return nil
		}
	}
	r.refused.Store(key, true)
	r.s.logger.Error("the "+sd.vendor+" grant was refused when refreshed: reconnect "+sd.vendor+" for this connection",
		"connection", id, "vendor", sd.vendor, "err", refusal)
	return nil
}

// storedGrant is the side's grant of connection id as the store holds it once read to its
// end; nil when the connection, or its grant, is gone.
func (r *refresher) storedGrant(ctx context.Context, id string, sd side) (*zenklav.OAuthToken, error) {
	entries, err := r.s.cfg.Store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("connection %q, %s: read the store again: %w", id, sd.vendor, err)
	}
	for _, e := range entries {
		if e.Connection.ID == id && e.Err == nil {
			return *sd.grant(&e.Connection), nil
		}
	}
	return nil, nil
}

// fingerprint names a secret without holding it.
func fingerprint(s zenklav.Secret) string {
	sum := sha256.Sum256([]byte(s.Reveal()))
	return hex.EncodeToString(sum[:8])
}
