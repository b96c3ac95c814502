package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// RunLanes follows its group's generations itself, where Run leaves them to kafka-go's group
// reader. The reader rejoins the group as soon as a rebalance starts, so the new owner of a
// partition may start on it while the old one still handles what it had fetched; lanes hold
// many such messages, and a role whose writes cannot be made idempotent (the sms role's
// Zendesk comments and Klaviyo messages) then writes them twice. A member here stops first:
// when its generation ends it stops fetching, drops what its lanes have queued, lets the
// batches under way finish (ShutdownGrace), commits what is done in that generation, and
// only then lets kafka-go rejoin the group, which gives the partitions to their new owners
// once every member has rejoined. That is the eager rebalance protocol as Kafka's own
// consumer keeps it (onPartitionsRevoked).

// group is the consumer's group, joined on the first Next.
func (c *Consumer) group() (*kafkago.ConsumerGroup, error) {
	return kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
		ID:                c.cfg.Group,
		Brokers:           c.cfg.Brokers,
		Topics:            []string{c.cfg.Topic},
		HeartbeatInterval: c.rc.HeartbeatInterval,
		SessionTimeout:    c.rc.SessionTimeout,
		RebalanceTimeout:  c.rc.RebalanceTimeout,
		JoinGroupBackoff:  c.rc.JoinGroupBackoff,
		StartOffset:       c.rc.StartOffset,
		ErrorLogger:       c.rc.ErrorLogger,
	})
}

// nextGeneration waits for the group's next generation, waiting out Kafka's outages: each
// failed join is said (once, as the part's state) and tried again after kafka-go's backoff.
// It fails only when ctx ends.
func (c *Consumer) nextGeneration(ctx context.Context, group *kafkago.ConsumerGroup) (*kafkago.Generation, error) {
	for {
		gen, err := group.Next(ctx)
		if err == nil {
			c.kafka.Working()
			return gen, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, kafkago.ErrGroupClosed) {
			return nil, err
		}
		c.kafka.Waiting(fmt.Errorf("join group %s: %w", c.cfg.Group, err))
	}
}

// member is one generation of a consumer in its group: the partitions it was given, read
// from the offsets the group committed, and commits made in that generation (Kafka refuses
// them once the group moved on, so a member that lost a partition cannot move it back).
type member struct {
	c       *Consumer
	gen     *kafkago.Generation
	msgs    chan Message
	readers sync.WaitGroup
}

// join starts reading the generation's partitions until ctx ends.
func (c *Consumer) join(ctx context.Context, gen *kafkago.Generation) *member {
	m := &member{c: c, gen: gen, msgs: make(chan Message)}
	for _, a := range gen.Assignments[c.cfg.Topic] {
		m.readers.Go(func() { m.read(ctx, a) })
	}
	return m
}

// read hands the partition's messages to fetch, from the group's offset on. kafka-go's
// partition reader retries a failing broker by itself; a whole outage ends the generation
// (its heartbeats fail), and with it ctx.
func (m *member) read(ctx context.Context, a kafkago.PartitionAssignment) {
	rc := m.c.rc
	rc.GroupID, rc.Partition = "", a.ID
	rd := kafkago.NewReader(rc)
	defer rd.Close()
	if err := rd.SetOffset(a.Offset); err != nil {
		m.c.logger.Error("cannot read a partition from its committed offset", "partition", a.ID, "offset", a.Offset, "err", err)
		return
	}
	for {
		msg, err := rd.FetchMessage(ctx)
		if err != nil {
			return // ctx ended
		}
		select {
		case m.msgs <- msg:
		case <-ctx.Done():
			return
		}
	}
}

// fetch returns the generation's next message; it fails only when ctx ends.
func (m *member) fetch(ctx context.Context) (Message, error) {
	select {
	case msg := <-m.msgs:
		return msg, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// leave waits for the partition readers, whose ctx has ended.
func (m *member) leave() { m.readers.Wait() }

// commit commits msgs, each the last done message of its partition, in the generation,
// retrying a few times on a context that survives shutdown; it reports whether they were
// committed. A failure only means the messages are handled again by the next owner.
func (m *member) commit(ctx context.Context, msgs []Message) bool {
	if len(msgs) == 0 {
		return true
	}
	next := map[int]int64{}
	for _, msg := range msgs {
		next[msg.Partition] = msg.Offset + 1 // Kafka's committed offset is the next to read
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	p := m.c.retry
	p.MaxAttempts = 5
	err := p.DoReport(cctx, func(context.Context) error {
		err := m.gen.CommitOffsets(map[string]map[int]int64{m.c.cfg.Topic: next})
		if movedOn(err) {
			return err // no retry makes this generation's commit count
		}
		return unavailable(err)
	}, func(int, error) {})
	if movedOn(err) {
		m.c.logger.Info("the group moved on before the last offsets of a generation were committed; the next owner handles those messages again", "err", err)
		return false
	}
	if err != nil {
		m.c.kafka.Waiting(fmt.Errorf("commit offsets of %s: %w", m.c.cfg.Topic, err))
		return false
	}
	m.c.kafka.Working()
	return true
}

// movedOn says whether a commit failed because the group is in another generation, or on
// its way to one.
func movedOn(err error) bool {
	return errors.Is(err, kafkago.IllegalGeneration) || errors.Is(err, kafkago.UnknownMemberId) || errors.Is(err, kafkago.RebalanceInProgress)
}
