package main

import (
	"context"
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
	em, err := e.newEmitter(ctx, emitterWiring{topic: schemas.TicketEventsTopic, group: emitter.Group, states: e.store})
	if err != nil {
		return nil, err
	}
	b.klaviyo = fmt.Sprintf("%s, %d connection(s) with a Klaviyo account", e.cfg.KlaviyoBaseURL, countConnections(e.conns, (*zenklav.Connection).HasKlaviyo))
	return em.Run, nil
}

// emitterWiring is where an emitter reads, and what it counts Open_tickets from (nil: it
// keeps no Open_tickets).
type emitterWiring struct {
	topic, group string
	states       zenklav.TicketStore
	lanes        kafka.LaneConfig
}

// newEmitter makes an emitter of the connections as they stand while it runs.
func (e *env) newEmitter(ctx context.Context, w emitterWiring) (*emitter.Emitter, error) {
	logger := e.logger.With("role", "emitter")
	if _, err := e.apis(ctx, "emitter role"); err != nil {
		return nil, err
	}
	consumer, err := kafka.NewConsumer(logger, kafka.ConsumerConfig{
		Brokers: e.brokers, Topic: w.topic, Group: w.group,
		SessionTimeout: emitter.SessionTimeout, RebalanceTimeout: emitter.RebalanceTimeout,
		DeadLetters: e.deadLetters("emitter", schemas.TicketEventsDLQTopic), Health: e.health,
	})
	if err != nil {
		return nil, err
	}
	return emitter.New(logger, e.registry, emitter.Config{
		Routes: e.emitterRoutes(), States: w.states, RetryFor: e.cfg.EmitterRetryFor, BackfillAfter: e.cfg.EmitterBackfillAfter, Lanes: w.lanes,
		Health: e.health, Status: e.connStatus(),
	}, consumer)
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

// countConnections counts the connections for which has holds, as they stand now.
func countConnections(conns *zenklav.Connections, has func(*zenklav.Connection) bool) int {
	n := 0
	for _, c := range conns.All() {
		if has(&c) {
			n++
		}
	}
	return n
}
