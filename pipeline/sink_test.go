package pipeline_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/pipeline"
	"github.com/zenklav/zenklav/schemas"
)

func openStore(t *testing.T) *analytics.Store {
	t.Helper()
	db := fmt.Sprintf("sink_%d_%d", time.Now().UnixNano(), rand.N(1000))
	s, err := analytics.Open(context.Background(), discard, analytics.Config{Addr: testenv.ClickHouse(t), Database: db, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		s.Close()
	})
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func ticketEvent(i int) []byte {
	at := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	e := schemas.TicketEvent{
		EventID: fmt.Sprintf("zd:ev-%d", i), Tenant: "acme", Account: schemas.Account{Subdomain: "acme"},
		Type: schemas.TicketCreated, Source: schemas.SourceEvent, OccurredAt: at, ReceivedAt: at,
		Ticket: schemas.Ticket{ID: int64(1 + i%50), Status: schemas.StatusNew},
	}
	b, err := e.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// crashingStore inserts half of its nth batch into ClickHouse and then "dies": the sink's
// context is cancelled before the insert returns, as when the process is killed mid-batch.
type crashingStore struct {
	pipeline.EventStore
	mu      sync.Mutex
	calls   int
	crashAt int
	kill    context.CancelFunc
}

func (c *crashingStore) InsertTicketEvents(ctx context.Context, events []schemas.TicketEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.calls < c.crashAt {
		return c.EventStore.InsertTicketEvents(ctx, events)
	}
	if err := c.EventStore.InsertTicketEvents(ctx, events[:len(events)/2]); err != nil {
		return err
	}
	c.kill()
	return zenklav.Errorf(zenklav.EUNAVAILABLE, "killed mid-batch")
}

// TestSinkCountsExactly drives the sink on the real Kafka and ClickHouse through a redelivered
// event, a poison message and a crash mid-batch, and checks that the report count is exact.
func TestSinkCountsExactly(t *testing.T) {
	brokers, topic := newTopic(t, 4)
	_, dlq := newTopic(t, 1)
	store := openStore(t)
	p := pipeline.NewProducer(discard, brokers)
	defer p.Close()

	const n = 3000
	var msgs []pipeline.Message
	for i := range n {
		msgs = append(msgs, pipeline.Message{Topic: topic, Key: fmt.Appendf(nil, "acme/%d", 1+i%50), Value: ticketEvent(i)})
	}
	// Zendesk delivers 100 events twice.
	for i := range 100 {
		msgs = append(msgs, pipeline.Message{Topic: topic, Key: fmt.Appendf(nil, "acme/%d", 1+i%50), Value: ticketEvent(i * 7)})
	}
	msgs = append(msgs, pipeline.Message{Topic: topic, Key: []byte("acme/1"), Value: []byte(`{"not":"an event"`)})
	if err := p.Publish(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}

	cfg := pipeline.ConsumerConfig{Brokers: brokers, Topic: topic, Group: "sink-test", BatchSize: 500, BatchWait: 100 * time.Millisecond}
	runSink := func(s pipeline.EventStore, ctx context.Context) {
		t.Helper()
		sink, err := pipeline.NewSink(discard, prometheus.NewRegistry(), cfg, s, dlqPublisher{p, dlq})
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Run(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// First sink: killed in the middle of its third batch.
	ctx, kill := context.WithTimeout(context.Background(), 60*time.Second)
	crash := &crashingStore{EventStore: store, crashAt: 3, kill: kill}
	runSink(crash, ctx)
	kill()
	if crash.calls < 3 {
		t.Fatalf("the first sink stopped after %d inserts, before the crash", crash.calls)
	}

	// Second sink: runs until the group has committed everything.
	ctx, stop := context.WithTimeout(context.Background(), 90*time.Second)
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); runSink(store, ctx) }()
	waitCommitted(t, ctx, brokers, topic, "sink-test", len(msgs))
	stop()
	<-done

	rows, err := store.CountTicketEventRows(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.CountTicketEvents(context.Background(), analytics.EventFilter{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if rows <= n {
		t.Errorf("only %d rows stored: the test did not exercise duplicates", rows)
	}
	if got != n {
		t.Errorf("report counts %d events, want exactly %d (%d rows stored)", got, n, rows)
	}
	if dead := messageCount(t, brokers, dlq); dead != 1 {
		t.Errorf("%d messages in the dead-letter topic, want the 1 poison message", dead)
	}
}

// dlqPublisher sends the sink's dead letters to the test's own DLQ topic.
type dlqPublisher struct {
	p     *pipeline.Producer
	topic string
}

func (d dlqPublisher) Publish(ctx context.Context, msgs ...pipeline.Message) error {
	for i := range msgs {
		msgs[i].Topic = d.topic
	}
	return d.p.Publish(ctx, msgs...)
}

// waitCommitted waits until the group's committed offsets cover total messages.
func waitCommitted(t *testing.T, ctx context.Context, brokers []string, topic, group string, total int) {
	t.Helper()
	for {
		p, err := pipeline.GroupProgress(ctx, brokers, topic, group)
		if err == nil && p.Committed >= int64(total) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group %s committed %d of %d messages before the deadline (%v)", group, p.Committed, total, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func messageCount(t *testing.T, brokers []string, topic string) int {
	t.Helper()
	p, err := pipeline.GroupProgress(context.Background(), brokers, topic, "")
	if err != nil {
		t.Fatal(err)
	}
	return int(p.End)
}
