package klaviyo_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"golang.org/x/oauth2"
)

// redirectURI is where the consent sends the browser back: zenklav's callback, which the
// flow below never calls, only reads the redirect's Location.
const redirectURI = "https://zenklav.example.com/admin/klaviyo/callback"

// newOAuth is zenklav's OAuth client pointed at the simulator for both the page and the
// token calls.
func newOAuth(sim *klaviyotest.Server) *klaviyo.OAuth {
	return &klaviyo.OAuth{
		ClientID: klaviyotest.DefaultOAuthClientID, ClientSecret: klaviyotest.DefaultOAuthClientSecret,
		AuthorizeBase: sim.URL, TokenBase: sim.URL, Timeout: 5 * time.Second,
	}
}

// noRedirects is a browser that stops at each redirect, so the test reads where it goes.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// consent plays the admin's browser: it opens the authorize URL, checks the page names the
// app and its scopes, and posts the decision as the page's form does. It returns the query
// of the redirect back to redirectURI.
func consent(t *testing.T, sim *klaviyotest.Server, authorizeURL, decision string) url.Values {
	t.Helper()
	u, err := url.Parse(authorizeURL)
	if err != nil || !strings.HasPrefix(authorizeURL, sim.URL+"/oauth/authorize?") {
		t.Fatalf("authorize URL %s is not the simulator's /oauth/authorize (%v)", authorizeURL, err)
	}
	resp, err := noRedirects.Get(authorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("consent page: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), page)
	}
	for _, want := range append([]string{klaviyotest.DefaultOAuthClientID, ">Allow<", ">Deny<", `method="post"`}, strings.Fields(u.Query().Get("scope"))...) {
		if !strings.Contains(string(page), want) {
			t.Errorf("the consent page does not show %q:\n%s", want, page)
		}
	}
	form := u.Query()
	form.Set("decision", decision)
	resp, err = noRedirects.PostForm(sim.URL+"/oauth/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(back.String(), redirectURI+"?") {
		t.Fatalf("decision %s: %d to %q, want a redirect to %s", decision, resp.StatusCode, resp.Header.Get("Location"), redirectURI)
	}
	return back.Query()
}

// connect runs the whole flow, as the admin wizard does, and returns the grant.
func connect(t *testing.T, sim *klaviyotest.Server, o *klaviyo.OAuth) zenklav.OAuthToken {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	back := consent(t, sim, o.AuthorizeURL("", redirectURI, "state-123", oauth2.S256ChallengeFromVerifier(verifier)), "allow")
	if back.Get("state") != "state-123" || back.Get("code") == "" {
		t.Fatalf("redirect back %v, want a code and state-123", back)
	}
	tok, err := o.Exchange(context.Background(), "", back.Get("code"), verifier, redirectURI)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return tok
}

// bearerClient is a client that sends the access token *token holds at each request.
func bearerClient(t *testing.T, sim *klaviyotest.Server, token func() zenklav.Secret) *klaviyo.Client {
	t.Helper()
	c, err := klaviyo.NewClient(slog.New(slog.DiscardHandler), klaviyo.ClientConfig{BaseURL: sim.URL, Timeout: 5 * time.Second,
		Token: func(context.Context) (string, error) { return token().Reveal(), nil }})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// checkNoSecrets fails when err's text carries any of the secrets.
func checkNoSecrets(t *testing.T, err error, secrets ...zenklav.Secret) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s.Reveal()) {
			t.Errorf("error %q carries a secret", err)
		}
	}
}

// TestOAuthFlow: consent, code for tokens, API calls with the access token, refresh with
// rotation, and revocation, each as Klaviyo has it.
func TestOAuthFlow(t *testing.T) {
	sim, _ := setup(t)
	o := newOAuth(sim)
	ctx := context.Background()
	before := time.Now()
	tok := connect(t, sim, o)
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.AccessToken == tok.RefreshToken {
		t.Fatalf("token %#v: want distinct access and refresh tokens", tok)
	}
	if tok.Scope != strings.Join(klaviyo.DefaultScopes, " ") {
		t.Errorf("scope %q, want the default scopes", tok.Scope)
	}
	if want := before.Add(klaviyotest.DefaultAccessTokenLifetime); tok.ExpiresAt.Before(want) || tok.ExpiresAt.After(time.Now().Add(klaviyotest.DefaultAccessTokenLifetime)) {
		t.Errorf("ExpiresAt %s, want about %s", tok.ExpiresAt, want)
	}
	if g := sim.Grants(testKey); len(g) != 1 || g[0].Revoked || g[0].ClientID != klaviyotest.DefaultOAuthClientID {
		t.Errorf("grants %+v, want one of the app", g)
	}

	var mu sync.Mutex
	current := tok.AccessToken
	c := bearerClient(t, sim, func() zenklav.Secret { mu.Lock(); defer mu.Unlock(); return current })
	if err := c.CreateEvent(ctx, event("a@example.com", "Opened Ticket", "oauth-1")); err != nil {
		t.Fatalf("CreateEvent with the access token: %v", err)
	}
	if got := sim.Events(testKey); len(got) != 1 || got[0].UniqueID != "oauth-1" {
		t.Fatalf("the granting account has %v, want the event", got)
	}

	renewed, err := o.Refresh(ctx, "", tok.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if renewed.AccessToken == tok.AccessToken || renewed.RefreshToken == tok.RefreshToken || renewed.RefreshToken == "" {
		t.Errorf("Refresh did not rotate both tokens")
	}
	_, err = o.Refresh(ctx, "", tok.RefreshToken)
	if zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED || !strings.Contains(zenklav.ErrorMessage(err), "reconnect Klaviyo") {
		t.Errorf("Refresh with the rotated-out token: %v, want unauthorized, reconnect Klaviyo", err)
	} else {
		checkNoSecrets(t, err, tok.RefreshToken, renewed.RefreshToken, o.ClientSecret)
	}
	mu.Lock()
	current = renewed.AccessToken // the next request uses it at once
	mu.Unlock()
	if err := c.CreateEvent(ctx, event("a@example.com", "Opened Ticket", "oauth-2")); err != nil {
		t.Fatalf("CreateEvent with the renewed token: %v", err)
	}

	if err := o.Revoke(ctx, "", renewed); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	err = c.CreateEvent(ctx, event("a@example.com", "Opened Ticket", "oauth-3"))
	var apiErr *klaviyo.APIError
	if zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED || !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Errorf("CreateEvent after Revoke: %v, want Klaviyo's 401", err)
	}
	if _, err := o.Refresh(ctx, "", renewed.RefreshToken); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
		t.Errorf("Refresh after Revoke: %v, want unauthorized", err)
	}
	if err := o.Revoke(ctx, "", renewed); err != nil {
		t.Errorf("Revoke of a revoked grant: %v, want nil", err)
	}
	if g := sim.Grants(testKey); len(g) != 1 || !g[0].Revoked {
		t.Errorf("grants %+v, want the one revoked", g)
	}
	if n := len(sim.Events(testKey)); n != 2 {
		t.Errorf("%d events, want the 2 sent before the revocation", n)
	}
	sim.AssertNoViolations(t)
}

// TestOAuthExchangeRefusals: a code works once, with its verifier and redirect URI only, and
// only for the registered app; none of the errors carries a secret.
func TestOAuthExchangeRefusals(t *testing.T) {
	sim, _ := setup(t)
	o := newOAuth(sim)
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()
	code := func() string {
		return consent(t, sim, o.AuthorizeURL("", redirectURI, "s", oauth2.S256ChallengeFromVerifier(verifier)), "allow").Get("code")
	}
	wrongSecret := *o
	wrongSecret.ClientSecret = "not-the-secret"
	tests := []struct {
		name     string
		o        *klaviyo.OAuth
		code     func() string
		verifier string
		redirect string
		want     string // kind
		reconn   bool   // the message says to reconnect
	}{
		{"other verifier", o, code, oauth2.GenerateVerifier(), redirectURI, zenklav.EUNAUTHORIZED, true},
		{"other redirect URI", o, code, verifier, redirectURI + "/other", zenklav.EUNAUTHORIZED, true},
		{"unknown code", o, func() string { return "no-such-code" }, verifier, redirectURI, zenklav.EUNAUTHORIZED, true},
		{"wrong client secret", &wrongSecret, code, verifier, redirectURI, zenklav.EUNAUTHORIZED, false},
		{"no verifier", o, code, "", redirectURI, zenklav.EINVALID, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.o.Exchange(ctx, "", tt.code(), tt.verifier, tt.redirect)
			if zenklav.ErrorCode(err) != tt.want || strings.Contains(zenklav.ErrorMessage(err), "reconnect Klaviyo") != tt.reconn {
				t.Fatalf("Exchange: %v, want %s (reconnect: %v)", err, tt.want, tt.reconn)
			}
			checkNoSecrets(t, err, o.ClientSecret, wrongSecret.ClientSecret)
		})
	}
	t.Run("code used twice", func(t *testing.T) {
		c := code()
		if _, err := o.Exchange(ctx, "", c, verifier, redirectURI); err != nil {
			t.Fatal(err)
		}
		if _, err := o.Exchange(ctx, "", c, verifier, redirectURI); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
			t.Errorf("second Exchange: %v, want unauthorized", err)
		}
	})
	sim.AssertNoViolations(t)
}

func TestOAuthDeny(t *testing.T) {
	sim, _ := setup(t)
	o := newOAuth(sim)
	back := consent(t, sim, o.AuthorizeURL("", redirectURI, "state-9", oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())), "deny")
	if back.Get("error") != "access_denied" || back.Get("state") != "state-9" || back.Get("code") != "" {
		t.Errorf("redirect back %v, want access_denied with the state and no code", back)
	}
	if g := sim.Grants(testKey); len(g) != 0 {
		t.Errorf("grants %+v after a denial", g)
	}
}

// TestOAuthUninstall: when the account removes the app (RevokeGrants), the access token
// stops working at once, the refresh token is refused as one to reconnect, and zenklav's own
// revocation afterwards is no error.
func TestOAuthUninstall(t *testing.T) {
	sim, _ := setup(t)
	o := newOAuth(sim)
	ctx := context.Background()
	tok := connect(t, sim, o)
	c := bearerClient(t, sim, func() zenklav.Secret { return tok.AccessToken })
	if n := sim.RevokeGrants(testKey); n != 1 {
		t.Fatalf("RevokeGrants = %d, want 1", n)
	}
	if err := c.CreateEvent(ctx, event("a@example.com", "Opened Ticket", "u1")); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
		t.Errorf("CreateEvent after the uninstall: %v, want unauthorized", err)
	}
	if _, err := o.Refresh(ctx, "", tok.RefreshToken); !strings.Contains(zenklav.ErrorMessage(err), "reconnect Klaviyo") {
		t.Errorf("Refresh after the uninstall: %v, want reconnect Klaviyo", err)
	}
	if err := o.Revoke(ctx, "", tok); err != nil {
		t.Errorf("Revoke after the uninstall: %v", err)
	}
	sim.AssertNoViolations(t)
}

// TestOAuthAccessTokenExpires: the access token lasts expires_in by the simulator's clock,
// and the client asks for it at each request, so a refreshed one works at once.
func TestOAuthAccessTokenExpires(t *testing.T) {
	sim, _ := setup(t)
	var offset atomic.Int64
	sim.SetClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	sim.SetAccessTokenLifetime(30 * time.Second)
	o := newOAuth(sim)
	ctx := context.Background()
	tok := connect(t, sim, o)
	if !tok.ExpiresWithin(time.Now(), time.Minute) || tok.ExpiresWithin(time.Now(), 0) {
		t.Errorf("ExpiresAt %s, want in about 30 s", tok.ExpiresAt)
	}
	var calls atomic.Int32
	var mu sync.Mutex
	current := tok
	c := bearerClient(t, sim, func() zenklav.Secret {
		calls.Add(1)
		mu.Lock()
		defer mu.Unlock()
		return current.AccessToken
	})
	if err := c.CreateEvent(ctx, event("a@example.com", "Opened Ticket", "e1")); err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(31 * time.Second))
	if err := c.CreateEvent(ctx, event("a@example.com", "Opened Ticket", "e2")); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
		t.Fatalf("CreateEvent with an expired token: %v, want unauthorized", err)
	}
	renewed, err := o.Refresh(ctx, "", tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	current = renewed
	mu.Unlock()
	if err := c.CreateEvent(ctx, event("a@example.com", "Opened Ticket", "e3")); err != nil {
		t.Errorf("CreateEvent with the renewed token: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("the token was asked for %d times, want once per request (3)", n)
	}
	sim.AssertNoViolations(t)
}

// TestOAuthScopes: an access token does what its scopes allow, and Klaviyo's 403 otherwise.
func TestOAuthScopes(t *testing.T) {
	sim, _ := setup(t)
	o := newOAuth(sim)
	o.Scopes = []string{"events:write"}
	tok := connect(t, sim, o)
	if tok.Scope != "events:write" {
		t.Errorf("scope %q, want events:write", tok.Scope)
	}
	c := bearerClient(t, sim, func() zenklav.Secret { return tok.AccessToken })
	ctx := context.Background()
	if err := c.CreateEvent(ctx, event("a@example.com", "Opened Ticket", "s1")); err != nil {
		t.Errorf("CreateEvent with events:write: %v", err)
	}
	_, _, err := c.EnsureWebhook(ctx, "", webhookFor("https://zenklav.example.com/webhooks/klaviyo/c1"))
	var apiErr *klaviyo.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden || zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
		t.Errorf("EnsureWebhook without webhooks:read: %v, want Klaviyo's 403", err)
	}
	if len(sim.Webhooks(testKey)) != 0 {
		t.Error("a webhook was made without the scope")
	}
}

// TestOAuthRevokeAnswers: what Revoke sends, and which of Klaviyo's answers it takes for a
// grant already gone.
func TestOAuthRevokeAnswers(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   string // kind; "" for nil
	}{
		{http.StatusOK, "", ""},
		{http.StatusBadRequest, `{"error":"invalid_grant","error_description":"Token is invalid"}`, ""},
		{http.StatusBadRequest, `{"error":"invalid_token"}`, ""},
		{http.StatusUnauthorized, `{"error":"invalid_client"}`, zenklav.EUNAUTHORIZED},
		{http.StatusBadRequest, `{"error":"invalid_request"}`, zenklav.EINVALID},
		{http.StatusServiceUnavailable, "", zenklav.EUNAVAILABLE},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %s", tt.status, tt.body), func(t *testing.T) {
			var got url.Values
			var user, pass string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				user, pass, _ = r.BasicAuth()
				r.ParseForm()
				got = r.PostForm
				if r.URL.Path != "/oauth/revoke" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
					http.Error(w, "wrong path or content type", http.StatusTeapot)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			o := &klaviyo.OAuth{ClientID: "app", ClientSecret: "app-secret", TokenBase: srv.URL}
			tok := zenklav.OAuthToken{AccessToken: "at-1", RefreshToken: "rt-1"}
			err := o.Revoke(context.Background(), "", tok)
			if zenklav.ErrorCode(err) != tt.want {
				t.Errorf("Revoke: %v, want %q", err, tt.want)
			}
			if err != nil {
				checkNoSecrets(t, err, tok.AccessToken, tok.RefreshToken, o.ClientSecret)
			}
			if got.Get("token") != "rt-1" || got.Get("token_type_hint") != "refresh_token" || user != "app" || pass != "app-secret" {
				t.Errorf("sent form %v with Basic %q:%q, want the refresh token and the client's credentials", got, user, pass)
			}
		})
	}
}

// TestBearerClientConfig: a client takes a private key or a token function, one of the two,
// and keeps the kind of the token function's error.
func TestBearerClientConfig(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	token := func(context.Context) (string, error) { return "t", nil }
	if _, err := klaviyo.NewClient(logger, klaviyo.ClientConfig{BaseURL: "https://a.klaviyo.com", PrivateKey: testKey, Token: token}); zenklav.ErrorCode(err) != zenklav.EINVALID {
		t.Errorf("NewClient with a key and a token: %v, want invalid", err)
	}
	sim, _ := setup(t)
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"refused grant", zenklav.Errorf(zenklav.EUNAUTHORIZED, "reconnect Klaviyo"), zenklav.EUNAUTHORIZED},
		{"no kind", errors.New("token store down"), zenklav.EUNAVAILABLE},
		{"empty token", nil, zenklav.EUNAUTHORIZED},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := klaviyo.NewClient(logger, klaviyo.ClientConfig{BaseURL: sim.URL, Token: func(context.Context) (string, error) { return "", tt.err }})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.CreateEvent(context.Background(), event("a@example.com", "Opened Ticket", "b1")); zenklav.ErrorCode(err) != tt.want {
				t.Errorf("CreateEvent: %v, want %s", err, tt.want)
			}
		})
	}
	if n := len(sim.Events(testKey)); n != 0 {
		t.Errorf("%d events went through without a token", n)
	}
	cfg := klaviyo.ClientConfig{BaseURL: sim.URL, Token: token}
	if s := fmt.Sprintf("%v %#v", cfg, cfg); !strings.Contains(s, "Token:set") {
		t.Errorf("config printed as %s, want Token:set", s)
	}
}
