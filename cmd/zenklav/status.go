package main

import (
	"context"

	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/connstatus"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/ingest"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
	"github.com/zenklav/zenklav/sms"
)

// connStatus is the process's one connection-status recorder, made on first use: the roles
// tell it what they see of each connection (webhooks accepted, metrics delivered, texts and
// replies, failed calls), and its publisher shares that with every other process.
func (e *env) connStatus() *connstatus.Recorder {
	if e.status == nil {
		e.status = connstatus.NewRecorder(e.registry, nil)
	}
	return e.status
}

// lagGroups are the consumer groups whose lag the health report and the lag metric show.
var lagGroups = []connstatus.Group{
	{Name: emitter.Group, Topic: schemas.TicketEventsTopic, Group: emitter.Group},
	{Name: emitter.ParkedGroup, Topic: schemas.TicketEventsParkedTopic, Group: emitter.ParkedGroup},
	{Name: sink.Group, Topic: schemas.TicketEventsTopic, Group: sink.Group},
	{Name: sink.Group + sink.TicketRowsSuffix, Topic: schemas.TicketEventsTopic, Group: sink.Group + sink.TicketRowsSuffix},
	{Name: sms.Group, Topic: schemas.SMSEventsTopic, Group: sms.Group},
	{Name: sms.ReplyGroup, Topic: schemas.TicketEventsTopic, Group: sms.ReplyGroup},
}

// serveStatus shares what this process sees of the connections through the status topic
// (connstatus.Topic: made when missing, compacted), and gives the api role the health API.
// A process that sees nothing of the connections (the sink alone) does neither. role is what
// the process runs (all, api, …): part of its records' keys.
func (e *env) serveStatus(ctx context.Context, role string, opts *backend.Options, runners map[string]runner) error {
	if e.status == nil && opts.Ingest == nil {
		return nil
	}
	rec := e.connStatus()
	if err := kafka.EnsureTopics(ctx, e.brokers, e.topic(connstatus.Topic, true)); err != nil {
		return err
	}
	logger := e.logger.With("part", "connection-status")
	table, err := kafka.OpenTable(ctx, logger, e.brokers, connstatus.Topic, e.kafkaProducer())
	if err != nil {
		return err
	}
	e.onClose(table.Close)
	pub, err := connstatus.NewPublisher(connstatus.PublisherConfig{
		Recorder: rec, Table: table, Publisher: e.kafkaProducer(), Role: role, Logger: logger,
	})
	if err != nil {
		return err
	}
	runners["connection-status"] = pub.Run
	if opts.Ingest == nil {
		return nil
	}
	src := connstatus.NewKafkaSource(logger, e.brokers, lagGroups, schemas.TicketEventsDLQTopic, schemas.SMSEventsDLQTopic)
	// The api role exports the groups' lag, read as the health report reads it: a group's lag
	// is the same whoever reads it, and the api answers while a role whose lag grows is down.
	if err := e.registry.Register(connstatus.NewLagCollector(logger, src, nil)); err != nil {
		return err
	}
	opts.ConnectionHealth, err = e.connectionHealth(table, pub, opts.Ingest, src)
	return err
}

// connectionHealth is the api role's part: the webhooks tell the recorder, and with a
// signing key (admin tokens) the health API reads every process's records.
func (e *env) connectionHealth(table connstatus.Table, pub *connstatus.Publisher, in backend.Ingest, src *connstatus.KafkaSource) (*backend.ConnectionHealth, error) {
	h := &backend.ConnectionHealth{Status: e.status}
	if len(e.cfg.JWTKeys) == 0 {
		return h, nil // no admin token can be verified: no health API
	}
	// Tokens are checked against the connections as they stand at each request: an admin's
	// token for every connection ('*') covers one added since the process started.
	tokens, err := auth.NewReports(e.cfg.JWTKeys, e.conns, nil)
	if err != nil {
		return nil, err
	}
	reader, err := connstatus.NewReader(connstatus.ReaderConfig{Table: table, Local: pub, Connection: e.conns.ByID, Kafka: src})
	if err != nil {
		return nil, err
	}
	h.Auth, h.Reports = tokens, reader
	if svc, ok := in.(*ingest.Service); ok {
		h.Tester = svc
	}
	return h, nil
}
