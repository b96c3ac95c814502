package zendesk

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"time"
)

// Webhook signature headers, as Zendesk sends them.
const (
	HeaderSignature          = "X-Zendesk-Webhook-Signature"
	HeaderSignatureTimestamp = "X-Zendesk-Webhook-Signature-Timestamp"
	HeaderWebhookID          = "X-Zendesk-Webhook-Id"
)

// TimestampFormat is the layout of HeaderSignatureTimestamp (ISO-8601, UTC, seconds).
const TimestampFormat = "2006-01-02T15:04:05Z"

// Sign returns Zendesk's webhook signature: base64(HMAC-SHA256(secret, timestamp + body)).
// The key is the secret string's bytes, not its base64 decoding.
func Sign(secret, timestamp string, body []byte) string {
	return base64.StdEncoding.EncodeToString(mac(secret, timestamp, body))
}

// mac is the HMAC-SHA256 that Sign encodes and Signature.Verify compares.
func mac(secret, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write(body)
	return m.Sum(nil)
}

// Timestamp formats t as Zendesk does in HeaderSignatureTimestamp.
func Timestamp(t time.Time) string { return t.UTC().Format(TimestampFormat) }
