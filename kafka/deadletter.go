package kafka

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/retry"
)

// Headers of a dead letter. The value and key are the original message's, untouched, so
// `zenklav replay` can send it back as it was.
const (
	HeaderRole        = "zenklav-role"         // the role that gave up: sink, emitter
	HeaderReason      = "zenklav-reason"       // why, in words
	HeaderResponse    = "zenklav-response"     // the failing answer (status and body), when there was one
	HeaderOrigin      = "zenklav-origin"       // topic/partition/offset it was read from
	HeaderOriginTopic = "zenklav-origin-topic" // the topic replay sends it back to
	HeaderFailedAt    = "zenklav-failed-at"    // RFC 3339 UTC
	// HeaderConnection names the connection, when the message could be decoded. Its wire
	// name is the connection's older name, kept so that dead letters written before read
	// the same.
	HeaderConnection = "zenklav-tenant"
	HeaderTicket     = "zenklav-ticket" // the ticket id, when the message could be decoded
)

// DeadLetter is one message a role gave up on, with the reason.
type DeadLetter struct {
	Msg      Message
	Reason   string
	Response string            // optional: the failing answer
	Extra    map[string]string // optional further headers (connection, ticket)
}

// DeadLetters writes one role's dead letters to its dead-letter topic. A dead letter is
// never dropped on the way: Write retries until Kafka takes it or ctx ends.
type DeadLetters struct {
	Publisher zenklav.Publisher
	Topic     string // the role's dead-letter topic, e.g. ticket-events.dlq.v1
	Role      string // the role that gives up, in HeaderRole
	Logger    *slog.Logger
	// Written, when set, counts the dead letters written.
	Written prometheus.Counter
	// Parking marks a topic of parked messages (LaneConfig.Overflow) rather than of ones
	// given up on: each is logged at debug, since the lanes say once when they park.
	Parking bool
}

// deadLetterRetry is how long Write waits between tries: Kafka being down is the only reason
// a dead letter is not written, and it comes back.
var deadLetterRetry = retry.Policy{Initial: 200 * time.Millisecond, Max: 30 * time.Second}

// Write publishes letters, retrying until Kafka acknowledges them or ctx ends (then it
// returns ctx's error and the letters' messages must not be committed).
func (d *DeadLetters) Write(ctx context.Context, letters ...DeadLetter) error {
	if len(letters) == 0 {
		return nil
	}
	now := time.Now()
	out := make([]zenklav.Message, len(letters))
	for i, l := range letters {
		out[i] = d.message(l, now)
		level := slog.LevelWarn
		if d.Parking {
			level = slog.LevelDebug
		}
		d.Logger.Log(context.Background(), level, "dead-lettering message", "role", d.Role, "topic", d.Topic, "at", Position(l.Msg), "reason", l.Reason)
	}
	err := deadLetterRetry.Do(ctx, d.Logger, "publish dead letters failed, retrying", func(ctx context.Context) error {
		return unavailable(d.Publisher.Publish(ctx, out...))
	}, "role", d.Role)
	if err != nil {
		return err
	}
	if d.Written != nil {
		d.Written.Add(float64(len(letters)))
	}
	return nil
}

// message is l as it is written to the dead-letter topic.
func (d *DeadLetters) message(l DeadLetter, now time.Time) zenklav.Message {
	h := map[string]string{
		HeaderRole:        d.Role,
		HeaderReason:      l.Reason,
		HeaderOrigin:      Position(l.Msg),
		HeaderOriginTopic: l.Msg.Topic,
		HeaderFailedAt:    now.UTC().Format(time.RFC3339),
	}
	if l.Response != "" {
		h[HeaderResponse] = l.Response
	}
	for k, v := range l.Extra {
		h[k] = v
	}
	return zenklav.Message{Topic: d.Topic, Key: l.Msg.Key, Value: l.Msg.Value, Headers: h}
}

// unavailable makes any failure to reach Kafka a transient one: whatever the broker said, the
// write or commit may succeed later.
func unavailable(err error) error {
	if err == nil || zenklav.Transient(err) {
		return err
	}
	return zenklav.Wrap(zenklav.EUNAVAILABLE, err, "kafka")
}
