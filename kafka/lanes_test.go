package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/kafka/kafkatest"
)

// laneHandler routes "lane:n" messages to their lane, dead-letters "poison", passes over
// "skip", and holds the lane named blocked until release is closed.
type laneHandler struct {
	blocked string
	release chan struct{}

	mu      sync.Mutex
	handled map[string][]string // lane → values, in the order handled
	done    chan string         // every value handled
}

func (h *laneHandler) Route(m kafka.Message) (kafka.Routed[string], error) {
	v := string(m.Value)
	switch {
	case v == "poison":
		return kafka.Routed[string]{}, errors.New("not a lane message")
	case v == "skip":
		return kafka.Routed[string]{}, nil
	}
	lane, _, _ := strings.Cut(v, ":")
	return kafka.Routed[string]{Lane: lane, Value: v, Weight: 1}, nil
}

func (h *laneHandler) Ready(ctx context.Context, lane string) error { return nil }

func (h *laneHandler) MaxWeight(string) int { return 10 }

func (h *laneHandler) Handle(ctx, _ context.Context, lane string, batch []*kafka.Delivery[string]) {
	if lane == h.blocked {
		select {
		case <-h.release:
		case <-ctx.Done():
			return // given back: handled again after a restart
		}
	}
	for _, d := range batch {
		h.mu.Lock()
		h.handled[lane] = append(h.handled[lane], d.Value)
		h.mu.Unlock()
		d.Done()
		h.done <- d.Value
	}
}

// TestLanes: a lane that is held up holds up no other lane, and nothing of it is committed
// until it is done; what cannot be routed is a dead letter, and what needs nothing is done at
// once.
func TestLanes(t *testing.T) {
	brokers, topic := kafkatest.NewTopic(t, 1)
	_, dlq := kafkatest.NewTopic(t, 1)
	p := kafka.NewProducer(discard, brokers)
	defer p.Close()
	var msgs []zenklav.Message
	for i := range 20 {
		lane := "fast"
		if i%4 == 0 {
			lane = "slow"
		}
		msgs = append(msgs, zenklav.Message{Topic: topic, Key: []byte(lane), Value: fmt.Appendf(nil, "%s:%d", lane, i)})
	}
	msgs = append(msgs, zenklav.Message{Topic: topic, Value: []byte("poison")}, zenklav.Message{Topic: topic, Value: []byte("skip")})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	c, err := kafka.NewConsumer(discard, kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Group: "lanes-" + topic,
		DeadLetters: &kafka.DeadLetters{Publisher: p, Topic: dlq, Role: "test", Logger: discard}})
	if err != nil {
		t.Fatal(err)
	}
	h := &laneHandler{blocked: "slow", release: make(chan struct{}), handled: map[string][]string{}, done: make(chan string, len(msgs))}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() {
		ran <- kafka.RunLanes(runCtx, c, kafka.LaneConfig{Linger: 10 * time.Millisecond, CommitInterval: 50 * time.Millisecond}, kafka.LaneHandler[string](h))
	}()
	for range 15 { // the fast lane's messages, while the slow one is held
		select {
		case v := <-h.done:
			if strings.HasPrefix(v, "slow") {
				t.Fatalf("%s handled while its lane was held", v)
			}
		case <-ctx.Done():
			t.Fatal("the fast lane waited for the slow one")
		}
	}
	if p, err := kafka.GroupProgress(ctx, brokers, topic, "lanes-"+topic); err == nil && p.Committed > 0 {
		t.Errorf("committed %d while the first message (slow:0) is not done", p.Committed)
	}
	close(h.release)
	kafkatest.WaitCommitted(t, ctx, brokers, topic, "lanes-"+topic, len(msgs))
	stop()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if n := len(h.handled["slow"]) + len(h.handled["fast"]); n != 20 {
		t.Errorf("handled %d messages, want 20", n)
	}
	if n := kafkatest.MessageCount(t, brokers, dlq); n != 1 {
		t.Errorf("%d dead letters, want the poison message alone", n)
	}
}

// handoverHandler handles every message of lane "m" once hold is closed, as a write to a
// server that may not be made twice; what it handled goes to log.
type handoverHandler struct {
	member string
	hold   chan struct{}
	log    *handoverLog
}

type handoverLog struct {
	mu      sync.Mutex
	handled map[string][]string  // value → the members that handled it
	first   map[string]time.Time // member → when it first handled a message
	entered chan string          // a member whose handler was first given a batch
}

func (h *handoverHandler) Route(m kafka.Message) (kafka.Routed[string], error) {
	return kafka.Routed[string]{Lane: "m", Value: string(m.Value), Weight: 1}, nil
}

func (h *handoverHandler) Ready(context.Context, string) error { return nil }

func (h *handoverHandler) MaxWeight(string) int { return 4 }

func (h *handoverHandler) Handle(_, sendCtx context.Context, _ string, batch []*kafka.Delivery[string]) {
	select {
	case h.log.entered <- h.member:
	default:
	}
	select {
	case <-h.hold:
	case <-sendCtx.Done():
		return // cut off: handled again by the partition's next owner
	}
	h.log.mu.Lock()
	defer h.log.mu.Unlock()
	if _, ok := h.log.first[h.member]; !ok {
		h.log.first[h.member] = time.Now()
	}
	for _, d := range batch {
		h.log.handled[d.Value] = append(h.log.handled[d.Value], h.member)
		d.Done()
	}
}

// TestLanesHandOverAfterTheBatchesUnderWay: a member that loses partitions to a member that
// joins finishes its batches under way and commits before the newcomer handles anything, and
// nothing it had queued is handled twice. (The group reader that RunLanes used before rejoined
// at once, and the newcomer handled what the old member still held and had queued.)
func TestLanesHandOverAfterTheBatchesUnderWay(t *testing.T) {
	brokers, topic := kafkatest.NewTopic(t, 2)
	_, dlq := kafkatest.NewTopic(t, 1)
	p := kafka.NewProducer(discard, brokers)
	defer p.Close()
	var msgs []zenklav.Message
	for i := range 40 {
		msgs = append(msgs, zenklav.Message{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "m%d", i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	group := "handover-" + topic
	log := &handoverLog{handled: map[string][]string{}, first: map[string]time.Time{}, entered: make(chan string, 1)}
	start := func(member string, hold chan struct{}) {
		c, err := kafka.NewConsumer(discard, kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Group: group,
			DeadLetters: &kafka.DeadLetters{Publisher: p, Topic: dlq, Role: "test", Logger: discard}})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		ran := make(chan error, 1)
		go func() {
			ran <- kafka.RunLanes(runCtx, c, kafka.LaneConfig{Workers: 1, Linger: time.Millisecond, CommitInterval: 50 * time.Millisecond},
				kafka.LaneHandler[string](&handoverHandler{member: member, hold: hold, log: log}))
		}()
		t.Cleanup(func() {
			stop()
			if err := <-ran; err != nil {
				t.Error(err)
			}
		})
	}
	holdA := make(chan struct{})
	start("a", holdA)
	select {
	case <-log.entered: // a holds its first batch; the rest waits in its lane
	case <-ctx.Done():
		t.Fatal("a was given no batch")
	}
	open := make(chan struct{})
	close(open)
	start("b", open)
	// b joins meanwhile: were the partitions handed over now, b would handle messages a
	// still holds or has queued, before a's batch is done.
	time.Sleep(2 * time.Second)
	released := time.Now()
	close(holdA)
	for {
		log.mu.Lock()
		n := len(log.handled)
		log.mu.Unlock()
		if n == len(msgs) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d messages handled", n, len(msgs))
		case <-time.After(20 * time.Millisecond):
		}
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	for v, members := range log.handled {
		if len(members) != 1 {
			t.Errorf("%s handled by %v", v, members)
		}
	}
	b, ok := log.first["b"]
	switch {
	case !ok:
		t.Error("b handled nothing: no partition was handed over")
	case b.Before(released):
		t.Errorf("b handled a message %v before a's batch under way was done", released.Sub(b))
	}
}
