package sink_test

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/analytics/analyticstest"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/kafka/kafkatest"
	"github.com/zenklav/zenklav/reports"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
)

var discard = slog.New(slog.DiscardHandler)

func openStore(t *testing.T) *analytics.Store {
	s, _ := analyticstest.Open(t)
	return s
}

func ticketEvent(i int) []byte {
	at := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	e := schemas.TicketEvent{
		EventID: fmt.Sprintf("zd:ev-%d", i), Connection: "acme", Account: schemas.Account{Subdomain: "acme"},
		Type: schemas.TicketCreated, Source: schemas.SourceEvent, OccurredAt: at, ReceivedAt: at,
		Ticket: schemas.Ticket{ID: int64(1 + i%50), Status: zenklav.StatusNew},
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
	zenklav.TicketStore
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
		return c.TicketStore.InsertTicketEvents(ctx, events)
	}
	if err := c.TicketStore.InsertTicketEvents(ctx, events[:len(events)/2]); err != nil {
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
		return c.TicketStore.SummarizeTicketEvents(ctx, events)
	}
	if err := c.TicketStore.SummarizeTicketEvents(ctx, events[:len(events)/2]); err != nil {
		return err
	}
	c.kill()
	return zenklav.Errorf(zenklav.EUNAVAILABLE, "killed mid-batch")
}

// TestSinkCountsExactly drives the sink on the real Kafka and ClickHouse through a redelivered
// event, a poison message and a crash mid-batch, and checks that the report count is exact.
func TestSinkCountsExactly(t *testing.T) {
	brokers, topic := kafkatest.NewTopic(t, 4)
	_, dlq := kafkatest.NewTopic(t, 1)
	store := openStore(t)
	p := kafka.NewProducer(discard, brokers)
	defer p.Close()

	const n = 3000
	var msgs []zenklav.Message
	for i := range n {
		msgs = append(msgs, zenklav.Message{Topic: topic, Key: fmt.Appendf(nil, "acme/%d", 1+i%50), Value: ticketEvent(i)})
	}
	// Zendesk delivers 100 events twice.
	for i := range 100 {
		msgs = append(msgs, zenklav.Message{Topic: topic, Key: fmt.Appendf(nil, "acme/%d", 1+i%50), Value: ticketEvent(i * 7)})
	}
	msgs = append(msgs, zenklav.Message{Topic: topic, Key: []byte("acme/1"), Value: []byte(`{"not":"an event"`)})
	if err := p.Publish(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}

	runSink := func(s zenklav.TicketStore, ctx context.Context) {
		t.Helper()
		cfg := kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Group: "sink-test", BatchSize: 500, BatchWait: 100 * time.Millisecond,
			DeadLetters: &kafka.DeadLetters{Publisher: p, Topic: dlq, Role: "sink", Logger: discard}}
		sink, err := sink.New(discard, prometheus.NewRegistry(), cfg, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Run(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// First sink: killed in the middle of its third batch, its fold failing all along.
	ctx, kill := context.WithTimeout(context.Background(), 60*time.Second)
	crash := &crashingStore{TicketStore: store, crashAt: 3, foldAt: -1, kill: kill}
	runSink(crash, ctx)
	kill()
	if crash.calls < 3 {
		t.Fatalf("the first sink stopped after %d inserts, before the crash", crash.calls)
	}
	// Second sink: its fold killed in the middle of its second batch.
	ctx, kill = context.WithTimeout(context.Background(), 60*time.Second)
	crash = &crashingStore{TicketStore: store, foldAt: 2, kill: kill}
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
	kafkatest.WaitCommitted(t, ctx, brokers, topic, "sink-test", len(msgs))
	kafkatest.WaitCommitted(t, ctx, brokers, topic, "sink-test"+sink.TicketRowsSuffix, len(msgs))
	stop()
	<-done
	// The fold counts each of the 50 tickets once, opened in the first hour.
	day := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	trends, err := store.Trends(context.Background(), reports.Filter{Connections: []string{"acme"}, From: day, To: day, Interval: reports.Day, TZ: time.UTC})
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
	got, err := store.CountTicketEvents(context.Background(), analytics.EventFilter{Connection: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if rows <= n {
		t.Errorf("only %d rows stored: the test did not exercise duplicates", rows)
	}
	if got != n {
		t.Errorf("report counts %d events, want exactly %d (%d rows stored)", got, n, rows)
	}
	if dead := kafkatest.MessageCount(t, brokers, dlq); dead != 1 {
		t.Errorf("%d messages in the dead-letter topic, want the 1 poison message", dead)
	}
}
