// Package schemas holds zenklav's wire contracts: the JSON Schemas of what it writes to Kafka
// (ticket_event.v1, sms_event.v1), their Go types and validation, and the ClickHouse
// migrations.
//
// Versioning rule: a change that only adds optional fields keeps the version (v1) and its
// topic; readers ignore fields they do not know. Anything else (a removed or renamed field, a
// changed type or meaning, a new required field) is a new schema version with its own topic
// (ticket-events.v2), and producers write both until every consumer has moved.
package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	gojson "github.com/goccy/go-json"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Topics that carry the contracts of this package.
const (
	TicketEventsTopic    = "ticket-events.v1"
	TicketEventsDLQTopic = "ticket-events.dlq.v1"
	// TicketEventsParkedTopic holds the ticket events of a connection whose emitter lane was
	// full (its Klaviyo failing or slow): parked there, they hold up no other connection.
	TicketEventsParkedTopic = "ticket-events.parked.v1"
	SMSEventsTopic          = "sms-events.v1"
	SMSEventsDLQTopic       = "sms-events.dlq.v1"
)

//go:embed *.v1.json
var schemaFiles embed.FS

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the numbered ClickHouse migrations (0001_name.sql, ...).
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	return sub
}

// The compiled contracts, each compiled once, when first used.
var (
	ticketEventSchema = sync.OnceValues(func() (*jsonschema.Schema, error) { return compile("ticket_event.v1.json") })
	smsEventSchema    = sync.OnceValues(func() (*jsonschema.Schema, error) { return compile("sms_event.v1.json") })
)

// compile compiles one embedded schema file, with its formats asserted (date-time).
func compile(name string) (*jsonschema.Schema, error) {
	raw, err := schemaFiles.ReadFile(name)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(name, doc); err != nil {
		return nil, err
	}
	return c.Compile(name)
}

// validate checks data against the contract that schema compiles, named name in errors.
func validate(schema func() (*jsonschema.Schema, error), name string, data []byte) error {
	s, err := schema()
	if err != nil {
		return fmt.Errorf("compile %s: %w", name, err)
	}
	// Every produced event passes through here, so decode with the faster decoder; numbers
	// become float64, which is exact for every id below 2^53 and still integral above it.
	var doc any
	if err := gojson.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("decode %s: %w", name, err)
	}
	if err := s.Validate(doc); err != nil {
		return fmt.Errorf("event does not match %s: %w", name, err)
	}
	return nil
}

// ValidateTicketEventJSON checks an encoded ticket event against ticket_event.v1.
func ValidateTicketEventJSON(data []byte) error {
	return validate(ticketEventSchema, "ticket_event.v1", data)
}

// Marshal encodes e and validates the result against ticket_event.v1, so nothing that breaks
// the contract is ever produced.
func (e *TicketEvent) Marshal() ([]byte, error) {
	data, err := gojson.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode ticket event: %w", err)
	}
	if err := ValidateTicketEventJSON(data); err != nil {
		return nil, err
	}
	return data, nil
}

// DecodeTicketEvent decodes a ticket_event.v1 message as a consumer reads it, and refuses one
// that lacks what every consumer needs of it. It does not validate against the schema: what
// zenklav produced was validated then, and decoding is the consumers' main cost.
func DecodeTicketEvent(data []byte, e *TicketEvent) error {
	if err := gojson.Unmarshal(data, e); err != nil {
		return fmt.Errorf("not a ticket_event.v1: %w", err)
	}
	if e.EventID == "" || e.Connection == "" || e.Ticket.ID <= 0 {
		return errors.New("ticket event lacks event_id, tenant or ticket.id")
	}
	return nil
}
