package backend_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/adminui"
	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/connstore"
	"github.com/zenklav/zenklav/seal"
	"github.com/zenklav/zenklav/setup"
)

// memStore is a connections store in memory.
type memStore struct {
	mu sync.Mutex
	m  map[string]connstore.Entry
}

func (s *memStore) Get(id string) (connstore.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[id]
	if !ok {
		return e, zenklav.Errorf(zenklav.ENOTFOUND, "no connection %q", id)
	}
	return e, nil
}

func (s *memStore) List(context.Context) ([]connstore.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []connstore.Entry
	for _, e := range s.m {
		out = append(out, e)
	}
	return out, nil
}

func (s *memStore) Put(_ context.Context, c zenklav.Connection, disabled bool) error {
	if err := c.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[c.ID] = connstore.Entry{Connection: c, Disabled: disabled}
	return nil
}

func (s *memStore) Remove(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

// fakeDesk is a Zendesk and Klaviyo account's admin API: what exists, and how many writes.
type fakeDesk struct {
	mu     sync.Mutex
	next   int64
	made   map[string]string // id → kind
	writes int
	tokens []string // the API tokens it was reached with
}

func (f *fakeDesk) ensure(kind, id string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.made[id]; ok && id != "" {
		return id, false
	}
	f.next++
	id = fmt.Sprint(f.next)
	f.made[id] = kind
	f.writes++
	return id, true
}

func (f *fakeDesk) remove(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.made[id]; ok {
		delete(f.made, id)
		f.writes++
	}
	return nil
}

func (f *fakeDesk) count() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.made), f.writes
}

func (f *fakeDesk) Brands(context.Context) ([]zenklav.Brand, error) {
	return []zenklav.Brand{{ID: 7, Name: "Acme", Default: true, Active: true}, {ID: 8, Name: "Acme SMS", Active: true}}, nil
}
func (f *fakeDesk) EnsureWebhook(_ context.Context, id string, _ zenklav.ZendeskWebhook) (string, bool, error) {
	id, changed := f.ensure("zendesk webhook", id)
	return id, changed, nil
}
func (f *fakeDesk) WebhookSigningSecret(context.Context, string) (zenklav.Secret, error) {
	return "zendesk-signing-secret-0123456789", nil
}
func (f *fakeDesk) DeleteWebhook(_ context.Context, id string) error { return f.remove(id) }
func (f *fakeDesk) EnsureAutomation(_ context.Context, id int64, _ zenklav.ZendeskAutomation) (int64, bool, error) {
	return f.ensureInt("automation", id)
}
func (f *fakeDesk) DeleteAutomation(_ context.Context, id int64) error {
	return f.remove(fmt.Sprint(id))
}
func (f *fakeDesk) EnsureView(_ context.Context, id int64, _ zenklav.ZendeskView) (int64, bool, error) {
	return f.ensureInt("view", id)
}
func (f *fakeDesk) DeleteView(_ context.Context, id int64) error { return f.remove(fmt.Sprint(id)) }

func (f *fakeDesk) ensureInt(kind string, id int64) (int64, bool, error) {
	s := ""
	if id != 0 {
		s = fmt.Sprint(id)
	}
	got, changed := f.ensure(kind, s)
	var n int64
	fmt.Sscan(got, &n)
	return n, changed, nil
}

// fakeKlaviyoAdmin is the Klaviyo side, sharing the fake's books.
type fakeKlaviyoAdmin struct{ *fakeDesk }

func (f fakeKlaviyoAdmin) EnsureWebhook(_ context.Context, id string, _ zenklav.KlaviyoWebhook) (string, bool, error) {
	id, changed := f.ensure("klaviyo webhook", id)
	return id, changed, nil
}
func (f fakeKlaviyoAdmin) DeleteWebhook(_ context.Context, id string) error { return f.remove(id) }

// adminSite is an /admin with fakes behind it, and a browser-like client.
type adminSite struct {
	t      *testing.T
	srv    *httptest.Server
	client *http.Client
	tokens *auth.Reports
	desk   *fakeDesk
	store  *memStore
	conns  *zenklav.Connections
	keys   []auth.SigningKey
	bodies strings.Builder // every page served, for the secret grep
}

func newAdminSite(t *testing.T, options ...func(*backend.Admin)) *adminSite {
	t.Helper()
	keys := []auth.SigningKey{{ID: "k1", Secret: "admin-test-signing-key-0123456789abcdef"}}
	conns := sidebarConns(t, 101) // acme has the sidebar app: its sessions are tried at sign-in
	tokens, err := auth.NewReports(keys, conns, nil)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := seal.ParseKeyring("k1:QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")
	if err != nil {
		t.Fatal(err)
	}
	site := &adminSite{t: t, tokens: tokens, conns: conns, keys: keys, desk: &fakeDesk{made: map[string]string{}}, store: &memStore{m: map[string]connstore.Entry{}}}
	svc, err := setup.New(slog.New(slog.DiscardHandler), setup.Config{
		PublicURL: "https://zenklav.example.com", Store: site.store,
		Zendesk: func(c *zenklav.Connection) (zenklav.ZendeskAdmin, error) {
			site.desk.mu.Lock()
			site.desk.tokens = append(site.desk.tokens, c.Zendesk.APIToken.Reveal())
			site.desk.mu.Unlock()
			return site.desk, nil
		},
		Klaviyo: func(*zenklav.Connection) (zenklav.KlaviyoAdmin, error) { return fakeKlaviyoAdmin{site.desk}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	admin := &backend.Admin{Verify: tokens.VerifyAdmin, Setup: svc, Keys: ring, PublicURL: "https://zenklav.example.com", Pages: adminui.Pages()}
	for _, o := range options {
		o(admin)
	}
	s, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{Registry: prometheus.NewRegistry(), Admin: admin})
	if err != nil {
		t.Fatal(err)
	}
	site.srv = httptest.NewServer(s.Handler())
	t.Cleanup(site.srv.Close)
	jar, _ := cookiejar.New(nil)
	site.client = &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return site
}

func (s *adminSite) token(role string) string {
	tok, _, err := s.tokens.Issue(auth.TokenRequest{Subject: "ops", Role: role, Connections: []string{"acme"}, TTL: time.Hour})
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// do sends a request and returns its status, Location and body.
func (s *adminSite) do(method, path string, form url.Values) (int, string, string) {
	s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, s.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	s.bodies.Write(b)
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/html") {
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") {
			s.t.Errorf("%s %s: CSP %q is not strict", method, path, csp)
		}
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrf reads the session's CSRF token from a page.
func (s *adminSite) csrf() string {
	s.t.Helper()
	_, _, body := s.do("GET", "/admin", nil)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		s.t.Fatalf("no CSRF token on the signed-in page:\n%s", body)
	}
	return m[1]
}

// post sends a wizard form with the session's CSRF token and wants status.
func (s *adminSite) post(path string, want int, form url.Values) string {
	s.t.Helper()
	form.Set("csrf", s.csrf())
	status, _, body := s.do("POST", path, form)
	if status != want {
		s.t.Fatalf("POST %s: %d, want %d:\n%s", path, status, want, body)
	}
	return body
}

// TestAdminSignIn: only admin tokens sign in; a POST without the session's CSRF token, or
// from another site, changes nothing.
func TestAdminSignIn(t *testing.T) {
	s := newAdminSite(t)
	if status, _, body := s.do("GET", "/admin", nil); status != 200 || !strings.Contains(body, "Admin token") {
		t.Fatalf("signed out: %d, want the sign-in page", status)
	}
	if status, _, _ := s.do("GET", "/admin/setup", nil); status != http.StatusSeeOther {
		t.Errorf("the wizard signed out: %d, want a redirect to sign in", status)
	}
	sidebar, err := auth.NewSidebar(s.conns, s.keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	session, _, err := sidebar.IssueSession(auth.AppIdentity{Connection: "acme", Subdomain: "acme", Installation: 101})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token string
		want        int
	}{{"marketer", s.token(auth.RoleMarketer), 403}, {"sidebar session", session, 401}, {"garbage", "not.a.token", 401}, {"empty", "", 401}} {
		if status, _, _ := s.do("POST", "/admin/login", url.Values{"token": {tc.token}}); status != tc.want {
			t.Errorf("sign in with a %s token: %d, want %d", tc.name, status, tc.want)
		}
	}
	if status, _, _ := s.do("POST", "/admin/login", url.Values{"token": {s.token(auth.RoleAdmin)}}); status != http.StatusSeeOther {
		t.Fatalf("sign in with an admin token: %d, want 303", status)
	}
	if status, _, _ := s.do("POST", "/admin/setup/start", url.Values{"id": {"globex"}, "zendesk_url": {"globex"}}); status != 403 {
		t.Errorf("a POST without the CSRF token: %d, want 403", status)
	}
	if status, _, _ := s.do("POST", "/admin/setup/start", url.Values{"id": {"globex"}, "zendesk_url": {"globex"}, "csrf": {"0123456789abcdef0123456789abcdef"}}); status != 403 {
		t.Errorf("a POST with another session's CSRF token: %d, want 403", status)
	}
	if _, _, body := s.do("GET", "/admin/setup", nil); strings.Contains(body, "draft-id") {
		t.Error("a refused POST started a connection")
	}
}

// TestAdminWizard: the steps, Finish making what the connection asks for and storing it,
// Finish again making nothing, Disconnect removing what was made; no page shows a secret.
func TestAdminWizard(t *testing.T) {
	s := newAdminSite(t)
	if status, _, _ := s.do("POST", "/admin/login", url.Values{"token": {s.token(auth.RoleAdmin)}}); status != http.StatusSeeOther {
		t.Fatal("sign in failed")
	}
	s.post("/admin/setup/start", 303, url.Values{"id": {"globex"}, "zendesk_url": {"https://globex.zendesk.com"}})
	s.post("/admin/setup/zendesk/token", 400, url.Values{"email": {"ops@globex.com"}})
	s.post("/admin/setup/zendesk/token", 303, url.Values{"email": {"ops@globex.com"}, "api_token": {"zendesk-api-token-secret"}})
	s.post("/admin/setup/options", 400, url.Values{"brands": {"all"}, "sms": {"on"}}) // SMS before Klaviyo
	s.post("/admin/setup/klaviyo/key", 400, url.Values{"private_key": {"not-a-key"}})
	s.post("/admin/setup/klaviyo/key", 303, url.Values{"private_key": {"pk_klaviyo_private_key_secret"}})
	s.post("/admin/setup/options", 303, url.Values{"brands": {"some"}, "brand": {"8"}, "sms": {"on"}, "sms_brand": {"8"},
		"close_solved": {"on"}, "view": {"on"}, "ignore": {"JOIN, YES"}})
	_, _, wiz := s.do("GET", "/admin/setup", nil)
	if !strings.Contains(wiz, "Acme SMS") || !strings.Contains(wiz, `data-testid="draft-id">globex`) {
		t.Errorf("the wizard does not show the brands read from Zendesk or the connection")
	}
	body := s.post("/admin/setup/finish", 200, url.Values{})
	if !strings.Contains(body, "is set up and served") {
		t.Errorf("finish page: %s", body)
	}
	objects, writes := s.desk.count()
	if objects != 4 {
		t.Errorf("%d objects made, want 4 (Zendesk webhook, automation, view, Klaviyo webhook)", objects)
	}
	e, err := s.store.Get("globex")
	if err != nil {
		t.Fatal(err)
	}
	c := e.Connection
	if c.Made.ZendeskWebhook == "" || c.Made.ZendeskAutomation == 0 || c.Made.ZendeskView == 0 || c.Made.KlaviyoWebhook == "" {
		t.Errorf("the store does not record what was made: %+v", c.Made)
	}
	if len(c.Zendesk.WebhookSecrets) != 1 || c.Zendesk.WebhookSecrets[0] != "zendesk-signing-secret-0123456789" || !c.SMS.Enabled || c.SMS.Brand != 8 {
		t.Errorf("stored connection: webhook secret read back %v, SMS %+v", len(c.Zendesk.WebhookSecrets) == 1, c.SMS)
	}

	// Again, from the stored connection: nothing is written twice.
	if status, _, _ := s.do("GET", "/admin/setup?edit=globex", nil); status != http.StatusSeeOther {
		t.Fatal("edit did not start the wizard")
	}
	body = s.post("/admin/setup/finish", 200, url.Values{})
	if n, w := s.desk.count(); n != objects || w != writes {
		t.Errorf("finishing again: %d objects and %d writes, want %d and %d", n, w, objects, writes)
	}
	if strings.Contains(body, "created or updated") || strings.Contains(body, ">stored<") {
		t.Errorf("finishing again says it changed something:\n%s", body)
	}

	s.post("/admin/connections/globex/disconnect", 400, url.Values{}) // not confirmed
	s.post("/admin/connections/globex/disconnect", 200, url.Values{"confirm": {"yes"}})
	if n, _ := s.desk.count(); n != 0 {
		t.Errorf("%d objects left after disconnect, want 0", n)
	}
	if _, err := s.store.Get("globex"); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("the connection is still stored: %v", err)
	}
	for _, secret := range []string{"zendesk-api-token-secret", "pk_klaviyo_private_key_secret", "zendesk-signing-secret-0123456789"} {
		if strings.Contains(s.bodies.String(), secret) {
			t.Errorf("a page showed the secret %q", secret)
		}
	}
}

// fakeOAuth is a vendor's consent flow: it remembers the challenge it was shown and gives a
// grant for the code "good" to the verifier that matches it.
type fakeOAuth struct {
	mu        sync.Mutex
	challenge string
}

func (f *fakeOAuth) AuthorizeURL(account, redirectURI, state, challenge string) string {
	f.mu.Lock()
	f.challenge = challenge
	f.mu.Unlock()
	return "https://" + account + ".zendesk.example/oauth/authorizations/new?" + url.Values{"state": {state}, "redirect_uri": {redirectURI}}.Encode()
}

func (f *fakeOAuth) Exchange(_ context.Context, _, code, verifier, _ string) (zenklav.OAuthToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if code != "good" || oauth2.S256ChallengeFromVerifier(verifier) != f.challenge {
		return zenklav.OAuthToken{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "invalid_grant")
	}
	return zenklav.OAuthToken{AccessToken: "oauth-access-token-secret", RefreshToken: "oauth-refresh-token-secret", ExpiresAt: time.Now().Add(30 * time.Minute)}, nil
}

func (f *fakeOAuth) Refresh(context.Context, string, zenklav.Secret) (zenklav.OAuthToken, error) {
	return zenklav.OAuthToken{}, nil
}
func (f *fakeOAuth) Revoke(context.Context, string, zenklav.OAuthToken) error { return nil }

// TestAdminOAuthState: "Connect with Zendesk" sends the browser to the consent page with a
// PKCE challenge and a state; only this session's state, within ten minutes, comes back to a
// grant, and the grant's tokens are on no page.
func TestAdminOAuthState(t *testing.T) {
	now := time.Now()
	s := newAdminSite(t, func(a *backend.Admin) {
		a.ZendeskOAuth = &fakeOAuth{}
		a.Now = func() time.Time { return now }
	})
	if status, _, _ := s.do("POST", "/admin/login", url.Values{"token": {s.token(auth.RoleAdmin)}}); status != http.StatusSeeOther {
		t.Fatal("sign in failed")
	}
	s.post("/admin/setup/start", 303, url.Values{"id": {"globex"}, "zendesk_url": {"globex"}})
	connect := func() string {
		t.Helper()
		form := url.Values{"csrf": {s.csrf()}}
		status, to, _ := s.do("POST", "/admin/setup/zendesk/oauth", form)
		u, err := url.Parse(to)
		if status != http.StatusSeeOther || err != nil || u.Host != "globex.zendesk.example" || u.Query().Get("state") == "" {
			t.Fatalf("connect: %d to %q, want the consent page with a state", status, to)
		}
		return u.Query().Get("state")
	}
	state := connect()
	back := func(state, code string) (int, string) {
		status, to, _ := s.do("GET", "/admin/oauth/zendesk/callback?"+url.Values{"state": {state}, "code": {code}}.Encode(), nil)
		return status, to
	}
	if status, _ := back("another-state", "good"); status != http.StatusBadRequest {
		t.Errorf("a state this session did not send: %d, want 400", status)
	}
	now = now.Add(11 * time.Minute)
	if status, _ := back(state, "good"); status != http.StatusBadRequest {
		t.Errorf("a state back after 11 minutes: %d, want 400", status)
	}
	state = connect()
	if status, _ := back(state, "bad"); status == http.StatusSeeOther {
		t.Errorf("a code the vendor refuses came back to a grant")
	}
	if status, _ := back(state, "good"); status != http.StatusBadRequest {
		t.Errorf("a state spent on a refused code, again: %d, want 400", status)
	}
	state = connect()
	if status, to := back(state, "good"); status != http.StatusSeeOther || !strings.HasPrefix(to, "/admin/setup") {
		t.Fatalf("this session's state within ten minutes: %d to %q, want back to the wizard", status, to)
	}
	if status, _ := back(state, "good"); status != http.StatusBadRequest {
		t.Errorf("the same state a second time: %d, want 400 (a state is used once)", status)
	}
	if _, _, wiz := s.do("GET", "/admin/setup", nil); !strings.Contains(wiz, "connected with Zendesk") {
		t.Error("the wizard does not show Zendesk connected")
	}
	if strings.Contains(s.bodies.String(), "oauth-access-token-secret") || strings.Contains(s.bodies.String(), "oauth-refresh-token-secret") {
		t.Error("a page showed the grant's tokens")
	}
}
