package resilience_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/internal/apispec"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
	"github.com/zenklav/zenklav/sms"
)

// The replicas test's pace: webhooks a second (each a metric), and how long each stretch of
// it lasts.
const (
	replicasWebhooksPerSecond = 50
	// settledFor is the first stretch, both emitters having counted each other: long enough
	// for the two, were each to keep the whole limit, to spend the account's 150 bulk
	// requests a minute in half a minute and be refused.
	settledFor = 35 * time.Second
	// afterChange is how long the webhooks go on after each stop, start or kill.
	afterChange = 12 * time.Second
)

// bulkEventsPath is the endpoint of the emitter's deliveries, whose per-account limit (10 a
// second, 150 a minute) is the one the emitters' pace meets.
const bulkEventsPath = "/api/event-bulk-create-jobs"

// TestReplicas runs two processes of each role (api, sink, emitter, sms) against a cluster of
// three Kafka brokers, and one connection, so one Klaviyo account, whose bulk-events limit
// paces the emitters: webhooks come faster than the limit lets single requests go, so every
// request an emitter may send it sends, with what has queued. Signed webhooks go to the two
// api processes in turn. Once the two emitters have counted each other (their log's "emitter
// replicas counted", replicas 2), Klaviyo refuses none of their requests (429) while they
// use most of the account's limit between them. Meanwhile customers text the brand (Klaviyo's
// inbound SMS webhooks) and agents answer on their SMS tickets (smsTraffic). Then an emitter,
// a sink and an sms process are stopped (SIGTERM), started again, and the other emitter, sink
// and sms process killed (SIGKILL), each change a rebalance of their groups. Every webhook
// accepted is once in ClickHouse and its metric once in Klaviyo; every text is once on
// Zendesk, on its customer's one SMS ticket, and every reply reached its customer once (or
// the agent was told it may not have, after the kill); each sms process wrote texts before
// it went, the one started too before the kill; no group's committed offset of
// ticket-events.v1 or sms-events.v1 ever moves back (a member that lost a partition does not
// commit it); every process's zenklav_part_up is 1 at the end.
func TestReplicas(t *testing.T) {
	var cluster *testenv.KafkaCluster
	s := newStackOn(t, func(s *stack) {
		cluster = testenv.StartKafkaCluster(t, kafkaNodes)
		s.brokers = strings.Join(cluster.Brokers(), ",")
	})
	brokers := cluster.Brokers()
	rs := &replicaSet{s: s}
	s.enableSMS()
	phones := s.smsCustomers(smsCustomerCount, 100)

	// The first api makes the topics; the others start side by side.
	api1 := rs.start("api", "api-1")
	api1.p.waitStarted(time.Minute)
	start := api1.p.since
	offsets := watchOffsets(t, brokers, schemas.TicketEventsTopic,
		emitter.Group, sink.Group, sink.Group+sink.TicketRowsSuffix, sms.ReplyGroup)
	smsOffsets := watchOffsets(t, brokers, schemas.SMSEventsTopic, sms.Group)
	api2 := rs.start("api", "api-2")
	sink1, sink2 := rs.start("sink", "sink-1"), rs.start("sink", "sink-2")
	sms1, sms2 := rs.start("sms", "sms-1"), rs.start("sms", "sms-2")
	em1, em2 := rs.start("emitter", "emitter-1"), rs.start("emitter", "emitter-2")
	for _, m := range rs.members {
		m.p.waitStarted(time.Minute)
	}
	t.Logf("%d processes started %s after the first", len(rs.members), rel(time.Now(), start))

	// Both emitters count each other before the webhooks come: from then on they share.
	counted := maxTime(em1.waitCounted(2, time.Time{}, rs.alive), em2.waitCounted(2, time.Time{}, rs.alive))
	t.Logf("emitter-1 and emitter-2 counted 2 replicas at %s", rel(counted, start))

	tr := s.sendWebhooksTo([]string{api1.addr, api2.addr}, replicasWebhooksPerSecond)
	texting := s.sendSMS(tr, phones)
	s.waitFlowing(tr, rs.alive)
	flowing := time.Now()
	time.Sleep(time.Until(counted.Add(settledFor)))

	// An emitter, a sink and an sms process stop as an operator stops them: they commit and
	// leave.
	stopped := time.Now()
	work := []smsWork{workOf(sms1, "at its stop")}
	em1.stop()
	sink1.stop()
	sms1.stop()
	t.Logf("emitter-1, sink-1 and sms-1 stopped (SIGTERM) at %s, in %s", rel(stopped, start), time.Since(stopped).Round(10*time.Millisecond))
	alone := em2.waitCounted(1, stopped, rs.alive)
	t.Logf("emitter-2 counted 1 replica %s after", alone.Sub(stopped).Round(10*time.Millisecond))
	time.Sleep(time.Until(stopped.Add(afterChange)))

	// They start again (new processes, new members): a rebalance that gives them partitions.
	restarted := time.Now()
	em3, sink3, sms3 := rs.start("emitter", "emitter-3"), rs.start("sink", "sink-3"), rs.start("sms", "sms-3")
	em3.p.waitStarted(time.Minute)
	sink3.p.waitStarted(time.Minute)
	sms3.p.waitStarted(time.Minute)
	recounted := maxTime(em2.waitCounted(2, restarted, rs.alive), em3.waitCounted(2, restarted, rs.alive))
	t.Logf("emitter-3, sink-3 and sms-3 started at %s; emitter-2 and emitter-3 counted 2 replicas %s after",
		rel(restarted, start), recounted.Sub(restarted).Round(10*time.Millisecond))
	time.Sleep(time.Until(recounted.Add(afterChange)))

	// The other emitter, sink and sms process crash: their partitions wait out the session
	// timeout.
	killed := time.Now()
	work = append(work, workOf(sms2, "at its kill"), workOf(sms3, "at sms-2's kill"))
	em2.kill()
	sink2.kill()
	sms2.kill()
	t.Logf("emitter-2, sink-2 and sms-2 killed (SIGKILL) at %s", rel(killed, start))
	alone = em3.waitCounted(1, killed, rs.alive)
	t.Logf("emitter-3 counted 1 replica %s after", alone.Sub(killed).Round(10*time.Millisecond))
	time.Sleep(time.Until(maxTime(alone, killed.Add(afterChange))))

	texting.stop()
	tr.stop(stopWithin)
	t.Logf("webhooks: %s", tr.summary(time.Time{}, time.Now()))
	tr.expectAnswers(t, time.Time{}, time.Now(), start, "2xx or 503 with Retry-After", accepted2xxOr503)
	s.converge(tr, rs.alive)
	converged := time.Now()
	texting.expect(t)
	expectSMSWork(t, append(work, workOf(sms3, "at the end")))

	// Klaviyo's limit: nothing refused while the emitters had counted each other, and most
	// of the limit used then (the load was enough to meet it).
	all := rs.klaviyoCalls()
	// What two shares allow together, a second: each keeps a burst of 1 and a rate of
	// (perMinute - 2×1 - 1)/60/2 (klaviyo.Client.ShareLimits).
	sharedRate := float64(klaviyo.BulkEventLimit.PerMinute-2-1) / 60
	type stretch struct {
		name     string
		from, to time.Time
		strict   bool // both emitters had counted the replicas there are
	}
	stretches := []stretch{
		{"before the webhooks", start, flowing, false},
		{"two emitters, counted", flowing, stopped, true},
		{"emitter-1 stopped", stopped, restarted, false},
		{"emitter-3 started, until both counted", restarted, recounted, false},
		{"two emitters, counted again", recounted, killed, true},
		{"emitter-2 killed", killed, converged, false},
	}
	for _, st := range stretches {
		calls := callsIn(all, st.from, st.to)
		n, throttled := 0, 0
		var refused []string
		for _, c := range calls {
			if c.path != "POST "+bulkEventsPath {
				continue
			}
			n++
			if c.status == http.StatusTooManyRequests {
				throttled++
				if len(refused) < 10 {
					refused = append(refused, fmt.Sprintf("%s at %s", c.by, rel(c.at, start)))
				}
			}
		}
		secs := st.to.Sub(st.from).Seconds()
		t.Logf("klaviyo, %s (%s to %s): %d bulk requests (%.2f a second), %d answered 429 %v; other requests: %s",
			st.name, rel(st.from, start), rel(st.to, start), n, float64(n)/secs, throttled, refused, otherCalls(calls))
		if st.strict && throttled > 0 {
			t.Errorf("klaviyo answered 429 to %d of the %d bulk requests while both emitters had counted each other: %v", throttled, n, refused)
		}
	}
	settled := callsIn(all, flowing, stopped)
	sent := 0
	for _, c := range settled {
		if c.path == "POST "+bulkEventsPath {
			sent++
		}
	}
	if rate := float64(sent) / stopped.Sub(flowing).Seconds(); rate < 0.8*sharedRate {
		t.Errorf("the two emitters sent %.2f bulk requests a second while sharing, under 80%% of the %.2f their shares allow: "+
			"the load did not meet Klaviyo's limit, and the test shows nothing about it", rate, sharedRate)
	}

	resent, events := rs.resentMetrics()
	t.Logf("klaviyo: %d metrics sent in accepted bulk requests, %d of them more than once (Klaviyo keeps one per unique_id)", events, len(resent))
	dupRows, rows := s.rowCopies(t)
	t.Logf("clickhouse: ticket_events holds %d rows (before FINAL) for %d events", rows, rows-dupRows)
	offsets.stop()
	offsets.report(t)
	smsOffsets.stop()
	smsOffsets.report(t)
	rs.expectPartsUp(t, start)
	for _, m := range rs.members {
		m.stop()
	}
}

// replicaSet is the zenklav processes of a test, each on an HTTP address of its own, the
// emitters each reaching Klaviyo through a tap of their own.
type replicaSet struct {
	s       *stack
	members []*member
}

type member struct {
	name string
	addr string
	p    *process
	tap  *klaviyoTap // emitters only
	rs   *replicaSet

	parts partsWatch
}

// start starts `zenklav role` as name, and watches its zenklav_part_up.
func (rs *replicaSet) start(role, name string) *member {
	rs.s.t.Helper()
	m := &member{name: name, addr: testenv.FreeAddr(rs.s.t), rs: rs}
	var env []string
	if role == "emitter" {
		m.tap = rs.s.tapKlaviyo(name)
		env = append(env, "ZENKLAV_KLAVIYO_BASE_URL="+m.tap.srv.URL)
	}
	m.p = rs.s.startWith(role, m.addr, env...)
	rs.members = append(rs.members, m)
	m.parts.watch(rs.s.t, m)
	return m
}

// alive is an error once a process that was not stopped or killed has exited.
func (rs *replicaSet) alive() error {
	for _, m := range rs.members {
		if m.parts.ended() {
			continue
		}
		if err := m.p.exitErr(); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
	}
	return nil
}

func (m *member) stop() {
	m.parts.end()
	m.p.stop()
}

func (m *member) kill() {
	m.parts.end()
	m.p.kill()
}

// waitCounted waits until the emitter logged, at or after since, that it counted n replicas,
// and returns when it did.
func (m *member) waitCounted(n int, since time.Time, alive func() error) time.Time {
	t := m.rs.s.t
	t.Helper()
	var at time.Time
	waitFor(t, time.Minute, alive, func() (bool, string) {
		for _, c := range m.replicasCounted() {
			if c.replicas == n && !c.at.Before(since) {
				at = c.at
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s has not logged \"emitter replicas counted\" with replicas %d since %s: %v",
			m.name, n, since.Format(time.TimeOnly), m.replicasCounted())
	})
	return at
}

// counting is one "emitter replicas counted" line of an emitter's log.
type counting struct {
	at       time.Time
	replicas int
}

func (m *member) replicasCounted() []counting {
	f, err := os.Open(m.p.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []counting
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Time     time.Time
			Msg      string
			Replicas int
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && strings.HasPrefix(line.Msg, "emitter replicas counted") {
			out = append(out, counting{line.Time, line.Replicas})
		}
	}
	return out
}

// klaviyoTap is an emitter's way to the Klaviyo simulator, which notes each request's answer
// and the unique ids of the metrics Klaviyo accepted.
type klaviyoTap struct {
	srv *httptest.Server
	mu  sync.Mutex
	log []klaviyoCall
}

type klaviyoCall struct {
	by     string
	at     time.Time
	path   string // "POST /api/event-bulk-create-jobs"
	status int
	uids   []string // of an accepted bulk request
}

var uniqueIDField = regexp.MustCompile(`"unique_id":"([^"]+)"`)

func (s *stack) tapKlaviyo(name string) *klaviyoTap {
	k := &klaviyoTap{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		sw := &apispec.StatusWriter{ResponseWriter: w}
		s.kl.ServeHTTP(sw, r)
		c := klaviyoCall{by: name, at: time.Now(), path: r.Method + " " + r.URL.Path, status: sw.Status}
		if c.status == http.StatusAccepted && r.URL.Path == bulkEventsPath {
			for _, m := range uniqueIDField.FindAllSubmatch(body, -1) {
				c.uids = append(c.uids, string(m[1]))
			}
		}
		k.mu.Lock()
		k.log = append(k.log, c)
		k.mu.Unlock()
	}))
	s.t.Cleanup(k.srv.Close)
	return k
}

// klaviyoCalls is every emitter's requests, in the order they were answered.
func (rs *replicaSet) klaviyoCalls() []klaviyoCall {
	var all []klaviyoCall
	for _, m := range rs.members {
		if m.tap != nil {
			m.tap.mu.Lock()
			all = append(all, m.tap.log...)
			m.tap.mu.Unlock()
		}
	}
	slices.SortFunc(all, func(a, b klaviyoCall) int { return a.at.Compare(b.at) })
	return all
}

// resentMetrics returns the unique ids Klaviyo accepted more than once, from any emitter,
// and how many metrics it accepted in all (copies included).
func (rs *replicaSet) resentMetrics() (resent []string, events int) {
	n := map[string]int{}
	for _, c := range rs.klaviyoCalls() {
		for _, uid := range c.uids {
			n[uid]++
			events++
		}
	}
	for uid, k := range n {
		if k > 1 {
			resent = append(resent, uid)
		}
	}
	return resent, events
}

func callsIn(calls []klaviyoCall, from, to time.Time) []klaviyoCall {
	var out []klaviyoCall
	for _, c := range calls {
		if !c.at.Before(from) && c.at.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

// otherCalls counts the requests to endpoints other than the bulk events', by endpoint and
// answer.
func otherCalls(calls []klaviyoCall) string {
	n := map[string]int{}
	for _, c := range calls {
		if c.path != "POST "+bulkEventsPath {
			n[fmt.Sprintf("%s %d", c.path, c.status)]++
		}
	}
	if len(n) == 0 {
		return "none"
	}
	var out []string
	for k, v := range n {
		out = append(out, fmt.Sprintf("%s×%d", k, v))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// rowCopies counts the connection's rows in ticket_events before FINAL, and how many of
// them are extra copies of an event (a batch inserted again; FINAL keeps one, and merges
// may already have dropped some).
func (s *stack) rowCopies(t *testing.T) (copies, rows uint64) {
	t.Helper()
	var distinct uint64
	err := s.clickhouseConn().QueryRow(context.Background(),
		"SELECT count(), uniqExact(event_id) FROM ticket_events WHERE tenant = ?", tenant).Scan(&rows, &distinct)
	if err != nil {
		t.Errorf("count ticket_events: %v", err)
	}
	return rows - distinct, rows
}

// offsetWatch polls what consumer groups committed on a topic and notes every time an
// offset moved back.
type offsetWatch struct {
	done chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	last   map[string]int64 // by "group/partition"
	back   []string
	polls  int
	errs   int
	moves  int
	groups []string
}

// watchOffsets polls every 100 ms the offsets groups committed on topic's partitions.
func watchOffsets(t *testing.T, brokers []string, topic string, groups ...string) *offsetWatch {
	w := &offsetWatch{done: make(chan struct{}), last: map[string]int64{}, groups: groups}
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 5 * time.Second}
	parts, err := testenv.Partitions(brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(parts))
	for i, p := range parts {
		ids[i] = p.ID
	}
	start := time.Now()
	w.wg.Go(func() {
		for {
			select {
			case <-w.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			for _, g := range groups {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: g, Topics: map[string][]int{topic: ids}})
				cancel()
				w.mu.Lock()
				w.polls++
				if err == nil {
					err = resp.Error
				}
				if err != nil {
					w.errs++
					w.mu.Unlock()
					continue
				}
				for _, p := range resp.Topics[topic] {
					if p.Error != nil || p.CommittedOffset < 0 {
						continue
					}
					key := g + "/" + strconv.Itoa(p.Partition)
					prev, seen := w.last[key]
					switch {
					case seen && p.CommittedOffset < prev:
						w.back = append(w.back, fmt.Sprintf("%s: %d → %d at %s", key, prev, p.CommittedOffset, rel(time.Now(), start)))
					case seen && p.CommittedOffset > prev:
						w.moves++
					}
					w.last[key] = p.CommittedOffset
				}
				w.mu.Unlock()
			}
		}
	})
	t.Cleanup(w.stop)
	return w
}

func (w *offsetWatch) stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
}

// report fails the test for each committed offset that moved back.
func (w *offsetWatch) report(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]string, 0, len(w.last))
	for k := range w.last {
		keys = append(keys, fmt.Sprintf("%s=%d", k, w.last[k]))
	}
	slices.Sort(keys)
	t.Logf("committed offsets of %s, polled %d times (%d failed), %d moves forward; last: %s",
		strings.Join(w.groups, ", "), w.polls, w.errs, w.moves, strings.Join(keys, " "))
	if len(w.back) > 0 {
		t.Errorf("a committed offset moved back %d times (a member committed a partition it no longer owned): %s",
			len(w.back), strings.Join(w.back[:min(len(w.back), 20)], "; "))
	}
}

// partsWatch scrapes a process's zenklav_part_up every second and notes each part seen 0;
// of an sms process, it keeps its last counts of texts and replies too.
type partsWatch struct {
	done     chan struct{}
	endOnce  sync.Once
	wg       sync.WaitGroup
	mu       sync.Mutex
	down     map[string][2]time.Time // part → first and last scrape that said 0
	last     map[string]float64
	sms      map[string]float64 // "messages ticket_created", "replies sent"… as last scraped
	scrapes  int
	stopping bool
}

var (
	partUpLine = regexp.MustCompile(`^zenklav_part_up\{part="([^"]+)"\} (\S+)$`)
	smsLine    = regexp.MustCompile(`^zenklav_sms_(messages|replies)_total\{connection="[^"]*",result="([^"]+)"\} (\S+)$`)
)

func (w *partsWatch) watch(t *testing.T, m *member) {
	w.done = make(chan struct{})
	w.down, w.last, w.sms = map[string][2]time.Time{}, map[string]float64{}, map[string]float64{}
	client := &http.Client{Timeout: 2 * time.Second}
	w.wg.Go(func() {
		for {
			select {
			case <-w.done:
				return
			case <-m.p.done:
				return
			case <-time.After(time.Second):
			}
			resp, err := client.Get("http://" + m.addr + "/metrics")
			if err != nil {
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			now := time.Now()
			w.mu.Lock()
			w.scrapes++
			for _, line := range strings.Split(string(body), "\n") {
				if sm := smsLine.FindStringSubmatch(line); sm != nil {
					w.sms[sm[1]+" "+sm[2]], _ = strconv.ParseFloat(sm[3], 64)
				}
				sm := partUpLine.FindStringSubmatch(line)
				if sm == nil {
					continue
				}
				v, _ := strconv.ParseFloat(sm[2], 64)
				w.last[sm[1]] = v
				if v != 1 {
					d, ok := w.down[sm[1]]
					if !ok {
						d[0] = now
					}
					d[1] = now
					w.down[sm[1]] = d
				}
			}
			w.mu.Unlock()
		}
	})
	t.Cleanup(w.end)
}

// end stops the scrapes: the process is about to go, and what it says then is no matter.
func (w *partsWatch) end() {
	w.endOnce.Do(func() {
		w.mu.Lock()
		w.stopping = true
		w.mu.Unlock()
		close(w.done)
	})
	w.wg.Wait()
}

// smsCounts is the process's texts and replies by result, as last scraped.
func (w *partsWatch) smsCounts() map[string]float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.sms)
}

func (w *partsWatch) ended() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopping
}

// expectPartsUp logs every part that a scrape found down, and fails the test for a process
// still running whose last scrape had a part down.
func (rs *replicaSet) expectPartsUp(t *testing.T, start time.Time) {
	t.Helper()
	time.Sleep(1500 * time.Millisecond) // a scrape after convergence
	for _, m := range rs.members {
		w := &m.parts
		w.mu.Lock()
		var down, now []string
		for part, d := range w.down {
			down = append(down, fmt.Sprintf("%s 0 from %s to %s", part, rel(d[0], start), rel(d[1], start)))
		}
		for part, v := range w.last {
			// Every part, the parked lanes' consumer included (its topic is mostly quiet: it
			// says it works again once Kafka answers, not at its next message).
			if v != 1 {
				now = append(now, part)
			}
		}
		running := !w.stopping
		scrapes, parts := w.scrapes, len(w.last)
		w.mu.Unlock()
		slices.Sort(down)
		t.Logf("%s: %d scrapes, %d parts; down at some scrape: %v", m.name, scrapes, parts, down)
		if running && len(now) > 0 {
			t.Errorf("%s still runs with zenklav_part_up 0 for %v", m.name, now)
		}
		if running && parts == 0 {
			t.Errorf("%s exported no zenklav_part_up", m.name)
		}
	}
}
