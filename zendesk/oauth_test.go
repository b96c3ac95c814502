package zendesk_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

const redirectURI = "https://zenklav.example.com/admin/zendesk/callback"

func newOAuth(sim *zendesktest.Server) *zendesk.OAuth {
	return &zendesk.OAuth{
		ClientID:     zendesktest.DefaultOAuthClientID,
		ClientSecret: zendesktest.DefaultOAuthClientSecret,
		BaseURL:      func(string) string { return sim.URL },
	}
}

// pkce returns a new verifier and its S256 challenge.
func pkce(t *testing.T) (verifier, challenge string) {
	t.Helper()
	b := make([]byte, 32)
	rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

var consentField = regexp.MustCompile(`name="consent" value="([0-9a-f]+)"`)

// consent plays the admin's browser: it opens the authorize URL, checks the consent page
// names the client and the scopes, presses decision ("allow" or "deny") and returns the
// query of the redirect back to zenklav.
func consent(t *testing.T, authorize, decision string) url.Values {
	t.Helper()
	browser := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.Get(authorize)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("consent page: %d %s", resp.StatusCode, page)
	}
	for _, want := range []string{zendesktest.DefaultOAuthClientID, "<code>read</code>", "<code>write</code>", ">Allow<", ">Deny<"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("consent page lacks %q:\n%s", want, page)
		}
	}
	m := consentField.FindSubmatch(page)
	if m == nil {
		t.Fatalf("consent page has no consent field:\n%s", page)
	}
	u, _ := url.Parse(authorize)
	resp, err = browser.PostForm(u.Scheme+"://"+u.Host+"/oauth/authorizations", url.Values{"consent": {string(m[1])}, "decision": {decision}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("consent answer: %d, want 302", resp.StatusCode)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(back.String(), redirectURI+"?") {
		t.Fatalf("redirected to %q, want %s?…", resp.Header.Get("Location"), redirectURI)
	}
	return back.Query()
}

// connect runs the whole flow and returns the grant and the verifier it used.
func connect(t *testing.T, sim *zendesktest.Server, o *zendesk.OAuth) zenklav.OAuthToken {
	t.Helper()
	verifier, challenge := pkce(t)
	q := consent(t, o.AuthorizeURL("acme", redirectURI, "state-123", challenge), "allow")
	if q.Get("state") != "state-123" || q.Get("code") == "" {
		t.Fatalf("redirect query = %v, want a code and state-123", q)
	}
	tok, err := o.Exchange(context.Background(), "acme", q.Get("code"), verifier, redirectURI)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return tok
}

// bearerClient is a client that authenticates with whatever *token holds at each call.
func bearerClient(t *testing.T, sim *zendesktest.Server, token func() zenklav.Secret) *zendesk.Client {
	t.Helper()
	c, err := zendesk.NewClient(slog.New(slog.DiscardHandler), zendesk.ClientConfig{
		BaseURL: sim.URL,
		Token:   func(context.Context) (string, error) { return token().Reveal(), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOAuthAuthorizeURL(t *testing.T) {
	o := &zendesk.OAuth{ClientID: "zdg-zenklav"}
	got, err := url.Parse(o.AuthorizeURL("acme", redirectURI, "s1", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Scheme != "https" || got.Host != "acme.zendesk.com" || got.Path != "/oauth/authorizations/new" {
		t.Errorf("authorize URL = %s, want https://acme.zendesk.com/oauth/authorizations/new", got)
	}
	want := url.Values{
		"response_type": {"code"}, "client_id": {"zdg-zenklav"}, "redirect_uri": {redirectURI},
		"scope": {"read write"}, "state": {"s1"}, "code_challenge": {"c1"}, "code_challenge_method": {"S256"},
	}
	for k, v := range want {
		if got.Query().Get(k) != v[0] {
			t.Errorf("%s = %q, want %q", k, got.Query().Get(k), v[0])
		}
	}
	if strings.Contains(got.RawQuery, "read+write") {
		t.Errorf("scope is encoded with +, Zendesk documents %%20: %s", got.RawQuery)
	}
	for _, bad := range []string{"", "Acme", "acme.evil.com", "acme/..", "-acme"} {
		if u := o.AuthorizeURL(bad, redirectURI, "s", "c"); u != "" {
			t.Errorf("AuthorizeURL(%q) = %s, want \"\"", bad, u)
		}
		_, err := o.Exchange(context.Background(), bad, "code", "verifier", redirectURI)
		if zenklav.ErrorCode(err) != zenklav.EINVALID {
			t.Errorf("Exchange(%q) = %v, want invalid", bad, err)
		}
	}
}

func TestOAuthExchange(t *testing.T) {
	sim := newSim(t)
	o := newOAuth(sim)
	before := time.Now()
	tok := connect(t, sim, o)

	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.Scope != "read write" {
		t.Errorf("token = access %t, refresh %t, scope %q; want both tokens and \"read write\"", tok.AccessToken != "", tok.RefreshToken != "", tok.Scope)
	}
	if d := tok.ExpiresAt.Sub(before); d < 29*time.Minute || d > 31*time.Minute {
		t.Errorf("token expires in %s, want the 30 minutes asked for", d)
	}
	issued := sim.OAuthTokens()
	if len(issued) != 1 || !issued[0].HasRefreshToken || issued[0].RefreshExpiresAt.Sub(before) < 29*24*time.Hour {
		t.Fatalf("simulator issued %+v, want one token with a refresh token good for 30 days", issued)
	}
	c := bearerClient(t, sim, func() zenklav.Secret { return tok.AccessToken })
	if _, err := c.Brands(context.Background()); err != nil {
		t.Errorf("Brands with the access token: %v", err)
	}
}

func TestOAuthDeny(t *testing.T) {
	sim := newSim(t)
	_, challenge := pkce(t)
	q := consent(t, newOAuth(sim).AuthorizeURL("acme", redirectURI, "state-9", challenge), "deny")
	if q.Get("error") != "access_denied" || q.Get("state") != "state-9" || q.Has("code") {
		t.Errorf("redirect query = %v, want error=access_denied, state-9 and no code", q)
	}
}

func TestOAuthExchangeRefused(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tests := []struct {
		name     string
		verifier func(good string) string
		redirect string
		secret   zenklav.Secret
		wait     time.Duration
		reuse    bool
		want     string // in the message
	}{
		{name: "wrong verifier", verifier: func(string) string { v, _ := pkce(t); return v }, want: "reconnect Zendesk"},
		{name: "other redirect uri", redirect: redirectURI + "/other", want: "reconnect Zendesk"},
		{name: "code expired", wait: zendesktest.AuthorizationCodeLifetime + time.Second, want: "reconnect Zendesk"},
		{name: "code used twice", reuse: true, want: "reconnect Zendesk"},
		{name: "wrong client secret", secret: "not-the-secret", want: "client id and secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := newSim(t)
			sim.SetClock(clock)
			o := newOAuth(sim)
			verifier, challenge := pkce(t)
			code := consent(t, o.AuthorizeURL("acme", redirectURI, "s", challenge), "allow").Get("code")
			if tt.verifier != nil {
				verifier = tt.verifier(verifier)
			}
			if tt.reuse {
				if _, err := o.Exchange(context.Background(), "acme", code, verifier, redirectURI); err != nil {
					t.Fatal(err)
				}
			}
			if tt.secret != "" {
				o.ClientSecret = tt.secret
			}
			mu.Lock()
			now = now.Add(tt.wait)
			mu.Unlock()
			_, err := o.Exchange(context.Background(), "acme", code, verifier, cmpOr(tt.redirect, redirectURI))
			if zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED || !strings.Contains(zenklav.ErrorMessage(err), tt.want) {
				t.Fatalf("Exchange = %v, want unauthorized saying %q", err, tt.want)
			}
			for _, secret := range []string{code, verifier, zendesktest.DefaultOAuthClientSecret, string(tt.secret)} {
				if secret != "" && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q quotes a secret", err)
				}
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestOAuthRefreshRotates(t *testing.T) {
	sim := newSim(t)
	o := newOAuth(sim)
	ctx := context.Background()
	first := connect(t, sim, o)
	var mu sync.Mutex
	current := first.AccessToken
	c := bearerClient(t, sim, func() zenklav.Secret { mu.Lock(); defer mu.Unlock(); return current })

	second, err := o.Refresh(ctx, "acme", first.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if second.AccessToken == first.AccessToken || second.RefreshToken == first.RefreshToken || second.RefreshToken == "" {
		t.Fatalf("Refresh did not rotate both tokens")
	}
	if _, err := c.Brands(ctx); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
		t.Errorf("old access token after a refresh: %v, want unauthorized", err)
	}
	mu.Lock()
	current = second.AccessToken // the next call uses the new token at once
	mu.Unlock()
	if _, err := c.Brands(ctx); err != nil {
		t.Errorf("new access token: %v", err)
	}
	_, err = o.Refresh(ctx, "acme", first.RefreshToken)
	if zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED || !strings.Contains(zenklav.ErrorMessage(err), "reconnect Zendesk") {
		t.Errorf("Refresh with the rotated-away refresh token = %v, want unauthorized saying reconnect", err)
	}
	if err != nil && strings.Contains(err.Error(), first.RefreshToken.Reveal()) {
		t.Errorf("error quotes the refresh token: %v", err)
	}
	if n := len(sim.OAuthTokens()); n != 1 {
		t.Errorf("simulator holds %d tokens, want the one the refresh made", n)
	}
}

func TestOAuthExpiredAccessToken(t *testing.T) {
	sim := newSim(t)
	now := time.Now()
	var mu sync.Mutex
	sim.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	sim.SetOAuthTokenLifetime(time.Minute, 0)
	o := newOAuth(sim)
	tok := connect(t, sim, o)
	c := bearerClient(t, sim, func() zenklav.Secret { return tok.AccessToken })
	if _, err := c.Brands(context.Background()); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	_, err := c.Brands(context.Background())
	var apiErr *zendesk.APIError
	if zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED || !errors.As(err, &apiErr) || apiErr.Code != "invalid_token" {
		t.Errorf("expired token: %v, want 401 invalid_token", err)
	}
}

func TestOAuthRevoke(t *testing.T) {
	ctx := context.Background()
	t.Run("live token", func(t *testing.T) {
		sim := newSim(t)
		o := newOAuth(sim)
		tok := connect(t, sim, o)
		other := connect(t, sim, o) // another grant of the same admin stays
		if err := o.Revoke(ctx, "acme", tok); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if left := sim.OAuthTokens(); len(left) != 1 {
			t.Errorf("tokens left = %+v, want the other grant's only", left)
		}
		c := bearerClient(t, sim, func() zenklav.Secret { return tok.AccessToken })
		if _, err := c.Brands(ctx); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
			t.Errorf("revoked token: %v, want unauthorized", err)
		}
		if _, err := o.Refresh(ctx, "acme", tok.RefreshToken); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
			t.Errorf("refresh of a revoked grant: %v, want unauthorized", err)
		}
		if err := o.Revoke(ctx, "acme", tok); err != nil {
			t.Errorf("second Revoke: %v, want nil for a grant already gone", err)
		}
		if _, err := bearerClient(t, sim, func() zenklav.Secret { return other.AccessToken }).Brands(ctx); err != nil {
			t.Errorf("the other grant: %v", err)
		}
	})
	t.Run("expired access token", func(t *testing.T) {
		sim := newSim(t)
		now := time.Now()
		var mu sync.Mutex
		sim.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
		sim.SetOAuthTokenLifetime(time.Minute, 0)
		o := newOAuth(sim)
		tok := connect(t, sim, o)
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
		if err := o.Revoke(ctx, "acme", tok); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if left := sim.OAuthTokens(); len(left) != 0 {
			t.Errorf("tokens left = %+v, want none: the refresh token must not outlive the revoke", left)
		}
	})
	t.Run("uninstalled", func(t *testing.T) {
		sim := newSim(t)
		o := newOAuth(sim)
		tok := connect(t, sim, o)
		if n := sim.RevokeTokens(); n != 1 {
			t.Fatalf("RevokeTokens = %d, want 1", n)
		}
		if err := o.Revoke(ctx, "acme", tok); err != nil {
			t.Errorf("Revoke after the admin removed the grant: %v, want nil", err)
		}
	})
}

func TestNewClientWithToken(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	token := func(context.Context) (string, error) { return "t", nil }
	if _, err := zendesk.NewClient(logger, zendesk.ClientConfig{BaseURL: "https://acme.zendesk.com", Token: token}); err != nil {
		t.Errorf("token alone: %v", err)
	}
	cfg := zendesk.ClientConfig{BaseURL: "https://acme.zendesk.com", Email: "a@example.com", APIToken: "s3cret", Token: token}
	if s := cfg.String(); strings.Contains(s, "s3cret") || !strings.Contains(s, "OAuth:true") {
		t.Errorf("String() = %s, want the token redacted and OAuth:true", s)
	}
	// A token source that fails decides the kind: a refused refresh stays unauthorized.
	c, _ := zendesk.NewClient(logger, zendesk.ClientConfig{BaseURL: "https://acme.zendesk.com", Token: func(context.Context) (string, error) {
		return "", zenklav.Errorf(zenklav.EUNAUTHORIZED, "refresh refused: reconnect Zendesk")
	}})
	if _, err := c.Brands(context.Background()); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
		t.Errorf("failing token source: %v, want unauthorized", err)
	}
}
