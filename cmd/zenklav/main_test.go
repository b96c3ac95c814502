package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenklav/zenklav/kafka"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/internal/golden"

	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// syncBuffer is zenklav's stdout in the test: written by zenklav, read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startZenklav runs `zenklav all` in the test against the real Kafka and ClickHouse and
// returns its base URL once it says it started.
func startZenklav(t *testing.T, env map[string]string) string {
	t.Helper()
	return startZenklavOut(t, env, &syncBuffer{})
}

// startZenklavOut is startZenklav writing zenklav's output to out.
func startZenklavOut(t *testing.T, env map[string]string, out *syncBuffer) string {
	t.Helper()
	return startRole(t, "all", env, out)
}

// startRole runs `zenklav ROLE` in the test and returns its base URL once it says it started;
// it stops with the test.
func startRole(t *testing.T, role string, env map[string]string, out *syncBuffer) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{role}, func(k string) string { return env[k] }, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("zenklav %s: %v", role, err)
		}
	})
	deadline := time.After(60 * time.Second)
	for {
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			var line struct{ Msg, HTTP string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "zenklav started" {
				return line.HTTP
			}
		}
		select {
		case err := <-done:
			t.Fatalf("zenklav %s stopped at start: %v\n%s", role, err, out)
		case <-deadline:
			t.Fatalf("zenklav %s did not start within a minute:\n%s", role, out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

const acmeSecret = "acme-webhook-signing-secret-1"

// TestEndToEnd sends a ticket's life as signed Zendesk webhooks, with a duplicate and an
// out-of-order delivery, through the whole process, and checks that ClickHouse counts each
// event exactly once and that Klaviyo holds exactly one Opened Ticket and one Resolved
// Ticket for the requester, with the fourteen properties of testdata/ticket_metrics.golden.json.
func TestEndToEnd(t *testing.T) {
	broker, ch := testenv.Kafka(t), testenv.ClickHouse(t)
	db := fmt.Sprintf("e2e_%d_%d", time.Now().UnixNano(), rand.N(1000))
	// Other tests write to ticket-events.v1 on the same broker: a tenant of our own keeps
	// their events out of our counts.
	tenant := fmt.Sprintf("e2e-%d", rand.N(1_000_000))
	dir := t.TempDir()
	conns := filepath.Join(dir, "connections.json")
	zd := zendesktest.NewServer()
	defer zd.Close()
	kl := klaviyotest.NewServer()
	defer kl.Close()
	const klaviyoKey = "pk_e2e_test_account"
	kl.AddAccount(klaviyoKey)
	if err := os.WriteFile(conns, fmt.Appendf(nil, `{"connections":[{"id":%q,"zendesk":{"subdomain":%q,
		"email":%q,"api_token":%q,"webhook_secrets":[%q],"brands":"all"},"klaviyo":{"private_key":%q},"sms":{"enabled":false}}]}`,
		tenant, tenant, zendesktest.DefaultEmail, zendesktest.DefaultAPIToken, acmeSecret, klaviyoKey), 0o600); err != nil {
		t.Fatal(err)
	}
	base := startZenklav(t, map[string]string{
		"ZENKLAV_ZENDESK_BASE_URL":    zd.URL,
		"ZENKLAV_KLAVIYO_BASE_URL":    kl.URL,
		"ZENKLAV_HTTP_ADDR":           "127.0.0.1:0",
		"ZENKLAV_KAFKA_BROKERS":       broker,
		"ZENKLAV_CLICKHOUSE_ADDR":     ch,
		"ZENKLAV_CLICKHOUSE_DATABASE": db,
		"ZENKLAV_CONNECTIONS_FILE":    conns,
		"ZENKLAV_SINK_BATCH_WAIT":     "100ms",
		"ZENKLAV_DATA_DIR":            dir,
	})

	sample := zd.Seed()
	ticket := sample.Tickets[1].ID // the one with a custom field
	url := base + "/webhooks/zendesk/" + tenant
	ctx := context.Background()
	send := func(body []byte, want int) {
		t.Helper()
		resp, err := zd.SendWebhook(ctx, url, acmeSecret, body)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("webhook answered %d %s, want %d", resp.StatusCode, b, want)
		}
	}
	at := time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC) // fixed: the golden file holds the metrics' times
	meta := func(i int) zendesktest.EventMeta {
		return zendesktest.EventMeta{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Time: at.Add(time.Duration(i) * time.Minute)}
	}
	var bodies [][]byte
	add := func(b []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	add(zd.TicketCreated(ticket, meta(0)))
	previous := "new"
	for i, status := range []string{"open", "pending", "solved", "closed"} {
		if _, err := zd.UpdateTicket(ticket, func(tk *zendesk.Ticket) { tk.Status = status }); err != nil {
			t.Fatal(err)
		}
		add(zd.TicketStatusChanged(ticket, previous, meta(i+1)))
		previous = status
	}
	add(zd.TicketCommentAdded(ticket, zendesktest.Comment{Body: "Thanks!", Public: true}, meta(5)))
	// Another customer's ticket opens: her Open_tickets becomes 1, while his ends at 0.
	add(zd.TicketCreated(sample.Tickets[0].ID, meta(6)))

	// Delivered out of order (closed before solved), and the created event twice.
	for _, i := range []int{0, 1, 2, 4, 3, 5, 6, 0} {
		send(bodies[i], http.StatusAccepted)
	}
	send([]byte(`{"type":"zen:event-type:user.created","id":"u-1","detail":{}}`), http.StatusOK)

	store, err := analytics.Open(ctx, slog.New(slog.DiscardHandler), analytics.Config{Addr: ch, Database: db, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// The sink writes within a batch wait; poll for the events to arrive, then check counts.
	deadline := time.Now().Add(60 * time.Second)
	for {
		rows, err := store.CountTicketEventRows(ctx, tenant)
		if err == nil && rows >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ClickHouse holds %d rows of 8 deliveries after a minute (%v)", rows, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for typ, want := range map[string]uint64{
		"": 7, schemas.TicketCreated: 2, schemas.TicketStatusChanged: 4, schemas.TicketCommentAdded: 1,
	} {
		got, err := store.CountTicketEvents(ctx, analytics.EventFilter{Connection: tenant, Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("count of %q events = %d, want %d", typ, got, want)
		}
	}

	// Klaviyo: wait until the emitter has committed everything in the topic, so a duplicate
	// it was still sending would show.
	deadline = time.Now().Add(60 * time.Second)
	for {
		p, err := kafka.GroupProgress(ctx, []string{broker}, schemas.TicketEventsTopic, emitter.Group)
		if err == nil && p.Committed == p.End && len(kl.Events(klaviyoKey)) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute Klaviyo holds %d events; emitter progress %+v (%v)", len(kl.Events(klaviyoKey)), p, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	golden.Check(t, "testdata/ticket_metrics.golden.json", metricsJSON(t, kl.Events(klaviyoKey), tenant))
	// Open_tickets follows the metrics: his ticket closed, hers is open.
	for who, want := range map[string]float64{sample.Customers[1].Email: 0, sample.Customers[0].Email: 1} {
		for {
			props, ok := kl.Profile(klaviyoKey, who)
			got, isNumber := props[zenklav.OpenTicketsProperty].(float64)
			if ok && isNumber && got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("profile %s: Open_tickets %v (profile found: %v), want %v", who, props[zenklav.OpenTicketsProperty], ok, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	zd.AssertNoViolations(t)
	kl.AssertNoViolations(t)
}

// metricsJSON renders Klaviyo events for a golden file: sorted by metric, with the test's
// random connection id replaced by CONNECTION.
func metricsJSON(t *testing.T, events []klaviyo.Event, tenant string) []byte {
	t.Helper()
	// By metric, then time: two tickets' Opened Ticket arrive in either order.
	slices.SortFunc(events, func(a, b klaviyo.Event) int {
		return cmp.Or(strings.Compare(a.Metric, b.Metric), a.Time.Compare(b.Time))
	})
	b, err := json.MarshalIndent(events, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(bytes.ReplaceAll(b, []byte(tenant), []byte("CONNECTION")), '\n')
}

// TestSandboxMode is `make run`'s path: no brokers and no connections file, so `zenklav all`
// runs the embedded broker and the Zendesk simulator; a webhook the simulator sends reaches
// ClickHouse.
func TestSandboxMode(t *testing.T) {
	ch := testenv.ClickHouse(t)
	db := fmt.Sprintf("sandbox_%d_%d", time.Now().UnixNano(), rand.N(1000))
	out := &syncBuffer{}
	base := startZenklavOut(t, map[string]string{
		"ZENKLAV_HTTP_ADDR":           "127.0.0.1:0",
		"ZENKLAV_CLICKHOUSE_ADDR":     ch,
		"ZENKLAV_CLICKHOUSE_DATABASE": db,
		"ZENKLAV_SINK_BATCH_WAIT":     "100ms",
		"ZENKLAV_DATA_DIR":            t.TempDir(),
	}, out)
	banner := out.String()
	for _, want := range []string{"SANDBOX MODE", "embedded broker", "openssl dgst -sha256 -hmac", base + "/webhooks/zendesk/sandbox", "/agent/tickets/"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the start-up banner lacks %q:\n%s", want, banner)
		}
	}
	sim := regexp.MustCompile(`curl -sS -X POST '(http://127\.0\.0\.1:\d+/sandbox/webhooks)\?event=ticket\.created'`).FindStringSubmatch(banner)
	if sim == nil {
		t.Fatalf("the banner shows no simulator command:\n%s", banner)
	}
	// The agent's ticket view loads the sidebar app from this zenklav, with a signed token.
	agent := regexp.MustCompile(`(http://127\.0\.0\.1:\d+/agent/tickets/\d+)`).FindStringSubmatch(banner)
	if agent == nil {
		t.Fatalf("the banner shows no agent page:\n%s", banner)
	}
	if resp, err := http.Get(agent[1]); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), base+"/app/sidebar?") || !strings.Contains(string(body), `name="token"`) {
			t.Errorf("the agent page (%d) does not post a token to %s/app/sidebar:\n%s", resp.StatusCode, base, body)
		}
	}
	// The banner's reports link carries a token the reports API takes.
	link := regexp.MustCompile(`(http://127\.0\.0\.1:\d+)/reports#token=(\S+)`).FindStringSubmatch(banner)
	if link == nil {
		t.Fatalf("the banner shows no reports link:\n%s", banner)
	}
	req, _ := http.NewRequest(http.MethodGet, link[1]+"/api/v1/reports/trends?connection=sandbox", nil)
	req.Header.Set("Authorization", "Bearer "+link[2])
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the banner's token on the reports API: %d %s", resp.StatusCode, body)
		}
	}
	resp, err := http.Post(sim[1]+"?event=ticket.created", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var sent struct {
		TargetStatus int `json:"target_status"`
	}
	err = json.NewDecoder(resp.Body).Decode(&sent)
	resp.Body.Close()
	if err != nil || sent.TargetStatus != http.StatusAccepted {
		t.Fatalf("the simulator's webhook got %d from zenklav (%v)", sent.TargetStatus, err)
	}
	store, err := analytics.Open(context.Background(), slog.New(slog.DiscardHandler), analytics.Config{Addr: ch, Database: db, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := store.CountTicketEvents(context.Background(), analytics.EventFilter{Connection: "sandbox"})
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ClickHouse counts %d sandbox events after 30 s (%v), want 1", n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The ticket's Opened Ticket shows on the Klaviyo simulator's sandbox page, with the
	// requester's Open_tickets.
	page := regexp.MustCompile(`watch the metrics arrive at (http://127\.0\.0\.1:\d+/sandbox)`).FindStringSubmatch(banner)
	if page == nil {
		t.Fatalf("the banner shows no Klaviyo sandbox page:\n%s", banner)
	}
	for {
		var view struct {
			Accounts []struct {
				Events []struct {
					Metric string `json:"metric"`
				} `json:"events"`
				Profiles []struct {
					Properties map[string]any `json:"properties"`
				} `json:"profiles"`
			} `json:"accounts"`
		}
		resp, err := http.Get(page[1] + "/events.json")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&view)
			resp.Body.Close()
		}
		// Besides the seeded profile with its orders (the sidebar's demo), exactly one
		// Opened Ticket arrives, and its requester's profile counts one open ticket.
		if err == nil && len(view.Accounts) == 1 {
			opened, counted := 0, 0
			for _, e := range view.Accounts[0].Events {
				if e.Metric == "Opened Ticket" {
					opened++
				}
			}
			for _, p := range view.Accounts[0].Profiles {
				if n, ok := p.Properties["Open_tickets"]; ok {
					counted++
					if n != 1.0 {
						t.Errorf("Open_tickets = %v, want 1", n)
					}
				}
			}
			if opened == 1 && counted == 1 {
				break
			}
			if opened > 1 || counted > 1 {
				t.Fatalf("the sandbox Klaviyo shows %d Opened Ticket and %d profiles with Open_tickets, want 1 and 1", opened, counted)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox Klaviyo shows %+v (%v), want one Opened Ticket and one profile", view, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStartupFailureReturns: a bad connections file must end `zenklav all` with its error,
// not leave the already-built parts running.
func TestStartupFailureReturns(t *testing.T) {
	ch := testenv.ClickHouse(t)
	bad := filepath.Join(t.TempDir(), "connections.json")
	if err := os.WriteFile(bad, []byte(`{"connections":[{"id":"Bad Id"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	env := map[string]string{
		"ZENKLAV_HTTP_ADDR": "127.0.0.1:0", "ZENKLAV_CLICKHOUSE_ADDR": ch, "ZENKLAV_DATA_DIR": t.TempDir(),
		"ZENKLAV_CLICKHOUSE_DATABASE": fmt.Sprintf("fail_%d", rand.N(1_000_000)), "ZENKLAV_CONNECTIONS_FILE": bad,
	}
	err := run(ctx, []string{"all"}, func(k string) string { return env[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "id must be") {
		t.Fatalf("run = %v, want the connections file's error", err)
	}
	if ctx.Err() != nil {
		t.Fatal("run returned only at the deadline: a part kept running")
	}
}

func TestRunRejectsUnknownCommand(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, &out)
	if err == nil || !strings.Contains(err.Error(), "frobnicate") || !strings.Contains(out.String(), "Usage") {
		t.Fatalf("run frobnicate = %v, printed %q", err, out.String())
	}
}

func TestRoleNeedsKafkaOutsideAll(t *testing.T) {
	err := run(context.Background(), []string{"api"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ZENKLAV_KAFKA_BROKERS") {
		t.Fatalf("api without brokers = %v", err)
	}
}

func TestMigrateCommand(t *testing.T) {
	ch := testenv.ClickHouse(t)
	db := fmt.Sprintf("migrate_%d", rand.N(1_000_000))
	env := map[string]string{"ZENKLAV_CLICKHOUSE_ADDR": ch, "ZENKLAV_CLICKHOUSE_DATABASE": db}
	for range 2 { // the second run finds nothing to do
		if err := run(context.Background(), []string{"migrate"}, func(k string) string { return env[k] }, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	store, err := analytics.Open(context.Background(), slog.New(slog.DiscardHandler), analytics.Config{Addr: ch, Database: db, User: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	defer store.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
	if n, err := store.CountTicketEvents(context.Background(), analytics.EventFilter{Connection: "x"}); err != nil || n != 0 {
		t.Fatalf("after migrate, counting ticket events = %d, %v", n, err)
	}
}
