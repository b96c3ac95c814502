package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
)

// deadLetters is the dead-letter writer of a role, to topic (the dlq of its row).
func (e *env) deadLetters(role, topic string) *kafka.DeadLetters {
	return &kafka.DeadLetters{Publisher: e.kafkaProducer(), Topic: topic, Role: role, Logger: e.logger.With("role", role)}
}

// buildEmitter makes the emitter role.
func buildEmitter(ctx context.Context, e *env, _ *backend.Options, b *banner) (runner, error) {
	em, routes, err := e.newEmitter(ctx, emitterWiring{topic: schemas.TicketEventsTopic, group: emitter.Group, states: e.store})
	if err != nil {
		return nil, err
	}
	b.klaviyo = fmt.Sprintf("%s, %d connection(s) with a Klaviyo account", e.cfg.KlaviyoBaseURL, routes)
	return em.Run, nil
}

// emitterWiring is where an emitter reads, and what it counts Open_tickets from (nil: it
// keeps no Open_tickets).
type emitterWiring struct {
	topic, group string
	states       zenklav.TicketStore
	lanes        kafka.LaneConfig
}

// newEmitter makes an emitter with a route for every connection with a Klaviyo account, and
// says how many routes it has.
func (e *env) newEmitter(ctx context.Context, w emitterWiring) (*emitter.Emitter, int, error) {
	logger := e.logger.With("role", "emitter")
	clients, err := e.apis(ctx, "emitter role")
	if err != nil {
		return nil, 0, err
	}
	routes := map[string]emitter.Route{}
	var errs []error
	for _, c := range e.conns.All() {
		kc := clients.klaviyo[c.ID]
		if kc == nil {
			logger.Warn("connection has no Klaviyo private key: its tickets reach ClickHouse but not Klaviyo", "connection", c.ID)
			continue
		}
		zc := clients.zendesk[c.ID]
		if zc == nil {
			errs = append(errs, fmt.Errorf("connection %q: the emitter needs zendesk.email and zendesk.api_token to look up assignees, groups and requesters", c.ID))
			continue
		}
		routes[c.ID] = emitter.Route{Connection: e.conns.ByID(c.ID), Klaviyo: kc, Directory: zc}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, 0, err
	}
	consumer, err := kafka.NewConsumer(logger, kafka.ConsumerConfig{
		Brokers: e.brokers, Topic: w.topic, Group: w.group,
		SessionTimeout: emitter.SessionTimeout, RebalanceTimeout: emitter.RebalanceTimeout,
		DeadLetters: e.deadLetters("emitter", schemas.TicketEventsDLQTopic), Health: e.health,
	})
	if err != nil {
		return nil, 0, err
	}
	em, err := emitter.New(logger, e.registry, emitter.Config{
		Routes: routes, States: w.states, RetryFor: e.cfg.EmitterRetryFor, BackfillAfter: e.cfg.EmitterBackfillAfter, Lanes: w.lanes,
		Health: e.health,
	}, consumer)
	return em, len(routes), err
}

// buildSink makes the sink role.
func buildSink(_ context.Context, e *env, _ *backend.Options, _ *banner) (runner, error) {
	s, err := sink.New(e.logger.With("role", "sink"), e.registry, kafka.ConsumerConfig{
		Brokers: e.brokers, Topic: schemas.TicketEventsTopic, Group: sink.Group,
		BatchSize: e.cfg.SinkBatchSize, BatchWait: e.cfg.SinkBatchWait, DeadLetters: e.deadLetters("sink", schemas.TicketEventsDLQTopic),
		SessionTimeout: sink.SessionTimeout, RebalanceTimeout: sink.RebalanceTimeout, Health: e.health,
	}, e.store)
	if err != nil {
		return nil, err
	}
	return s.Run, nil
}
