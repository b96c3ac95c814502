package emitter_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/kafka/kafkatest"
	"github.com/zenklav/zenklav/schemas"
)

var discard = slog.New(slog.DiscardHandler)

// fakeKlaviyo records delivered metrics; it is the connection's Klaviyo account (the methods
// the emitter does not call are left out).
type fakeKlaviyo struct {
	zenklav.Klaviyo
	mu      sync.Mutex
	metrics []zenklav.MetricEvent
}

func (f *fakeKlaviyo) Deliver(_ context.Context, ms []zenklav.MetricEvent) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.metrics = append(f.metrics, ms...)
	return make([]error, len(ms))
}

func (f *fakeKlaviyo) DeliverDelay() time.Duration { return 0 }

func (f *fakeKlaviyo) MaxDeliver() int { return 1000 }

func (f *fakeKlaviyo) delivered() []zenklav.MetricEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.metrics)
}

// fakeZendesk is a Zendesk account that counts lookups (the lookups the emitter does not make
// are left out).
type fakeZendesk struct {
	zenklav.Directory
	mu      sync.Mutex
	users   map[int64]zenklav.Person
	tickets map[int64]zenklav.TicketDetails
	calls   map[string]int
	lookups map[int64]int // user id → times asked for
}

func (f *fakeZendesk) FindUsers(_ context.Context, ids []int64) (map[int64]zenklav.Person, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["users"]++
	out := map[int64]zenklav.Person{}
	for _, id := range ids {
		f.lookups[id]++
		if u, ok := f.users[id]; ok {
			out[id] = u
		}
	}
	return out, nil
}

func (f *fakeZendesk) GroupName(_ context.Context, id int64) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["groups"]++
	if id == 7 {
		return "Customer Care", nil
	}
	return "", zenklav.Errorf(zenklav.ENOTFOUND, "group %d not found", id)
}

func (f *fakeZendesk) FindTickets(_ context.Context, ids []int64) (map[int64]zenklav.TicketDetails, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["tickets"]++
	out := map[int64]zenklav.TicketDetails{}
	for _, id := range ids {
		if t, ok := f.tickets[id]; ok {
			out[id] = t
		}
	}
	return out, nil
}

// TestEmitterRules runs the emitter on the real Kafka with a fake Klaviyo and Zendesk:
// brands outside the connection's filter send nothing (also when only the ticket lookup
// knows the brand), an agent is looked up once however many tickets name them, a requester
// without an email gets their phone, one without either is a dead letter, and changes other
// than opening and closing send nothing.
func TestEmitterRules(t *testing.T) {
	brokers, topic := kafkatest.NewTopic(t, 2)
	_, dlq := kafkatest.NewTopic(t, 1)
	producer := kafka.NewProducer(discard, brokers)
	defer producer.Close()
	kl := &fakeKlaviyo{}
	zd := &fakeZendesk{
		users: map[int64]zenklav.Person{
			1: {Name: "Maya Chen", Email: "maya@example.com"},
			2: {Name: "Sam", Phone: "+1 (555) 555-0142"},
			3: {Name: "Nobody"},
		},
		tickets: map[int64]zenklav.TicketDetails{
			40: {BrandID: 99, Description: "first comment"}, // a brand the connection does not sync
			41: {BrandID: 10, Description: "first comment"},
		},
		calls: map[string]int{}, lookups: map[int64]int{},
	}
	consumer, err := kafka.NewConsumer(discard, kafka.ConsumerConfig{
		Brokers: brokers, Topic: topic, Group: "emitter-" + topic,
		DeadLetters: &kafka.DeadLetters{Publisher: producer, Topic: dlq, Role: "emitter", Logger: discard},
	})
	if err != nil {
		t.Fatal(err)
	}
	acme := &zenklav.Connection{ID: "acme", Zendesk: zenklav.ZendeskSettings{Brands: zenklav.Brands{IDs: []int64{10}}}}
	em, err := emitter.New(discard, prometheus.NewRegistry(), emitter.Config{
		Routes: zenklav.StaticRoutes(map[string]emitter.Route{
			"acme":   {Connection: acme, Klaviyo: kl, Directory: zd},
			"globex": {Connection: &zenklav.Connection{ID: "globex"}}, // served, without a Klaviyo account
		}),
		Lanes: kafka.LaneConfig{Linger: 20 * time.Millisecond},
	}, consumer)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	ev := func(ticket int64, typ, status string, brand int64, requester schemas.Requester) schemas.TicketEvent {
		return schemas.TicketEvent{
			EventID: fmt.Sprintf("zd:%d-%s-%s", ticket, strings.ReplaceAll(typ, "_", "-"), status), Connection: "acme", Account: schemas.Account{Subdomain: "acme"},
			BrandID: brand, Type: typ, Source: schemas.SourceEvent, OccurredAt: at, ReceivedAt: at,
			Ticket: schemas.Ticket{ID: ticket, Status: status, Description: "hi", Requester: requester, AssigneeID: 1, GroupID: 7,
				CustomFields: []schemas.CustomField{{ID: 5, Value: true}}},
		}
	}
	byEmail := schemas.Requester{ID: 100, Email: "ana@example.com"}
	events := []schemas.TicketEvent{
		ev(1, schemas.TicketCreated, "new", 10, byEmail),
		ev(1, schemas.TicketStatusChanged, "solved", 10, byEmail), // solved: nothing
		ev(1, schemas.TicketStatusChanged, "closed", 10, byEmail),
		ev(1, schemas.TicketCommentAdded, "closed", 10, byEmail), // nothing
		ev(2, schemas.TicketCreated, "new", 11, byEmail),         // brand 11 is not synced
		ev(3, schemas.TicketCreated, "open", 10, schemas.Requester{ID: 2}),
		ev(4, schemas.TicketCreated, "open", 10, schemas.Requester{ID: 3}), // no email, no phone: dead letter
		ev(40, schemas.TicketCreated, "new", 0, byEmail),                   // brand known only to Zendesk: 99
		ev(41, schemas.TicketCreated, "new", 0, byEmail),                   // brand known only to Zendesk: 10
		{EventID: "zd:other", Connection: "globex", Account: schemas.Account{Subdomain: "globex"}, Type: schemas.TicketCreated, Source: schemas.SourceEvent, OccurredAt: at, ReceivedAt: at,
			Ticket: schemas.Ticket{ID: 9, Requester: byEmail}}, // a connection without Klaviyo
	}
	for i := 10; i < 30; i++ { // twenty more tickets for the same agent
		events = append(events, ev(int64(i), schemas.TicketCreated, "new", 10, byEmail))
	}
	msgs := make([]zenklav.Message, len(events))
	for i := range events {
		b, err := events[i].Marshal()
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = zenklav.Message{Topic: topic, Key: []byte(events[i].Key()), Value: b}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- em.Run(runCtx) }()
	// In two rounds, so the second finds the agent and the group in the cache.
	for _, round := range [][]zenklav.Message{msgs[:10], msgs[10:]} {
		if err := producer.Publish(ctx, round...); err != nil {
			t.Fatal(err)
		}
		kafkatest.WaitCommitted(t, ctx, brokers, topic, "emitter-"+topic, len(round))
	}
	kafkatest.WaitCommitted(t, ctx, brokers, topic, "emitter-"+topic, len(events))
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	got := map[string]zenklav.MetricEvent{}
	for _, m := range kl.delivered() {
		got[m.UniqueID] = m
	}
	want := []string{"zendesk:acme:1:opened", "zendesk:acme:1:resolved", "zendesk:acme:3:opened", "zendesk:acme:41:opened"}
	for i := 10; i < 30; i++ {
		want = append(want, fmt.Sprintf("zendesk:acme:%d:opened", i))
	}
	for _, id := range want {
		if _, ok := got[id]; !ok {
			t.Errorf("%s was not delivered", id)
		}
		delete(got, id)
	}
	if len(got) > 0 {
		t.Errorf("delivered what the rules forbid: %v", slices.Collect(maps.Keys(got)))
	}
	all := kl.delivered()
	for _, m := range all {
		if m.UniqueID == "zendesk:acme:3:opened" && (m.Profile.PhoneNumber != "+15555550142" || m.Profile.Email != "") {
			t.Errorf("ticket 3's requester has only a phone: profile %q/%q, want +15555550142", m.Profile.Email, m.Profile.PhoneNumber)
		}
		if m.Properties["Assignee_email"] != "maya@example.com" || m.Properties["Group_name"] != "Customer Care" {
			t.Errorf("%s: assignee %v, group %v", m.UniqueID, m.Properties["Assignee_email"], m.Properties["Group_name"])
		}
	}
	if zd.lookups[1] != 1 || zd.calls["groups"] != 1 {
		t.Errorf("agent 1 looked up %d times and the group %d times; the cache should make it once each", zd.lookups[1], zd.calls["groups"])
	}
	if dead := kafkatest.MessageCount(t, brokers, dlq); dead != 1 {
		t.Errorf("%d dead letters, want 1 (the requester without email or phone)", dead)
	}
}

// TestEmitterConnectionsChange: the emitter follows the connections while it runs. A
// connection added after the start is served without a restart; the events of one removed
// are dead letters (replayed once it is back), not passed over.
func TestEmitterConnectionsChange(t *testing.T) {
	brokers, topic := kafkatest.NewTopic(t, 2)
	_, dlq := kafkatest.NewTopic(t, 1)
	producer := kafka.NewProducer(discard, brokers)
	defer producer.Close()
	kl := &fakeKlaviyo{}
	zd := &fakeZendesk{calls: map[string]int{}, lookups: map[int64]int{}}
	consumer, err := kafka.NewConsumer(discard, kafka.ConsumerConfig{
		Brokers: brokers, Topic: topic, Group: "emitter-" + topic,
		DeadLetters: &kafka.DeadLetters{Publisher: producer, Topic: dlq, Role: "emitter", Logger: discard},
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	served := map[string]bool{}
	routes := &zenklav.Routes[emitter.Route]{Find: func(id string) (emitter.Route, bool) {
		mu.Lock()
		defer mu.Unlock()
		if !served[id] {
			return emitter.Route{}, false
		}
		return emitter.Route{Connection: &zenklav.Connection{ID: id, Zendesk: zenklav.ZendeskSettings{Brands: zenklav.Brands{All: true}}}, Klaviyo: kl, Directory: zd}, true
	}}
	set := func(id string, on bool) {
		mu.Lock()
		served[id] = on
		mu.Unlock()
	}
	em, err := emitter.New(discard, prometheus.NewRegistry(), emitter.Config{Routes: routes, Lanes: kafka.LaneConfig{Linger: 10 * time.Millisecond}}, consumer)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- em.Run(runCtx) }()
	at := time.Now().UTC()
	sent := 0
	publish := func(ticket int64) {
		t.Helper()
		e := schemas.TicketEvent{EventID: fmt.Sprintf("zd:%d", ticket), Connection: "late", Account: schemas.Account{Subdomain: "late"},
			Type: schemas.TicketCreated, Source: schemas.SourceEvent, OccurredAt: at, ReceivedAt: at,
			Ticket: schemas.Ticket{ID: ticket, Status: "new", Requester: schemas.Requester{ID: 1, Email: "ana@example.com"}}}
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := producer.Publish(ctx, zenklav.Message{Topic: topic, Key: []byte(e.Key()), Value: b}); err != nil {
			t.Fatal(err)
		}
		sent++
		kafkatest.WaitCommitted(t, ctx, brokers, topic, "emitter-"+topic, sent)
	}
	publish(1) // not connected yet: a dead letter
	set("late", true)
	publish(2) // added while running: delivered
	set("late", false)
	publish(3) // removed: a dead letter
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range kl.delivered() {
		ids = append(ids, m.UniqueID)
	}
	if !slices.Equal(ids, []string{"zendesk:late:2:opened"}) {
		t.Errorf("delivered %v, want only ticket 2's, sent while the connection was served", ids)
	}
	if dead := kafkatest.MessageCount(t, brokers, dlq); dead != 2 {
		t.Errorf("%d dead letters, want 2 (tickets 1 and 3, sent while the connection was not served)", dead)
	}
}

// downKlaviyo is a Klaviyo account that is down (every delivery transiently fails) until up.
type downKlaviyo struct {
	fakeKlaviyo
	up atomic.Bool
}

// MaxDeliver keeps its batches small, so its lane fills while a batch is retried.
func (f *downKlaviyo) MaxDeliver() int { return 5 }

func (f *downKlaviyo) Deliver(ctx context.Context, ms []zenklav.MetricEvent) []error {
	if f.up.Load() {
		return f.fakeKlaviyo.Deliver(ctx, ms)
	}
	errs := make([]error, len(ms))
	for i := range errs {
		errs[i] = zenklav.Errorf(zenklav.EUNAVAILABLE, "klaviyo: 503")
	}
	return errs
}

// TestEmitterParksAFailingConnection: a connection whose Klaviyo is down fills its lane; its
// further events are parked in another topic and the other connection's metrics go on at
// once. Once its Klaviyo is back, an emitter of the parked topic delivers them: none lost,
// none twice.
func TestEmitterParksAFailingConnection(t *testing.T) {
	brokers, topic := kafkatest.NewTopic(t, 2)
	_, parkedTopic := kafkatest.NewTopic(t, 2)
	_, dlq := kafkatest.NewTopic(t, 1)
	producer := kafka.NewProducer(discard, brokers)
	defer producer.Close()
	down, up := &downKlaviyo{}, &fakeKlaviyo{}
	zd := &fakeZendesk{calls: map[string]int{}, lookups: map[int64]int{}}
	all := zenklav.Brands{All: true}
	routes := zenklav.StaticRoutes(map[string]emitter.Route{
		"down": {Connection: &zenklav.Connection{ID: "down", Zendesk: zenklav.ZendeskSettings{Brands: all}}, Klaviyo: down, Directory: zd},
		"up":   {Connection: &zenklav.Connection{ID: "up", Zendesk: zenklav.ZendeskSettings{Brands: all}}, Klaviyo: up, Directory: zd},
	})
	dead := &kafka.DeadLetters{Publisher: producer, Topic: dlq, Role: "emitter", Logger: discard}
	reg := prometheus.NewRegistry() // both emitters', each with its stage, as cmd/zenklav has them
	run := func(topic, group string, lanes kafka.LaneConfig) (stop func()) {
		consumer, err := kafka.NewConsumer(discard, kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Group: group, DeadLetters: dead})
		if err != nil {
			t.Fatal(err)
		}
		stage := prometheus.WrapRegistererWith(prometheus.Labels{"stage": group}, reg)
		em, err := emitter.New(discard, stage, emitter.Config{Routes: routes, Lanes: lanes, RetryFor: time.Hour}, consumer)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- em.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	parking := &kafka.DeadLetters{Publisher: producer, Topic: parkedTopic, Role: "emitter", Logger: discard, Parking: true}
	stopLive := run(topic, "emitter-"+topic, kafka.LaneConfig{QueueSize: 5, Workers: 1, Linger: 5 * time.Millisecond, Overflow: parking, ParkAfter: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	at := time.Now().UTC()
	publish := func(conn string, from, n int) {
		t.Helper()
		msgs := make([]zenklav.Message, n)
		for i := range msgs {
			e := schemas.TicketEvent{EventID: fmt.Sprintf("zd:%s-%d", conn, from+i), Connection: conn, Account: schemas.Account{Subdomain: conn},
				Type: schemas.TicketCreated, Source: schemas.SourceEvent, OccurredAt: at, ReceivedAt: at,
				Ticket: schemas.Ticket{ID: int64(from + i), Status: "new", Requester: schemas.Requester{ID: 1, Email: "ana@example.com"}}}
			b, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			msgs[i] = zenklav.Message{Topic: topic, Key: []byte(e.Key()), Value: b}
		}
		if err := producer.Publish(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	publish("down", 1, 200) // far more than its lane holds
	publish("up", 1001, 50)
	// The healthy connection's metrics arrive while the other's Klaviyo is still down.
	for len(up.delivered()) < 50 {
		if ctx.Err() != nil {
			t.Fatalf("the healthy connection got %d of 50 metrics while the other's Klaviyo was down", len(up.delivered()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	parked := kafkatest.MessageCount(t, brokers, parkedTopic)
	if parked == 0 {
		t.Fatal("nothing was parked, though the failing connection's lane was full")
	}
	// Its Klaviyo is back: the live emitter sends what its lane held, the parked emitter the rest.
	down.up.Store(true)
	stopParked := run(parkedTopic, "emitter-"+parkedTopic, kafka.LaneConfig{Linger: 5 * time.Millisecond})
	for len(down.delivered()) < 200 {
		if ctx.Err() != nil {
			t.Fatalf("the failing connection got %d of 200 metrics after its Klaviyo came back", len(down.delivered()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopParked()
	stopLive()
	seen := map[string]int{}
	for _, m := range down.delivered() {
		seen[m.UniqueID]++
	}
	if len(seen) != 200 {
		t.Errorf("%d distinct metrics of the failing connection, want 200", len(seen))
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	if dead := kafkatest.MessageCount(t, brokers, dlq); dead != 0 {
		t.Errorf("%d dead letters, want none", dead)
	}
	// The metrics say it per connection: what each had delivered, over both emitters, and
	// what the failing one had parked.
	for conn, want := range map[string]float64{"down": 200, "up": 50} {
		if got := sumOf(t, reg, "zenklav_emitter_metrics_total", map[string]string{"connection": conn, "result": "delivered"}); got != want {
			t.Errorf("metrics delivered of %s = %v, want %v", conn, got, want)
		}
	}
	if got := sumOf(t, reg, "zenklav_emitter_parked_events_total", map[string]string{"connection": "down"}); got != float64(parked) {
		t.Errorf("events parked of the failing connection = %v, want the %d in the parked topic", got, parked)
	}
	if got := sumOf(t, reg, "zenklav_emitter_parked_events_total", map[string]string{"connection": "up"}); got != 0 {
		t.Errorf("events parked of the healthy connection = %v, want none", got)
	}
	t.Logf("parked %d of the failing connection's 200 events", parked)
}

// sumOf is the sum of the counters of metric name in reg whose labels include want.
func sumOf(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
