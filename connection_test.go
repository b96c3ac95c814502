package zenklav_test

import (
	"strings"
	"testing"

	"github.com/zenklav/zenklav"
)

// TestValidateSMS: a connection that turns SMS on has what the inbound webhook and the
// replies need, and its settings are named in every complaint, never its secrets.
func TestValidateSMS(t *testing.T) {
	const klaviyoSecret = "acme-klaviyo-secret-0001"
	valid := func() zenklav.Connection {
		return zenklav.Connection{
			ID: "acme",
			Zendesk: zenklav.ZendeskSettings{
				Subdomain: "acme", WebhookSecrets: []zenklav.Secret{"acme-signing-secret-0001"}, Brands: zenklav.Brands{All: true},
			},
			Klaviyo: zenklav.KlaviyoSettings{PrivateKey: "pk_acme_0123456789", WebhookSecrets: []zenklav.Secret{klaviyoSecret}},
			SMS:     zenklav.SMSSettings{Enabled: true, Brand: 360001, InboundTopics: []string{"event:klaviyo.conversation_message_received"}},
		}
	}
	if c := valid(); c.Validate() != nil {
		t.Fatalf("valid connection refused: %v", c.Validate())
	}
	for _, tc := range []struct {
		name   string
		change func(*zenklav.Connection)
		want   string // "" = valid
	}{
		{"SMS off needs no Klaviyo webhook", func(c *zenklav.Connection) { c.SMS = zenklav.SMSSettings{}; c.Klaviyo.WebhookSecrets = nil }, ""},
		{"two secrets while rotating", func(c *zenklav.Connection) {
			c.Klaviyo.WebhookSecrets = append(c.Klaviyo.WebhookSecrets, "acme-klaviyo-secret-0000")
		}, ""},
		{"SMS without a webhook secret", func(c *zenklav.Connection) { c.Klaviyo.WebhookSecrets = nil }, "sms.enabled needs klaviyo.webhook_secrets"},
		{"SMS without a private key", func(c *zenklav.Connection) { c.Klaviyo.PrivateKey = "" }, "sms.enabled needs klaviyo.private_key"},
		{"short secret", func(c *zenklav.Connection) { c.Klaviyo.WebhookSecrets = []zenklav.Secret{"short"} }, "klaviyo.webhook_secrets[0] is shorter than 16"},
		{"short secret with SMS off", func(c *zenklav.Connection) {
			c.SMS.Enabled = false
			c.Klaviyo.WebhookSecrets = []zenklav.Secret{"short"}
		}, "klaviyo.webhook_secrets[0] is shorter than 16"},
		{"three secrets", func(c *zenklav.Connection) {
			c.Klaviyo.WebhookSecrets = []zenklav.Secret{klaviyoSecret, klaviyoSecret, klaviyoSecret}
		}, "at most two"},
		{"empty inbound topic", func(c *zenklav.Connection) { c.SMS.InboundTopics = []string{""} }, "sms.inbound_topics[0]"},
		{"inbound topic with a space", func(c *zenklav.Connection) { c.SMS.InboundTopics = []string{"event:klaviyo.inbound sms"} }, "sms.inbound_topics[0]"},
		{"inbound topic too long", func(c *zenklav.Connection) { c.SMS.InboundTopics = []string{strings.Repeat("e", 257)} }, "sms.inbound_topics[0]"},
		{"sent SMS as inbound", func(c *zenklav.Connection) { c.SMS.InboundTopics = []string{zenklav.TopicSentSMS} }, "not as their text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error = %v, want one saying %q", err, tc.want)
			case err != nil && (strings.Contains(err.Error(), klaviyoSecret) || strings.Contains(err.Error(), "pk_acme")):
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
}
