package pipeline

import (
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav/schemas"
)

// Headers of a dead letter. The value and key are the original message's, untouched, so
// `zenklav replay` can send it back as it was.
const (
	HeaderRole        = "zenklav-role"         // the role that gave up: sink, emitter
	HeaderReason      = "zenklav-reason"       // why, in words
	HeaderResponse    = "zenklav-response"     // the failing answer (status and body), when there was one
	HeaderOrigin      = "zenklav-origin"       // topic/partition/offset it was read from
	HeaderOriginTopic = "zenklav-origin-topic" // the topic replay sends it back to
	HeaderTenant      = "zenklav-tenant"       // the connection, when the message could be decoded
	HeaderTicket      = "zenklav-ticket"       // the ticket id, when the message could be decoded
	HeaderFailedAt    = "zenklav-failed-at"    // RFC 3339 UTC
)

// DeadLetter is one message a role gave up on, with the reason.
type DeadLetter struct {
	Msg      kafka.Message
	Role     string
	Reason   string
	Response string            // optional
	Extra    map[string]string // optional further headers (tenant, ticket)
}

// message is the dead letter as it is written to ticket-events.dlq.v1.
func (d DeadLetter) message(now time.Time) Message {
	h := map[string]string{
		HeaderRole:        d.Role,
		HeaderReason:      d.Reason,
		HeaderOrigin:      position(d.Msg),
		HeaderOriginTopic: d.Msg.Topic,
		HeaderFailedAt:    now.UTC().Format(time.RFC3339),
	}
	if d.Response != "" {
		h[HeaderResponse] = d.Response
	}
	for k, v := range d.Extra {
		h[k] = v
	}
	return Message{Topic: schemas.TicketEventsDLQTopic, Key: d.Msg.Key, Value: d.Msg.Value, Headers: h}
}
