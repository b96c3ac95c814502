package connstatus_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstatus"
	"github.com/zenklav/zenklav/internal/apiclient"
)

// apiError is an API's failure as zenklav's clients make it.
func apiError(status int) error {
	return apiclient.Failure("create event", status, apiclient.Kind(status), errors.New("the api said no"), 0,
		`{"status":`+strconv.Itoa(status)+`,"errors":[]}`)
}

func TestKind(t *testing.T) {
	for _, tc := range []struct {
		name, system string
		err          error
		kind, advice string
	}{
		{"401 from Klaviyo", connstatus.Klaviyo, apiError(401), "klaviyo_unauthorized", "reconnect Klaviyo"},
		{"403 from Klaviyo", connstatus.Klaviyo, apiError(403), "klaviyo_unauthorized", "reconnect Klaviyo"},
		{"401 from Zendesk", connstatus.Zendesk, apiError(401), "zendesk_unauthorized", "reconnect Zendesk"},
		{"an expired grant", connstatus.Zendesk, zenklav.Errorf(zenklav.EUNAUTHORIZED, "no oauth access token"), "zendesk_unauthorized", "reconnect Zendesk"},
		{"429", connstatus.Klaviyo, apiError(429), "klaviyo_throttled", "nothing: Klaviyo's rate limit"},
		{"503", connstatus.Klaviyo, apiError(503), "klaviyo_unavailable", "nothing unless it lasts"},
		{"timeout", connstatus.Zendesk, zenklav.Wrap(zenklav.EUNAVAILABLE, context.DeadlineExceeded, "find users"), "zendesk_unavailable", "nothing unless it lasts"},
		{"400", connstatus.Klaviyo, apiError(400), "klaviyo_refused", "zenklav replay --dry-run --connection acme"},
		{"a rule of zenklav's", connstatus.Klaviyo, zenklav.Errorf(zenklav.EFORBIDDEN, "not subscribed to SMS"), "", ""},
		{"no error", connstatus.Klaviyo, nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind := connstatus.Kind(tc.system, tc.err)
			if kind != tc.kind {
				t.Fatalf("Kind = %q, want %q", kind, tc.kind)
			}
			if advice := connstatus.Advice("acme", kind); !strings.HasPrefix(advice, tc.advice) && !strings.Contains(advice, tc.advice) {
				t.Errorf("Advice = %q, want it to say %q", advice, tc.advice)
			}
		})
	}
}

// topic is the status topic in memory: a Table and the Publisher that writes it.
type topic struct {
	mu     sync.Mutex
	values map[string][]byte
	fail   error
}

func newTopic() *topic { return &topic{values: map[string][]byte{}} }

func (f *topic) Publish(_ context.Context, msgs ...zenklav.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	for _, m := range msgs {
		if m.Value == nil {
			delete(f.values, string(m.Key))
		} else {
			f.values[string(m.Key)] = m.Value
		}
	}
	return nil
}

func (f *topic) Sync(context.Context) error { return nil }

func (f *topic) Keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.values {
		out = append(out, k)
	}
	return out
}

func (f *topic) Get(key string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.values[key]
	return v, ok
}

// clock is a time the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var now = time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)

// process is one zenklav process: its recorder and publisher.
type process struct {
	rec *connstatus.Recorder
	pub *connstatus.Publisher
}

func newProcess(t *testing.T, tp *topic, c *clock, role, instance string) process {
	t.Helper()
	rec := connstatus.NewRecorder(nil, c.now)
	pub, err := connstatus.NewPublisher(connstatus.PublisherConfig{
		Recorder: rec, Table: tp, Publisher: tp, Role: role, Instance: instance, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return process{rec: rec, pub: pub}
}

func (p process) flush(t *testing.T) {
	t.Helper()
	if err := p.pub.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func connections(ids ...string) func(string) *zenklav.Connection {
	return func(id string) *zenklav.Connection {
		if !slices.Contains(ids, id) {
			return nil
		}
		return &zenklav.Connection{ID: id, Zendesk: zenklav.ZendeskSettings{Subdomain: id, APIToken: "t", Email: "a@b.c"},
			Klaviyo: zenklav.KlaviyoSettings{PrivateKey: "pk"}, SMS: zenklav.SMSSettings{Enabled: true}}
	}
}

// fakeKafka answers the lag and the dead letters.
type fakeKafka struct {
	lag   map[string]int64
	dead  int
	last  time.Time
	err   error
	asked []string
}

func (k *fakeKafka) Lag(context.Context) (map[string]int64, error) { return k.lag, k.err }

func (k *fakeKafka) DeadLetters(_ context.Context, connection string) (int, time.Time, error) {
	k.asked = append(k.asked, connection)
	return k.dead, k.last, nil
}

func newReader(t *testing.T, tp *topic, c *clock, local *connstatus.Publisher, k connstatus.Kafka) *connstatus.Reader {
	t.Helper()
	r, err := connstatus.NewReader(connstatus.ReaderConfig{Table: tp, Local: local, Connection: connections("acme", "globex"), Kafka: k, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func report(t *testing.T, r *connstatus.Reader, id string) connstatus.Report {
	t.Helper()
	rep, err := r.Report(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func errorOf(rep connstatus.Report, kind string) (connstatus.ErrorSummary, bool) {
	for _, e := range rep.Errors {
		if e.Kind == kind {
			return e, true
		}
	}
	return connstatus.ErrorSummary{}, false
}

// TestMergeAcrossProcesses: an api process saw the webhook, two emitter replicas the
// deliveries and the errors; a reader in a fourth process sees the latest times and the sum
// of the errors, each connection its own.
func TestMergeAcrossProcesses(t *testing.T) {
	tp, c := newTopic(), &clock{t: now}
	api := newProcess(t, tp, c, "api", "host-a")
	em1 := newProcess(t, tp, c, "emitter", "host-b")
	em2 := newProcess(t, tp, c, "emitter", "host-c")

	api.rec.Webhook("acme", now.Add(-3*time.Minute))
	em1.rec.Delivered("acme", now.Add(-2*time.Minute))
	em2.rec.Delivered("acme", now.Add(-4*time.Minute)) // older: the latest wins
	em1.rec.Failed("acme", connstatus.Klaviyo, apiError(401))
	em2.rec.Failed("acme", connstatus.Klaviyo, apiError(401))
	em2.rec.Failed("acme", connstatus.Klaviyo, apiError(401))
	em2.rec.Failed("acme", connstatus.Klaviyo, apiError(429))
	em2.rec.Delivered("globex", now.Add(-time.Minute))
	em2.rec.SMS("acme", connstatus.Inbound, now.Add(-10*time.Minute))
	em1.rec.SMS("acme", connstatus.Outbound, now.Add(-5*time.Minute))
	for _, p := range []process{api, em1, em2} {
		p.flush(t)
	}

	k := &fakeKafka{lag: map[string]int64{"zenklav-emitter": 3}, dead: 2, last: now.Add(-time.Minute)}
	rep := report(t, newReader(t, tp, c, nil, k), "acme")
	if !rep.LastWebhook.Equal(now.Add(-3*time.Minute)) || !rep.LastDelivery.Equal(now.Add(-2*time.Minute)) {
		t.Errorf("last webhook %s, last delivery %s; want %s and %s", rep.LastWebhook, rep.LastDelivery, now.Add(-3*time.Minute), now.Add(-2*time.Minute))
	}
	if e, ok := errorOf(rep, "klaviyo_unauthorized"); !ok || e.Count != 3 || e.Advice != "reconnect Klaviyo" || !e.Last.Equal(now) ||
		e.Message != "create event (HTTP 401)" {
		t.Errorf("klaviyo_unauthorized = %+v (found %v), want 3 summed over both emitters, advising to reconnect Klaviyo", e, ok)
	}
	if e, ok := errorOf(rep, "klaviyo_throttled"); !ok || e.Count != 1 {
		t.Errorf("klaviyo_throttled = %+v (found %v), want 1", e, ok)
	}
	if rep.Errors[0].Kind != "klaviyo_unauthorized" {
		t.Errorf("errors %+v: the unauthorized ones come first", rep.Errors)
	}
	if !rep.SMS.Enabled || rep.SMS.LastDirection != connstatus.Outbound || !rep.SMS.LastMessage.Equal(now.Add(-5*time.Minute)) ||
		!rep.SMS.LastInbound.Equal(now.Add(-10*time.Minute)) {
		t.Errorf("sms = %+v, want on, last out 5 minutes ago, last in 10 minutes ago", rep.SMS)
	}
	if rep.Lag["zenklav-emitter"] != 3 || rep.DeadLetters != 2 || !slices.Equal(k.asked, []string{"acme"}) {
		t.Errorf("lag %v, dead letters %d (asked for %v)", rep.Lag, rep.DeadLetters, k.asked)
	}
	if rep.Healthy || !hasProblem(rep, "reconnect Klaviyo") || !hasProblem(rep, "dead letters") || hasProblem(rep, "rate limit") {
		t.Errorf("healthy %v, problems %q: want unhealthy, saying to reconnect Klaviyo and about the dead letters, not the throttling", rep.Healthy, rep.Problems)
	}

	other := report(t, newReader(t, tp, c, nil, nil), "globex")
	if !other.LastDelivery.Equal(now.Add(-time.Minute)) || !other.LastWebhook.IsZero() || len(other.Errors) != 0 || !other.Healthy {
		t.Errorf("globex = %+v: want only its own delivery, healthy", other)
	}
}

func hasProblem(rep connstatus.Report, what string) bool {
	return slices.ContainsFunc(rep.Problems, func(p string) bool { return strings.Contains(p, what) })
}

// TestErrorsOfTheLastHour: errors count for an hour, then no more; an unavailable Klaviyo is a
// problem only while it lasts.
func TestErrorsOfTheLastHour(t *testing.T) {
	tp, c := newTopic(), &clock{t: now.Add(-90 * time.Minute)}
	p := newProcess(t, tp, c, "all", "one")
	p.rec.Failed("acme", connstatus.Klaviyo, apiError(401)) // 90 minutes ago
	p.rec.Failed("acme", connstatus.Klaviyo, apiError(503))
	c.set(now.Add(-30 * time.Minute))
	p.rec.Failed("acme", connstatus.Klaviyo, apiError(401))
	p.rec.Failed("acme", connstatus.Klaviyo, apiError(503))
	c.set(now.Add(-2 * time.Minute))
	p.rec.Failed("acme", connstatus.Klaviyo, apiError(401))
	p.flush(t)
	c.set(now)

	rep := report(t, newReader(t, tp, c, nil, nil), "acme")
	if e, _ := errorOf(rep, "klaviyo_unauthorized"); e.Count != 2 || !e.Last.Equal(now.Add(-2*time.Minute)) {
		t.Errorf("klaviyo_unauthorized = %+v, want the 2 of the last hour", e)
	}
	if e, _ := errorOf(rep, "klaviyo_unavailable"); e.Count != 1 {
		t.Errorf("klaviyo_unavailable = %+v, want the 1 of the last hour", e)
	}
	if hasProblem(rep, "is failing") {
		t.Errorf("problems %q: an unavailable Klaviyo of 30 minutes ago is no problem now", rep.Problems)
	}
	c.set(now.Add(70 * time.Minute))
	rep = report(t, newReader(t, tp, c, nil, nil), "acme")
	if len(rep.Errors) != 0 || !rep.Healthy {
		t.Errorf("70 minutes later: errors %+v, problems %q; want none", rep.Errors, rep.Problems)
	}
}

// TestLocalObservationsAreLive: the reader of a process sees what its own recorder saw before
// it is published; a failed publication is published again.
func TestLocalObservationsAreLive(t *testing.T) {
	tp, c := newTopic(), &clock{t: now}
	self := newProcess(t, tp, c, "all", "self")
	self.rec.Webhook("acme", now.Add(-time.Minute))
	self.flush(t)
	self.rec.Webhook("acme", now) // not published yet
	if rep := report(t, newReader(t, tp, c, self.pub, nil), "acme"); !rep.LastWebhook.Equal(now) {
		t.Errorf("last webhook %s, want this process's newest, %s", rep.LastWebhook, now)
	}
	if rep := report(t, newReader(t, tp, c, nil, nil), "acme"); !rep.LastWebhook.Equal(now.Add(-time.Minute)) {
		t.Errorf("another process sees %s, want the published %s", rep.LastWebhook, now.Add(-time.Minute))
	}
	tp.fail = zenklav.Errorf(zenklav.EUNAVAILABLE, "kafka is away")
	if err := self.pub.Flush(context.Background()); err == nil {
		t.Fatal("Flush did not fail")
	}
	tp.fail = nil
	self.flush(t)
	if rep := report(t, newReader(t, tp, c, nil, nil), "acme"); !rep.LastWebhook.Equal(now) {
		t.Errorf("after a failed publication and another: %s, want %s", rep.LastWebhook, now)
	}
}

// TestStaleRecordsAreTakenOver: a process that starts takes over the times of a process gone
// for a day and deletes its record; the live one's stays.
func TestStaleRecordsAreTakenOver(t *testing.T) {
	tp, c := newTopic(), &clock{t: now.Add(-48 * time.Hour)}
	gone := newProcess(t, tp, c, "emitter", "gone")
	gone.rec.Delivered("acme", now.Add(-48*time.Hour))
	gone.rec.Failed("acme", connstatus.Klaviyo, apiError(401))
	gone.flush(t)
	c.set(now.Add(-time.Hour))
	live := newProcess(t, tp, c, "api", "live")
	live.rec.Webhook("acme", now.Add(-time.Hour))
	live.flush(t)
	c.set(now)

	fresh := newProcess(t, tp, c, "emitter", "fresh")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fresh.pub.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(sorted(tp.Keys()), []string{"acme/api/live", "acme/emitter/fresh"}) {
		if time.Now().After(deadline) {
			t.Fatalf("keys %v, want the live record and the fresh one only", sorted(tp.Keys()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	rep := report(t, newReader(t, tp, c, nil, nil), "acme")
	if !rep.LastDelivery.Equal(now.Add(-48*time.Hour)) || !rep.LastWebhook.Equal(now.Add(-time.Hour)) {
		t.Errorf("last delivery %s, last webhook %s: the stopped process's delivery is kept", rep.LastDelivery, rep.LastWebhook)
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

func TestReportOfUnknownConnection(t *testing.T) {
	tp, c := newTopic(), &clock{t: now}
	r := newReader(t, tp, c, nil, nil)
	if _, err := r.Report(context.Background(), "initech"); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("Report of an unknown connection: %v, want ENOTFOUND", err)
	}
	if r.Known("initech") || !r.Known("acme") {
		t.Error("Known is wrong")
	}
}

// TestIncompleteReport: what Kafka could not tell is said, not hidden.
func TestIncompleteReport(t *testing.T) {
	tp, c := newTopic(), &clock{t: now}
	rep := report(t, newReader(t, tp, c, nil, &fakeKafka{err: errors.New("no broker")}), "acme")
	if rep.Healthy || !hasProblem(rep, "lag (no broker)") {
		t.Errorf("problems %q, want the lag said unread", rep.Problems)
	}
}

// TestMetrics: the recorder exports each connection's times and errors.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := connstatus.NewRecorder(reg, func() time.Time { return now })
	rec.Webhook("acme", now)
	rec.Delivered("acme", now.Add(time.Second))
	rec.SMS("acme", connstatus.Outbound, now)
	rec.Failed("acme", connstatus.Klaviyo, apiError(401))
	rec.Failed("acme", connstatus.Klaviyo, apiError(401))
	rec.Failed("acme", connstatus.Klaviyo, zenklav.Errorf(zenklav.EINVALID, "no phone")) // not the system's: not counted
	want := `
# HELP zenklav_connection_errors_total Failed calls of the connection to Zendesk or Klaviyo by kind: SYSTEM_unauthorized (reconnect), _throttled, _unavailable (retried), _refused (dead letter).
# TYPE zenklav_connection_errors_total counter
zenklav_connection_errors_total{connection="acme",kind="klaviyo_unauthorized"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "zenklav_connection_errors_total"); err != nil {
		t.Error(err)
	}
	for name, v := range map[string]float64{
		"zenklav_connection_last_webhook_timestamp_seconds":  float64(now.Unix()),
		"zenklav_connection_last_delivery_timestamp_seconds": float64(now.Unix() + 1),
		"zenklav_connection_last_sms_timestamp_seconds":      float64(now.Unix()),
	} {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var got float64
		for _, mf := range mfs {
			if mf.GetName() == name {
				got = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
}

// A nil recorder records nothing, and does not fail: parts whose tests set none need no check.
func TestNilRecorder(t *testing.T) {
	var rec *connstatus.Recorder
	rec.Webhook("acme", now)
	rec.Delivered("acme", now)
	rec.SMS("acme", connstatus.Inbound, now)
	rec.Failed("acme", connstatus.Klaviyo, apiError(401))
}
