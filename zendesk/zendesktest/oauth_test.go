package zendesktest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

const (
	testRedirect = "https://app.example.com/callback?tenant=acme"
	testVerifier = "dBjftJeZ4CVP-mJ92K9-Aaxm0bqRXzUVIoNvr5rZbgQ-extra" // RFC 7636's, longer
)

func testChallenge() string {
	sum := sha256.Sum256([]byte(testVerifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeQuery is a consent request that the simulator accepts.
func authorizeQuery() url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {zendesktest.DefaultOAuthClientID}, "redirect_uri": {testRedirect},
		"scope": {"read write"}, "state": {"st"}, "code_challenge": {testChallenge()}, "code_challenge_method": {"S256"},
	}
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

var consentID = regexp.MustCompile(`name="consent" value="([0-9a-f]+)"`)

// approve opens the consent page for q, answers it with decision, and returns the answer.
func approve(t *testing.T, sim *zendesktest.Server, q url.Values, decision string) *http.Response {
	t.Helper()
	resp, err := noRedirect.Get(sim.URL + "/oauth/authorizations/new?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := consentID.FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("consent page: %d %s", resp.StatusCode, page)
	}
	resp, err = noRedirect.PostForm(sim.URL+"/oauth/authorizations", url.Values{"consent": {string(m[1])}, "decision": {decision}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// code runs the consent and returns the code the redirect carries.
func code(t *testing.T, sim *zendesktest.Server, q url.Values) string {
	t.Helper()
	resp := approve(t, sim, q, "allow")
	back, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || back.Query().Get("code") == "" || back.Query().Get("tenant") != "acme" {
		t.Fatalf("allow: %d to %q, want a redirect to the client with a code, its own query kept", resp.StatusCode, back)
	}
	return back.Query().Get("code")
}

// tokenRequest posts body to /oauth/tokens, without any Authorization.
func tokenRequest(t *testing.T, sim *zendesktest.Server, body map[string]any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(sim.URL+"/oauth/tokens", "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer map[string]any
	json.NewDecoder(resp.Body).Decode(&answer)
	return resp.StatusCode, answer
}

func exchangeBody(code string) map[string]any {
	return map[string]any{
		"grant_type": "authorization_code", "code": code, "client_id": zendesktest.DefaultOAuthClientID,
		"client_secret": zendesktest.DefaultOAuthClientSecret, "redirect_uri": testRedirect, "code_verifier": testVerifier,
		"scope": "read write", "expires_in": 1800, "refresh_token_expires_in": 2592000,
	}
}

// accessToken runs the flow for scope and returns the access token.
func accessToken(t *testing.T, sim *zendesktest.Server, scope string) string {
	t.Helper()
	q := authorizeQuery()
	q.Set("scope", scope)
	status, answer := tokenRequest(t, sim, exchangeBody(code(t, sim, q)))
	token, _ := answer["access_token"].(string)
	if status != http.StatusCreated || token == "" {
		t.Fatalf("exchange: %d %v", status, answer)
	}
	return token
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

func TestConsentPageRefuses(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	tests := []struct{ name, key, value string }{
		{"token response type", "response_type", "token"},
		{"unknown client", "client_id", "zdg-someone-else"},
		{"relative redirect", "redirect_uri", "/callback"},
		{"no state", "state", ""},
		{"no challenge", "code_challenge", ""},
		{"plain challenge", "code_challenge_method", "plain"},
		{"no scope", "scope", ""},
		{"bad scope", "scope", "read,write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := authorizeQuery()
			q.Set(tt.key, tt.value)
			resp, err := noRedirect.Get(sim.URL + "/oauth/authorizations/new?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Errorf("status %d, Location %q; want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

func TestConsentDenyAndReplay(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	resp := approve(t, sim, authorizeQuery(), "deny")
	back, _ := url.Parse(resp.Header.Get("Location"))
	if q := back.Query(); resp.StatusCode != http.StatusFound || q.Get("error") != "access_denied" || q.Get("state") != "st" || q.Has("code") {
		t.Errorf("deny: %d to %s, want error=access_denied and the state", resp.StatusCode, back)
	}

	// Another site's page cannot press Allow on the admin's behalf.
	page, _ := noRedirect.Get(sim.URL + "/oauth/authorizations/new?" + authorizeQuery().Encode())
	b, _ := io.ReadAll(page.Body)
	page.Body.Close()
	id := consentID.FindSubmatch(b)[1]
	req, _ := http.NewRequest(http.MethodPost, sim.URL+"/oauth/authorizations", strings.NewReader("decision=allow&consent="+string(id)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example.com")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site consent: %d, want 403", resp.StatusCode)
	}
}

func TestTokenEndpoint(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	defer sim.AssertNoViolations(t)
	with := func(code string, change map[string]any) map[string]any {
		b := exchangeBody(code)
		for k, v := range change {
			if v == nil {
				delete(b, k)
			} else {
				b[k] = v
			}
		}
		return b
	}
	tests := []struct {
		name   string
		change map[string]any
		status int
		err    string
	}{
		{"wrong secret", map[string]any{"client_secret": "x"}, 401, "invalid_client"},
		{"other client", map[string]any{"client_id": "zdg-other"}, 401, "invalid_client"},
		{"wrong verifier", map[string]any{"code_verifier": strings.Repeat("a", 43)}, 400, "invalid_grant"},
		{"no verifier", map[string]any{"code_verifier": nil}, 400, "invalid_grant"},
		{"other redirect", map[string]any{"redirect_uri": "https://app.example.com/callback"}, 400, "invalid_grant"},
		{"unknown code", map[string]any{"code": "nope"}, 400, "invalid_grant"},
		{"short lifetime", map[string]any{"expires_in": 60}, 400, "invalid_request"},
		{"refresh beyond 90 days", map[string]any{"refresh_token_expires_in": 7776001}, 400, "invalid_request"},
		{"password grant", map[string]any{"grant_type": "password"}, 400, "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, answer := tokenRequest(t, sim, with(code(t, sim, authorizeQuery()), tt.change))
			if status != tt.status || answer["error"] != tt.err || answer["access_token"] != nil {
				t.Errorf("%d %v, want %d %s", status, answer, tt.status, tt.err)
			}
		})
	}
	t.Run("good, then used again", func(t *testing.T) {
		c := code(t, sim, authorizeQuery())
		status, answer := tokenRequest(t, sim, with(c, nil))
		if status != 201 || answer["token_type"] != "bearer" || answer["scope"] != "read write" || answer["expires_in"] != 1800.0 ||
			answer["refresh_token"] == nil || answer["refresh_token_expires_in"] != 2592000.0 {
			t.Errorf("exchange: %d %v", status, answer)
		}
		if status, answer := tokenRequest(t, sim, with(c, nil)); status != 400 || answer["error"] != "invalid_grant" {
			t.Errorf("second exchange of a code: %d %v, want 400 invalid_grant", status, answer)
		}
	})
	t.Run("no lifetime asked", func(t *testing.T) {
		status, answer := tokenRequest(t, sim, with(code(t, sim, authorizeQuery()), map[string]any{"expires_in": nil, "refresh_token_expires_in": nil}))
		if status != 201 || answer["expires_in"] != nil || answer["refresh_token"] != nil {
			t.Errorf("exchange without expires_in: %d %v, want a token that never expires and no refresh token", status, answer)
		}
	})
}

func TestBearerAuth(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	defer sim.AssertNoViolations(t)
	full := accessToken(t, sim, "read write")
	readOnly := accessToken(t, sim, "read")
	webhooksOnly := accessToken(t, sim, "webhooks:write read")
	view := `{"view":{"title":"V","all":[{"field":"status","operator":"is","value":"open"}],"output":{"columns":["status"]}}}`
	hook := `{"webhook":{"name":"W","endpoint":"https://h.example.com","http_method":"POST","request_format":"json","status":"active","subscriptions":["zen:event-type:ticket.created"]}}`
	tests := []struct {
		name, method, path, body string
		header                   http.Header
		status                   int
		body2                    string // part of the answer
	}{
		{"read with token", "GET", "/api/v2/users/me", "", bearer(full), 200, `"role":"admin"`},
		{"write with token", "POST", "/api/v2/views", view, bearer(full), 200, `"title":"V"`},
		{"webhooks with token", "GET", "/api/v2/webhooks", "", bearer(full), 200, `"webhooks"`},
		{"read-only token reads", "GET", "/api/v2/views", "", bearer(readOnly), 200, `"views"`},
		{"read-only token writes", "POST", "/api/v2/views", view, bearer(readOnly), 403, "Forbidden"},
		{"resource scope", "POST", "/api/v2/webhooks", hook, bearer(webhooksOnly), 201, `"id"`},
		{"resource scope elsewhere", "POST", "/api/v2/views", view, bearer(webhooksOnly), 403, "Forbidden"},
		{"unknown token", "GET", "/api/v2/users/me", "", bearer("nope"), 401, "invalid_token"},
		{"unknown token on webhooks", "GET", "/api/v2/webhooks", "", bearer("nope"), 401, "invalid_token"},
		{"basic auth still", "GET", "/api/v2/users/me", "", nil, 200, `"role":"admin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := send(t, sim, tt.method, tt.path, tt.body, tt.header)
			if status != tt.status || !strings.Contains(body, tt.body2) {
				t.Errorf("%d %s, want %d with %s", status, body, tt.status, tt.body2)
			}
		})
	}
	if n := sim.RevokeTokens(); n != 3 {
		t.Errorf("RevokeTokens = %d, want 3", n)
	}
	if status, _, body := send(t, sim, "GET", "/api/v2/users/me", "", bearer(full)); status != 401 || !strings.Contains(body, "invalid_token") {
		t.Errorf("after RevokeTokens: %d %s, want 401 invalid_token", status, body)
	}
}

func TestOAuthTokensAPI(t *testing.T) {
	sim := zendesktest.NewServer()
	defer sim.Close()
	defer sim.AssertNoViolations(t)
	token := accessToken(t, sim, "read write")
	status, _, body := send(t, sim, "GET", "/api/v2/oauth/tokens", "", bearer(token))
	var list struct {
		Tokens []struct {
			ID    int64  `json:"id"`
			Token string `json:"token"`
		} `json:"tokens"`
	}
	json.Unmarshal([]byte(body), &list)
	if status != 200 || len(list.Tokens) != 1 || list.Tokens[0].Token != token[:10] || strings.Contains(body, token) {
		t.Fatalf("list tokens: %d %s, want the one token with only its first 10 characters", status, body)
	}
	path := "/api/v2/oauth/tokens/" + jsonNumber(list.Tokens[0].ID)
	if status, _, body := send(t, sim, "DELETE", path, "", bearer(token)); status != 204 {
		t.Errorf("revoke: %d %s", status, body)
	}
	if status, _, _ := send(t, sim, "GET", "/api/v2/oauth/tokens", "", bearer(token)); status != 401 {
		t.Errorf("revoked token: %d, want 401", status)
	}
	if status, _, _ := send(t, sim, "DELETE", path, "", nil); status != 404 {
		t.Errorf("second revoke: %d, want 404", status)
	}
	if n := len(sim.OAuthTokens()); n != 0 {
		t.Errorf("%d tokens left", n)
	}
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }
