// Package resilience holds the tests of zenklav under failure, run as `make test` runs every
// other test: zenklav's roles as child processes against a Kafka broker (or a cluster of
// three) and a ClickHouse server of each test's own (internal/testenv), which the tests kill
// with SIGKILL, freeze with SIGSTOP, stop and start again on the same data, while signed
// Zendesk webhooks keep arriving and the Zendesk and Klaviyo simulators play the APIs.
//
// What they hold zenklav to (issue 13): every webhook is answered, 2xx or 503 with
// Retry-After, never with a refused or reset connection; /readyz says the truth within 2 s
// of an outage and within 5 s of the recovery; the consumers wait out an outage and resume
// by themselves; a role killed and started again is back at work within 12 s; and in the end
// every accepted webhook is once in ClickHouse and each ticket is one Opened Ticket and one
// Resolved Ticket in Klaviyo.
//
// The package has no code of its own: only this comment and its tests.
package resilience
