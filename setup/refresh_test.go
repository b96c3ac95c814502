package setup_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstore"
)

// provider is a fake zenklav.OAuthProvider that rotates refresh tokens as Zendesk and
// Klaviyo do: a refresh token works once, and the grant it belonged to goes on with the new
// one.
type provider struct {
	name string
	mu   sync.Mutex
	live map[string]bool // refresh tokens that still work
	n    int
	// refreshes counts the calls of Refresh, revokes those of Revoke.
	refreshes, revokes int
	// unavailable makes Refresh fail as a provider that is down.
	unavailable bool
}

func newProvider(name string) *provider { return &provider{name: name, live: map[string]bool{}} }

// grant issues a grant whose access token expires at expires.
func (p *provider) grant(expires time.Time) *zenklav.OAuthToken {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.issueLocked()
	t.ExpiresAt = expires
	return &t
}

func (p *provider) issueLocked() zenklav.OAuthToken {
	p.n++
	r := fmt.Sprintf("%s-refresh-%d", p.name, p.n)
	p.live[r] = true
	return zenklav.OAuthToken{
		AccessToken: zenklav.Secret(fmt.Sprintf("%s-access-%d", p.name, p.n)), RefreshToken: zenklav.Secret(r),
		ExpiresAt: time.Now().Add(30 * time.Minute), Scope: "read write",
	}
}

func (p *provider) AuthorizeURL(_, _, _, _ string) string { return "" }

func (p *provider) Exchange(context.Context, string, string, string, string) (zenklav.OAuthToken, error) {
	return zenklav.OAuthToken{}, zenklav.Errorf(zenklav.EINVALID, "not in this test")
}

func (p *provider) Refresh(_ context.Context, _ string, refresh zenklav.Secret) (zenklav.OAuthToken, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refreshes++
	if p.unavailable {
		return zenklav.OAuthToken{}, zenklav.Errorf(zenklav.EUNAVAILABLE, "refresh %s oauth token: answered 503", p.name)
	}
	if !p.live[refresh.Reveal()] {
		return zenklav.OAuthToken{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "refresh %s oauth token: invalid_grant: reconnect", p.name)
	}
	delete(p.live, refresh.Reveal())
	return p.issueLocked(), nil
}

func (p *provider) Revoke(_ context.Context, _ string, t zenklav.OAuthToken) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revokes++
	delete(p.live, t.RefreshToken.Reveal())
	return nil
}

func (p *provider) revoked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.revokes
}

func (p *provider) calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refreshes
}

// granted is a stored connection reaching Zendesk and Klaviyo by grants that expire at
// zendesk and klaviyo.
func granted(id string, zo, ko *provider, zendesk, klaviyo time.Time) zenklav.Connection {
	return zenklav.Connection{
		ID: id,
		Zendesk: zenklav.ZendeskSettings{Subdomain: id, OAuth: zo.grant(zendesk), Brands: zenklav.Brands{All: true},
			WebhookSecrets: []zenklav.Secret{"zendesk-signing-secret-0001"}},
		Klaviyo: zenklav.KlaviyoSettings{OAuth: ko.grant(klaviyo)},
	}
}

func put(t *testing.T, st *store, c zenklav.Connection, disabled bool) {
	t.Helper()
	if err := st.Put(context.Background(), c, disabled); err != nil {
		t.Fatal(err)
	}
}

func grants(t *testing.T, st *store, id string) (zendesk, klaviyo zenklav.OAuthToken) {
	t.Helper()
	e, err := st.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return *e.Connection.Zendesk.OAuth, *e.Connection.Klaviyo.OAuth
}

// Refresh renews the grants that expire within the window, and only those of enabled
// connections; the new refresh token replaces the one used, and a second round has nothing
// to do.
func TestRefresh(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	zo, ko := newProvider("zendesk"), newProvider("klaviyo")
	st := newStore()
	soon, later := granted("soon", zo, ko, now.Add(5*time.Minute), now.Add(50*time.Minute)), granted("later", zo, ko, now.Add(time.Hour), now.Add(time.Hour))
	expired := granted("expired", zo, ko, now.Add(-time.Minute), now.Add(-time.Minute))
	off := granted("off", zo, ko, now.Add(time.Minute), now.Add(time.Minute))
	keyed := granted("keyed", zo, ko, now, now) // reaches Klaviyo with a key: nothing to renew there
	keyed.Zendesk.OAuth, keyed.Zendesk.Email, keyed.Zendesk.APIToken = nil, "ops@keyed.example", "zendesk-api-token"
	keyed.Klaviyo = zenklav.KlaviyoSettings{PrivateKey: "pk_keyed"}
	for _, c := range []zenklav.Connection{soon, later, expired, keyed} {
		put(t, st, c, false)
	}
	put(t, st, off, true)
	f := newFixture(t, st, zo, ko)
	n, err := f.svc.Refresh(ctx, now)
	if err != nil || n != 3 {
		t.Fatalf("Refresh = %d, %v; want 3 grants renewed (soon's Zendesk, expired's two)", n, err)
	}
	for _, tc := range []struct {
		id               string
		zendesk, klaviyo *zenklav.OAuthToken // the grant before the round
		renewZ, renewK   bool
	}{
		{"soon", soon.Zendesk.OAuth, soon.Klaviyo.OAuth, true, false},
		{"later", later.Zendesk.OAuth, later.Klaviyo.OAuth, false, false},
		{"expired", expired.Zendesk.OAuth, expired.Klaviyo.OAuth, true, true},
		{"off", off.Zendesk.OAuth, off.Klaviyo.OAuth, false, false},
	} {
		z, k := grants(t, st, tc.id)
		for _, side := range []struct {
			name        string
			before, now zenklav.OAuthToken
			renewed     bool
		}{{"zendesk", *tc.zendesk, z, tc.renewZ}, {"klaviyo", *tc.klaviyo, k, tc.renewK}} {
			switch {
			case side.renewed && (side.now.RefreshToken == side.before.RefreshToken || side.now.AccessToken == side.before.AccessToken ||
				!side.now.ExpiresAt.After(now.Add(20*time.Minute)) || side.now.Scope != "read write"):
				t.Errorf("%s's %s grant was not renewed and stored: %s → %s", tc.id, side.name, side.before.RefreshToken.Reveal(), side.now.RefreshToken.Reveal())
			case !side.renewed && side.now.RefreshToken != side.before.RefreshToken:
				t.Errorf("%s's %s grant was renewed, and should not have been", tc.id, side.name)
			}
		}
	}
	if e, _ := st.Get("off"); !e.Disabled {
		t.Error("off is enabled after the round")
	}
	calls := zo.calls() + ko.calls()
	if n, err := f.svc.Refresh(ctx, now); n != 0 || err != nil || zo.calls()+ko.calls() != calls {
		t.Errorf("a second round = %d, %v, with %d more refreshes; want nothing to do", n, err, zo.calls()+ko.calls()-calls)
	}
}

// Two processes refresh the same grants at once: each grant is renewed once, the loser of
// each race finds the winner's token in the store, and nobody is told to reconnect.
func TestRefreshRace(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	zo, ko := newProvider("zendesk"), newProvider("klaviyo")
	st := newStore()
	for i := range 5 {
		put(t, st, granted(fmt.Sprintf("c%d", i), zo, ko, now.Add(time.Minute), now.Add(time.Minute)), false)
	}
	a, b := newFixture(t, st, zo, ko), newFixture(t, st, zo, ko)
	var wg sync.WaitGroup
	var na, nb int
	var ea, eb error
	wg.Go(func() { na, ea = a.svc.Refresh(ctx, now) })
	wg.Go(func() { nb, eb = b.svc.Refresh(ctx, now) })
	wg.Wait()
	if ea != nil || eb != nil {
		t.Fatalf("Refresh = %v, %v", ea, eb)
	}
	if na+nb != 10 {
		t.Errorf("renewed %d + %d grants, want 10 in all (each once)", na, nb)
	}
	for i := range 5 {
		z, k := grants(t, st, fmt.Sprintf("c%d", i))
		zo.mu.Lock()
		ok := zo.live[z.RefreshToken.Reveal()]
		zo.mu.Unlock()
		ko.mu.Lock()
		ok = ok && ko.live[k.RefreshToken.Reveal()]
		ko.mu.Unlock()
		if !ok {
			t.Errorf("c%d stores a refresh token the provider no longer takes", i)
		}
	}
	for _, f := range []*fixture{a, b} {
		if strings.Contains(f.logs.String(), "reconnect") {
			t.Errorf("a process says to reconnect after a race:\n%s", f.logs.String())
		}
	}
}

// A grant the provider refuses, whose refresh token is still the stored one, has ended: the
// process says so once, leaves the connection as it is and does not try it again; a
// provider that is down is an error the next round retries.
func TestRefreshRefused(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	zo, ko := newProvider("zendesk"), newProvider("klaviyo")
	st := newStore()
	c := granted("revoked", zo, ko, now.Add(time.Minute), now.Add(time.Hour))
	put(t, st, c, false)
	zo.mu.Lock()
	clear(zo.live) // the admin removed the integration in Zendesk
	zo.mu.Unlock()
	f := newFixture(t, st, zo, ko)
	for range 3 {
		if n, err := f.svc.Refresh(ctx, now); n != 0 || err != nil {
			t.Fatalf("Refresh of a revoked grant = %d, %v; want 0 and no error", n, err)
		}
	}
	if got := strings.Count(f.logs.String(), "reconnect Zendesk"); got != 1 {
		t.Errorf("told %d times to reconnect Zendesk, want once:\n%s", got, f.logs.String())
	}
	if zo.calls() != 1 {
		t.Errorf("the refused grant was tried %d times, want once", zo.calls())
	}
	if e, _ := st.Get("revoked"); !connstore.Same(e.Connection, c) || e.Disabled {
		t.Errorf("the refused connection changed in the store")
	}

	other := granted("down", zo, ko, now.Add(time.Minute), now.Add(time.Hour))
	put(t, st, other, false)
	zo.mu.Lock()
	zo.unavailable = true
	zo.mu.Unlock()
	if n, err := f.svc.Refresh(ctx, now); n != 0 || zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE || !strings.Contains(err.Error(), `"down"`) {
		t.Errorf("Refresh with Zendesk down = %d, %v; want an unavailable error naming the connection", n, err)
	}
}
