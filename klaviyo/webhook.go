package klaviyo

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"github.com/zenklav/zenklav"
)

// Headers of a Klaviyo system webhook.
const (
	HeaderSignature = "Klaviyo-Signature"
	HeaderTimestamp = "Klaviyo-Timestamp"
	HeaderWebhookID = "Klaviyo-Webhook-Id"
)

// MaxWebhookBody is the largest system webhook body zenklav reads. Klaviyo batches events
// into one request; an SMS event is a few KB, so 1 MiB holds hundreds of them.
const MaxWebhookBody = 1 << 20

// MaxClockSkew is how far a webhook's Klaviyo-Timestamp may be from our clock. Klaviyo
// documents no window; the timestamp is signed, so the window bounds how long a captured
// request can be replayed.
const MaxClockSkew = 5 * time.Minute

// Sign returns Klaviyo's system webhook signature: the lowercase hex of
// HMAC-SHA256(secret, body followed by the Klaviyo-Timestamp value as sent). Unlike
// Zendesk's, the timestamp comes after the body.
func Sign(secret, timestamp string, body []byte) string {
	return hex.EncodeToString(webhookMAC(secret, timestamp, body))
}

// webhookMAC is the HMAC-SHA256 that Sign encodes and Signature.Verify compares.
func webhookMAC(secret, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	m.Write([]byte(timestamp))
	return m.Sum(nil)
}

// Timestamp formats t as Klaviyo does in Klaviyo-Timestamp: an HTTP date (IMF-fixdate).
func Timestamp(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// Signature is a system webhook's headers once they passed the checks that need no body.
type Signature struct {
	mac       []byte // the decoded HMAC-SHA256
	timestamp string // as sent: it is part of what was signed
	webhookID string
}

// ParseSignature checks all that can be checked of a system webhook's headers before its
// body is read, so that a request that cannot be Klaviyo's costs no more than its headers:
// the three are present, the signature is the hex of an HMAC-SHA256 (64 digits), and the
// timestamp is an HTTP date within MaxClockSkew of now. Its errors are EUNAUTHORIZED.
func ParseSignature(h http.Header, now time.Time) (Signature, error) {
	signature, timestamp, id := h.Get(HeaderSignature), h.Get(HeaderTimestamp), h.Get(HeaderWebhookID)
	if signature == "" || timestamp == "" || id == "" {
		return Signature{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "missing %s, %s or %s header", HeaderSignature, HeaderTimestamp, HeaderWebhookID)
	}
	sum, err := hex.DecodeString(signature)
	if err != nil || len(sum) != sha256.Size {
		return Signature{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "%s is not the hex of an HMAC-SHA256", HeaderSignature)
	}
	ts, err := time.Parse(http.TimeFormat, timestamp)
	if err != nil {
		return Signature{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "%s is not an HTTP date (Thu, 04 Jan 2024 18:05:25 GMT)", HeaderTimestamp)
	}
	if d := now.Sub(ts); d > MaxClockSkew || d < -MaxClockSkew {
		return Signature{}, zenklav.Errorf(zenklav.EUNAUTHORIZED, "%s is more than %s away from now", HeaderTimestamp, MaxClockSkew)
	}
	return Signature{mac: sum, timestamp: timestamp, webhookID: id}, nil
}

// Verify checks that one of secrets (two while rotating) signed body with the signature's
// timestamp.
func (s Signature) Verify(secrets []string, body []byte) error {
	for _, secret := range secrets {
		if hmac.Equal(s.mac, webhookMAC(secret, s.timestamp, body)) {
			return nil
		}
	}
	return zenklav.Errorf(zenklav.EUNAUTHORIZED, "webhook signature does not match")
}

// WebhookID is the Klaviyo-Webhook-Id header, which the body's meta must repeat.
func (s Signature) WebhookID() string { return s.webhookID }

// Webhook is the body of a system webhook: the events of one or more topics, batched.
type Webhook struct {
	Data []WebhookItem `json:"data"`
	Meta WebhookMeta   `json:"meta"`
}

// WebhookItem is one event of a webhook. Payload has the shape of a Get Event answer's
// data; it is read by the adapter of its topic (inbound.go).
type WebhookItem struct {
	ExternalID string          `json:"external_id"` // Klaviyo's event id: the same on redelivery
	Topic      string          `json:"topic"`
	Payload    json.RawMessage `json:"payload"`
}

// WebhookMeta is what a webhook says of itself. Only the webhook id is read: the account id
// and timestamp have no use that the signature does not already serve.
type WebhookMeta struct {
	WebhookID string `json:"klaviyo_webhook_id"`
}

// ParseWebhook decodes a system webhook's body, whose signature was verified, and checks that
// its meta names the webhook of the Klaviyo-Webhook-Id header: Klaviyo says a mismatch may be
// malicious and must not be processed. Its errors: EINVALID for a body that is not a
// webhook's JSON, EUNAUTHORIZED for a webhook id that does not match.
func ParseWebhook(body []byte, webhookID string) (*Webhook, error) {
	var w struct {
		Data *[]WebhookItem `json:"data"`
		Meta *WebhookMeta   `json:"meta"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, zenklav.Errorf(zenklav.EINVALID, "malformed JSON: %v", err)
	}
	if w.Data == nil || w.Meta == nil {
		return nil, zenklav.Errorf(zenklav.EINVALID, "not a Klaviyo system webhook: no \"data\" list or no \"meta\"")
	}
	if w.Meta.WebhookID != webhookID {
		return nil, zenklav.Errorf(zenklav.EUNAUTHORIZED, "meta.klaviyo_webhook_id does not match the %s header", HeaderWebhookID)
	}
	return &Webhook{Data: *w.Data, Meta: *w.Meta}, nil
}
