package main

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/internal/retry"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sms"
)

// buildSMS makes the sms role: a lane per connection with SMS on, one batch at a time each, so
// one customer's texts are handled in order; the conversations in their compacted topic.
func buildSMS(ctx context.Context, e *env, _ *backend.Options, b *banner) (runner, error) {
	logger := e.logger.With("role", "sms")
	if _, err := e.apis(ctx, "sms role"); err != nil {
		return nil, err
	}
	routes := e.smsRoutes()
	table, err := kafka.OpenTable(ctx, logger, e.brokers, sms.ConversationsTopic, e.kafkaProducer())
	if err != nil {
		return nil, err
	}
	e.onClose(table.Close)
	dlq := e.deadLetters("sms", schemas.SMSEventsDLQTopic)
	h, err := sms.New(logger, e.registry, sms.Config{Routes: routes, Store: table, Status: e.connStatus()}, dlq)
	if err != nil {
		return nil, err
	}
	replies, err := sms.NewReplies(logger, e.registry, sms.Config{Routes: routes, Store: table, Status: e.connStatus()}, dlq)
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
	b.sms = fmt.Sprintf("%d connection(s) with SMS conversations", countConnections(e.conns, func(c *zenklav.Connection) bool { return c.SMS.Enabled }))
	// One batch of a connection at a time: its customers' texts, and its agents' replies, stay
	// in order.
	lanes := kafka.LaneConfig{Workers: 1}
	return func(ctx context.Context) error {
		started := time.Now()
		begin := func(ctx context.Context) error { return replies.Begin(ctx, started) }
		if err := (retry.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second}).Do(ctx, logger, "sms: reading when the role first ran failed, retrying", begin); err != nil {
			return err
		}
		var g errgroup.Group
		g.Go(func() error { return kafka.RunLanes(ctx, texts, lanes, h) })
		g.Go(func() error { return kafka.RunLanes(ctx, agents, lanes, replies) })
		return g.Wait()
	}, nil
}
