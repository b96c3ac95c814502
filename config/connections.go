package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// Connections is the connections file: each joins one Zendesk account to one Klaviyo account.
type Connections struct {
	Connections []Connection `json:"connections"`

	bySubdomain map[string][]*Connection
	byApp       map[appKey]*Connection
}

// Connection joins one Zendesk account with one Klaviyo account and its SMS settings.
type Connection struct {
	ID      string  `json:"id"`
	Zendesk Zendesk `json:"zendesk"`
	Klaviyo Klaviyo `json:"klaviyo"`
	SMS     SMS     `json:"sms"`
}

// Zendesk is a connection's Zendesk side.
type Zendesk struct {
	Subdomain string `json:"subdomain"`
	Email     string `json:"email"`
	APIToken  Secret `json:"api_token"`
	// WebhookSecrets are the signing secrets a webhook may be signed with: one, or two while
	// rotating.
	WebhookSecrets []Secret `json:"webhook_secrets"`
	Brands         Brands   `json:"brands"`
	// App is the installation of the sidebar app; nil when the account does not use it.
	App *ZendeskApp `json:"app,omitempty"`
}

// Klaviyo is a connection's Klaviyo side.
type Klaviyo struct {
	PrivateKey     Secret   `json:"private_key"`
	WebhookSecrets []Secret `json:"webhook_secrets,omitempty"`
}

// SMS holds a connection's SMS conversation settings.
type SMS struct {
	Enabled bool `json:"enabled"`
}

// Brands is the brand filter: all brands of the account, or the listed brand ids.
type Brands struct {
	All bool
	IDs []int64
}

// UnmarshalJSON reads "all" or a list of brand ids.
func (b *Brands) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		if s != "all" {
			return fmt.Errorf("brands must be \"all\" or a list of brand ids, not %q", s)
		}
		*b = Brands{All: true}
		return nil
	}
	var ids []int64
	if err := json.Unmarshal(data, &ids); err != nil {
		return fmt.Errorf("brands must be \"all\" or a list of brand ids")
	}
	*b = Brands{IDs: ids}
	return nil
}

// MarshalJSON writes the filter as it is read.
func (b Brands) MarshalJSON() ([]byte, error) {
	if b.All {
		return []byte(`"all"`), nil
	}
	return json.Marshal(b.IDs)
}

// Includes reports whether the connection syncs brand id.
func (b Brands) Includes(id int64) bool {
	if b.All {
		return true
	}
	for _, x := range b.IDs {
		if x == id {
			return true
		}
	}
	return false
}

// LoadConnections reads and validates a connections file, JSON or YAML (by extension .yaml
// or .yml).
func LoadConnections(path string) (*Connections, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read connections file: %w", err)
	}
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
		if data, err = yaml.YAMLToJSON(data); err != nil {
			return nil, fmt.Errorf("connections file %s: %w", path, err)
		}
	}
	c, err := ParseConnections(data)
	if err != nil {
		return nil, fmt.Errorf("connections file %s: %w", path, err)
	}
	return c, nil
}

// ParseConnections decodes and validates a JSON connections document. Unknown keys are errors,
// so a misspelt setting is caught at start rather than silently ignored.
func ParseConnections(data []byte) (*Connections, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Connections
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.index(); err != nil {
		return nil, err
	}
	return &c, nil
}

// NewConnections validates and indexes connections built in code (sandbox mode, tests).
func NewConnections(conns ...Connection) (*Connections, error) {
	c := &Connections{Connections: conns}
	return c, c.index()
}

var (
	idPattern        = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	subdomainPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

func (c *Connections) index() error {
	if len(c.Connections) == 0 {
		return errors.New("no connections: add at least one under \"connections\"")
	}
	c.bySubdomain = make(map[string][]*Connection, len(c.Connections))
	c.byApp = map[appKey]*Connection{}
	ids := map[string]bool{}
	var errs []error
	for i := range c.Connections {
		conn := &c.Connections[i]
		if err := conn.validate(); err != nil {
			errs = append(errs, fmt.Errorf("connections[%d] (%q): %w", i, conn.ID, err))
			continue
		}
		if ids[conn.ID] {
			errs = append(errs, fmt.Errorf("connections[%d]: id %q is used twice", i, conn.ID))
		}
		ids[conn.ID] = true
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

func (c *Connection) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !idPattern.MatchString(c.ID) {
		bad("id must be 1-63 lowercase letters, digits, - or _")
	}
	z := c.Zendesk
	if !subdomainPattern.MatchString(z.Subdomain) {
		bad("zendesk.subdomain %q is not a Zendesk subdomain (the acme of acme.zendesk.com)", z.Subdomain)
	}
	if z.APIToken != "" && !strings.Contains(z.Email, "@") {
		bad("zendesk.email must be the agent email that owns zendesk.api_token")
	}
	if n := len(z.WebhookSecrets); n < 1 || n > 2 {
		bad("zendesk.webhook_secrets must hold one signing secret, or two while rotating (has %d)", n)
	}
	for i, s := range z.WebhookSecrets {
		if len(s) < 16 {
			bad("zendesk.webhook_secrets[%d] is shorter than 16 characters: use the secret Zendesk shows for the webhook", i)
		}
	}
	if !z.Brands.All && len(z.Brands.IDs) == 0 {
		bad("zendesk.brands must be \"all\" or a non-empty list of brand ids")
	}
	if z.App != nil {
		if err := z.App.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if k := c.Klaviyo.PrivateKey; k != "" && !strings.HasPrefix(string(k), "pk_") {
		bad("klaviyo.private_key must be a private API key (pk_…)")
	}
	if len(c.Klaviyo.WebhookSecrets) > 2 {
		bad("klaviyo.webhook_secrets holds at most two secrets")
	}
	return errors.Join(errs...)
}

// ByID returns the connection with the given id, or nil.
func (c *Connections) ByID(id string) *Connection {
	for i := range c.Connections {
		if c.Connections[i].ID == id {
			return &c.Connections[i]
		}
	}
	return nil
}

// BySubdomain returns the connections of a Zendesk subdomain: one, or one per brand.
func (c *Connections) BySubdomain(subdomain string) []*Connection {
	return c.bySubdomain[subdomain]
}

// ForBrand picks, among the connections of one subdomain, the one a ticket of brand belongs
// to: the only one, or the one that syncs the brand; nil when several share the subdomain
// and none syncs it (or the brand is not known).
func ForBrand(conns []*Connection, brand int64) *Connection {
	if len(conns) == 1 {
		return conns[0] // it keeps every brand's tickets for analytics; the emitter filters
	}
	for _, conn := range conns {
		if conn.Zendesk.Brands.Includes(brand) {
			return conn
		}
	}
	return nil
}

// WebhookSecrets returns the signing secrets of the connections of one subdomain, revealed:
// Zendesk signs a webhook once, whichever brand's connection its ticket belongs to.
func WebhookSecrets(conns []*Connection) []string {
	var out []string
	for _, conn := range conns {
		out = append(out, conn.WebhookSecrets()...)
	}
	return out
}

// WebhookSecrets returns the connection's active Zendesk signing secrets, revealed.
func (c *Connection) WebhookSecrets() []string {
	out := make([]string, len(c.Zendesk.WebhookSecrets))
	for i, s := range c.Zendesk.WebhookSecrets {
		out[i] = s.Reveal()
	}
	return out
}
