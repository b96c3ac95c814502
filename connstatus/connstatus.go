// Package connstatus tells an operator, per connection, whether the sync is healthy: the last
// Zendesk webhook received, the last metric delivered to Klaviyo, the consumer groups' lag,
// the dead letters, the errors of the last hour by kind (with what to do about them) and the
// SMS conversations' last message.
//
// Several processes each see part of this: the api role takes the webhooks, the emitter
// delivers, the sms role texts, and each may run as many replicas on many machines. No new
// server holds the whole: each process keeps what it saw in memory (Recorder), and publishes
// it, when it changed and at most every couple of seconds (Publisher), to the small compacted
// topic connection-status.v1, one record per connection, role and process instance — the way
// the connections store shares its state (a kafka.Table). Any api process reads the topic
// whole (Reader) and merges the records: the latest of each time, and the sum of the error
// counts of the last hour. The lag and the dead letters are read from Kafka itself when asked.
//
// A process that stops leaves its records behind; the next process to start takes over the
// times of records untouched for a day and deletes them, so the topic holds about one record
// per connection and live process.
package connstatus

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/zenklav/zenklav"
)

// Topic is the compacted topic of the processes' observations, keyed
// connection/role/instance.
const Topic = "connection-status.v1"

// The systems a connection's errors come from.
const (
	Zendesk = "zendesk"
	Klaviyo = "klaviyo"
)

// The directions of an SMS.
const (
	Inbound  = "in"  // a customer's text, on its ticket
	Outbound = "out" // an agent's reply, sent by Klaviyo
)

// The kinds of error, each after its system: "klaviyo_unauthorized", "zendesk_unavailable", ….
const (
	// Unauthorized: the API refused the connection's credentials (401 or 403): a key or
	// token revoked, or without the scope. Retrying cannot help; reconnecting does.
	Unauthorized = "unauthorized"
	// Throttled: the API's rate limit (429). The work waits its turn; nothing is lost.
	Throttled = "throttled"
	// Unavailable: the API did not answer, or failed (5xx, a timeout). zenklav retries.
	Unavailable = "unavailable"
	// Refused: the API refused the request itself (another 4xx): it is a dead letter.
	Refused = "refused"
)

// Kind sorts an error of a call to system into its kind, such as "klaviyo_unauthorized". It
// is "" for an error that is not the system's doing: zenklav's own rules refusing a message
// (no phone to text, a customer who is not subscribed) are outcomes, not failures.
func Kind(system string, err error) string {
	var kind string
	switch {
	case err == nil:
		return ""
	case zenklav.ErrorCode(err) == zenklav.EUNAUTHORIZED:
		kind = Unauthorized
	case zenklav.Throttled(err):
		kind = Throttled
	case zenklav.Transient(err):
		kind = Unavailable
	case zenklav.Response(err) != "":
		kind = Refused // the API answered, and said no
	default:
		return ""
	}
	return system + "_" + kind
}

// Advice is what the admin should do about the connection's errors of kind.
func Advice(connection, kind string) string {
	system, k, _ := strings.Cut(kind, "_")
	name := systemName(system)
	switch k {
	case Unauthorized:
		return "reconnect " + name
	case Throttled:
		return "nothing: " + name + "'s rate limit makes the work wait its turn, and nothing is lost"
	case Unavailable:
		return "nothing unless it lasts: zenklav retries until " + name + " answers; check " + name + "'s status page"
	case Refused:
		return fmt.Sprintf("read the dead letters (zenklav replay --dry-run --connection %s), fix what %s refused, then replay them", connection, name)
	}
	return ""
}

// systemName is how the admin knows the system.
func systemName(system string) string {
	switch system {
	case Zendesk:
		return "Zendesk"
	case Klaviyo:
		return "Klaviyo"
	}
	return system
}

// maxMessage bounds an error's message in the status: a summary, not a log.
const maxMessage = 200

// message is err in short, safe to show: the caller-safe message of zenklav's error (an
// operation's name, never a request's headers or a token) and the API's status, cut to
// maxMessage.
func message(err error) string {
	m := zenklav.ErrorMessage(err)
	var answer struct {
		Status int `json:"status"`
	}
	if json.Unmarshal([]byte(zenklav.Response(err)), &answer) == nil && answer.Status != 0 {
		m += fmt.Sprintf(" (HTTP %d)", answer.Status)
	}
	if r := []rune(m); len(r) > maxMessage {
		m = string(r[:maxMessage-1]) + "…"
	}
	return m
}
