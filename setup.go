package zenklav

import (
	"context"
	"time"
)

// This file is the domain of connecting accounts (the /admin wizard and `zenklav setup`):
// OAuth grants, and the objects zenklav makes in the accounts it connects, remembered so
// that a disconnect removes exactly those.

// OAuthToken is what an OAuth grant gave: an access token, the refresh token that renews it,
// and when the access token expires (zero: it does not).
type OAuthToken struct {
	AccessToken  Secret    `json:"access_token"`
	RefreshToken Secret    `json:"refresh_token,omitempty"`
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	Scope        string    `json:"scope,omitempty"`
}

// ExpiresWithin says whether the access token expires within d of now (a token without an
// expiry never does).
func (t *OAuthToken) ExpiresWithin(now time.Time, d time.Duration) bool {
	return !t.ExpiresAt.IsZero() && now.Add(d).After(t.ExpiresAt)
}

// OAuthProvider is one vendor's authorization-code flow with PKCE (S256) for zenklav's
// OAuth client: zendesk.OAuth (the operator's global client, per subdomain) and klaviyo.OAuth.
// account is the Zendesk subdomain; Klaviyo ignores it.
type OAuthProvider interface {
	// AuthorizeURL is where the admin's browser goes to approve zenklav.
	AuthorizeURL(account, redirectURI, state, challenge string) string
	// Exchange trades the code the browser came back with for tokens.
	Exchange(ctx context.Context, account, code, verifier, redirectURI string) (OAuthToken, error)
	// Refresh renews the access token. Zendesk and Klaviyo may rotate the refresh token with
	// it: the one returned replaces the old.
	Refresh(ctx context.Context, account string, refresh Secret) (OAuthToken, error)
	// Revoke ends the grant (on disconnect). A grant already gone is not an error.
	Revoke(ctx context.Context, account string, t OAuthToken) error
}

// Made is what zenklav created in a connection's accounts when it was set up, by id: the
// objects a disconnect removes, and the ones a second setup updates instead of duplicating.
type Made struct {
	ZendeskWebhook    string `json:"zendesk_webhook,omitempty"`
	ZendeskAutomation int64  `json:"zendesk_automation,omitempty"`
	ZendeskView       int64  `json:"zendesk_view,omitempty"`
	KlaviyoWebhook    string `json:"klaviyo_webhook,omitempty"`
}

// Brand is a brand of a Zendesk account.
type Brand struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Default bool   `json:"default"`
	Active  bool   `json:"active"`
}

// ZendeskWebhook is the event-subscribed webhook zenklav makes in a Zendesk account: it
// POSTs JSON to Endpoint for each event type in Subscriptions.
type ZendeskWebhook struct {
	Name          string
	Endpoint      string
	Subscriptions []string // zen:event-type:…
}

// Condition is one condition of a Zendesk automation or view.
type Condition struct {
	Field    string `json:"field"`
	Operator string `json:"operator"`
	Value    string `json:"value"`
}

// Action is one action of a Zendesk automation.
type Action struct {
	Field string `json:"field"`
	Value string `json:"value"`
}

// ZendeskAutomation is an automation: when every condition holds, the actions run.
type ZendeskAutomation struct {
	Title      string
	Conditions []Condition // all must hold
	Actions    []Action
}

// ZendeskView is a view: the tickets for which every condition holds, with those columns.
type ZendeskView struct {
	Title      string
	Conditions []Condition // all must hold
	Columns    []string
}

// ZendeskAdmin is what setting up a connection reads, makes and removes in a Zendesk
// account (zendesk.Client). Each Ensure makes the object exist as given and is idempotent:
// it takes the object of id when that still exists, else one of the same name or title, and
// updates it only where it differs, else creates it. It returns the object's id and whether
// anything changed in Zendesk. A Delete of an object already gone is not an error.
type ZendeskAdmin interface {
	Brands(ctx context.Context) ([]Brand, error)
	EnsureWebhook(ctx context.Context, id string, w ZendeskWebhook) (string, bool, error)
	// WebhookSigningSecret reads the webhook's signing secret back
	// (GET /api/v2/webhooks/{id}/signing_secret).
	WebhookSigningSecret(ctx context.Context, id string) (Secret, error)
	DeleteWebhook(ctx context.Context, id string) error
	EnsureAutomation(ctx context.Context, id int64, a ZendeskAutomation) (int64, bool, error)
	DeleteAutomation(ctx context.Context, id int64) error
	EnsureView(ctx context.Context, id int64, v ZendeskView) (int64, bool, error)
	DeleteView(ctx context.Context, id int64) error
}

// KlaviyoWebhook is the system webhook zenklav makes in a Klaviyo account for the SMS
// topics: Klaviyo signs each delivery with SecretKey, which zenklav chose.
type KlaviyoWebhook struct {
	Name        string
	EndpointURL string
	SecretKey   Secret
	Topics      []string // webhook-topic ids, event:klaviyo.…
}

// KlaviyoAdmin is what setting up a connection makes and removes in a Klaviyo account
// (klaviyo.Client), with the same idempotence as ZendeskAdmin.
type KlaviyoAdmin interface {
	EnsureWebhook(ctx context.Context, id string, w KlaviyoWebhook) (string, bool, error)
	DeleteWebhook(ctx context.Context, id string) error
}
