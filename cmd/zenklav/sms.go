package main

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sms"
)

// buildSMS makes the sms role: a lane per connection with SMS on, one batch at a time each, so
// one customer's texts are handled in order; the conversations in their compacted topic.
func buildSMS(ctx context.Context, e *env, _ *backend.Options, b *banner) (runner, error) {
	logger := e.logger.With("role", "sms")
	clients, err := e.apis(ctx, "sms role")
	if err != nil {
		return nil, err
	}
	routes := map[string]sms.Route{}
	for _, c := range e.conns.All() {
		if !c.SMS.Enabled {
			continue
		}
		zc, kc := clients.zendesk[c.ID], clients.klaviyo[c.ID]
		if zc == nil || kc == nil {
			return nil, fmt.Errorf("connection %q has SMS on: the sms role needs its zendesk.email and zendesk.api_token and its klaviyo.private_key", c.ID)
		}
		routes[c.ID] = sms.Route{Connection: e.conns.ByID(c.ID), Desk: zc, Directory: zc, Klaviyo: kc}
	}
	table, err := kafka.OpenTable(ctx, logger, e.brokers, sms.ConversationsTopic, e.kafkaProducer())
	if err != nil {
		return nil, err
	}
	e.onClose(table.Close)
	dlq := e.deadLetters("sms", schemas.SMSEventsDLQTopic)
	h, err := sms.New(logger, e.registry, sms.Config{Routes: routes, Store: table}, dlq)
	if err != nil {
		return nil, err
	}
	replies, err := sms.NewReplies(logger, e.registry, sms.Config{Routes: routes, Store: table}, dlq)
	if err != nil {
		return nil, err
	}
	texts, err := kafka.NewConsumer(logger, kafka.ConsumerConfig{
		Brokers: e.brokers, Topic: sms.EventsTopic, Group: sms.Group, DeadLetters: dlq, Health: e.health,
	})
	if err != nil {
		return nil, err
	}
	agents, err := kafka.NewConsumer(logger, kafka.ConsumerConfig{
		Brokers: e.brokers, Topic: schemas.TicketEventsTopic, Group: sms.ReplyGroup, DeadLetters: dlq, Health: e.health,
	})
	if err != nil {
		return nil, err
	}
	b.sms = fmt.Sprintf("%d connection(s) with SMS conversations", len(routes))
	// One batch of a connection at a time: its customers' texts, and its agents' replies, stay
	// in order.
	lanes := kafka.LaneConfig{Workers: 1}
	return func(ctx context.Context) error {
		var g errgroup.Group
		g.Go(func() error { return kafka.RunLanes(ctx, texts, lanes, h) })
		g.Go(func() error { return kafka.RunLanes(ctx, agents, lanes, replies) })
		return g.Wait()
	}, nil
}
