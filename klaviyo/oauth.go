package klaviyo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/apiclient"
	"golang.org/x/oauth2"
)

// Klaviyo's OAuth, for zenklav's public app: the authorization-code flow with PKCE (S256)
// (reference/klaviyo-sms-and-oauth.md §3). The admin's browser approves zenklav at
// www.klaviyo.com/oauth/authorize; the token calls go to a.klaviyo.com, since Klaviyo blocks
// them on www.klaviyo.com, with zenklav's client id and secret in HTTP Basic and a
// form-encoded body. golang.org/x/oauth2 speaks that; revocation, which it does not, is done
// here by hand the same way.

// OAuth is a zenklav.OAuthProvider for Klaviyo.
var _ zenklav.OAuthProvider = (*OAuth)(nil)

// Where Klaviyo's OAuth lives: the browser's page, and the token calls.
const (
	DefaultAuthorizeBase = "https://www.klaviyo.com"
	DefaultTokenBase     = "https://a.klaviyo.com"
)

// DefaultScopes are what zenklav asks an account for: the events and profiles the pipeline
// writes, what the sidebar reads (events with their metrics, lists, segments), the SMS replies
// (conversations) and the system webhook setup makes; accounts:read names the account.
var DefaultScopes = []string{
	"accounts:read",
	"profiles:read", "profiles:write",
	"events:read", "events:write", "metrics:read",
	"lists:read", "segments:read",
	"conversations:read", "conversations:write",
	"webhooks:read", "webhooks:write",
}

// maxOAuthAnswer bounds what is read of an answer to a revocation: an empty body or an
// OAuth error.
const maxOAuthAnswer = 64 << 10

// OAuth is zenklav's OAuth client at Klaviyo. Klaviyo has one authorization server for
// every account, so the account argument of the zenklav.OAuthProvider methods is ignored.
// No error it returns carries a token or the client secret.
type OAuth struct {
	ClientID     string
	ClientSecret zenklav.Secret
	// Scopes are asked for at authorization; DefaultScopes when empty.
	Scopes []string
	// AuthorizeBase is where the browser goes ({AuthorizeBase}/oauth/authorize);
	// DefaultAuthorizeBase when empty.
	AuthorizeBase string
	// TokenBase serves {TokenBase}/oauth/token and /oauth/revoke; DefaultTokenBase when
	// empty. A test points both at a klaviyotest simulator.
	TokenBase string
	// HTTPClient sends the token calls; a new client on http.DefaultTransport when nil.
	HTTPClient *http.Client
	// Timeout bounds each token call; DefaultTimeout when 0.
	Timeout time.Duration
}

// AuthorizeURL is Klaviyo's consent page for zenklav, asking for o's scopes; Klaviyo sends
// the browser back to redirectURI with state and a code. challenge is the S256 PKCE
// challenge of the verifier the caller keeps for Exchange.
func (o *OAuth) AuthorizeURL(_, redirectURI, state, challenge string) string {
	// oauth2.S256ChallengeOption derives the challenge from the verifier; the caller keeps
	// the verifier and hands over its challenge, so the two parameters are set as they are.
	return o.config(redirectURI).AuthCodeURL(state,
		oauth2.SetAuthURLParam("code_challenge_method", "S256"),
		oauth2.SetAuthURLParam("code_challenge", challenge))
}

// Exchange trades the code the browser came back with for the grant's tokens, proving with
// verifier that zenklav asked for it.
func (o *OAuth) Exchange(ctx context.Context, _, code, verifier, redirectURI string) (zenklav.OAuthToken, error) {
	const op = "klaviyo oauth: exchange the code"
	if code == "" || verifier == "" || redirectURI == "" {
		return zenklav.OAuthToken{}, zenklav.Errorf(zenklav.EINVALID, "%s: code, verifier and redirect URI are required", op)
	}
	if err := o.check(op); err != nil {
		return zenklav.OAuthToken{}, err
	}
	ctx, cancel := o.context(ctx)
	defer cancel()
	tok, err := o.config(redirectURI).Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return zenklav.OAuthToken{}, tokenError(op, err)
	}
	return grantOf(op, tok)
}

// Refresh renews the access token with the refresh token. Klaviyo rotates the refresh
// token: the returned one replaces refresh, which no longer works. A refresh token Klaviyo
// no longer honours (expired after 90 days unused, revoked, the app uninstalled) is
// EUNAUTHORIZED: the account must be connected again.
func (o *OAuth) Refresh(ctx context.Context, _ string, refresh zenklav.Secret) (zenklav.OAuthToken, error) {
	const op = "klaviyo oauth: refresh the access token"
	if refresh == "" {
		return zenklav.OAuthToken{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "%s: the grant has no refresh token: reconnect Klaviyo", op)
	}
	if err := o.check(op); err != nil {
		return zenklav.OAuthToken{}, err
	}
	ctx, cancel := o.context(ctx)
	defer cancel()
	// A token without an access token is expired, so the source refreshes it at once; when
	// Klaviyo's answer has no refresh token, oauth2 keeps the one sent.
	tok, err := o.config("").TokenSource(ctx, &oauth2.Token{RefreshToken: refresh.Reveal()}).Token()
	if err != nil {
		return zenklav.OAuthToken{}, tokenError(op, err)
	}
	return grantOf(op, tok)
}

// Revoke ends the grant at Klaviyo (POST /oauth/revoke): its refresh token, and with it its
// access tokens; the access token alone when there is no refresh token. A token Klaviyo
// already does not know (invalid_grant, invalid_token) is not an error.
func (o *OAuth) Revoke(ctx context.Context, _ string, t zenklav.OAuthToken) error {
	const op = "klaviyo oauth: revoke the grant"
	token, hint := t.RefreshToken, "refresh_token"
	if token == "" {
		token, hint = t.AccessToken, "access_token"
	}
	if token == "" {
		return nil // nothing left to revoke
	}
	if err := o.check(op); err != nil {
		return err
	}
	form := url.Values{"token": {token.Reveal()}, "token_type_hint": {hint}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.tokenBase()+"/oauth/revoke", strings.NewReader(form.Encode()))
	if err != nil {
		return zenklav.Wrap(zenklav.EINTERNAL, err, "%s: build request", op)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// Encoded as oauth2 encodes them for the token calls (RFC 6749 §2.3.1).
	req.SetBasicAuth(url.QueryEscape(o.ClientID), url.QueryEscape(o.ClientSecret.Reveal()))
	status, header, body, err := apiclient.Send(o.httpClient(), slog.New(slog.DiscardHandler), "klaviyo", op, req, o.timeout(), maxOAuthAnswer)
	if err != nil {
		return err
	}
	if status >= 200 && status <= 299 {
		return nil
	}
	var answer struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &answer) // a body that is not OAuth's JSON leaves the code empty
	if status == http.StatusBadRequest && (answer.Error == "invalid_grant" || answer.Error == "invalid_token") {
		return nil // already gone: what revoking wanted
	}
	return oauthFailure(op, status, header, answer.Error, answer.Description)
}

// config is o as oauth2 takes it.
func (o *OAuth) config(redirectURI string) *oauth2.Config {
	scopes := o.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	authorize := DefaultAuthorizeBase
	if o.AuthorizeBase != "" {
		authorize = strings.TrimRight(o.AuthorizeBase, "/")
	}
	return &oauth2.Config{
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret.Reveal(),
		Endpoint: oauth2.Endpoint{
			AuthURL:  authorize + "/oauth/authorize",
			TokenURL: o.tokenBase() + "/oauth/token",
			// Klaviyo wants HTTP Basic; without this oauth2 would guess, and on a refused
			// grant try again with the secret in the body.
			AuthStyle: oauth2.AuthStyleInHeader,
		},
		RedirectURL: redirectURI,
		Scopes:      scopes,
	}
}

func (o *OAuth) tokenBase() string {
	if o.TokenBase == "" {
		return DefaultTokenBase
	}
	return strings.TrimRight(o.TokenBase, "/")
}

// check reports what keeps o from calling the token endpoints.
func (o *OAuth) check(op string) error {
	if o.ClientID == "" || o.ClientSecret == "" {
		return zenklav.Errorf(zenklav.EINVALID, "%s: the Klaviyo OAuth client id and secret are required", op)
	}
	if _, err := apiclient.ParseBase(o.tokenBase()); err != nil {
		return zenklav.Wrap(zenklav.EINVALID, err, "%s: token base", op)
	}
	if o.Timeout < 0 {
		return zenklav.Errorf(zenklav.EINVALID, "%s: timeout %s is negative", op, o.Timeout)
	}
	return nil
}

func (o *OAuth) httpClient() *http.Client {
	if o.HTTPClient == nil {
		return &http.Client{}
	}
	return o.HTTPClient
}

func (o *OAuth) timeout() time.Duration {
	if o.Timeout == 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

// context bounds one token call and carries the HTTP client oauth2 sends it with.
func (o *OAuth) context(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, o.httpClient())
	return context.WithTimeout(ctx, o.timeout())
}

// grantOf is the zenklav.OAuthToken of oauth2's answer.
func grantOf(op string, tok *oauth2.Token) (zenklav.OAuthToken, error) {
	if typ := tok.TokenType; typ != "" && !strings.EqualFold(typ, "bearer") {
		return zenklav.OAuthToken{}, zenklav.Errorf(zenklav.EINTERNAL, "%s: Klaviyo gave a token of type %q, not Bearer", op, typ)
	}
	t := zenklav.OAuthToken{AccessToken: zenklav.Secret(tok.AccessToken), RefreshToken: zenklav.Secret(tok.RefreshToken)}
	if !tok.Expiry.IsZero() {
		t.ExpiresAt = tok.Expiry.UTC()
	}
	if scope, ok := tok.Extra("scope").(string); ok {
		t.Scope = scope
	}
	return t, nil
}

// tokenError is the zenklav error of a failed token call. oauth2's own error quotes the
// answer's body, which is never passed on: only its status and OAuth error code are.
func tokenError(op string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status, header := 0, http.Header{}
		if re.Response != nil {
			status, header = re.Response.StatusCode, re.Response.Header
		}
		return oauthFailure(op, status, header, re.ErrorCode, re.ErrorDescription)
	}
	// A transport error's url.Error quotes only the token URL, which holds no secret; an
	// answer oauth2 could not read (no access token, not JSON) is a Klaviyo that misbehaves,
	// perhaps for a moment.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s", op)
}

// oauthFailure is the error of an OAuth answer other than 2xx. invalid_grant is a grant
// Klaviyo no longer honours, whatever the status; otherwise the status decides, as for the
// API.
func oauthFailure(op string, status int, header http.Header, code, description string) error {
	detail := fmt.Sprintf("klaviyo answered %d", status)
	if code != "" {
		detail += " " + code
	}
	if description != "" {
		if utf8.RuneCountInString(description) > 200 {
			description = string([]rune(description)[:200]) + "…"
		}
		detail += ": " + description
	}
	cause := errors.New(detail)
	var e *zenklav.Error
	switch {
	case code == "invalid_grant":
		e = zenklav.Wrap(zenklav.EUNAUTHORIZED, cause, "%s: Klaviyo no longer honours the grant (expired, revoked or the app uninstalled): reconnect Klaviyo", op)
	case code == "invalid_client" || status == http.StatusUnauthorized:
		e = zenklav.Wrap(zenklav.EUNAUTHORIZED, cause, "%s: Klaviyo refused zenklav's OAuth client id or secret", op)
	default:
		e = zenklav.Wrap(apiclient.Kind(status), cause, "%s", op)
	}
	e.Throttled = status == http.StatusTooManyRequests
	e.RetryAfter = apiclient.RetryAfter(header.Get("Retry-After"), time.Now())
	if b, err := json.Marshal(map[string]any{"status": status, "error": code}); err == nil {
		e.Response = string(b)
	}
	return e
}
