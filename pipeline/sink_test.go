package pipeline_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/pipeline"
	"github.com/zenklav/zenklav/reports"
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
	folds   int
	crashAt int // the insert that dies (0: none)
	foldAt  int // the fold that dies (0: none; -1: every fold fails, as with ClickHouse down)
	kill    context.CancelFunc
}

func (c *crashingStore) InsertTicketEvents(ctx context.Context, events []schemas.TicketEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.crashAt == 0 || c.calls < c.crashAt {
		return c.EventStore.InsertTicketEvents(ctx, events)
	}
	if err := c.EventStore.InsertTicketEvents(ctx, events[:len(events)/2]); err != nil {
		return err
	}
	c.kill()
	return zenklav.Errorf(zenklav.EUNAVAILABLE, "killed mid-batch")
}

// SummarizeTicketEvents folds half of its nth batch and then "dies" likewise.
func (c *crashingStore) SummarizeTicketEvents(ctx context.Context, events []schemas.TicketEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.folds++
	if c.foldAt < 0 {
		return zenklav.Errorf(zenklav.EUNAVAILABLE, "ClickHouse is down")
	}
	if c.foldAt == 0 || c.folds < c.foldAt {
		return c.EventStore.SummarizeTicketEvents(ctx, events)
	}
	if err := c.EventStore.SummarizeTicketEvents(ctx, events[:len(events)/2]); err != nil {
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

	// First sink: killed in the middle of its third batch, its fold failing all along.
	ctx, kill := context.WithTimeout(context.Background(), 60*time.Second)
	crash := &crashingStore{EventStore: store, crashAt: 3, foldAt: -1, kill: kill}
	runSink(crash, ctx)
	kill()
	if crash.calls < 3 {
		t.Fatalf("the first sink stopped after %d inserts, before the crash", crash.calls)
	}
	// Second sink: its fold killed in the middle of its second batch.
	ctx, kill = context.WithTimeout(context.Background(), 60*time.Second)
	crash = &crashingStore{EventStore: store, foldAt: 2, kill: kill}
	runSink(crash, ctx)
	kill()
	if crash.folds < 2 {
		t.Fatalf("the second sink stopped after %d folds, before the crash", crash.folds)
	}

	// Third sink: runs until both groups have committed everything.
	ctx, stop := context.WithTimeout(context.Background(), 90*time.Second)
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); runSink(store, ctx) }()
	waitCommitted(t, ctx, brokers, topic, "sink-test", len(msgs))
	waitCommitted(t, ctx, brokers, topic, "sink-test"+pipeline.TicketRowsSuffix, len(msgs))
	stop()
	<-done
	// The fold counts each of the 50 tickets once, opened in the first hour.
	day := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	trends, err := store.Trends(context.Background(), reports.Filter{Tenants: []string{"acme"}, From: day, To: day, Interval: reports.Day, TZ: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if want := []reports.TrendRow{{Period: "2025-03-01", Opened: 50, Backlog: 50}}; !reflect.DeepEqual(trends, want) {
		t.Errorf("trends %+v, want %+v", trends, want)
	}

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
