package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/analytics/analyticstest"
	"github.com/zenklav/zenklav/ingest"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// backfillHistory fills sim with n tickets of brand 1 (and a few of brand 2, another
// connection's) in every status, created over 2025, with requesters that have emails. It
// returns the tickets of brand 1.
func backfillHistory(t *testing.T, sim *zendesktest.Server, n int) []zendesk.Ticket {
	t.Helper()
	// Not "deleted": the export does return deleted tickets, but the spec's TicketObject has no such
	// status, so the simulator cannot serve one.
	statuses := []string{"new", "open", "pending", "hold", "solved", "closed", "closed", "open"}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var mine []zendesk.Ticket
	for i := range n + n/5 {
		u := sim.AddUser(zendesk.User{Name: fmt.Sprint("Customer ", i), Email: fmt.Sprintf("customer%d@example.com", i)})
		created := base.Add(time.Duration(i) * 61 * time.Hour)
		brand := int64(1)
		if i >= n {
			brand = 2
		}
		tk := sim.AddTicket(zendesk.Ticket{
			Subject: fmt.Sprint("Order ", i), Description: "Where is it?", Status: statuses[i%len(statuses)],
			Via: zendesk.Via{Channel: "email"}, RequesterID: u.ID, BrandID: brand, Tags: []string{"order"},
			CreatedAt: created, UpdatedAt: created.Add(time.Duration(i%50) * time.Hour),
		})
		if brand == 1 {
			mine = append(mine, tk)
		}
	}
	return mine
}

// backfillEnv writes a connections file and returns the environment a backfill of
// connection reads.
func backfillEnv(t *testing.T, sim *zendesktest.Server, broker, dataDir, connections string) func(string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "connections.json")
	if err := os.WriteFile(path, []byte(connections), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"ZENKLAV_KAFKA_BROKERS":    broker,
		"ZENKLAV_CONNECTIONS_FILE": path,
		"ZENKLAV_ZENDESK_BASE_URL": sim.URL,
		"ZENKLAV_DATA_DIR":         dataDir,
		"ZENKLAV_LOG_LEVEL":        "warn",
	}
	return func(k string) string { return env[k] }
}

func connectionJSON(id, subdomain, brands, klaviyoKey string) string {
	return fmt.Sprintf(`{"id":%q,"zendesk":{"subdomain":%q,"email":%q,"api_token":%q,"webhook_secrets":["backfill-test-webhook-secret"],"brands":%s},"klaviyo":{"private_key":%q}}`,
		id, subdomain, zendesktest.DefaultEmail, zendesktest.DefaultAPIToken, brands, klaviyoKey)
}

// runBackfill runs one backfill to topic, paced for a test, with the hooks set by tune.
func runBackfill(t *testing.T, ctx context.Context, getenv func(string) string, topic string, f backfillFlags, tune func(*backfillJob)) (backfillStats, error) {
	t.Helper()
	f.perMinute = 60_000
	e, err := newEnv(getenv, io.Discard, envOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	job, err := newBackfillJob(ctx, e, f)
	if err != nil {
		t.Fatal(err)
	}
	job.ingest = ingest.New(ingest.Config{Connections: job.conns, Publisher: e.kafkaProducer(), Topic: topic})
	if tune != nil {
		tune(job)
	}
	return job.run(ctx)
}

// TestBackfillKilledAndRerun stops a backfill halfway, once after a page's cursor was saved
// and once in the worst place, after Kafka acknowledged a page and before its cursor was
// saved, then runs it again: ClickHouse holds every ticket once, and the same counts as a
// clean run of another connection over the same history.
func TestBackfillKilledAndRerun(t *testing.T) {
	broker, ch := testenv.Kafka(t), testenv.ClickHouse(t)
	sim := zendesktest.NewServer()
	defer sim.Close()
	sim.SetExportPageSize(10)
	sim.SetExportRateLimit(100_000)
	mine := backfillHistory(t, sim, 95)
	wantEvents := map[string]uint64{}
	for _, tk := range mine {
		wantEvents[schemas.TicketCreated]++
		if tk.Status != "new" {
			wantEvents[schemas.TicketStatusChanged]++
		}
	}

	ctx := context.Background()
	topic := fmt.Sprintf("backfill-test-%d", rand.N(1_000_000_000))
	if err := kafka.EnsureTopics(ctx, []string{broker}, kafka.Topic{Name: topic, Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	store := startTestSink(t, broker, ch, topic)
	since := backfillFlags{since: time.Date(2024, 12, 1, 0, 0, 0, 0, time.UTC)}

	// The clean run: a connection of its own over the same account.
	clean := fmt.Sprintf("clean-%d", rand.N(1_000_000))
	cleanEnv := backfillEnv(t, sim, broker, t.TempDir(), `{"connections":[`+connectionJSON(clean, "acme", "[1]", "")+`,`+connectionJSON(clean+"-b", "acme", "[2]", "")+`]}`)
	f := since
	f.connection = clean
	st, err := runBackfill(t, ctx, cleanEnv, topic, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.state.Tickets != int64(len(mine)) || !st.state.EndOfStream || st.state.Skipped == 0 || st.export.Requests < st.state.Pages {
		t.Fatalf("clean run: %+v, want %d tickets and the other brand's passed over", st.state, len(mine))
	}

	tests := []struct {
		name string
		kill func(cancel context.CancelFunc) func(*backfillJob)
	}{
		{"killed after a page was saved", func(cancel context.CancelFunc) func(*backfillJob) {
			return func(j *backfillJob) {
				report := j.progress
				j.progress = func(s backfillState, n int64) {
					if report != nil {
						report(s, n)
					}
					if s.Pages == 4 {
						cancel()
					}
				}
			}
		}},
		{"killed between Kafka's ack and the saved cursor", func(cancel context.CancelFunc) func(*backfillJob) {
			return func(j *backfillJob) {
				j.afterPublish = func(page int) {
					if page == 4 {
						cancel()
					}
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant := fmt.Sprintf("crash-%d", rand.N(1_000_000))
			dataDir := t.TempDir()
			getenv := backfillEnv(t, sim, broker, dataDir, `{"connections":[`+connectionJSON(tenant, "acme", "[1]", "")+`,`+connectionJSON(tenant+"-b", "acme", "[2]", "")+`]}`)
			f := since
			f.connection = tenant
			killed, cancel := context.WithCancel(ctx)
			if _, err := runBackfill(t, killed, getenv, topic, f, tt.kill(cancel)); err == nil {
				t.Fatal("the killed run says it finished")
			}
			cancel()
			var saved backfillState
			data, err := os.ReadFile(filepath.Join(dataDir, "backfill-"+tenant+".json"))
			if err != nil || json.Unmarshal(data, &saved) != nil || saved.Cursor == "" || saved.EndOfStream {
				t.Fatalf("after the kill the state file is %s (%v)", data, err)
			}
			st, err := runBackfill(t, ctx, getenv, topic, f, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !st.resumed || st.state.Tickets != int64(len(mine)) || st.tickets >= int64(len(mine)) {
				t.Errorf("rerun: resumed %v, %d tickets in all, %d this run; want the rest of %d", st.resumed, st.state.Tickets, st.tickets, len(mine))
			}
			// Once more, from the end: nothing new, nothing written.
			if st, err := runBackfill(t, ctx, getenv, topic, f, nil); err != nil || st.tickets != 0 {
				t.Errorf("a run after the end wrote %d tickets (%v)", st.tickets, err)
			}
			// Every ticket once: one created event each, and one status event for each that is
			// no longer new, exactly as many as the clean run's.
			for typ, want := range wantEvents {
				waitCount(t, store, analytics.EventFilter{Connection: clean, Type: typ}, want)
				waitCount(t, store, analytics.EventFilter{Connection: tenant, Type: typ}, want)
			}
		})
	}
	sim.AssertNoViolations(t)
}

// startTestSink runs the sink on topic into a database of the test's own and returns the
// store to read it with.
func startTestSink(t *testing.T, broker, ch, topic string) *analytics.Store {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.DiscardHandler)
	store, _ := analyticstest.Open(t)
	producer := kafka.NewProducer(logger, []string{broker})
	s, err := sink.New(logger, prometheus.NewRegistry(), kafka.ConsumerConfig{
		Brokers: []string{broker}, Topic: topic, Group: "sink-" + topic, BatchSize: 1000, BatchWait: 100 * time.Millisecond,
		DeadLetters: &kafka.DeadLetters{Publisher: producer, Topic: schemas.TicketEventsDLQTopic, Role: "sink", Logger: logger},
	}, store)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sink: %v", err)
		}
		producer.Close()
	})
	return store
}

// waitCount waits for the sink to bring the count of f's events to want; a count above want
// fails at once.
func waitCount(t *testing.T, store *analytics.Store, f analytics.EventFilter, want uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := store.CountTicketEvents(context.Background(), f)
		if err == nil && got == want {
			return
		}
		if got > want || time.Now().After(deadline) {
			t.Fatalf("%s: %d %q events in ClickHouse, want %d (%v)", f.Connection, got, f.Type, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBackfillToKlaviyo: with --to-klaviyo the emitter sends the history as Klaviyo backfill
// with the live unique ids (a live event of the same ticket adds nothing); without it, the
// emitter sends nothing and calls Klaviyo not once.
func TestBackfillToKlaviyo(t *testing.T) {
	broker := testenv.Kafka(t)
	tests := []struct {
		toKlaviyo bool
	}{{true}, {false}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("to-klaviyo=%v", tt.toKlaviyo), func(t *testing.T) {
			sim := zendesktest.NewServer()
			defer sim.Close()
			sim.SetExportPageSize(7)
			sim.SetExportRateLimit(100_000)
			mine := backfillHistory(t, sim, 20)
			kl := klaviyotest.NewServer()
			defer kl.Close()
			key := fmt.Sprintf("pk_backfill_%d", rand.N(1_000_000))
			kl.AddAccount(key)
			target, _ := url.Parse(kl.URL)
			proxy := httputil.NewSingleHostReverseProxy(target)
			var klaviyoCalls atomic.Int64
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				klaviyoCalls.Add(1)
				proxy.ServeHTTP(w, r)
			}))
			defer front.Close()

			ctx := context.Background()
			tenant := fmt.Sprintf("kl-%d", rand.N(1_000_000))
			topic := "backfill-klaviyo-test-" + tenant
			if err := kafka.EnsureTopics(ctx, []string{broker}, kafka.Topic{Name: topic, Partitions: 2}); err != nil {
				t.Fatal(err)
			}
			doc := `{"connections":[` + connectionJSON(tenant, "acme", "[1]", key) + `]}`
			getenv := backfillEnv(t, sim, broker, t.TempDir(), doc)
			f := backfillFlags{connection: tenant, since: time.Date(2024, 12, 1, 0, 0, 0, 0, time.UTC), toKlaviyo: tt.toKlaviyo}
			if _, err := runBackfill(t, ctx, getenv, topic, f, nil); err != nil {
				t.Fatal(err)
			}
			// The same first ticket, opened live as well.
			live := schemas.TicketEvent{
				EventID: "zd:live-1", Connection: tenant, Account: schemas.Account{Subdomain: "acme"}, BrandID: 1,
				Type: schemas.TicketCreated, Source: schemas.SourceEvent, OccurredAt: mine[0].CreatedAt, ReceivedAt: time.Now().UTC(),
				Ticket: schemas.Ticket{ID: mine[0].ID, Status: "new", Description: "Where is it?", Requester: schemas.Requester{ID: mine[0].RequesterID}},
			}
			value, err := live.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			producer := kafka.NewProducer(slog.New(slog.DiscardHandler), []string{broker})
			defer producer.Close()
			if err := producer.Publish(ctx, zenklav.Message{Topic: topic, Key: []byte(live.Key()), Value: value}); err != nil {
				t.Fatal(err)
			}

			group := "emitter-" + topic
			runTestEmitter(t, broker, topic, group, front.URL, sim.URL, doc)
			want := map[string]bool{}
			for _, tk := range mine {
				want[fmt.Sprintf("zendesk:%s:%d:opened", tenant, tk.ID)] = true
				if tk.Status == "closed" {
					want[fmt.Sprintf("zendesk:%s:%d:resolved", tenant, tk.ID)] = true
				}
			}
			deadline := time.Now().Add(60 * time.Second)
			for {
				p, err := kafka.GroupProgress(ctx, []string{broker}, topic, group)
				if err == nil && p.End > 0 && p.Committed == p.End && (!tt.toKlaviyo || len(kl.Events(key)) >= len(want)) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after a minute Klaviyo holds %d events; emitter progress %+v (%v)", len(kl.Events(key)), p, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			events := kl.Events(key)
			if !tt.toKlaviyo {
				// The live event is the one thing Klaviyo may get.
				if len(events) != 1 || events[0].Backfill || events[0].UniqueID != fmt.Sprintf("zendesk:%s:%d:opened", tenant, mine[0].ID) {
					t.Errorf("without --to-klaviyo Klaviyo holds %+v, want the live event alone", events)
				}
				return
			}
			if len(events) != len(want) {
				t.Errorf("Klaviyo holds %d events, want %d", len(events), len(want))
			}
			for _, e := range events {
				if !want[e.UniqueID] || !e.Backfill || !strings.HasPrefix(e.Profile.Email, "customer") {
					t.Errorf("Klaviyo event %s (%s, backfill %v, profile %s) is not one of the backfill's", e.UniqueID, e.Metric, e.Backfill, e.Profile.Email)
				}
				delete(want, e.UniqueID)
			}
			kl.AssertNoViolations(t)
			sim.AssertNoViolations(t)
		})
	}
	// Without --to-klaviyo and without the live event, not a single call: checked on its own.
	t.Run("no call", func(t *testing.T) {
		sim := zendesktest.NewServer()
		defer sim.Close()
		sim.SetExportRateLimit(100_000)
		backfillHistory(t, sim, 10)
		var calls atomic.Int64
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			http.Error(w, "no", http.StatusTeapot)
		}))
		defer front.Close()
		ctx := context.Background()
		tenant := fmt.Sprintf("kl-%d", rand.N(1_000_000))
		topic := "backfill-klaviyo-test-" + tenant
		if err := kafka.EnsureTopics(ctx, []string{broker}, kafka.Topic{Name: topic, Partitions: 2}); err != nil {
			t.Fatal(err)
		}
		doc := `{"connections":[` + connectionJSON(tenant, "acme", "[1]", "pk_never_called") + `]}`
		if _, err := runBackfill(t, ctx, backfillEnv(t, sim, broker, t.TempDir(), doc), topic, backfillFlags{connection: tenant, since: time.Date(2024, 12, 1, 0, 0, 0, 0, time.UTC)}, nil); err != nil {
			t.Fatal(err)
		}
		group := "emitter-" + topic
		runTestEmitter(t, broker, topic, group, front.URL, sim.URL, doc)
		deadline := time.Now().Add(60 * time.Second)
		for {
			p, err := kafka.GroupProgress(ctx, []string{broker}, topic, group)
			if err == nil && p.End > 0 && p.Committed == p.End {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the emitter did not get through the topic in a minute: %+v (%v)", p, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n := calls.Load(); n != 0 {
			t.Errorf("Klaviyo was called %d times for a backfill without --to-klaviyo", n)
		}
	})
}

// runTestEmitter runs the emitter on topic in group, wired as zenklav wires it, until the
// test ends.
func runTestEmitter(t *testing.T, broker, topic, group, klaviyoURL, zendeskURL, doc string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "connections.json")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"ZENKLAV_CONNECTIONS_FILE": path, "ZENKLAV_KLAVIYO_BASE_URL": klaviyoURL, "ZENKLAV_ZENDESK_BASE_URL": zendeskURL,
		"ZENKLAV_KAFKA_BROKERS": broker, "ZENKLAV_LOG_LEVEL": "error"}
	e, err := newEnv(func(k string) string { return vars[k] }, io.Discard, envOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.brokers = e.cfg.KafkaBrokers
	ctx, cancel := context.WithCancel(context.Background())
	em, err := e.newEmitter(ctx, emitterWiring{topic: topic, group: group, lanes: kafka.LaneConfig{Linger: 10 * time.Millisecond}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- em.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("emitter: %v", err)
		}
		e.close()
	})
}
