package connstatus_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	kafkago "github.com/segmentio/kafka-go"

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

// TestLagCollector: the lag metric is what the topic holds minus what the group committed,
// summed over the partitions, read on the real Kafka; a group that never committed is left
// out, and a reading is kept for a while, then read anew.
func TestLagCollector(t *testing.T) {
	brokers, topic := kafkatest.NewTopic(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Six messages to partition 0 and four to partition 1, as their keys say.
	w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Topic: topic, RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond,
		Balancer: kafkago.BalancerFunc(func(m kafkago.Message, _ ...int) int { return int(m.Key[0] - '0') })}
	defer w.Close()
	var msgs []kafkago.Message
	for i := range 10 {
		msgs = append(msgs, kafkago.Message{Key: []byte(fmt.Sprint(min(i/6, 1))), Value: []byte("{}")})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	group := "lag-" + topic
	commit := func(p0, p1 int64) {
		t.Helper()
		client := &kafkago.Client{Addr: kafkago.TCP(brokers...)}
		resp, err := client.OffsetCommit(ctx, &kafkago.OffsetCommitRequest{GroupID: group, GenerationID: -1,
			Topics: map[string][]kafkago.OffsetCommit{topic: {{Partition: 0, Offset: p0}, {Partition: 1, Offset: p1}}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.Topics[topic] {
			if p.Error != nil {
				t.Fatalf("commit partition %d: %v", p.Partition, p.Error)
			}
		}
	}
	commit(2, 3)

	logger := slog.New(slog.DiscardHandler)
	src := connstatus.NewKafkaSource(logger, brokers, []connstatus.Group{
		{Name: "reader", Topic: topic, Group: group},
		{Name: "never", Topic: topic, Group: "never-" + topic},
	})
	c := &clock{t: time.Now()}
	reg := prometheus.NewRegistry()
	reg.MustRegister(connstatus.NewLagCollector(logger, src, c.now))
	want := func(lag int) string {
		return fmt.Sprintf(`
# HELP zenklav_consumer_lag_messages Messages the consumer group is behind on the topic (the end offsets minus its committed offsets), read from Kafka when scraped. Every api process exports the same value: aggregate with max, not sum.
# TYPE zenklav_consumer_lag_messages gauge
zenklav_consumer_lag_messages{group=%q,topic=%q} %d
`, group, topic, lag)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(10-2-3))); err != nil {
		t.Errorf("after commits at 2 and 3 of 6 and 4: %v", err)
	}
	commit(6, 3)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(5))); err != nil {
		t.Errorf("scraped again at once: want the reading kept: %v", err)
	}
	c.set(c.now().Add(10 * time.Second))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(10-6-3))); err != nil {
		t.Errorf("scraped 10 s later, after a commit at 6: %v", err)
	}
}
