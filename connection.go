package zenklav

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Connection joins one Zendesk account (or some of its brands) with one Klaviyo account and
// its SMS settings. Its ID names it everywhere: in webhook URLs, in Kafka keys, in the ticket
// store and in report tokens (whose wire formats call it the tenant).
type Connection struct {
	ID      string          `json:"id"`
	Zendesk ZendeskSettings `json:"zendesk"`
	Klaviyo KlaviyoSettings `json:"klaviyo"`
	SMS     SMSSettings     `json:"sms"`
	// Made is what zenklav created in the accounts when it set the connection up: what a
	// second setup updates, and a disconnect removes.
	Made Made `json:"made,omitzero"`
}

// ZendeskSettings is a connection's Zendesk side.
type ZendeskSettings struct {
	Subdomain string `json:"subdomain"`
	Email     string `json:"email"`
	APIToken  Secret `json:"api_token"`
	// OAuth is the grant of "Connect with Zendesk", used instead of Email and APIToken.
	OAuth *OAuthToken `json:"oauth,omitempty"`
	// WebhookSecrets are the signing secrets a webhook may be signed with: one, or two while
	// rotating.
	WebhookSecrets []Secret `json:"webhook_secrets"`
	Brands         Brands   `json:"brands"`
	// App is the installation of the sidebar app; nil when the account does not use it.
	App *ZendeskApp `json:"app,omitempty"`
}

// KlaviyoSettings is a connection's Klaviyo side.
type KlaviyoSettings struct {
	PrivateKey Secret `json:"private_key"`
	// OAuth is the grant of "Connect with Klaviyo", used instead of PrivateKey.
	OAuth          *OAuthToken `json:"oauth,omitempty"`
	WebhookSecrets []Secret    `json:"webhook_secrets,omitempty"`
}

// SMSSettings holds a connection's SMS conversation settings (sms.go has the rules).
type SMSSettings struct {
	Enabled bool `json:"enabled"`
	// Brand is the Zendesk brand of the tickets opened from SMS; 0 is the account's default.
	Brand int64 `json:"brand,omitempty"`
	// Keywords are the texts that open no ticket, and the exceptions that do; nil lists take
	// the defaults (DefaultIgnoreKeywords, DefaultCreateKeywords).
	Keywords SMSKeywords `json:"keywords"`
	// InboundTopics are further Klaviyo webhook topic ids read as an inbound customer message,
	// besides TopicInboundSMS: the topic Klaviyo gives an approved partner may differ.
	InboundTopics []string `json:"inbound_topics,omitempty"`
	// CloseSolved asks setup for the guide's automation: SMS tickets solved for 24 hours
	// are closed (so a later text opens a follow-up).
	CloseSolved bool `json:"close_solved,omitempty"`
	// View asks setup for a Zendesk view of the SMS tickets not closed.
	View bool `json:"view,omitempty"`
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

// Includes reports whether the filter takes brand id.
func (b Brands) Includes(id int64) bool {
	return b.All || slices.Contains(b.IDs, id)
}

// Syncs reports whether the connection sends the tickets of brand to Klaviyo. A connection
// alone on its Zendesk account still keeps every brand's tickets for the reports (see
// Connections.Owner); only the brands it syncs reach Klaviyo.
func (c *Connection) Syncs(brand int64) bool { return c.Zendesk.Brands.Includes(brand) }

// HasKlaviyo says whether the connection reaches a Klaviyo account (a private key or a
// grant).
func (c *Connection) HasKlaviyo() bool { return c.Klaviyo.PrivateKey != "" || c.Klaviyo.OAuth != nil }

// HasZendeskAPI says whether the connection may call Zendesk's API (an API token with its
// agent's email, or a grant); webhooks in need neither.
func (c *Connection) HasZendeskAPI() bool { return c.Zendesk.APIToken != "" || c.Zendesk.OAuth != nil }

// WebhookSecrets returns the connection's active Zendesk signing secrets, revealed.
func (c *Connection) WebhookSecrets() []string {
	out := make([]string, len(c.Zendesk.WebhookSecrets))
	for i, s := range c.Zendesk.WebhookSecrets {
		out[i] = s.Reveal()
	}
	return out
}

var (
	idPattern        = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	subdomainPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

// Validate says everything that is wrong with the connection, naming each setting. Its
// messages never quote a secret.
func (c *Connection) Validate() error {
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
	if z.APIToken != "" && z.OAuth != nil {
		bad("zendesk.api_token and zendesk.oauth are two ways to reach Zendesk: give one")
	}
	if z.OAuth != nil && z.OAuth.AccessToken == "" {
		bad("zendesk.oauth has no access_token: connect with Zendesk again")
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
	if c.Klaviyo.PrivateKey != "" && c.Klaviyo.OAuth != nil {
		bad("klaviyo.private_key and klaviyo.oauth are two ways to reach Klaviyo: give one")
	}
	if c.Klaviyo.OAuth != nil && c.Klaviyo.OAuth.AccessToken == "" {
		bad("klaviyo.oauth has no access_token: connect with Klaviyo again")
	}
	if len(c.Klaviyo.WebhookSecrets) > 2 {
		bad("klaviyo.webhook_secrets holds at most two secrets")
	}
	for i, s := range c.Klaviyo.WebhookSecrets {
		// The Webhooks API asks for a secret_key of 16 characters or more; shorter is guessable.
		if len(s) < 16 {
			bad("klaviyo.webhook_secrets[%d] is shorter than 16 characters: use the secret_key the Klaviyo webhook was created with", i)
		}
	}
	if c.SMS.Enabled {
		if len(c.Klaviyo.WebhookSecrets) == 0 {
			bad("sms.enabled needs klaviyo.webhook_secrets: the secret_key of the Klaviyo system webhook that posts to /webhooks/klaviyo/%s", c.ID)
		}
		if !c.HasKlaviyo() {
			bad("sms.enabled needs klaviyo.private_key or klaviyo.oauth: replies are sent through Klaviyo's API")
		}
	}
	for i, t := range c.SMS.InboundTopics {
		switch {
		case t == "" || len(t) > 256 || strings.ContainsFunc(t, unicode.IsSpace):
			bad("sms.inbound_topics[%d] must be a Klaviyo webhook topic id (event:…), up to 256 characters without spaces", i)
		case t == TopicSentSMS || t == TopicFailedToDeliverSMS:
			bad("sms.inbound_topics[%d] is %s, which zenklav reads as what Klaviyo sent the customer, not as their text", i, t)
		}
	}
	return errors.Join(errs...)
}

// EachSecret calls f with each of the connection's secrets and its field's name
// ("zendesk.api_token", "klaviyo.webhook_secrets[0]", …): the one list of what is sealed at
// rest and masked on show.
func (c *Connection) EachSecret(f func(field string, s *Secret)) {
	f("zendesk.api_token", &c.Zendesk.APIToken)
	if t := c.Zendesk.OAuth; t != nil {
		f("zendesk.oauth.access_token", &t.AccessToken)
		f("zendesk.oauth.refresh_token", &t.RefreshToken)
	}
	for i := range c.Zendesk.WebhookSecrets {
		f(fmt.Sprintf("zendesk.webhook_secrets[%d]", i), &c.Zendesk.WebhookSecrets[i])
	}
	f("klaviyo.private_key", &c.Klaviyo.PrivateKey)
	if t := c.Klaviyo.OAuth; t != nil {
		f("klaviyo.oauth.access_token", &t.AccessToken)
		f("klaviyo.oauth.refresh_token", &t.RefreshToken)
	}
	for i := range c.Klaviyo.WebhookSecrets {
		f(fmt.Sprintf("klaviyo.webhook_secrets[%d]", i), &c.Klaviyo.WebhookSecrets[i])
	}
}
