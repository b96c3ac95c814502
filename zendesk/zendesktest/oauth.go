package zendesktest

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav/internal/apispec"
)

// The OAuth side of the simulated account plays Zendesk's authorization-code flow for a
// registered client (the operator's global client):
//
//	GET  /oauth/authorizations/new  the consent page an admin's browser is sent to
//	POST /oauth/authorizations      its Allow and Deny buttons
//	POST /oauth/tokens              Create Token for Grant Type (validated like the API)
//
// The consent page plays an admin who is signed in. Access tokens it issues work on every
// API path in place of Basic auth, within their scope and lifetime, until refreshed or
// revoked; the OAuth Tokens API lists and revokes them.

// The OAuth client a new Server has registered, until SetOAuthClient changes it.
const (
	DefaultOAuthClientID     = "zdg-zenklav-sandbox"
	DefaultOAuthClientSecret = "zendesktest-oauth-client-secret"
)

// AuthorizationCodeLifetime is how long a code is good for: 120 seconds, as Zendesk
// documents.
const AuthorizationCodeLifetime = 120 * time.Second

// consentLifetime is how long a consent page's buttons work.
const consentLifetime = 10 * time.Minute

// simulatedClientResourceID is the client_id (a resource id, not the unique identifier)
// the OAuth Tokens API shows.
const simulatedClientResourceID int64 = 223443

// oauthState is the registered client and the grants. Guarded by Server.mu.
type oauthState struct {
	clientID, clientSecret string
	access, refresh        time.Duration       // lifetimes a test imposed; 0: as asked
	consents               map[string]grant    // consent pages shown, by form id
	codes                  map[string]grant    // codes not yet exchanged
	tokens                 map[int64]*oauthRec // by id
	lastToken              int64
}

func newOAuthState() oauthState {
	return oauthState{
		clientID: DefaultOAuthClientID, clientSecret: DefaultOAuthClientSecret,
		consents: map[string]grant{}, codes: map[string]grant{}, tokens: map[int64]*oauthRec{},
	}
}

// grant is what an authorization request asked for.
type grant struct {
	redirectURI, scope, state, challenge string
	at                                   time.Time
}

// oauthRec is one issued token: an access token and, when the client asked for a lifetime,
// the refresh token that renews it.
type oauthRec struct {
	id                   int64
	access, refresh      string
	scope                string
	created              time.Time
	expires, refreshEnds time.Time // zero: never
}

// OAuthToken is a token the simulator issued and has not deleted (refreshed away or
// revoked), as OAuthTokens lists it.
type OAuthToken struct {
	ID               int64
	Scope            string
	ExpiresAt        time.Time // zero: never
	HasRefreshToken  bool
	RefreshExpiresAt time.Time
}

// SetOAuthClient registers the OAuth client the flow accepts, by its unique identifier and
// secret.
func (s *Server) SetOAuthClient(id, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauth.clientID, s.oauth.clientSecret = id, secret
}

// SetOAuthTokenLifetime makes the tokens issued from now on live access and refresh long,
// whatever expires_in and refresh_token_expires_in asked (which Zendesk would refuse below
// five minutes and seven days); 0 keeps to what was asked.
func (s *Server) SetOAuthTokenLifetime(access, refresh time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauth.access, s.oauth.refresh = access, refresh
}

// OAuthTokens lists the tokens that exist, expired or not, oldest first.
func (s *Server) OAuthTokens() []OAuthToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []OAuthToken
	for _, t := range s.oauth.tokens {
		out = append(out, OAuthToken{ID: t.id, Scope: t.scope, ExpiresAt: t.expires, HasRefreshToken: t.refresh != "", RefreshExpiresAt: t.refreshEnds})
	}
	slices.SortFunc(out, func(a, b OAuthToken) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// RevokeTokens deletes every token and unused code of the account, as an admin removing
// the integration does, and returns how many tokens it deleted.
func (s *Server) RevokeTokens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.oauth.tokens)
	clear(s.oauth.tokens)
	clear(s.oauth.codes)
	return n
}

var (
	// pkcePattern is RFC 7636's code_verifier, and the base64url SHA-256 a challenge is.
	pkcePattern      = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
	challengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	scopePattern     = regexp.MustCompile(`^(read|write|impersonate|[a-z_]+:(read|write))$`)
)

// serveConsent answers the consent page and its buttons.
func (s *Server) serveConsent(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/oauth/authorizations/new" && agentMethod(w, r, http.MethodGet):
		s.consentPage(w, r)
	case r.URL.Path == "/oauth/authorizations" && agentMethod(w, r, http.MethodPost):
		s.consentAnswer(w, r)
	}
}

// consentPage shows what the client asks for, after the checks Zendesk makes before it
// would redirect anywhere: a request it refuses is answered 400 here, never sent back.
func (s *Server) consentPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	clientID := s.oauth.clientID
	s.mu.Unlock()
	var problem string
	redirect, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case q.Get("response_type") != "code":
		problem = "response_type must be code"
	case q.Get("client_id") != clientID:
		problem = "client_id is not an OAuth client of this account"
	case err != nil || redirect.Scheme != "http" && redirect.Scheme != "https" || redirect.Host == "" || redirect.Fragment != "":
		problem = "redirect_uri must be an absolute http(s) URL without a fragment"
	case q.Get("state") == "":
		problem = "state is required"
	case !challengePattern.MatchString(q.Get("code_challenge")) || q.Get("code_challenge_method") != "S256":
		problem = "PKCE is required: code_challenge (base64url SHA-256) with code_challenge_method=S256"
	case !validScope(q.Get("scope")):
		problem = "scope must be space-separated scopes such as \"read write\""
	}
	if problem != "" {
		renderConsent(w, http.StatusBadRequest, consentView{Problem: problem})
		return
	}
	id := randomHex(16)
	g := grant{redirectURI: q.Get("redirect_uri"), scope: q.Get("scope"), state: q.Get("state"), challenge: q.Get("code_challenge")}
	s.mu.Lock()
	g.at = s.now()
	s.oauth.consents[id] = g
	s.mu.Unlock()
	renderConsent(w, http.StatusOK, consentView{ID: id, ClientID: clientID, Scopes: strings.Fields(g.scope), Redirect: redirect.Host})
}

func validScope(scope string) bool {
	words := strings.Fields(scope)
	for _, w := range words {
		if !scopePattern.MatchString(w) {
			return false
		}
	}
	return len(words) > 0
}

// consentAnswer takes the admin's Allow or Deny and sends the browser back to the client
// with a code, or with error=access_denied.
func (s *Server) consentAnswer(w http.ResponseWriter, r *http.Request) {
	// Another site's page must not approve on the admin's behalf.
	if !apispec.SameOrigin(r) {
		http.Error(w, "consent comes from the consent page only", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	id, decision := r.FormValue("consent"), r.FormValue("decision")
	s.mu.Lock()
	g, ok := s.oauth.consents[id]
	delete(s.oauth.consents, id)
	now := s.now()
	if ok && now.Sub(g.at) > consentLifetime {
		ok = false
	}
	code := ""
	if ok && decision == "allow" {
		code = randomHex(20)
		g.at = now
		s.oauth.codes[code] = g
	}
	s.mu.Unlock()
	if !ok || decision != "allow" && decision != "deny" {
		renderConsent(w, http.StatusBadRequest, consentView{Problem: "this consent page has expired or was answered; start again from the application"})
		return
	}
	back, _ := url.Parse(g.redirectURI) // checked when the page was shown
	q := back.Query()
	if code != "" {
		q.Set("code", code)
	} else {
		q.Set("error", "access_denied")
		q.Set("error_description", "The end-user or authorization server denied the request.")
	}
	q.Set("state", g.state)
	back.RawQuery = q.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// consentView is what the consent page shows.
type consentView struct {
	Problem  string
	ID       string
	ClientID string
	Scopes   []string
	Redirect string
}

var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Allow access? · Zendesk (simulated)</title>
<style>body{font:15px system-ui,sans-serif;max-width:32rem;margin:4rem auto;color:#2f3941}
button{font:inherit;padding:.5rem 1.5rem;margin-right:.5rem}code{background:#f3f4f6;padding:0 .25rem}</style></head>
<body>{{if .Problem}}<h1>Invalid authorization request</h1><p role="alert">{{.Problem}}</p>{{else}}
<h1>Allow access?</h1>
<p><code>{{.ClientID}}</code> asks to access this Zendesk account, as you, with these scopes:</p>
<ul>{{range .Scopes}}<li><code>{{.}}</code></li>{{end}}</ul>
<p>You will be sent back to <code>{{.Redirect}}</code>.</p>
<form method="post" action="/oauth/authorizations">
<input type="hidden" name="consent" value="{{.ID}}">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>{{end}}</body></html>
`))

func renderConsent(w http.ResponseWriter, status int, v consentView) {
	var b strings.Builder
	if err := consentTemplate.Execute(&b, v); err != nil {
		http.Error(w, "zendesktest: render consent: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The form's answer redirects to the client, on any origin.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; base-uri 'none'; frame-ancestors 'none'")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	io.WriteString(w, b.String())
}

// tokenRequest is the JSON body of Create Token for Grant Type.
type tokenRequest struct {
	GrantType             string `json:"grant_type"`
	Code                  string `json:"code"`
	ClientID              string `json:"client_id"`
	ClientSecret          string `json:"client_secret"`
	RedirectURI           string `json:"redirect_uri"`
	Scope                 string `json:"scope"`
	CodeVerifier          string `json:"code_verifier"`
	RefreshToken          string `json:"refresh_token"`
	ExpiresIn             *int64 `json:"expires_in"`
	RefreshTokenExpiresIn *int64 `json:"refresh_token_expires_in"`
}

// oauthError is the RFC 6749 answer of the token endpoint.
func oauthError(status int, code, description string) (int, any) {
	return status, map[string]string{"error": code, "error_description": description}
}

// grantToken answers Create Token for Grant Type: an authorization code (single use,
// AuthorizationCodeLifetime, same redirect_uri, PKCE verifier) or a refresh token (rotated:
// the old access and refresh tokens stop working) for a token. Without expires_in the token
// never expires and has no refresh token, as Zendesk does for clients made before its TTLs.
func (s *Server) grantToken(c *call) (int, any) {
	var in tokenRequest
	if err := json.NewDecoder(io.LimitReader(c.r.Body, 64<<10)).Decode(&in); err != nil {
		return oauthError(http.StatusBadRequest, "invalid_request", "the body must be JSON")
	}
	if status, refusal := checkLifetimes(in); refusal != nil {
		return status, refusal
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	okID := subtle.ConstantTimeCompare([]byte(in.ClientID), []byte(s.oauth.clientID)) == 1
	okSecret := subtle.ConstantTimeCompare([]byte(in.ClientSecret), []byte(s.oauth.clientSecret)) == 1
	if !okID || !okSecret {
		return oauthError(http.StatusUnauthorized, "invalid_client", "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.")
	}
	now := s.now()
	var scope string
	switch in.GrantType {
	case "authorization_code":
		g, ok := s.oauth.codes[in.Code]
		delete(s.oauth.codes, in.Code) // single use, even when the rest fails
		if !ok || now.Sub(g.at) > AuthorizationCodeLifetime || g.redirectURI != in.RedirectURI || !pkceMatches(in.CodeVerifier, g.challenge) {
			return invalidGrant()
		}
		scope = g.scope
	case "refresh_token":
		old := s.refreshRecLocked(in.RefreshToken, now)
		if old == nil {
			return invalidGrant()
		}
		delete(s.oauth.tokens, old.id)
		scope = old.scope
	default:
		return oauthError(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
	}
	return http.StatusCreated, s.issueLocked(scope, in, now)
}

func invalidGrant() (int, any) {
	return oauthError(http.StatusBadRequest, "invalid_grant", "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.")
}

// checkLifetimes refuses the lifetimes Zendesk refuses.
func checkLifetimes(in tokenRequest) (int, any) {
	if e := in.ExpiresIn; e != nil && (*e < 300 || *e > 172800) {
		return oauthError(http.StatusBadRequest, "invalid_request", "expires_in must be from 300 to 172800 seconds")
	}
	if e := in.RefreshTokenExpiresIn; e != nil && (*e < 604800 || *e > 7776000 || in.ExpiresIn != nil && *e <= *in.ExpiresIn) {
		return oauthError(http.StatusBadRequest, "invalid_request", "refresh_token_expires_in must be from 604800 to 7776000 seconds, and more than expires_in")
	}
	return 0, nil
}

// pkceMatches checks the S256 challenge against the verifier (RFC 7636).
func pkceMatches(verifier, challenge string) bool {
	if !pkcePattern.MatchString(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// refreshRecLocked returns the token whose live refresh token is refresh, or nil. The
// caller holds s.mu.
func (s *Server) refreshRecLocked(refresh string, now time.Time) *oauthRec {
	for _, t := range s.oauth.tokens {
		if t.refresh != "" && subtle.ConstantTimeCompare([]byte(t.refresh), []byte(refresh)) == 1 {
			if !t.refreshEnds.IsZero() && !now.Before(t.refreshEnds) {
				return nil
			}
			return t
		}
	}
	return nil
}

// issueLocked stores a new token of scope with the lifetimes in asked for (or a test
// imposed) and returns the token endpoint's answer. The caller holds s.mu.
func (s *Server) issueLocked(scope string, in tokenRequest, now time.Time) map[string]any {
	s.oauth.lastToken++
	t := &oauthRec{id: s.oauth.lastToken, access: randomHex(32), scope: scope, created: now}
	answer := map[string]any{"access_token": t.access, "token_type": "bearer", "scope": scope}
	if in.ExpiresIn != nil {
		access := time.Duration(*in.ExpiresIn) * time.Second
		refresh := 2592000 * time.Second
		if in.RefreshTokenExpiresIn != nil {
			refresh = time.Duration(*in.RefreshTokenExpiresIn) * time.Second
		}
		access, refresh = cmp.Or(s.oauth.access, access), cmp.Or(s.oauth.refresh, refresh)
		t.refresh = randomHex(32)
		t.expires, t.refreshEnds = now.Add(access), now.Add(refresh)
		answer["expires_in"] = apispec.RetryAfterSeconds(access)
		answer["refresh_token"] = t.refresh
		answer["refresh_token_expires_in"] = apispec.RetryAfterSeconds(refresh)
	}
	s.oauth.tokens[t.id] = t
	return answer
}

// bearerToken returns r's OAuth access token, if it authenticates with one.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// liveToken returns the unexpired token whose access token is access, or nil.
func (s *Server) liveToken(access string) *oauthRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, t := range s.oauth.tokens {
		if subtle.ConstantTimeCompare([]byte(t.access), []byte(access)) == 1 {
			if !t.expires.IsZero() && !now.Before(t.expires) {
				return nil
			}
			c := *t
			return &c
		}
	}
	return nil
}

// refuseBearer answers a request whose access token is not live (401, in the words of
// Zendesk's OAuth layer) or lacks the scope of what it asks (403), and says whether it did.
// A request without a Bearer token is left to Basic auth.
func (s *Server) refuseBearer(w http.ResponseWriter, r *http.Request) bool {
	token, ok := bearerToken(r)
	if !ok {
		return false
	}
	t := s.liveToken(token)
	if t == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="Web Service", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error":             "invalid_token",
			"error_description": "The access token provided is expired, revoked, malformed or invalid for other reasons.",
		})
		return true
	}
	if !scopeAllows(t.scope, r) {
		writeJSON(w, http.StatusForbidden, errorBody("Forbidden", "You do not have access to this page. Please contact the account owner of this help desk for further help."))
		return true
	}
	return false
}

// scopeAllows says whether scope lets a token make request r: read for GET, write for the
// rest, on everything or on the path's resource ("webhooks:write"). A token may always read
// and revoke itself.
func scopeAllows(scope string, r *http.Request) bool {
	resource, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/api/v2/"), "/")
	resource = strings.TrimSuffix(resource, ".json")
	if resource == "oauth" {
		return true
	}
	need := "write"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		need = "read"
	}
	for _, s := range strings.Fields(scope) {
		if s == need || s == resource+":"+need {
			return true
		}
	}
	return false
}

// listTokens answers List Tokens: the tokens of the API user, whom every token of the
// simulator acts as, with only the first ten characters of each access token.
func (s *Server) listTokens(c *call) (int, any) {
	s.mu.Lock()
	recs := make([]oauthRec, 0, len(s.oauth.tokens))
	for _, t := range s.oauth.tokens {
		recs = append(recs, *t)
	}
	s.mu.Unlock()
	slices.SortFunc(recs, func(a, b oauthRec) int { return cmp.Compare(a.id, b.id) })
	items := make([]any, len(recs))
	for i, t := range recs {
		m := map[string]any{
			"id": t.id, "url": fmt.Sprintf("%s/api/v2/oauth/tokens/%d.json", c.base, t.id),
			"token": t.access[:10], "client_id": simulatedClientResourceID, "user_id": APIUserID,
			"scopes": strings.Fields(t.scope), "created_at": stamp(t.created),
		}
		if !t.expires.IsZero() {
			m["expires_at"] = stamp(t.expires)
			m["refresh_token_expires_at"] = stamp(t.refreshEnds)
		}
		items[i] = m
	}
	return listPage(c, "tokens", "/api/v2/oauth/tokens", items)
}

// revokeToken answers Revoke Token: the token and its refresh token stop working.
func (s *Server) revokeToken(c *call) (int, any) {
	id, _ := strconv.ParseInt(c.params["oauth_token_id"], 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.oauth.tokens[id]; !ok {
		return notFound()
	}
	delete(s.oauth.tokens, id)
	return http.StatusNoContent, nil
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
