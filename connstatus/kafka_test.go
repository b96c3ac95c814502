package connstatus_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/zenklav/zenklav/connstatus"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/kafka/kafkatest"
)

// TestOverKafka runs the whole design on the real Kafka: two processes publish to a compacted
// topic of the test's own, a third reads it through its own kafka.Table and merges them, and
// counts the connection's dead letters in a dead-letter topic (by header, or by key when
// they have no header), again after more arrive.
func TestOverKafka(t *testing.T) {
	brokers, dlq := kafkatest.NewTopic(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	statusTopic := fmt.Sprintf("test-connection-status-%d", rand.N(1_000_000))
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Topic{Name: statusTopic, Partitions: 3, Compacted: true}); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	prod := kafka.NewProducer(logger, brokers)
	defer prod.Close()
	table := func() *kafka.Table {
		tb, err := kafka.OpenTable(ctx, logger, brokers, statusTopic, prod)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tb.Close)
		return tb
	}
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	publish := func(role string, record func(*connstatus.Recorder)) {
		rec := connstatus.NewRecorder(nil, c.now)
		pub, err := connstatus.NewPublisher(connstatus.PublisherConfig{Recorder: rec, Table: table(), Publisher: prod,
			Topic: statusTopic, Role: role, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		record(rec)
		if err := pub.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	publish("api", func(r *connstatus.Recorder) { r.Webhook("acme", c.now().Add(-time.Minute)) })
	publish("emitter", func(r *connstatus.Recorder) {
		r.Delivered("acme", c.now())
		r.Failed("acme", connstatus.Klaviyo, apiError(401))
	})

	writeDeadLetters := func(connections ...string) {
		d := &kafka.DeadLetters{Publisher: prod, Topic: dlq, Role: "emitter", Logger: logger}
		for _, conn := range connections {
			err := d.Write(ctx, kafka.DeadLetter{Msg: kafka.Message{Topic: "ticket-events.v1", Value: []byte("{}")}, Reason: "test",
				Extra: map[string]string{kafka.HeaderConnection: conn}})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	writeDeadLetters("acme", "globex", "acme")
	// A message of a connection no longer served is dead-lettered before it is decoded: no
	// connection header, but its key.
	d := &kafka.DeadLetters{Publisher: prod, Topic: dlq, Role: "emitter", Logger: logger}
	if err := d.Write(ctx, kafka.DeadLetter{Msg: kafka.Message{Topic: "ticket-events.v1", Key: []byte("acme/42"), Value: []byte("{}")}, Reason: "not connected"}); err != nil {
		t.Fatal(err)
	}
	src := connstatus.NewKafkaSource(logger, brokers, []connstatus.Group{{Name: "nobody", Topic: dlq, Group: "nobody-" + dlq}}, dlq)
	r, err := connstatus.NewReader(connstatus.ReaderConfig{Table: table(), Connection: connections("acme", "globex"), Kafka: src, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Report(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.LastWebhook.Equal(c.now().Add(-time.Minute)) || !rep.LastDelivery.Equal(c.now()) {
		t.Errorf("last webhook %s, last delivery %s: want both processes' times", rep.LastWebhook, rep.LastDelivery)
	}
	if e, ok := errorOf(rep, "klaviyo_unauthorized"); !ok || e.Count != 1 || e.Advice != "reconnect Klaviyo" {
		t.Errorf("errors %+v: want one klaviyo_unauthorized", rep.Errors)
	}
	if rep.DeadLetters != 3 || rep.LastDeadLetter.IsZero() {
		t.Errorf("dead letters %d (last %s), want acme's 3", rep.DeadLetters, rep.LastDeadLetter)
	}
	if _, ok := rep.Lag["nobody"]; ok || len(rep.Problems) != 2 {
		t.Errorf("lag %v, problems %q: a group that never committed is left out; the problems are the 401 and the dead letters", rep.Lag, rep.Problems)
	}
	writeDeadLetters("acme")
	if n, _, err := src.DeadLetters(ctx, "acme"); err != nil || n != 4 {
		t.Errorf("after one more: %d dead letters (%v), want 4", n, err)
	}
	if n, _, err := src.DeadLetters(ctx, "globex"); err != nil || n != 1 {
		t.Errorf("globex: %d dead letters (%v), want 1", n, err)
	}
}
