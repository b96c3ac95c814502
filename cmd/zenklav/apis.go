package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
// Klaviyo client per account, since its rate limits are the account's whichever connections
// and parts share it, and one Zendesk client per connection. A client is made again only when
// what it is made from changes (a new key, another subdomain), so its limits and caches live
// as long as the account does.
type apiClients struct {
	e       *env
	mu      sync.Mutex
	klaviyo map[string]*klaviyo.Client // by account: its private key's digest
	zendesk map[string]zendeskClient   // by connection id
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
	e.clients = &apiClients{e: e, klaviyo: map[string]*klaviyo.Client{}, zendesk: map[string]zendeskClient{}}
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
// client cannot be made (said in the log).
func (a *apiClients) klaviyoOf(c *zenklav.Connection) *klaviyo.Client {
	key := c.Klaviyo.PrivateKey
	if key == "" {
		return nil
	}
	account := digest(key.Reveal())
	a.mu.Lock()
	defer a.mu.Unlock()
	if kc := a.klaviyo[account]; kc != nil {
		return kc
	}
	kc, err := klaviyo.NewClient(a.e.logger, klaviyo.ClientConfig{BaseURL: a.e.cfg.KlaviyoBaseURL, PrivateKey: key.Reveal()})
	if err != nil {
		a.e.logger.Error("cannot make the connection's Klaviyo client", "connection", c.ID, "err", err)
		return nil
	}
	a.klaviyo[account] = kc
	return kc
}

// zendeskOf is the client of the connection's Zendesk account; nil when it has no API
// credentials, or its client cannot be made (said in the log).
func (a *apiClients) zendeskOf(c *zenklav.Connection) *zendesk.Client {
	z := c.Zendesk
	if z.APIToken == "" {
		return nil
	}
	from := digest(z.Subdomain, z.Email, z.APIToken.Reveal())
	a.mu.Lock()
	defer a.mu.Unlock()
	if zc, ok := a.zendesk[c.ID]; ok && zc.from == from {
		return zc.client
	}
	zc, err := a.e.zendeskClient(*c, 0)
	if err != nil {
		a.e.logger.Error("cannot make the connection's Zendesk client", "connection", c.ID, "err", err)
		return nil
	}
	a.zendesk[c.ID] = zendeskClient{from: from, client: zc}
	return zc
}

// zendeskClient is a client of the connection's Zendesk account; timeout 0 is the client's
// default.
func (e *env) zendeskClient(c zenklav.Connection, timeout time.Duration) (*zendesk.Client, error) {
	return zendesk.NewClient(e.logger, zendesk.ClientConfig{
		BaseURL: e.cfg.ZendeskURL(c.Zendesk.Subdomain),
		Email:   c.Zendesk.Email, APIToken: c.Zendesk.APIToken.Reveal(), Timeout: timeout,
	})
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
