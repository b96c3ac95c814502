package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/sidebar"
	"github.com/zenklav/zenklav/sms"
	"github.com/zenklav/zenklav/zendesk"
)

// apiClients make and keep the connections' API clients as the connections stand now: one
// Klaviyo client per account reached by a private key, since its rate limits are the
// account's whichever connections and parts share it, one per grant (an installed app's
// limits are its own), and one Zendesk client per connection. A client is made again only
// when what it is made from changes (a new key, another subdomain, a key for a grant or the
// other way), so its limits and caches live as long as the account does; a grant's refreshed
// token is not such a change, since its clients read the token at each call.
type apiClients struct {
	e       *env
	mu      sync.Mutex
	klaviyo map[string]*klaviyo.Client // by account: its private key's digest, or "grant:"+connection id
	zendesk map[string]zendeskClient   // by connection id
	// share is how many processes deliver to every Klaviyo account at once (the emitter's
	// replicas): each client keeps 1/share of its account's limits.
	share int
	// The clients' metrics: requests and rate limits, by connection.
	klaviyoMetrics *klaviyo.Metrics
	zendeskMetrics *zendesk.Metrics
}

// shareLimits makes every Klaviyo client, and each made later, keep 1/n of its account's
// limits.
func (a *apiClients) shareLimits(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.share = n
	for _, kc := range a.klaviyo {
		kc.ShareLimits(n)
	}
}

// zendeskClient is a connection's client and what it was made from.
type zendeskClient struct {
	from   string
	client *zendesk.Client
}

// apis returns the env's API clients, made on first use.
func (e *env) apis(ctx context.Context, who string) (*apiClients, error) {
	if e.clients != nil {
		return e.clients, nil
	}
	if _, err := e.connections(ctx, who); err != nil {
		return nil, err
	}
	e.clients = &apiClients{e: e, klaviyo: map[string]*klaviyo.Client{}, zendesk: map[string]zendeskClient{},
		klaviyoMetrics: klaviyo.NewMetrics(e.registry), zendeskMetrics: zendesk.NewMetrics(e.registry, nil)}
	return e.clients, nil
}

// digest names a secret without holding it.
func digest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// klaviyoOf is the client of the connection's Klaviyo account; nil when it has none, or its
// client cannot be made (said in the log). A private key's client is the account's, shared
// by the connections that name it; a grant's is the connection's ("grant:"+id), since
// Klaviyo counts an installed app's calls apart from the account's own.
func (a *apiClients) klaviyoOf(c *zenklav.Connection) *klaviyo.Client {
	cfg := klaviyo.ClientConfig{BaseURL: a.e.cfg.KlaviyoBaseURL}
	var account string
	switch {
	case c.Klaviyo.OAuth != nil:
		account = "grant:" + c.ID
		cfg.Token = a.e.grantToken(c.ID, "Klaviyo", func(c *zenklav.Connection) *zenklav.OAuthToken { return c.Klaviyo.OAuth })
		cfg.HTTPClient = a.e.renewing(cfg.Token)
	case c.Klaviyo.PrivateKey != "":
		account, cfg.PrivateKey = digest(c.Klaviyo.PrivateKey.Reveal()), c.Klaviyo.PrivateKey.Reveal()
	default:
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if kc := a.klaviyo[account]; kc != nil {
		return kc
	}
	cfg.Metrics, cfg.Account = a.klaviyoMetrics, a.accountName(c)
	kc, err := klaviyo.NewClient(a.e.logger, cfg)
	if err != nil {
		a.e.logger.Error("cannot make the connection's Klaviyo client", "connection", c.ID, "err", err)
		return nil
	}
	kc.ShareLimits(a.share)
	a.klaviyo[account] = kc
	return kc
}

// accountName names the connection's Klaviyo account in the metrics, with no secret: a
// grant's account is its connection's; a private key's is the first in id order of the
// connections that name the key now, so that every process names it alike (and a key of one
// connection, the usual case, by that connection). It stays the account's name as long as
// its client lives, connections added later notwithstanding.
func (a *apiClients) accountName(c *zenklav.Connection) string {
	if c.Klaviyo.OAuth != nil {
		return c.ID
	}
	name := c.ID
	for _, o := range a.e.conns.All() {
		if o.ID < name && o.Klaviyo.OAuth == nil && o.Klaviyo.PrivateKey == c.Klaviyo.PrivateKey {
			name = o.ID
		}
	}
	return name
}

// zendeskOf is the client of the connection's Zendesk account; nil when it has no API
// credentials, or its client cannot be made (said in the log). What it is made from names
// the way in (an API token or a grant), so a connection that changes ways gets a new client;
// a grant's client reads the grant's access token at each call, so a refresh changes nothing.
func (a *apiClients) zendeskOf(c *zenklav.Connection) *zendesk.Client {
	z := c.Zendesk
	var from string
	switch {
	case z.OAuth != nil:
		from = digest("grant", z.Subdomain)
	case z.APIToken != "":
		from = digest("api token", z.Subdomain, z.Email, z.APIToken.Reveal())
	default:
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if zc, ok := a.zendesk[c.ID]; ok && zc.from == from {
		return zc.client
	}
	cfg := a.e.zendeskConfig(*c, 0)
	cfg.Metrics, cfg.Connection = a.zendeskMetrics, c.ID
	zc, err := zendesk.NewClient(a.e.logger, cfg)
	if err != nil {
		a.e.logger.Error("cannot make the connection's Zendesk client", "connection", c.ID, "err", err)
		return nil
	}
	a.zendesk[c.ID] = zendeskClient{from: from, client: zc}
	return zc
}

// zendeskClient is a client of the connection's Zendesk account, by its API token or its
// grant as the connections stand at each call; timeout 0 is the client's default.
func (e *env) zendeskClient(c zenklav.Connection, timeout time.Duration) (*zendesk.Client, error) {
	return zendesk.NewClient(e.logger, e.zendeskConfig(c, timeout))
}

// zendeskConfig is the configuration of zendeskClient.
func (e *env) zendeskConfig(c zenklav.Connection, timeout time.Duration) zendesk.ClientConfig {
	cfg := zendesk.ClientConfig{BaseURL: e.cfg.ZendeskURL(c.Zendesk.Subdomain), Timeout: timeout}
	if c.Zendesk.OAuth != nil {
		cfg.Token = e.grantToken(c.ID, "Zendesk", func(c *zenklav.Connection) *zenklav.OAuthToken { return c.Zendesk.OAuth })
		cfg.HTTPClient = e.renewing(cfg.Token)
	} else {
		cfg.Email, cfg.APIToken = c.Zendesk.Email, c.Zendesk.APIToken.Reveal()
	}
	return cfg
}

// grantToken is the access token of connection id's grant as the connections stand when it
// is called: a token another process refreshed is used as soon as this one has read it.
func (e *env) grantToken(id, vendor string, grant func(c *zenklav.Connection) *zenklav.OAuthToken) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		c := e.conns.ByID(id)
		if c == nil {
			return "", zenklav.Errorf(zenklav.EUNAUTHORIZED, "connection %q is no longer connected", id)
		}
		t := grant(c)
		if t == nil {
			return "", zenklav.Errorf(zenklav.EUNAUTHORIZED, "connection %q is no longer connected to %s with OAuth", id, vendor)
		}
		return t.AccessToken.Reveal(), nil
	}
}

// renewing is the HTTP client of a grant's API client. Zendesk revokes an access token the
// moment any process refreshes its grant, and this process reads the new one from the store
// within connectionsPoll: a request refused meanwhile (401) would fail as unauthorized, and
// its event become a dead letter. So a 401 to a request that carried an access token reads
// the store to its end and, when the grant's token is another by then, sends the request
// again, once, with it.
func (e *env) renewing(token func(context.Context) (string, error)) *http.Client {
	return &http.Client{Transport: &renewingTransport{base: http.DefaultTransport, e: e, token: token}}
}

type renewingTransport struct {
	base  http.RoundTripper
	e     *env
	token func(context.Context) (string, error)
}

func (t *renewingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	sent, bearer := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !bearer || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) {
		return resp, nil
	}
	ctx := req.Context()
	if t.e.catchUp != nil {
		if err := t.e.catchUp(ctx); err != nil {
			return resp, nil // the 401 stands; the store's trouble is logged where it is followed
		}
	}
	now, err := t.token(ctx)
	if err != nil || now == sent {
		return resp, nil
	}
	again := req.Clone(ctx)
	if req.GetBody != nil {
		if again.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	again.Header.Set("Authorization", "Bearer "+now)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return t.base.RoundTrip(again)
}

// warnOnce logs msg the first time key is met: a lookup made per message says a lasting
// state once.
func (e *env) warnOnce(key, msg string, args ...any) {
	if _, seen := e.warned.LoadOrStore(key, true); !seen {
		e.logger.Warn(msg, args...)
	}
}

// emitterRoutes are the emitter's routes: every connection served, with its Klaviyo account
// when it has one.
func (e *env) emitterRoutes() *zenklav.Routes[emitter.Route] {
	return &zenklav.Routes[emitter.Route]{Find: func(id string) (emitter.Route, bool) {
		c := e.connection(id)
		if c == nil {
			return emitter.Route{}, false
		}
		kc, zc := e.clients.klaviyoOf(c), e.clients.zendeskOf(c)
		if kc == nil || zc == nil {
			if c.HasKlaviyo() {
				e.warnOnce("emitter/"+id, "connection has a Klaviyo account but no usable Zendesk API credentials, which the emitter needs "+
					"to look up assignees, groups and requesters: its tickets reach ClickHouse but not Klaviyo", "connection", id)
			}
			return emitter.Route{Connection: c}, true
		}
		return emitter.Route{Connection: c, Klaviyo: kc, Directory: zc}, true
	}}
}

// smsRoutes are the sms role's routes: the connections served with SMS on.
func (e *env) smsRoutes() *zenklav.Routes[sms.Route] {
	return &zenklav.Routes[sms.Route]{Find: func(id string) (sms.Route, bool) {
		c := e.connection(id)
		if c == nil || !c.SMS.Enabled {
			return sms.Route{}, false
		}
		zc, kc := e.clients.zendeskOf(c), e.clients.klaviyoOf(c)
		if zc == nil || kc == nil {
			e.warnOnce("sms/"+id, "connection has SMS on, but the sms role cannot reach its Zendesk or Klaviyo account: its texts are dead letters", "connection", id)
			return sms.Route{}, false
		}
		return sms.Route{Connection: c, Desk: zc, Directory: zc, Klaviyo: kc}, true
	}}
}

// sidebarAccounts are the sidebar's accounts: each connection's Zendesk and Klaviyo, as far
// as it has them.
func (e *env) sidebarAccounts() *zenklav.Routes[sidebar.Account] {
	return &zenklav.Routes[sidebar.Account]{Find: func(id string) (sidebar.Account, bool) {
		c := e.conns.ByID(id) // the sidebar's session named it: it is known here
		if c == nil {
			return sidebar.Account{}, false
		}
		var a sidebar.Account
		if zc := e.clients.zendeskOf(c); zc != nil {
			a.Zendesk = zc
		}
		if kc := e.clients.klaviyoOf(c); kc != nil {
			a.Klaviyo = kc
		}
		return a, true
	}}
}
