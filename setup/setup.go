// Package setup connects accounts without editing files: what the /admin wizard and `zenklav
// setup` share. Finish makes what a connection needs in its Zendesk and Klaviyo accounts (the
// event webhook, the SMS automation and view, the Klaviyo system webhook), reads back the
// secrets they sign with, and stores the connection, sealed, in the connections store, where
// every running role picks it up. It records the ids of what it made, so a second Finish
// updates instead of duplicating, and Disconnect removes exactly those and revokes the grants.
package setup

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstore"
)

// Store is where connections are kept (connstore.Store).
type Store interface {
	Get(id string) (connstore.Entry, error)
	List(ctx context.Context) ([]connstore.Entry, error)
	Put(ctx context.Context, c zenklav.Connection, disabled bool) error
	Remove(ctx context.Context, id string) error
}

// Config is what the service is made from.
type Config struct {
	// PublicURL is where Zendesk and Klaviyo reach zenklav's webhooks (ZENKLAV_PUBLIC_URL).
	PublicURL string
	Store     Store
	// Zendesk and Klaviyo give the admin APIs of a connection's accounts, with its
	// credentials (an API token or key, or a grant).
	Zendesk func(c *zenklav.Connection) (zenklav.ZendeskAdmin, error)
	Klaviyo func(c *zenklav.Connection) (zenklav.KlaviyoAdmin, error)
	// ZendeskOAuth and KlaviyoOAuth revoke grants on disconnect; nil when zenklav has no
	// OAuth client for that vendor (then no connection has a grant from it).
	ZendeskOAuth, KlaviyoOAuth zenklav.OAuthProvider
	// Applied, when set, makes this process serve what the store now holds (it reads the
	// store to its end): Finish and Disconnect call it after writing, so the connection is in
	// force here when they return, and everywhere else within a second.
	Applied func(ctx context.Context) error
}

// Service sets connections up and takes them down.
type Service struct {
	cfg    Config
	logger *slog.Logger
}

// New returns the service.
func New(logger *slog.Logger, cfg Config) (*Service, error) {
	if !strings.HasPrefix(cfg.PublicURL, "https://") && !strings.HasPrefix(cfg.PublicURL, "http://") {
		return nil, zenklav.Errorf(zenklav.EINVALID,
			"ZENKLAV_PUBLIC_URL=%q: set it to the address Zendesk and Klaviyo reach zenklav's webhooks at (https://…)", cfg.PublicURL)
	}
	if cfg.Store == nil || cfg.Zendesk == nil || cfg.Klaviyo == nil {
		return nil, errors.New("setup: needs the connections store and the accounts' admin APIs")
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &Service{cfg: cfg, logger: logger}, nil
}

// Change is one thing Finish or Disconnect did, or found already done, in plain words for
// the admin.
type Change struct {
	What    string `json:"what"`    // "Zendesk webhook", …
	Action  string `json:"action"`  // created or updated, unchanged, removed, revoked, stored
	Changed bool   `json:"changed"` // whether anything was written
}

// WebhookSubscriptions are the Zendesk event types zenklav reads (docs/zendesk-webhooks.md).
var WebhookSubscriptions = []string{
	"zen:event-type:ticket.created", "zen:event-type:ticket.status_changed",
	"zen:event-type:ticket.comment_added", "zen:event-type:ticket.priority_changed",
	"zen:event-type:ticket.tags_changed", "zen:event-type:ticket.group_assignment_changed",
	"zen:event-type:ticket.agent_assignment_changed",
}

// KlaviyoTopics are the Klaviyo webhook topics of an SMS conversation: the customer's texts
// (the assumption of klaviyo/inbound.go) and what Klaviyo sent them.
var KlaviyoTopics = []string{zenklav.TopicInboundSMS, zenklav.TopicSentSMS, zenklav.TopicFailedToDeliverSMS}

// The objects' names: what a Finish without recorded ids finds them by.
const (
	webhookName     = "zenklav"
	automationTitle = "Close SMS tickets 24 hours after solved (zenklav)"
	viewTitle       = "Open SMS tickets (zenklav)"
)

// closeSolved is the guide's automation: status solved, 24 hours since solved, tag sms →
// closed (so a later text opens a follow-up).
var closeSolved = zenklav.ZendeskAutomation{
	Title: automationTitle,
	Conditions: []zenklav.Condition{
		{Field: "status", Operator: "is", Value: "solved"},
		{Field: "SOLVED", Operator: "is", Value: "24"},
		{Field: "current_tags", Operator: "includes", Value: zenklav.TagSMS},
	},
	Actions: []zenklav.Action{{Field: "status", Value: "closed"}},
}

// openSMS is the view of the SMS tickets not closed.
var openSMS = zenklav.ZendeskView{
	Title: viewTitle,
	Conditions: []zenklav.Condition{
		{Field: "status", Operator: "is_not", Value: "closed"},
		{Field: "current_tags", Operator: "includes", Value: zenklav.TagSMS},
	},
	Columns: []string{"status", "subject", "requester", "updated"},
}

// randomSecret is a webhook signing secret zenklav chooses (Klaviyo asks for 16 characters
// or more).
func randomSecret() zenklav.Secret {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return zenklav.Secret(base64.RawURLEncoding.EncodeToString(b[:]))
}

// Finish makes what c needs in its accounts and stores it, enabled. It is idempotent: run
// again on the same connection, it writes nothing, and says so.
func (s *Service) Finish(ctx context.Context, c zenklav.Connection) (zenklav.Connection, []Change, error) {
	if err := s.checkDraft(&c); err != nil {
		return c, nil, err
	}
	z, err := s.cfg.Zendesk(&c)
	if err != nil {
		return c, nil, err
	}
	var changes []Change
	add := func(what string, changed bool) {
		action := "unchanged"
		if changed {
			action = "created or updated"
		}
		changes = append(changes, Change{What: what, Action: action, Changed: changed})
	}
	if err := s.zendeskWebhook(ctx, z, &c, add); err != nil {
		return c, changes, err
	}
	if err := s.smsRules(ctx, z, &c, add, &changes); err != nil {
		return c, changes, err
	}
	if err := s.klaviyoWebhook(ctx, &c, add, &changes); err != nil {
		return c, changes, err
	}
	stored, err := s.store(ctx, c)
	if err == nil {
		err = s.applied(ctx)
	}
	if err != nil {
		return c, changes, err
	}
	changes = append(changes, Change{What: "connection " + c.ID, Action: map[bool]string{true: "stored", false: "unchanged"}[stored], Changed: stored})
	return c, changes, nil
}

// checkDraft refuses a connection that cannot be finished, before anything is made.
func (s *Service) checkDraft(c *zenklav.Connection) error {
	if !c.HasZendeskAPI() {
		return zenklav.Errorf(zenklav.EINVALID, "connection %q: connect with Zendesk (or give an API token) first", c.ID)
	}
	if c.SMS.Enabled && !c.HasKlaviyo() {
		return zenklav.Errorf(zenklav.EINVALID, "connection %q: SMS conversations need Klaviyo connected", c.ID)
	}
	probe := *c
	if len(probe.Zendesk.WebhookSecrets) == 0 {
		probe.Zendesk.WebhookSecrets = []zenklav.Secret{randomSecret()} // read back from Zendesk below
	}
	if probe.SMS.Enabled && len(probe.Klaviyo.WebhookSecrets) == 0 {
		probe.Klaviyo.WebhookSecrets = []zenklav.Secret{randomSecret()} // chosen below
	}
	if err := probe.Validate(); err != nil {
		return zenklav.Wrap(zenklav.EINVALID, err, "connection %q", c.ID)
	}
	return nil
}

// zendeskWebhook makes the event webhook of c's Zendesk account and takes its signing secret.
// The connections of one account (split by brand) share it: its URL names the subdomain.
func (s *Service) zendeskWebhook(ctx context.Context, z zenklav.ZendeskAdmin, c *zenklav.Connection, add func(string, bool)) error {
	id, changed, err := z.EnsureWebhook(ctx, c.Made.ZendeskWebhook, zenklav.ZendeskWebhook{
		Name: webhookName, Endpoint: s.cfg.PublicURL + "/webhooks/zendesk/" + c.Zendesk.Subdomain, Subscriptions: WebhookSubscriptions,
	})
	if err != nil {
		return fmt.Errorf("the Zendesk webhook: %w", err)
	}
	add("Zendesk webhook", changed)
	secret, err := z.WebhookSigningSecret(ctx, id)
	if err != nil {
		return fmt.Errorf("the Zendesk webhook's signing secret: %w", err)
	}
	c.Made.ZendeskWebhook = id
	c.Zendesk.WebhookSecrets = []zenklav.Secret{secret}
	return nil
}

// smsRules makes or removes the SMS automation and view, as c's SMS settings ask.
func (s *Service) smsRules(ctx context.Context, z zenklav.ZendeskAdmin, c *zenklav.Connection, add func(string, bool), changes *[]Change) error {
	if c.SMS.Enabled && c.SMS.CloseSolved {
		id, changed, err := z.EnsureAutomation(ctx, c.Made.ZendeskAutomation, closeSolved)
		if err != nil {
			return fmt.Errorf("the Zendesk automation: %w", err)
		}
		c.Made.ZendeskAutomation = id
		add("Zendesk automation “"+automationTitle+"”", changed)
	} else if id := c.Made.ZendeskAutomation; id != 0 {
		if err := z.DeleteAutomation(ctx, id); err != nil {
			return fmt.Errorf("removing the Zendesk automation: %w", err)
		}
		c.Made.ZendeskAutomation = 0
		*changes = append(*changes, Change{What: "Zendesk automation", Action: "removed", Changed: true})
	}
	if c.SMS.Enabled && c.SMS.View {
		id, changed, err := z.EnsureView(ctx, c.Made.ZendeskView, openSMS)
		if err != nil {
			return fmt.Errorf("the Zendesk view: %w", err)
		}
		c.Made.ZendeskView = id
		add("Zendesk view “"+viewTitle+"”", changed)
	} else if id := c.Made.ZendeskView; id != 0 {
		if err := z.DeleteView(ctx, id); err != nil {
			return fmt.Errorf("removing the Zendesk view: %w", err)
		}
		c.Made.ZendeskView = 0
		*changes = append(*changes, Change{What: "Zendesk view", Action: "removed", Changed: true})
	}
	return nil
}

// klaviyoWebhook makes the Klaviyo system webhook of the SMS topics when SMS is on, and
// removes it when SMS was turned off.
func (s *Service) klaviyoWebhook(ctx context.Context, c *zenklav.Connection, add func(string, bool), changes *[]Change) error {
	if !c.SMS.Enabled && c.Made.KlaviyoWebhook == "" {
		return nil
	}
	k, err := s.cfg.Klaviyo(c)
	if err != nil {
		return err
	}
	if !c.SMS.Enabled {
		if err := k.DeleteWebhook(ctx, c.Made.KlaviyoWebhook); err != nil {
			return fmt.Errorf("removing the Klaviyo webhook: %w", err)
		}
		c.Made.KlaviyoWebhook = ""
		*changes = append(*changes, Change{What: "Klaviyo webhook", Action: "removed", Changed: true})
		return nil
	}
	if len(c.Klaviyo.WebhookSecrets) == 0 {
		c.Klaviyo.WebhookSecrets = []zenklav.Secret{randomSecret()}
	}
	id, changed, err := k.EnsureWebhook(ctx, c.Made.KlaviyoWebhook, zenklav.KlaviyoWebhook{
		Name: webhookName + " " + c.ID, EndpointURL: s.cfg.PublicURL + "/webhooks/klaviyo/" + c.ID,
		SecretKey: c.Klaviyo.WebhookSecrets[0], Topics: append(slices.Clone(KlaviyoTopics), c.SMS.InboundTopics...),
	})
	if err != nil {
		return fmt.Errorf("the Klaviyo webhook: %w", err)
	}
	c.Made.KlaviyoWebhook = id
	add("Klaviyo webhook", changed)
	return nil
}

// store puts c in the store unless it holds c already (enabled); it says whether it wrote.
func (s *Service) store(ctx context.Context, c zenklav.Connection) (bool, error) {
	if e, err := s.cfg.Store.Get(c.ID); err == nil && !e.Disabled && connstore.Same(e.Connection, c) {
		return false, nil
	} else if err != nil && zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		return false, err
	}
	return true, s.cfg.Store.Put(ctx, c, false)
}

// applied makes this process serve what the store holds now.
func (s *Service) applied(ctx context.Context) error {
	if s.cfg.Applied == nil {
		return nil
	}
	return s.cfg.Applied(ctx)
}

// Disconnect removes what zenklav made for the connection (what the other connections of its
// Zendesk account still use stays), revokes its grants and removes it from the store. What
// is already gone is no error, so a Disconnect cut short is finished by running it again.
func (s *Service) Disconnect(ctx context.Context, id string) ([]Change, error) {
	e, err := s.cfg.Store.Get(id)
	if err != nil {
		return nil, err
	}
	c := e.Connection
	var changes []Change
	done := func(what, action string) {
		changes = append(changes, Change{What: what, Action: action, Changed: true})
	}
	if err := s.removeZendesk(ctx, &c, done); err != nil {
		return changes, err
	}
	if c.Made.KlaviyoWebhook != "" {
		k, err := s.cfg.Klaviyo(&c)
		if err != nil {
			return changes, err
		}
		if err := k.DeleteWebhook(ctx, c.Made.KlaviyoWebhook); err != nil {
			return changes, fmt.Errorf("removing the Klaviyo webhook: %w", err)
		}
		done("Klaviyo webhook", "removed")
	}
	if err := s.revoke(ctx, &c, done); err != nil {
		return changes, err
	}
	if err := s.cfg.Store.Remove(ctx, id); err != nil {
		return changes, err
	}
	done("connection "+id, "removed")
	if err := s.applied(ctx); err != nil {
		return changes, err
	}
	return changes, nil
}

// removeZendesk removes the Zendesk objects c recorded that no other connection records.
func (s *Service) removeZendesk(ctx context.Context, c *zenklav.Connection, done func(what, action string)) error {
	shared, err := s.sharedMade(ctx, c)
	if err != nil {
		return err
	}
	m := c.Made
	if m.ZendeskWebhook == "" && m.ZendeskAutomation == 0 && m.ZendeskView == 0 {
		return nil
	}
	z, err := s.cfg.Zendesk(c)
	if err != nil {
		return err
	}
	if m.ZendeskWebhook != "" && !shared.webhook[m.ZendeskWebhook] {
		if err := z.DeleteWebhook(ctx, m.ZendeskWebhook); err != nil {
			return fmt.Errorf("removing the Zendesk webhook: %w", err)
		}
		done("Zendesk webhook", "removed")
	}
	if m.ZendeskAutomation != 0 && !shared.rule[m.ZendeskAutomation] {
		if err := z.DeleteAutomation(ctx, m.ZendeskAutomation); err != nil {
			return fmt.Errorf("removing the Zendesk automation: %w", err)
		}
		done("Zendesk automation", "removed")
	}
	if m.ZendeskView != 0 && !shared.rule[m.ZendeskView] {
		if err := z.DeleteView(ctx, m.ZendeskView); err != nil {
			return fmt.Errorf("removing the Zendesk view: %w", err)
		}
		done("Zendesk view", "removed")
	}
	return nil
}

// shared are the Zendesk objects other connections recorded.
type shared struct {
	webhook map[string]bool
	rule    map[int64]bool // automations and views
}

// sharedMade finds what the other connections of c's Zendesk account recorded as made.
func (s *Service) sharedMade(ctx context.Context, c *zenklav.Connection) (shared, error) {
	out := shared{webhook: map[string]bool{}, rule: map[int64]bool{}}
	entries, err := s.cfg.Store.List(ctx)
	if err != nil {
		return out, err
	}
	for _, e := range entries {
		o := e.Connection
		if e.Err != nil || o.ID == c.ID || o.Zendesk.Subdomain != c.Zendesk.Subdomain {
			continue
		}
		out.webhook[o.Made.ZendeskWebhook] = true
		out.rule[o.Made.ZendeskAutomation] = true
		out.rule[o.Made.ZendeskView] = true
	}
	return out, nil
}

// revoke ends the connection's grants.
func (s *Service) revoke(ctx context.Context, c *zenklav.Connection, done func(what, action string)) error {
	if t := c.Zendesk.OAuth; t != nil && s.cfg.ZendeskOAuth != nil {
		if err := s.cfg.ZendeskOAuth.Revoke(ctx, c.Zendesk.Subdomain, *t); err != nil {
			return fmt.Errorf("revoking the Zendesk grant: %w", err)
		}
		done("Zendesk grant", "revoked")
	}
	if t := c.Klaviyo.OAuth; t != nil && s.cfg.KlaviyoOAuth != nil {
		if err := s.cfg.KlaviyoOAuth.Revoke(ctx, "", *t); err != nil {
			return fmt.Errorf("revoking the Klaviyo grant: %w", err)
		}
		done("Klaviyo grant", "revoked")
	}
	return nil
}

// Brands lists the brands of c's Zendesk account, for the choice of brands.
func (s *Service) Brands(ctx context.Context, c *zenklav.Connection) ([]zenklav.Brand, error) {
	z, err := s.cfg.Zendesk(c)
	if err != nil {
		return nil, err
	}
	return z.Brands(ctx)
}

// Connections lists the stored connections (one that cannot be read has its Err set).
func (s *Service) Connections(ctx context.Context) ([]connstore.Entry, error) {
	return s.cfg.Store.List(ctx)
}

// Connection returns the stored connection of id.
func (s *Service) Connection(id string) (connstore.Entry, error) { return s.cfg.Store.Get(id) }
