package zenklav

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// Connections is the set of connections zenklav serves, indexed for the lookups every part
// makes: by id, by Zendesk account and brand, by sidebar app installation. Replace swaps the
// whole set at once (the connections store changed), so every holder sees the new set at its
// next lookup, and a lookup never sees half of a change.
type Connections struct {
	cur atomic.Pointer[connectionSet]
}

// connectionSet is one version of the connections, indexed; never changed once made.
type connectionSet struct {
	list        []Connection
	byID        map[string]*Connection
	bySubdomain map[string][]*Connection
	byApp       map[appKey]*Connection
}

// appKey identifies an app installation across connections.
type appKey struct {
	subdomain    string
	installation int64
}

// NewConnections validates conns as a whole and indexes them. Every error is named by the
// connection's place and id.
func NewConnections(conns ...Connection) (*Connections, error) {
	if len(conns) == 0 {
		return nil, errors.New("no connections: add at least one under \"connections\"")
	}
	c := &Connections{}
	return c, c.Replace(conns...)
}

// Replace makes conns the connections, if they are valid together; otherwise the set stays
// as it was and the error says why. An empty set is allowed here: a store may hold none yet.
func (c *Connections) Replace(conns ...Connection) error {
	set := &connectionSet{list: conns}
	if err := set.index(); err != nil {
		return err
	}
	c.cur.Store(set)
	return nil
}

func (c *Connections) set() *connectionSet {
	if s := c.cur.Load(); s != nil {
		return s
	}
	return &connectionSet{}
}

// All returns the connections, in the order they were given.
func (c *Connections) All() []Connection { return c.set().list }

// IDs returns the connections' ids, in order.
func (c *Connections) IDs() []string {
	list := c.set().list
	out := make([]string, len(list))
	for i, conn := range list {
		out[i] = conn.ID
	}
	return out
}

func (c *connectionSet) index() error {
	c.byID = make(map[string]*Connection, len(c.list))
	c.bySubdomain = make(map[string][]*Connection, len(c.list))
	c.byApp = map[appKey]*Connection{}
	var errs []error
	for i := range c.list {
		conn := &c.list[i]
		if err := conn.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("connections[%d] (%q): %w", i, conn.ID, err))
			continue
		}
		if c.byID[conn.ID] != nil {
			errs = append(errs, fmt.Errorf("connections[%d]: id %q is used twice", i, conn.ID))
		} else {
			c.byID[conn.ID] = conn
		}
		c.bySubdomain[conn.Zendesk.Subdomain] = append(c.bySubdomain[conn.Zendesk.Subdomain], conn)
		if app := conn.Zendesk.App; app != nil {
			// The installation decides whose data the sidebar shows, so it names one
			// connection: an account split by brand installs the app once per connection.
			k := appKey{conn.Zendesk.Subdomain, app.InstallationID}
			if prev, ok := c.byApp[k]; ok {
				errs = append(errs, fmt.Errorf("connections[%d] (%q): zendesk.app.installation_id %d is also %q's; an installation belongs to one connection", i, conn.ID, app.InstallationID, prev.ID))
				continue
			}
			c.byApp[k] = conn
		}
	}
	for sub, conns := range c.bySubdomain {
		if err := sharedSubdomain(conns); err != nil {
			errs = append(errs, fmt.Errorf("zendesk.subdomain %q: %w", sub, err))
		}
	}
	return errors.Join(errs...)
}

// sharedSubdomain checks the connections of one Zendesk account. Several may share it, one
// per brand (each Zendesk brand feeds one Klaviyo account), when every brand belongs to one
// of them at most: each lists its brands, and no brand is listed twice.
func sharedSubdomain(conns []*Connection) error {
	if len(conns) < 2 {
		return nil
	}
	owner := map[int64]string{}
	for _, conn := range conns {
		if conn.Zendesk.Brands.All {
			return fmt.Errorf("is shared by %d connections, so each must list its brands, but %q syncs all", len(conns), conn.ID)
		}
		for _, b := range conn.Zendesk.Brands.IDs {
			if prev, ok := owner[b]; ok && prev != conn.ID {
				return fmt.Errorf("brand %d is synced by both %q and %q; a brand feeds one Klaviyo account", b, prev, conn.ID)
			}
			owner[b] = conn.ID
		}
	}
	return nil
}

// ByID returns the connection with the given id, or nil.
func (c *Connections) ByID(id string) *Connection {
	return c.set().byID[id] // looked up per message by the roles: an index, not a scan
}

// BySubdomain returns the connections of a Zendesk subdomain: one, or one per brand.
func (c *Connections) BySubdomain(subdomain string) []*Connection {
	return c.set().bySubdomain[subdomain]
}

// Owner is the brand rule: it returns the connection a ticket of brand in the Zendesk account
// subdomain belongs to. That is the account's only connection, which keeps every brand's
// tickets for the reports (Syncs decides what reaches Klaviyo), or, when connections split
// the account by brand, the one that syncs the brand. It is nil when none does, or when the
// account is no connection's.
func (c *Connections) Owner(subdomain string, brand int64) *Connection {
	conns := c.set().bySubdomain[subdomain]
	if len(conns) == 1 {
		return conns[0]
	}
	for _, conn := range conns {
		if conn.Syncs(brand) {
			return conn
		}
	}
	return nil
}

// WebhookSecrets returns the signing secrets of the connections of one Zendesk subdomain,
// revealed: Zendesk signs a webhook once, whichever brand's connection its ticket is.
func (c *Connections) WebhookSecrets(subdomain string) []string {
	var out []string
	for _, conn := range c.set().bySubdomain[subdomain] {
		out = append(out, conn.WebhookSecrets()...)
	}
	return out
}

// ByAppInstallation returns the connection whose Zendesk app installation this is, or nil.
func (c *Connections) ByAppInstallation(subdomain string, installationID int64) *Connection {
	return c.set().byApp[appKey{subdomain, installationID}]
}
