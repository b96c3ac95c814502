package zendesk

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/apiclient"
)

// The lifetimes zenklav asks Zendesk for. Zendesk gives clients made before 2026-04-30 an
// access token that never expires, and no refresh token, unless expires_in is asked for; a
// short-lived access token with a refresh token limits what a leaked one is worth.
const (
	AccessTokenLifetime  = 30 * time.Minute
	RefreshTokenLifetime = 30 * 24 * time.Hour // Zendesk's default; it allows 7 to 90 days
)

// DefaultScopes is what zenklav asks for: views and brands have no fine-grained scope, so
// setup needs the plain ones.
const DefaultScopes = "read write"

// subdomainPattern is what a Zendesk subdomain looks like; anything else must not reach a
// URL, where it could name another host.
var subdomainPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// OAuth is the authorization-code flow with PKCE of the operator's global OAuth client,
// for any Zendesk account by its subdomain: a zenklav.OAuthProvider.
type OAuth struct {
	// ClientID is the global client's unique identifier ("zdg-…"); ClientSecret its secret.
	ClientID     string
	ClientSecret zenklav.Secret
	// Scopes is the scope asked for, space-separated; DefaultScopes when empty.
	Scopes string
	// BaseURL returns the address of the account with that subdomain, e.g.
	// "https://acme.zendesk.com", or a simulator's; "https://{subdomain}.zendesk.com" when nil.
	BaseURL func(subdomain string) string
	// HTTPClient sends the requests; a new client on http.DefaultTransport when nil.
	HTTPClient *http.Client
	// Timeout bounds each HTTP call; DefaultTimeout when 0.
	Timeout time.Duration
	// Logger gets the calls at debug level; nil discards them.
	Logger *slog.Logger
}

var _ zenklav.OAuthProvider = (*OAuth)(nil)

// base returns the account's base URL, or an EINVALID error for a subdomain that is not
// one.
func (o *OAuth) base(account string) (string, error) {
	if !subdomainPattern.MatchString(account) {
		return "", zenklav.Errorf(zenklav.EINVALID, "zendesk oauth: %q is not a Zendesk subdomain", account)
	}
	if o.BaseURL == nil {
		return "https://" + account + ".zendesk.com", nil
	}
	base, err := apiclient.ParseBase(o.BaseURL(account))
	if err != nil {
		return "", zenklav.Wrap(zenklav.EINVALID, err, "zendesk oauth: base url of %s", account)
	}
	return base.String(), nil
}

func (o *OAuth) scopes() string { return cmp.Or(o.Scopes, DefaultScopes) }

// AuthorizeURL is Zendesk's consent page for the account, asking for a code with the S256
// challenge; "" when account is not a Zendesk subdomain.
func (o *OAuth) AuthorizeURL(account, redirectURI, state, challenge string) string {
	base, err := o.base(account)
	if err != nil {
		return ""
	}
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {o.ClientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {o.scopes()},
		"state":                 {state},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	// Zendesk documents the scope with %20 between words, not +.
	return base + "/oauth/authorizations/new?" + strings.ReplaceAll(q.Encode(), "+", "%20")
}

// Exchange trades the code for tokens (Create Token for Grant Type, authorization_code).
func (o *OAuth) Exchange(ctx context.Context, account, code, verifier, redirectURI string) (zenklav.OAuthToken, error) {
	return o.token(ctx, "exchange zendesk oauth code", account, map[string]any{
		"grant_type":    "authorization_code",
		"code":          code,
		"redirect_uri":  redirectURI,
		"code_verifier": verifier,
		"scope":         o.scopes(),
	})
}

// Refresh renews the access token. Zendesk rotates the refresh token with it and deletes the
// old pair: the caller must keep the token returned, or lose the grant.
func (o *OAuth) Refresh(ctx context.Context, account string, refresh zenklav.Secret) (zenklav.OAuthToken, error) {
	if refresh == "" {
		return zenklav.OAuthToken{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "refresh zendesk oauth token: no refresh token: reconnect Zendesk")
	}
	return o.token(ctx, "refresh zendesk oauth token", account, map[string]any{
		"grant_type":    "refresh_token",
		"refresh_token": refresh.Reveal(),
	})
}

// token asks POST /oauth/tokens for a token with the grant in req.
func (o *OAuth) token(ctx context.Context, op, account string, req map[string]any) (zenklav.OAuthToken, error) {
	base, err := o.base(account)
	if err != nil {
		return zenklav.OAuthToken{}, err
	}
	if o.ClientID == "" || o.ClientSecret == "" || o.Timeout < 0 {
		return zenklav.OAuthToken{}, zenklav.Errorf(zenklav.EINVALID, "%s: the Zendesk OAuth client id and secret are required, and a timeout of 0 or more", op)
	}
	req["client_id"] = o.ClientID
	req["client_secret"] = o.ClientSecret.Reveal()
	req["expires_in"] = int(AccessTokenLifetime / time.Second)
	req["refresh_token_expires_in"] = int(RefreshTokenLifetime / time.Second)
	b, err := json.Marshal(req)
	if err != nil {
		return zenklav.OAuthToken{}, zenklav.Wrap(zenklav.EINTERNAL, err, "%s: encode request", op)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth/tokens", bytes.NewReader(b))
	if err != nil {
		return zenklav.OAuthToken{}, zenklav.Wrap(zenklav.EINTERNAL, err, "%s: build request", op)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", "zenklav")
	start := time.Now()
	status, header, body, err := apiclient.Send(o.httpClient(), o.logger(), "zendesk", op, hr, cmp.Or(o.Timeout, DefaultTimeout), maxBody)
	if err != nil {
		return zenklav.OAuthToken{}, err
	}
	if status < 200 || status > 299 {
		return zenklav.OAuthToken{}, oauthFailure(op, status, header, body)
	}
	return readToken(op, body, start)
}

// readToken reads a token answer; the access token expires expires_in after the request
// was sent, which errs on the early side.
func readToken(op string, body []byte, sent time.Time) (zenklav.OAuthToken, error) {
	var answer struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		Scope        string `json:"scope"`
		ExpiresIn    int64  `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return zenklav.OAuthToken{}, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s: decode answer", op)
	}
	if answer.AccessToken == "" || !strings.EqualFold(cmp.Or(answer.TokenType, "bearer"), "bearer") {
		return zenklav.OAuthToken{}, zenklav.Errorf(zenklav.EUNAVAILABLE, "%s: answer has no bearer access token", op)
	}
	t := zenklav.OAuthToken{
		AccessToken:  zenklav.Secret(answer.AccessToken),
		RefreshToken: zenklav.Secret(answer.RefreshToken),
		Scope:        answer.Scope,
	}
	if answer.ExpiresIn > 0 {
		t.ExpiresAt = sent.Add(time.Duration(answer.ExpiresIn) * time.Second).UTC()
	}
	return t, nil
}

// oauthFailure is the error of a token endpoint's refusal, which follows RFC 6749
// ({"error": "invalid_grant", "error_description": …}) rather than the REST API's shapes.
// A refused grant is for the admin to fix by connecting again; a refused client for the
// operator. Neither message quotes what was sent.
func oauthFailure(op string, status int, header http.Header, body []byte) error {
	var answer struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	json.Unmarshal(body, &answer) //nolint:errcheck // an unreadable refusal is still one
	apiErr := &APIError{StatusCode: status, Code: answer.Error, Description: answer.Description,
		RetryAfter: apiclient.RetryAfter(header.Get("Retry-After"), time.Now())}
	kind, msg := apiclient.Kind(status), op
	switch answer.Error {
	case "invalid_grant":
		kind, msg = zenklav.EUNAUTHORIZED, op+": Zendesk refused the grant (expired, revoked or already used): reconnect Zendesk"
	case "invalid_client", "unauthorized_client":
		kind, msg = zenklav.EUNAUTHORIZED, op+": Zendesk refused zenklav's OAuth client: check its client id and secret"
	}
	return apiclient.Failure(msg, status, kind, apiErr, apiErr.RetryAfter, apiErr.Response())
}

// Revoke ends the grant: it deletes the access token's record, which holds the refresh
// token too, through the OAuth Tokens API. The API names a token by its id, and lists the
// caller's tokens with the first ten characters of each, which is how the token finds its
// own id. An access token Zendesk no longer takes (401) is refreshed first, so that the
// grant ends even then; a grant already gone is not an error.
func (o *OAuth) Revoke(ctx context.Context, account string, t zenklav.OAuthToken) error {
	if t.AccessToken == "" && t.RefreshToken == "" {
		return nil
	}
	err := o.revoke(ctx, account, t.AccessToken)
	if statusOf(err) != http.StatusUnauthorized {
		return err
	}
	if t.RefreshToken == "" {
		return nil // the access token is gone, and there is nothing to renew it with
	}
	fresh, err := o.Refresh(ctx, account, t.RefreshToken)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Code == "invalid_grant" {
		return nil // the refresh token is gone too
	}
	if err != nil {
		return fmt.Errorf("revoke zendesk oauth token: %w", err)
	}
	if err := o.revoke(ctx, account, fresh.AccessToken); statusOf(err) != http.StatusUnauthorized {
		return err
	}
	return nil
}

// statusOf is the status of the Zendesk answer err reports, 0 when it reports none.
func statusOf(err error) int {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode
	}
	return 0
}

// revoke deletes the token record of access, authenticated with access itself.
func (o *OAuth) revoke(ctx context.Context, account string, access zenklav.Secret) error {
	base, err := o.base(account)
	if err != nil {
		return err
	}
	c, err := NewClient(o.logger(), ClientConfig{
		BaseURL: base, HTTPClient: o.HTTPClient, Timeout: o.Timeout,
		Token: func(context.Context) (string, error) { return access.Reveal(), nil },
	})
	if err != nil {
		return err
	}
	type token struct {
		ID    int64  `json:"id"`
		Token string `json:"token"` // its first ten characters
	}
	tokens, err := listAll[token](ctx, c, "tokens", "/api/v2/oauth/tokens", nil)
	if err != nil {
		return err
	}
	var ids []int64
	for _, tk := range tokens {
		if len(tk.Token) >= 10 && strings.HasPrefix(access.Reveal(), tk.Token) {
			ids = append(ids, tk.ID)
		}
	}
	switch len(ids) {
	case 0:
		return nil // already gone
	case 1:
		return c.remove(ctx, "revoke zendesk oauth token", fmt.Sprintf("/api/v2/oauth/tokens/%d", ids[0]))
	default:
		return zenklav.Errorf(zenklav.EUNAVAILABLE, "revoke zendesk oauth token: %d tokens start alike; none revoked", len(ids))
	}
}

func (o *OAuth) httpClient() *http.Client {
	if o.HTTPClient == nil {
		return http.DefaultClient
	}
	return o.HTTPClient
}

func (o *OAuth) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}
