package kafka_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
)

func day(d int) time.Time { return time.Date(2025, 3, d, 10, 0, 0, 0, time.UTC) }

// dead is a dead letter as a role writes it: the original key and value, and the
// dead-letter headers (an empty value leaves the header out).
type dead struct {
	key, value, origin, tenant, ticket, role, failedAt string
}

func (d dead) message(topic string) zenklav.Message {
	h := map[string]string{
		kafka.HeaderReason: "clickhouse refused the row", kafka.HeaderOrigin: d.origin + "/0/7",
		kafka.HeaderOriginTopic: d.origin, kafka.HeaderConnection: d.tenant, kafka.HeaderTicket: d.ticket,
		kafka.HeaderRole: d.role, kafka.HeaderFailedAt: d.failedAt,
	}
	maps.DeleteFunc(h, func(_, v string) bool { return v == "" })
	return zenklav.Message{Topic: topic, Key: []byte(d.key), Value: []byte(d.value), Headers: h}
}

// deadLetters writes ds into a new dead-letter topic of two partitions, with origin as their
// origin topic where they name none, and returns the brokers and the topic.
func deadLetters(t *testing.T, ds []dead) (brokers []string, dlq string) {
	t.Helper()
	brokers, dlq = newTopic(t, 2)
	p := kafka.NewProducer(discard, brokers)
	defer p.Close()
	msgs := make([]zenklav.Message, len(ds))
	for i, d := range ds {
		msgs[i] = d.message(dlq)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Publish(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	return brokers, dlq
}

// recorder is a Publisher that keeps what it is given; fail, when set, decides whether the
// nth call (1-based) fails.
type recorder struct {
	mu    sync.Mutex
	calls int
	msgs  []zenklav.Message
	fail  func(call int) bool
}

func (r *recorder) Publish(_ context.Context, msgs ...zenklav.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail != nil && r.fail(r.calls) {
		return zenklav.Errorf(zenklav.EUNAVAILABLE, "kafka did not acknowledge the write")
	}
	r.msgs = append(r.msgs, msgs...)
	return nil
}

func (r *recorder) values() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.msgs {
		out = append(out, string(m.Value))
	}
	slices.Sort(out)
	return out
}

func replay(t *testing.T, brokers []string, pub zenklav.Publisher, opts kafka.ReplayOptions) kafka.ReplayStats {
	t.Helper()
	opts.Roles = []string{"emitter", "sink"} // the roles of replaySample's dead letters
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := kafka.Replay(ctx, discard, brokers, pub, opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var replaySample = []dead{
	{key: "acme/1", value: "a1-sink", origin: "ticket-events.v1", tenant: "acme", ticket: "1", role: "sink", failedAt: "2025-03-01T10:00:00Z"},
	{key: "acme/2", value: "a2-emitter", origin: "ticket-events.v1", tenant: "acme", ticket: "2", role: "emitter", failedAt: "2025-03-02T10:00:00Z"},
	{key: "globex/1", value: "g1-sink", origin: "ticket-events.v1", tenant: "globex", ticket: "1", role: "sink", failedAt: "2025-03-03T10:00:00Z"},
	{key: "acme/2", value: "a2-emitter-later", origin: "ticket-events.v1", tenant: "acme", ticket: "2", role: "emitter", failedAt: "2025-03-04T10:00:00Z"},
	// A message the sink could not decode: no tenant or ticket to tell.
	{key: "acme/9", value: "{not json", origin: "ticket-events.v1", role: "sink", failedAt: "2025-03-05T10:00:00Z"},
	// Written before the origin topic header existed: nowhere to send it.
	{key: "acme/3", value: "a3-orphan", tenant: "acme", ticket: "3", role: "sink", failedAt: "2025-03-06T10:00:00Z"},
}

// TestReplayFilters runs Replay over the same dead letters on the real Kafka with each filter
// and checks which were sent.
func TestReplayFilters(t *testing.T) {
	brokers, dlq := deadLetters(t, replaySample)
	for _, tc := range []struct {
		name    string
		filter  kafka.ReplayFilter
		want    []string
		skipped int64
	}{
		{"all", kafka.ReplayFilter{}, []string{"a1-sink", "a2-emitter", "a2-emitter-later", "g1-sink", "{not json"}, 1},
		{"connection", kafka.ReplayFilter{Connection: "acme"}, []string{"a1-sink", "a2-emitter", "a2-emitter-later"}, 1},
		{"ticket", kafka.ReplayFilter{Ticket: 1}, []string{"a1-sink", "g1-sink"}, 0},
		{"connection and ticket", kafka.ReplayFilter{Connection: "acme", Ticket: 2}, []string{"a2-emitter", "a2-emitter-later"}, 0},
		{"role", kafka.ReplayFilter{Role: "sink"}, []string{"a1-sink", "g1-sink", "{not json"}, 1},
		{"since", kafka.ReplayFilter{Since: day(3)}, []string{"a2-emitter-later", "g1-sink", "{not json"}, 1},
		{"until", kafka.ReplayFilter{Until: day(2)}, []string{"a1-sink", "a2-emitter"}, 0},
		{"window", kafka.ReplayFilter{Since: day(2), Until: day(3)}, []string{"a2-emitter", "g1-sink"}, 0},
		{"nothing", kafka.ReplayFilter{Connection: "initech"}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			st := replay(t, brokers, rec, kafka.ReplayOptions{Topic: dlq, Filter: tc.filter})
			if got := rec.values(); !slices.Equal(got, tc.want) {
				t.Errorf("sent %q, want %q", got, tc.want)
			}
			want := kafka.ReplayStats{
				Total: int64(len(replaySample)), Scanned: int64(len(replaySample)),
				Matched: int64(len(tc.want)) + tc.skipped, Replayed: int64(len(tc.want)), Skipped: tc.skipped,
			}
			if st != want {
				t.Errorf("stats %+v, want %+v", st, want)
			}
		})
	}
}

// TestReplaySendsBack replays into a real topic, twice, and reads what arrived there: the
// original key and value, only the replayed-from header, per-key order kept, and a second run
// sends everything again (the consumers downstream are idempotent, so that is the contract).
func TestReplaySendsBack(t *testing.T) {
	_, origin := newTopic(t, 1)
	ds := []dead{
		{key: "acme/1", value: "first", tenant: "acme", ticket: "1", role: "sink", failedAt: "2025-03-01T10:00:00Z"},
		{key: "acme/1", value: "second", tenant: "acme", ticket: "1", role: "sink", failedAt: "2025-03-01T10:00:01Z"},
		{key: "acme/2", value: "third", tenant: "acme", ticket: "2", role: "emitter", failedAt: "2025-03-01T10:00:02Z"},
		{key: "", value: "keyless", role: "sink", failedAt: "2025-03-01T10:00:03Z"},
	}
	for i := range ds {
		ds[i].origin = origin
	}
	brokers, dlq := deadLetters(t, ds)
	p := kafka.NewProducer(discard, brokers)
	defer p.Close()

	for run := 1; run <= 2; run++ {
		st := replay(t, brokers, p, kafka.ReplayOptions{Topic: dlq})
		if st.Replayed != int64(len(ds)) || st.Skipped != 0 {
			t.Fatalf("run %d: %+v, want all %d replayed", run, st, len(ds))
		}
	}
	got := readTopic(t, brokers, origin, 2*len(ds))
	byValue := map[string]int{}
	var acme1 []string
	for _, m := range got {
		byValue[string(m.Value)]++
		var d dead
		for _, c := range ds {
			if c.value == string(m.Value) {
				d = c
			}
		}
		if string(m.Key) != d.key {
			t.Errorf("%s arrived with key %q, want %q", m.Value, m.Key, d.key)
		}
		if len(m.Headers) != 1 || m.Headers[0].Key != kafka.HeaderReplayedFrom ||
			!strings.HasPrefix(string(m.Headers[0].Value), dlq+"/") {
			t.Errorf("%s arrived with headers %v, want only %s=%s/…", m.Value, m.Headers, kafka.HeaderReplayedFrom, dlq)
		}
		if string(m.Key) == "acme/1" {
			acme1 = append(acme1, string(m.Value))
		}
	}
	for _, d := range ds {
		if byValue[d.value] != 2 {
			t.Errorf("%s arrived %d times after two runs, want 2", d.value, byValue[d.value])
		}
	}
	if want := []string{"first", "second", "first", "second"}; !slices.Equal(acme1, want) {
		t.Errorf("one ticket's messages arrived as %q, want %q: replay must keep their order", acme1, want)
	}
}

// readTopic reads the n messages of the one partition of topic.
func readTopic(t *testing.T, brokers []string, topic string, n int) []kafka.Message {
	t.Helper()
	if got := messageCount(t, brokers, topic); got != n {
		t.Fatalf("%s holds %d messages, want %d", topic, got, n)
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read %d of %d messages of %s: %v", len(out), n, topic, err)
		}
		out = append(out, m)
	}
	return out
}

// TestReplayDryRun describes the matches and sends nothing.
func TestReplayDryRun(t *testing.T) {
	brokers, dlq := deadLetters(t, replaySample)
	rec := &recorder{}
	var listed []kafka.ReplayMatch
	st := replay(t, brokers, rec, kafka.ReplayOptions{
		Topic: dlq, Filter: kafka.ReplayFilter{Connection: "acme"}, DryRun: true,
		Match: func(m kafka.ReplayMatch) { listed = append(listed, m) },
	})
	if rec.calls != 0 {
		t.Fatalf("a dry run published %d times", rec.calls)
	}
	want := kafka.ReplayStats{Total: 6, Scanned: 6, Matched: 4, Skipped: 1}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if len(listed) != 4 {
		t.Fatalf("listed %d matches, want 4: %+v", len(listed), listed)
	}
	var orphans int
	for _, m := range listed {
		if !strings.HasPrefix(m.From, dlq+"/") || m.Connection != "acme" || m.Reason == "" || m.FailedAt == "" {
			t.Errorf("match described as %+v", m)
		}
		if m.To == "" {
			orphans++
		} else if m.To != "ticket-events.v1" {
			t.Errorf("match goes to %q, want ticket-events.v1", m.To)
		}
	}
	if orphans != 1 {
		t.Errorf("%d matches without a destination, want the 1 orphan", orphans)
	}
	// Without a publisher, a dry run still works: it never needs one.
	if st := replay(t, brokers, nil, kafka.ReplayOptions{Topic: dlq, DryRun: true}); st.Matched != 6 {
		t.Errorf("dry run without a publisher matched %d, want 6", st.Matched)
	}
}

// TestReplayStopsOnPublishFailure: the error says how many were replayed, and they were.
func TestReplayStopsOnPublishFailure(t *testing.T) {
	ds := make([]dead, 1200)
	for i := range ds {
		ds[i] = dead{key: fmt.Sprintf("acme/%d", i%40), value: fmt.Sprint(i), origin: "ticket-events.v1", tenant: "acme", role: "sink"}
	}
	brokers, dlq := deadLetters(t, ds)
	rec := &recorder{fail: func(call int) bool { return call == 2 }}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := kafka.Replay(ctx, discard, brokers, rec, kafka.ReplayOptions{Topic: dlq})
	if err == nil {
		t.Fatal("Replay succeeded although the second publish failed")
	}
	if len(rec.msgs) == 0 || st.Replayed != int64(len(rec.msgs)) {
		t.Errorf("stats say %d replayed, the publisher took %d", st.Replayed, len(rec.msgs))
	}
	if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("after %d dead letters were replayed", st.Replayed)) ||
		!strings.Contains(msg, "again is safe") {
		t.Errorf("error %q does not say how many were replayed", msg)
	}
	if !zenklav.Transient(err) {
		t.Errorf("error %v lost its kind, want unavailable", err)
	}
	if rec.calls != 2 {
		t.Errorf("publisher called %d times, want the run to stop at the failing second call", rec.calls)
	}
}

// TestReplayStopsAtStartEnd: a message dead-lettered while the replay runs (as when a replayed
// message fails again at once) is left for the next run, and the run ends.
func TestReplayStopsAtStartEnd(t *testing.T) {
	brokers, dlq := newTopic(t, 1)
	p := kafka.NewProducer(discard, brokers)
	defer p.Close()
	first := dead{key: "acme/1", value: "v1", origin: "ticket-events.v1", role: "sink"}.message(dlq)
	if err := p.Publish(context.Background(), first, first); err != nil {
		t.Fatal(err)
	}
	var added bool
	st := replay(t, brokers, &recorder{}, kafka.ReplayOptions{Topic: dlq, Progress: func(st kafka.ReplayStats) {
		if st.Scanned == 1 && !added {
			added = true
			if err := p.Publish(context.Background(), first); err != nil {
				t.Error(err)
			}
		}
	}})
	if st.Total != 2 || st.Scanned != 2 || st.Replayed != 2 {
		t.Errorf("stats %+v, want 2 scanned and replayed of the 2 there at the start", st)
	}
	if n := messageCount(t, brokers, dlq); n != 3 {
		t.Errorf("the dead-letter topic holds %d messages, want 3", n)
	}
}

func TestReplayFilterMatches(t *testing.T) {
	h := map[string]string{
		kafka.HeaderConnection: "acme", kafka.HeaderTicket: "42", kafka.HeaderRole: "sink",
		kafka.HeaderFailedAt: "2025-03-02T10:00:00Z",
	}
	for _, tc := range []struct {
		name   string
		filter kafka.ReplayFilter
		h      map[string]string
		want   bool
	}{
		{"empty filter", kafka.ReplayFilter{}, h, true},
		{"empty filter, no headers", kafka.ReplayFilter{}, nil, true},
		{"connection", kafka.ReplayFilter{Connection: "acme"}, h, true},
		{"other connection", kafka.ReplayFilter{Connection: "globex"}, h, false},
		{"connection, header missing", kafka.ReplayFilter{Connection: "acme"}, nil, false},
		{"ticket", kafka.ReplayFilter{Ticket: 42}, h, true},
		{"other ticket", kafka.ReplayFilter{Ticket: 4}, h, false},
		{"ticket, header not a number", kafka.ReplayFilter{Ticket: 42}, map[string]string{kafka.HeaderTicket: "x42"}, false},
		{"role", kafka.ReplayFilter{Role: "sink"}, h, true},
		{"other role", kafka.ReplayFilter{Role: "emitter"}, h, false},
		{"since, inclusive", kafka.ReplayFilter{Since: day(2)}, h, true},
		{"since, after", kafka.ReplayFilter{Since: day(2).Add(time.Second)}, h, false},
		{"until, inclusive", kafka.ReplayFilter{Until: day(2)}, h, true},
		{"until, before", kafka.ReplayFilter{Until: day(2).Add(-time.Second)}, h, false},
		{"time, header missing", kafka.ReplayFilter{Since: day(1)}, map[string]string{kafka.HeaderConnection: "acme"}, false},
		{"time, header garbled", kafka.ReplayFilter{Until: day(9)}, map[string]string{kafka.HeaderFailedAt: "yesterday"}, false},
		{"time zone", kafka.ReplayFilter{Since: time.Date(2025, 3, 2, 11, 0, 0, 0, time.FixedZone("CET", 3600))}, h, true},
		{"everything", kafka.ReplayFilter{Connection: "acme", Ticket: 42, Role: "sink", Since: day(1), Until: day(3)}, h, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.filter.Matches(tc.h); got != tc.want {
				t.Errorf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReplayRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		pub  zenklav.Publisher
		opts kafka.ReplayOptions
		want string
	}{
		{"unknown role", &recorder{}, kafka.ReplayOptions{Topic: "t", Filter: kafka.ReplayFilter{Role: "api"}}, "role"},
		{"negative ticket", &recorder{}, kafka.ReplayOptions{Topic: "t", Filter: kafka.ReplayFilter{Ticket: -1}}, "ticket"},
		{"since after until", &recorder{}, kafka.ReplayOptions{Topic: "t", Filter: kafka.ReplayFilter{Since: day(3), Until: day(2)}}, "after until"},
		{"no topic", &recorder{}, kafka.ReplayOptions{}, "topic"},
		{"no publisher", nil, kafka.ReplayOptions{Topic: "t"}, "publisher"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, _ := tc.pub.(*recorder)
			// The brokers are never asked: bad options fail before any I/O.
			_, err := kafka.Replay(context.Background(), discard, []string{"127.0.0.1:1"}, tc.pub, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || zenklav.ErrorCode(err) != zenklav.EINVALID {
				t.Fatalf("Replay = %v, want an invalid error about %s", err, tc.want)
			}
			if rec != nil && rec.calls != 0 {
				t.Error("published despite bad options")
			}
		})
	}
}

func TestReplayMissingTopic(t *testing.T) {
	brokers := []string{testenv.Kafka(t)}
	_, err := kafka.Replay(context.Background(), discard, brokers, &recorder{}, kafka.ReplayOptions{Topic: "no-such-topic-" + fmt.Sprint(time.Now().UnixNano())})
	if zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Fatalf("Replay of a missing topic = %v, want not found", err)
	}
}
