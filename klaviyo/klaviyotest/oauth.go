package klaviyotest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zenklav/zenklav/internal/apispec"
)

// Klaviyo's OAuth for a public app (reference/klaviyo-sms-and-oauth.md §3), which the
// OpenAPI document does not describe, so these paths are checked here by hand:
//
//	GET  /oauth/authorize  the consent page: it names the app and the scopes, Allow or Deny
//	POST /oauth/authorize  the admin's decision (the page's form): back to redirect_uri with
//	                       code and state, or error=access_denied and state
//	POST /oauth/token      authorization_code (PKCE S256) and refresh_token grants
//	POST /oauth/revoke     ends a grant (a refresh token) or an access token
//
// The token endpoints take a form-encoded body and the app's credentials in HTTP Basic only,
// as Klaviyo does, and answer OAuth 2's JSON. The simulator has one registered app
// (SetOAuthClient), which may redirect anywhere. The access tokens it issues work on every
// API route, for the account that granted them and within the scopes it granted; the
// refresh token rotates with each use. Klaviyo does not publish its access-token lifetime
// nor its answer to a revocation; the simulator's are an hour (SetAccessTokenLifetime) and
// RFC 7009's 200.

// The app the simulator knows until SetOAuthClient names another: printable, worthless
// anywhere else, for the sandbox.
const (
	DefaultOAuthClientID     = "zenklav-sandbox"
	DefaultOAuthClientSecret = "sandbox-oauth-client-secret"
)

// DefaultAccessTokenLifetime is the expires_in of the access tokens the simulator issues
// until SetAccessTokenLifetime changes it.
const DefaultAccessTokenLifetime = time.Hour

// codeLifetime bounds the wait between the consent and the code's exchange.
const codeLifetime = 10 * time.Minute

// maxOAuthForm bounds a form posted to the OAuth paths.
const maxOAuthForm = 16 << 10

// oauthState is the simulator's authorization server. Its fields are guarded by Server.mu.
type oauthState struct {
	clientID, clientSecret string
	lifetime               time.Duration
	codes                  map[string]*authCode    // by code, until used or expired
	access                 map[string]*accessToken // by access token
	refresh                map[string]*grant       // by the grant's current refresh token
	grants                 []*grant
}

func newOAuthState() oauthState {
	return oauthState{
		clientID: DefaultOAuthClientID, clientSecret: DefaultOAuthClientSecret,
		lifetime: DefaultAccessTokenLifetime,
		codes:    map[string]*authCode{}, access: map[string]*accessToken{}, refresh: map[string]*grant{},
	}
}

// grant is an account's authorization of the app: its scopes, and whether it still holds.
type grant struct {
	account  string // the private key of the account that granted it
	clientID string
	scopes   []string
	refresh  string // the current refresh token; the ones before no longer work
	revoked  bool
	created  time.Time
}

// authCode is a code the consent gave, waiting to be exchanged.
type authCode struct {
	account, clientID, redirectURI, challenge string
	scopes                                    []string
	expires                                   time.Time
}

// accessToken is an issued access token.
type accessToken struct {
	grant   *grant
	expires time.Time
	revoked bool
}

// Grant is an account's authorization of the app, as Grants reports it.
type Grant struct {
	ClientID string
	Scope    string // space-separated
	Revoked  bool
	Created  time.Time
}

// SetOAuthClient registers the app whose client id and secret the OAuth paths accept,
// instead of DefaultOAuthClientID and DefaultOAuthClientSecret.
func (s *Server) SetOAuthClient(id, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauth.clientID, s.oauth.clientSecret = id, secret
}

// SetAccessTokenLifetime sets the expires_in of the access tokens issued from now on (a test
// makes them expire in seconds); DefaultAccessTokenLifetime when d is 0. Expiry follows the
// server's clock (SetClock).
func (s *Server) SetAccessTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		d = DefaultAccessTokenLifetime
	}
	s.oauth.lifetime = d
}

// RevokeGrants ends every grant of the account of privateKey, with their refresh and access
// tokens, as when the app is uninstalled in Klaviyo, and returns how many held until now.
func (s *Server) RevokeGrants(privateKey string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.oauth.grants {
		if g.account == privateKey && !g.revoked {
			s.revokeGrant(g)
			n++
		}
	}
	return n
}

// Grants returns the grants the account of privateKey gave, oldest first.
func (s *Server) Grants(privateKey string) []Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Grant
	for _, g := range s.oauth.grants {
		if g.account == privateKey {
			out = append(out, Grant{ClientID: g.clientID, Scope: strings.Join(g.scopes, " "), Revoked: g.revoked, Created: g.created})
		}
	}
	return out
}

// revokeGrant ends g and its tokens. The caller holds s.mu.
func (s *Server) revokeGrant(g *grant) {
	g.revoked = true
	delete(s.oauth.refresh, g.refresh)
	for _, t := range s.oauth.access {
		if t.grant == g {
			t.revoked = true
		}
	}
}

// bearer is the account, and the scopes, of an access token that still works. The caller
// holds s.mu.
func (s *Server) bearer(token string) (privateKey string, scopes []string, ok bool) {
	t := s.oauth.access[token]
	if t == nil || t.revoked || t.grant.revoked || !s.now().Before(t.expires) {
		return "", nil, false
	}
	return t.grant.account, t.grant.scopes, true
}

// issued says whether the simulator issued the access token, whether or not it still works.
func (s *Server) issued(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oauth.access[token] != nil
}

// serveOAuth answers the paths under /oauth.
func (s *Server) serveOAuth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch r.URL.Path {
	case "/oauth/authorize":
		switch {
		case r.Method == http.MethodGet || r.Method == http.MethodHead:
			s.consentPage(w, r)
		case allow(w, r, http.MethodGet, http.MethodHead, http.MethodPost):
			s.consent(w, r)
		}
	case "/oauth/token":
		if allow(w, r, http.MethodPost) {
			s.token(w, r)
		}
	case "/oauth/revoke":
		if allow(w, r, http.MethodPost) {
			s.revoke(w, r)
		}
	default:
		oauthError(w, http.StatusNotFound, "invalid_request", "the simulator's OAuth serves /oauth/authorize, /oauth/token and /oauth/revoke")
	}
}

// oauthError writes OAuth 2's error answer (RFC 6749 §5.2).
func oauthError(w http.ResponseWriter, status int, code, description string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="klaviyo"`)
	}
	writeOAuthJSON(w, status, map[string]string{"error": code, "error_description": description})
}

func writeOAuthJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v) // maps of strings and numbers always encode
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	w.Write(body)
}

// authRequest is an authorization request, from the consent page's URL or its form.
type authRequest struct {
	clientID, state, challenge string
	redirect                   *url.URL
	scopes                     []string
}

// pkceChallenge is the shape of an S256 challenge: base64url of a SHA-256, no padding.
var pkceChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// pkceVerifier is RFC 7636's code verifier.
var pkceVerifier = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// parseAuthRequest checks an authorization request. A request that names another app or no
// usable redirect_uri is refused on the page (status and message); any other fault goes back
// to redirect_uri as error and description, as RFC 6749 §4.1.2.1 has it.
func (s *Server) parseAuthRequest(v url.Values) (req authRequest, status int, code, description string) {
	s.mu.Lock()
	clientID := s.oauth.clientID
	s.mu.Unlock()
	if v.Get("client_id") != clientID {
		return req, http.StatusBadRequest, "invalid_client", "client_id is not the simulator's app (SetOAuthClient)"
	}
	u, err := url.Parse(v.Get("redirect_uri"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		return req, http.StatusBadRequest, "invalid_request", "redirect_uri must be an absolute http(s) URL without a fragment"
	}
	req = authRequest{clientID: clientID, redirect: u, state: v.Get("state"), challenge: v.Get("code_challenge"), scopes: strings.Fields(v.Get("scope"))}
	switch {
	case v.Get("response_type") != "code":
		return req, 0, "unsupported_response_type", "response_type must be code"
	case req.state == "":
		return req, 0, "invalid_request", "state is required"
	case v.Get("code_challenge_method") != "S256":
		return req, 0, "invalid_request", "code_challenge_method must be S256"
	case !pkceChallenge.MatchString(req.challenge):
		return req, 0, "invalid_request", "code_challenge must be the base64url SHA-256 of the verifier (43 characters)"
	case len(req.scopes) == 0:
		return req, 0, "invalid_scope", "scope is required"
	}
	known := knownScopes()
	for _, sc := range req.scopes {
		if !known[sc] {
			return req, 0, "invalid_scope", "unknown scope " + sc
		}
	}
	return req, 0, "", ""
}

// knownScopes are the scopes Klaviyo's API names (its operations' x-klaviyo-scopes).
var knownScopes = sync.OnceValue(func() map[string]bool {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	known := map[string]bool{}
	if json.Unmarshal(stableJSON, &doc) != nil {
		return known
	}
	for _, item := range doc.Paths {
		for _, raw := range item {
			var op struct {
				Scopes []string `json:"x-klaviyo-scopes"`
			}
			if json.Unmarshal(raw, &op) == nil {
				for _, sc := range op.Scopes {
					known[sc] = true
				}
			}
		}
	}
	return known
})

// redirectBack sends the browser to the request's redirect_uri with params and its state.
func redirectBack(w http.ResponseWriter, r *http.Request, req authRequest, params url.Values) {
	u := *req.redirect
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if req.state != "" {
		q.Set("state", req.state)
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// consentPage answers GET /oauth/authorize: the page where the admin allows or denies the
// app, or the request's fault.
func (s *Server) consentPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req, status, code, desc := s.parseAuthRequest(q)
	if status != 0 {
		http.Error(w, "Klaviyo simulator: "+code+": "+desc, status)
		return
	}
	if code != "" {
		redirectBack(w, r, req, url.Values{"error": {code}, "error_description": {desc}})
		return
	}
	view := consentView{ClientID: req.clientID, Scopes: req.scopes, RedirectURI: req.redirect.String(), Accounts: s.accountLabels()}
	for _, k := range []string{"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"} {
		view.Hidden = append(view.Hidden, field{k, q.Get(k)})
	}
	var page bytes.Buffer
	if err := consentTemplate.Execute(&page, view); err != nil {
		http.Error(w, "render consent page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(page.Bytes())
}

// accountLabels names the accounts as the sandbox page does, without their keys.
func (s *Server) accountLabels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.accounts {
		out = append(out, redact(k))
	}
	slices.Sort(out)
	return out
}

// consent answers POST /oauth/authorize, the page's form: Allow gives a code for the chosen
// account, Deny sends access_denied back.
func (s *Server) consent(w http.ResponseWriter, r *http.Request) {
	// Another site must not approve on the admin's behalf: the simulator listens on loopback,
	// which a browser's other tabs reach too.
	if !apispec.SameOrigin(r) {
		http.Error(w, "Klaviyo simulator: the decision comes from the consent page only", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxOAuthForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "Klaviyo simulator: unreadable form", http.StatusBadRequest)
		return
	}
	req, status, code, desc := s.parseAuthRequest(r.PostForm)
	switch {
	case status != 0:
		http.Error(w, "Klaviyo simulator: "+code+": "+desc, status)
		return
	case code != "":
		redirectBack(w, r, req, url.Values{"error": {code}, "error_description": {desc}})
		return
	case r.PostForm.Get("decision") != "allow":
		redirectBack(w, r, req, url.Values{"error": {"access_denied"}, "error_description": {"The user denied the request."}})
		return
	}
	key, ok := s.chosenAccount(r.PostForm.Get("account"))
	if !ok {
		http.Error(w, "Klaviyo simulator: choose one of the simulator's accounts (AddAccount makes one)", http.StatusBadRequest)
		return
	}
	c := newToken()
	s.mu.Lock()
	s.oauth.codes[c] = &authCode{account: key, clientID: req.clientID, redirectURI: req.redirect.String(),
		challenge: req.challenge, scopes: req.scopes, expires: s.now().Add(codeLifetime)}
	s.mu.Unlock()
	redirectBack(w, r, req, url.Values{"code": {c}})
}

// chosenAccount is the private key of the account whose label the form chose; with a single
// account, the form need not choose.
func (s *Server) chosenAccount(label string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.accounts {
		if redact(k) == label || label == "" && len(s.accounts) == 1 {
			return k, true
		}
	}
	return "", false
}

// newToken returns a random code or token.
func newToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// clientAuthenticated says whether r carries the app's credentials in HTTP Basic, encoded
// as RFC 6749 §2.3.1 has it; it answers invalid_client when not. Credentials in the body are
// refused, as Klaviyo refuses them.
func (s *Server) clientAuthenticated(w http.ResponseWriter, r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
	s.mu.Lock()
	wantID, wantSecret := s.oauth.clientID, s.oauth.clientSecret
	s.mu.Unlock()
	if !ok || id != wantID || subtle.ConstantTimeCompare([]byte(secret), []byte(wantSecret)) != 1 {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed: HTTP Basic with the app's client id and secret is required")
		return false
	}
	return true
}

// oauthForm reads the form body of a token call, which must be form-encoded.
func oauthForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxOAuthForm)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "unreadable form body")
		return nil, false
	}
	return r.PostForm, true
}

// token answers POST /oauth/token.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	form, ok := oauthForm(w, r)
	if !ok || !s.clientAuthenticated(w, r) {
		return
	}
	var g *grant
	var code, desc string
	switch form.Get("grant_type") {
	case "authorization_code":
		g, code, desc = s.exchangeCode(form)
	case "refresh_token":
		g, code, desc = s.useRefreshToken(form.Get("refresh_token"))
	default:
		code, desc = "unsupported_grant_type", "grant_type must be authorization_code or refresh_token"
	}
	if code != "" {
		oauthError(w, http.StatusBadRequest, code, desc)
		return
	}
	s.mu.Lock()
	access := newToken()
	lifetime := s.oauth.lifetime
	s.oauth.access[access] = &accessToken{grant: g, expires: s.now().Add(lifetime)}
	refresh, scope := g.refresh, strings.Join(g.scopes, " ")
	s.mu.Unlock()
	writeOAuthJSON(w, http.StatusOK, map[string]any{
		"access_token": access, "token_type": "Bearer", "expires_in": int(lifetime / time.Second),
		"refresh_token": refresh, "scope": scope,
	})
}

// exchangeCode is the grant an authorization code makes, once: its app, redirect_uri and
// the PKCE verifier must be those of the request that got it.
func (s *Server) exchangeCode(form url.Values) (g *grant, code, desc string) {
	verifier := form.Get("code_verifier")
	if form.Get("code") == "" || verifier == "" || form.Get("redirect_uri") == "" {
		return nil, "invalid_request", "code, code_verifier and redirect_uri are required"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.oauth.codes[form.Get("code")]
	delete(s.oauth.codes, form.Get("code")) // single use, whatever comes next
	sum := sha256.Sum256([]byte(verifier))
	switch {
	case c == nil || !s.now().Before(c.expires):
		return nil, "invalid_grant", "the authorization code is unknown, used or expired"
	case c.redirectURI != form.Get("redirect_uri"):
		return nil, "invalid_grant", "redirect_uri differs from the authorization request's"
	case !pkceVerifier.MatchString(verifier) || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge:
		return nil, "invalid_grant", "code_verifier does not match the code_challenge"
	}
	if _, ok := s.accounts[c.account]; !ok {
		return nil, "invalid_grant", "the account that granted the code is gone"
	}
	g = &grant{account: c.account, clientID: c.clientID, scopes: c.scopes, refresh: newToken(), created: s.now()}
	s.oauth.grants = append(s.oauth.grants, g)
	s.oauth.refresh[g.refresh] = g
	return g, "", ""
}

// useRefreshToken is the grant of a refresh token, with the token rotated: the one used no
// longer works.
func (s *Server) useRefreshToken(token string) (g *grant, code, desc string) {
	if token == "" {
		return nil, "invalid_request", "refresh_token is required"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g = s.oauth.refresh[token]
	if g == nil || g.revoked {
		return nil, "invalid_grant", "the refresh token is invalid because it is expired or revoked"
	}
	delete(s.oauth.refresh, token)
	g.refresh = newToken()
	s.oauth.refresh[g.refresh] = g
	return g, "", ""
}

// revoke answers POST /oauth/revoke: a refresh token ends its grant and the grant's access
// tokens, an access token only itself. An unknown token is not an error (RFC 7009 §2.2).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	form, ok := oauthForm(w, r)
	if !ok || !s.clientAuthenticated(w, r) {
		return
	}
	token := form.Get("token")
	if token == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	s.mu.Lock()
	if g := s.oauth.refresh[token]; g != nil {
		s.revokeGrant(g)
	} else if t := s.oauth.access[token]; t != nil {
		t.revoked = true
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// consentView is what the consent page shows.
type consentView struct {
	ClientID    string
	Scopes      []string
	RedirectURI string
	Accounts    []string // labels, as the sandbox page names accounts
	Hidden      []field  // the request's parameters, posted back with the decision
}

type field struct{ Name, Value string }

var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Authorize {{.ClientID}} · Klaviyo simulator</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 34em; margin: 3em auto; color: #222; }
code { font: 13px ui-monospace, monospace; }
.muted { color: #777; }
button { font: inherit; padding: .4em 1.4em; margin-right: .6em; }
</style>
</head>
<body>
<h1>Klaviyo simulator</h1>
<p>The app <b>{{.ClientID}}</b> asks for access to your Klaviyo account:</p>
<ul>{{range .Scopes}}<li><code>{{.}}</code></li>{{end}}</ul>
<form method="post" action="/oauth/authorize">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}{{if not .Accounts}}<p>The simulator has no account to grant access to.</p>
{{else if eq (len .Accounts) 1}}<p>Account <code>{{index .Accounts 0}}</code></p>
{{else}}<p><label>Account <select name="account">{{range .Accounts}}<option>{{.}}</option>{{end}}</select></label></p>
{{end}}<p><button type="submit" name="decision" value="allow"{{if not .Accounts}} disabled{{end}}>Allow</button><button type="submit" name="decision" value="deny">Deny</button></p>
</form>
<p class="muted">Either way you go back to <code>{{.RedirectURI}}</code>.</p>
</body>
</html>
`))
