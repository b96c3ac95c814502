package klaviyotest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

const (
	callback = "https://app.example.com/callback"
	verifier = "a-verifier-of-at-least-43-characters-0123456789"
)

func challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeParams is a valid authorization request.
func authorizeParams(scope string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {klaviyotest.DefaultOAuthClientID}, "redirect_uri": {callback},
		"scope": {scope}, "state": {"st"}, "code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"},
	}
}

var stopAtRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// send sends r without following redirects and returns the answer with its body read.
func send(t *testing.T, r *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := stopAtRedirect.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// tokenCall posts form to /oauth/token with the app's credentials in HTTP Basic.
func tokenCall(t *testing.T, sim *klaviyotest.Server, form url.Values) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, sim.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(klaviyotest.DefaultOAuthClientID, klaviyotest.DefaultOAuthClientSecret)
	resp, body := send(t, req)
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("token answer %d is not JSON: %s", resp.StatusCode, body)
	}
	return resp, doc
}

// grantFor consents with the form values given and exchanges the code; it returns the
// access token.
func grantFor(t *testing.T, sim *klaviyotest.Server, scope, account string) string {
	t.Helper()
	form := authorizeParams(scope)
	form.Set("decision", "allow")
	if account != "" {
		form.Set("account", account)
	}
	resp, err := stopAtRedirect.PostForm(sim.URL+"/oauth/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, _ := url.Parse(resp.Header.Get("Location"))
	code := back.Query().Get("code")
	if resp.StatusCode != http.StatusFound || code == "" {
		t.Fatalf("consent: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, doc := tokenCall(t, sim, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {callback}})
	if resp.StatusCode != http.StatusOK || doc["token_type"] != "Bearer" || doc["scope"] != scope || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %d %v", resp.StatusCode, doc)
	}
	return doc["access_token"].(string)
}

func TestAuthorizeRefusals(t *testing.T) {
	tests := []struct {
		name      string
		change    func(url.Values)
		wantPage  int    // a refusal on the page, not sent back
		wantError string // the error sent back to redirect_uri
	}{
		{"another app", func(v url.Values) { v.Set("client_id", "other") }, http.StatusBadRequest, ""},
		{"relative redirect_uri", func(v url.Values) { v.Set("redirect_uri", "/callback") }, http.StatusBadRequest, ""},
		{"implicit flow", func(v url.Values) { v.Set("response_type", "token") }, 0, "unsupported_response_type"},
		{"no state", func(v url.Values) { v.Del("state") }, 0, "invalid_request"},
		{"plain PKCE", func(v url.Values) { v.Set("code_challenge_method", "plain") }, 0, "invalid_request"},
		{"no challenge", func(v url.Values) { v.Del("code_challenge") }, 0, "invalid_request"},
		{"no scope", func(v url.Values) { v.Del("scope") }, 0, "invalid_scope"},
		{"unknown scope", func(v url.Values) { v.Set("scope", "events:write everything:write") }, 0, "invalid_scope"},
	}
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := authorizeParams("events:write")
			tt.change(v)
			req, _ := http.NewRequest(http.MethodGet, sim.URL+"/oauth/authorize?"+v.Encode(), nil)
			resp, body := send(t, req)
			if tt.wantPage != 0 {
				if resp.StatusCode != tt.wantPage || resp.Header.Get("Location") != "" {
					t.Errorf("%d to %q (%s), want a %d page", resp.StatusCode, resp.Header.Get("Location"), body, tt.wantPage)
				}
				return
			}
			back, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(back.String(), callback+"?") || back.Query().Get("error") != tt.wantError || back.Query().Get("code") != "" {
				t.Errorf("%d to %q, want %s sent back", resp.StatusCode, back, tt.wantError)
			}
		})
	}
}

// TestConsentPage: the page names the app and its scopes, offers every account, and its
// decision comes from the page only.
func TestConsentPage(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	sim.AddAccount("pk_second_account")
	_, page := get(t, sim.URL+"/oauth/authorize?"+authorizeParams("events:write profiles:read").Encode())
	for _, want := range []string{klaviyotest.DefaultOAuthClientID, "events:write", "profiles:read", ">Allow<", ">Deny<", `<select name="account">`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, key) || strings.Contains(page, "<script") {
		t.Errorf("the page shows a private key, or runs a script:\n%s", page)
	}
	labels := regexp.MustCompile(`<option>([^<]+)</option>`).FindAllStringSubmatch(page, -1)
	if len(labels) != 2 {
		t.Fatalf("options %v, want the two accounts", labels)
	}
	form := authorizeParams("events:write")
	form.Set("decision", "allow")
	req, _ := http.NewRequest(http.MethodPost, sim.URL+"/oauth/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, _ := send(t, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a decision from another site: %d, want 403", resp.StatusCode)
	}
	if resp, err := stopAtRedirect.PostForm(sim.URL+"/oauth/authorize", form); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("Allow without choosing among two accounts: %v %v, want 400", resp.StatusCode, err)
	}

	// The token acts on the account chosen, and on it only.
	var second string
	for _, l := range labels {
		if !strings.HasPrefix(l[1], key[:6]) {
			second = l[1]
		}
	}
	token := grantFor(t, sim, "events:write", second)
	if resp, body := do(t, sim, request{body: validEvent, auth: "Bearer " + token}); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("event with the token: %d %s", resp.StatusCode, body)
	}
	if len(sim.Events("pk_second_account")) != 1 || len(sim.Events(key)) != 0 {
		t.Errorf("events: chosen account %d, other %d; want 1 and 0", len(sim.Events("pk_second_account")), len(sim.Events(key)))
	}
	if g := sim.Grants("pk_second_account"); len(g) != 1 || g[0].Scope != "events:write" {
		t.Errorf("grants %+v", g)
	}
	sim.AssertNoViolations(t)
}

func TestTokenEndpointRefusals(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	post := func(form url.Values, contentType string, basic bool) (int, string, http.Header) {
		req, _ := http.NewRequest(http.MethodPost, sim.URL+"/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", contentType)
		if basic {
			req.SetBasicAuth(klaviyotest.DefaultOAuthClientID, klaviyotest.DefaultOAuthClientSecret)
		}
		resp, body := send(t, req)
		var doc struct{ Error string }
		json.Unmarshal([]byte(body), &doc)
		return resp.StatusCode, doc.Error, resp.Header
	}
	const form = "application/x-www-form-urlencoded"
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"unknown"}}
	inBody := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"unknown"}, "client_id": {klaviyotest.DefaultOAuthClientID}, "client_secret": {klaviyotest.DefaultOAuthClientSecret}}
	tests := []struct {
		name        string
		form        url.Values
		contentType string
		basic       bool
		wantStatus  int
		wantError   string
	}{
		{"no client authentication", refresh, form, false, http.StatusUnauthorized, "invalid_client"},
		{"client credentials in the body", inBody, form, false, http.StatusUnauthorized, "invalid_client"},
		{"JSON body", refresh, "application/json", true, http.StatusBadRequest, "invalid_request"},
		{"unknown refresh token", refresh, form, true, http.StatusBadRequest, "invalid_grant"},
		{"client credentials grant", url.Values{"grant_type": {"client_credentials"}}, form, true, http.StatusBadRequest, "unsupported_grant_type"},
		{"code without verifier", url.Values{"grant_type": {"authorization_code"}, "code": {"c"}, "redirect_uri": {callback}}, form, true, http.StatusBadRequest, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code, header := post(tt.form, tt.contentType, tt.basic)
			if status != tt.wantStatus || code != tt.wantError {
				t.Errorf("%d %q, want %d %q", status, code, tt.wantStatus, tt.wantError)
			}
			if status == http.StatusUnauthorized && header.Get("WWW-Authenticate") == "" {
				t.Error("a 401 without WWW-Authenticate")
			}
		})
	}
	sim.SetOAuthClient("another-app", "another-secret")
	if status, code, _ := post(refresh, form, true); status != http.StatusUnauthorized || code != "invalid_client" {
		t.Errorf("the default credentials after SetOAuthClient: %d %q, want invalid_client", status, code)
	}
	if resp, _ := get(t, sim.URL+"/oauth/token"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /oauth/token: %d, want 405", resp.StatusCode)
	}
}

// TestBearerAccess: an access token works until it expires or is revoked, within its scopes;
// after that Klaviyo's 401, which is no spec violation, as a private key no account has.
func TestBearerAccess(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	var offset atomic.Int64
	sim.SetClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
	sim.SetAccessTokenLifetime(time.Minute)
	token := grantFor(t, sim, "events:write", "")
	auth := "Bearer " + token
	tests := []struct {
		name       string
		prepare    func()
		req        request
		wantStatus int
		wantCode   string
	}{
		{"in scope", nil, request{body: validEvent, auth: auth}, http.StatusAccepted, ""},
		{"out of scope", nil, request{method: http.MethodGet, path: "/api/webhooks", auth: auth}, http.StatusForbidden, "permission_denied"},
		{"expired", func() { offset.Store(int64(time.Minute)) }, request{body: validEvent, auth: auth}, http.StatusUnauthorized, "authentication_failed"},
		{"renewed, then uninstalled", func() {
			offset.Store(0)
			token = grantFor(t, sim, "events:write", "")
			if n := sim.RevokeGrants(key); n != 2 {
				t.Errorf("RevokeGrants = %d, want 2", n)
			}
		}, request{body: validEvent, auth: "Bearer " + token}, http.StatusUnauthorized, "authentication_failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.prepare != nil {
				tt.prepare()
				tt.req.auth = "Bearer " + token
			}
			resp, body := do(t, sim, tt.req)
			if resp.StatusCode != tt.wantStatus || tt.wantCode != "" && !strings.Contains(body, `"code":"`+tt.wantCode+`"`) {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, body, tt.wantStatus, tt.wantCode)
			}
		})
	}
	if len(sim.Events(key)) != 1 {
		t.Errorf("%d events, want the one in scope", len(sim.Events(key)))
	}
	sim.AssertNoViolations(t)
}

// TestRefreshRotates: each refresh token works once; revoking the current one ends the grant.
func TestRefreshRotates(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	form := authorizeParams("events:write")
	form.Set("decision", "allow")
	resp, _ := stopAtRedirect.PostForm(sim.URL+"/oauth/authorize", form)
	back, _ := url.Parse(resp.Header.Get("Location"))
	_, first := tokenCall(t, sim, url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {callback}})
	r1, _ := first["refresh_token"].(string)
	resp, second := tokenCall(t, sim, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r1}})
	r2, _ := second["refresh_token"].(string)
	if resp.StatusCode != http.StatusOK || r2 == "" || r2 == r1 || second["access_token"] == first["access_token"] {
		t.Fatalf("refresh: %d %v", resp.StatusCode, second)
	}
	if resp, doc := tokenCall(t, sim, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r1}}); resp.StatusCode != http.StatusBadRequest || doc["error"] != "invalid_grant" {
		t.Errorf("the first refresh token again: %d %v, want invalid_grant", resp.StatusCode, doc)
	}
	req, _ := http.NewRequest(http.MethodPost, sim.URL+"/oauth/revoke", strings.NewReader(url.Values{"token": {r2}, "token_type_hint": {"refresh_token"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(klaviyotest.DefaultOAuthClientID, klaviyotest.DefaultOAuthClientSecret)
	if resp, body := send(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, sim, request{body: validEvent, auth: "Bearer " + second["access_token"].(string)}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the grant's access token after revoking its refresh token: %d, want 401", resp.StatusCode)
	}
	if g := sim.Grants(key); len(g) != 1 || !g[0].Revoked {
		t.Errorf("grants %+v, want the one revoked", g)
	}
}
