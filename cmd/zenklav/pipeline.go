package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
	"golang.org/x/sync/errgroup"
)

// deadLetters is the dead-letter writer of a role, to topic (the dlq of its row).
func (e *env) deadLetters(role, topic string) *kafka.DeadLetters {
	return &kafka.DeadLetters{Publisher: e.kafkaProducer(), Topic: topic, Role: role, Logger: e.logger.With("role", role)}
}

// buildEmitter makes the emitter role: the emitter of ticket-events.v1, whose full lanes park
// their events in ticket-events.parked.v1 and go on, and the emitter of that topic. A
// connection whose Klaviyo keeps failing so holds up no other's metrics, only its own.
func buildEmitter(ctx context.Context, e *env, _ *backend.Options, b *banner) (runner, error) {
	parking := e.deadLetters("emitter", schemas.TicketEventsParkedTopic)
	parking.Parking = true
	live, err := e.newEmitter(ctx, emitterWiring{topic: schemas.TicketEventsTopic, group: emitter.Group, states: e.store,
		lanes: kafka.LaneConfig{Overflow: parking}, stage: "main"})
	if err != nil {
		return nil, err
	}
	parked, err := e.newEmitter(ctx, emitterWiring{topic: schemas.TicketEventsParkedTopic, group: emitter.ParkedGroup, states: e.store, stage: "parked"})
	if err != nil {
		return nil, err
	}
	b.klaviyo = fmt.Sprintf("%s, %d connection(s) with a Klaviyo account", e.cfg.KlaviyoBaseURL, countConnections(e.conns, (*zenklav.Connection).HasKlaviyo))
	return func(ctx context.Context) error {
		var g errgroup.Group
		g.Go(func() error { return live.Run(ctx) })
		g.Go(func() error { return parked.Run(ctx) })
		g.Go(func() error { e.shareKlaviyoLimits(ctx); return nil })
		return g.Wait()
	}, nil
}

// replicasLook is how often an emitter counts the emitter's replicas: often, as until both
// count a replica that joined, the two together may send twice an account's limits (a
// rebalance lasts until the old members have finished their batches under way, a few
// seconds); a count is two small requests to Kafka.
const replicasLook = 2 * time.Second

// shareKlaviyoLimits keeps every Klaviyo account's rate limits whole across the emitter's
// replicas, with no server of their own: each replica counts the members of the emitter's
// group and keeps 1/n of each account's limits. The tickets of a connection are spread over
// the topic's partitions, and so over the replicas, so each delivers about 1/n of each
// account's metrics: the shares fit the load. Until it first counts, and when Kafka cannot
// say, a replica keeps the share it has (the whole limit at start: the 429s are then waited
// out, as before).
func (e *env) shareKlaviyoLimits(ctx context.Context) {
	shared := 1
	t := time.NewTicker(replicasLook)
	defer t.Stop()
	for {
		n, err := kafka.GroupMembers(ctx, e.brokers, emitter.Group)
		switch {
		case err != nil:
			e.logger.Debug("counting the emitter's replicas failed", "err", err)
		case n >= 1 && n != shared:
			shared = n
			e.clients.shareLimits(n)
			e.logger.Info("emitter replicas counted: each keeps its share of every Klaviyo account's rate limits", "replicas", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// emitterWiring is where an emitter reads, and what it counts Open_tickets from (nil: it
// keeps no Open_tickets).
type emitterWiring struct {
	topic, group string
	states       zenklav.TicketStore
	lanes        kafka.LaneConfig
	// stage labels the emitter's metrics when a process runs several ("main", "parked").
	stage string
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
	var reg prometheus.Registerer = e.registry
	if w.stage != "" {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"stage": w.stage}, reg)
	}
	return emitter.New(logger, reg, emitter.Config{
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
