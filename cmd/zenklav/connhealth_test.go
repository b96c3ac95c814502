package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/connstatus"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/ingest"
	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// TestConnectionHealth runs `zenklav all` and follows one connection's health as an admin
// sees it: a Zendesk webhook shows as the last webhook; the test button's event goes through
// Kafka and the emitter to Klaviyo and shows as the last delivery; once Klaviyo answers 401
// (a revoked key) the report advises "reconnect Klaviyo", and the event is a dead letter,
// not retried. The metrics say the same per connection, and no answer holds a secret.
func TestConnectionHealth(t *testing.T) {
	broker, ch := testenv.Kafka(t), testenv.ClickHouse(t)
	tenant := fmt.Sprintf("health-%d", rand.N(1_000_000))
	dir := t.TempDir()
	zd := zendesktest.NewServer()
	defer zd.Close()
	kl := klaviyotest.NewServer()
	defer kl.Close()
	const klaviyoKey, signingKey = "pk_health_test_account", "health-test-signing-key-0123456789abcdef"
	kl.AddAccount(klaviyoKey)
	conns := filepath.Join(dir, "connections.json")
	if err := os.WriteFile(conns, fmt.Appendf(nil, `{"connections":[{"id":%q,"zendesk":{"subdomain":%q,
		"email":%q,"api_token":%q,"webhook_secrets":[%q],"brands":"all"},"klaviyo":{"private_key":%q},"sms":{"enabled":false}}]}`,
		tenant, tenant, zendesktest.DefaultEmail, zendesktest.DefaultAPIToken, acmeSecret, klaviyoKey), 0o600); err != nil {
		t.Fatal(err)
	}
	base := startZenklav(t, map[string]string{
		"ZENKLAV_ZENDESK_BASE_URL": zd.URL, "ZENKLAV_KLAVIYO_BASE_URL": kl.URL,
		"ZENKLAV_HTTP_ADDR": "127.0.0.1:0", "ZENKLAV_KAFKA_BROKERS": broker,
		"ZENKLAV_CLICKHOUSE_ADDR": ch, "ZENKLAV_CLICKHOUSE_DATABASE": fmt.Sprintf("health_%d_%d", time.Now().UnixNano(), rand.N(1000)),
		"ZENKLAV_CONNECTIONS_FILE": conns, "ZENKLAV_DATA_DIR": dir, "ZENKLAV_JWT_SIGNING_KEY": "2026-11:" + signingKey,
	})
	issuer, err := auth.NewReports([]auth.SigningKey{{ID: "2026-11", Secret: signingKey}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := issuer.Issue(auth.TokenRequest{Subject: "ops", Role: auth.RoleAdmin, Connections: []string{tenant}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := &healthClient{t: t, base: base, token: admin, tenant: tenant, secrets: []string{klaviyoKey, acmeSecret, zendesktest.DefaultAPIToken, signingKey}}

	if rep := h.report(); rep.Connection != tenant || !rep.LastWebhook.IsZero() || !rep.LastDelivery.IsZero() {
		t.Fatalf("before anything: %+v, want no webhook and no delivery", rep)
	}

	// A webhook: the last webhook.
	sample := zd.Seed()
	sent := time.Now().Truncate(time.Second)
	body, err := zd.TicketCreated(sample.Tickets[0].ID, zendesktest.EventMeta{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := zd.SendWebhook(context.Background(), base+"/webhooks/zendesk/"+tenant, acmeSecret, body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
	h.waitFor("the webhook", func(r connstatus.Report) bool { return !r.LastWebhook.Before(sent) })
	h.waitFor("the webhook's metric", func(r connstatus.Report) bool { return len(kl.Events(klaviyoKey)) == 1 && !r.LastDelivery.IsZero() })

	// The test button: the last delivery, of the test ticket's metric.
	pressed := time.Now()
	test := h.test()
	h.waitFor("the test event's delivery", func(r connstatus.Report) bool {
		return !r.LastDelivery.Before(pressed) && r.Healthy
	})
	events := kl.Events(klaviyoKey)
	if !slices.ContainsFunc(events, func(e klaviyo.Event) bool {
		id, _ := e.Properties["Ticket_id"].(float64) // JSON's number: exact below 2^53, as test tickets are
		return e.Properties["Subject"] == ingest.TestSubject && e.Profile.Email == ingest.TestEmail && int64(id) == test.TicketID
	}) {
		t.Errorf("Klaviyo holds %+v: no Opened Ticket of test ticket %d", events, test.TicketID)
	}

	// Klaviyo refuses the key: the report advises reconnecting, once per metric, no retry loop.
	kl.SetFault(http.StatusUnauthorized, 1)
	t.Cleanup(func() { kl.SetFault(0, 0) })
	h.test()
	rep := h.waitFor("the refusal", func(r connstatus.Report) bool {
		return len(r.Errors) > 0 && r.Errors[0].Kind == "klaviyo_unauthorized" && r.DeadLetters > 0
	})
	e := rep.Errors[0]
	if e.Advice != "reconnect Klaviyo" || rep.Healthy || !slices.ContainsFunc(rep.Problems, func(p string) bool { return strings.Contains(p, "reconnect Klaviyo") }) {
		t.Errorf("report %+v: want it unhealthy, advising to reconnect Klaviyo", rep)
	}
	// The dead letter is written when the emitter gives up: by then a retry loop would have
	// counted more than the one failure.
	if e.Count != 1 {
		t.Errorf("klaviyo_unauthorized counted %d times for one metric: it was retried", e.Count)
	}
	if _, ok := rep.Lag[emitter.Group]; !ok {
		t.Errorf("lag %v: no %s", rep.Lag, emitter.Group)
	}
	h.metricsSay(fmt.Sprintf(`zenklav_connection_errors_total{connection=%q,kind="klaviyo_unauthorized"} 1`, tenant),
		fmt.Sprintf(`zenklav_connection_last_webhook_timestamp_seconds{connection=%q}`, tenant),
		fmt.Sprintf(`zenklav_connection_last_delivery_timestamp_seconds{connection=%q}`, tenant),
		// The webhook's metric and the first test's were delivered, the second's refused.
		fmt.Sprintf(`zenklav_emitter_metrics_total{connection=%q,result="delivered",stage="main"} 2`, tenant),
		fmt.Sprintf(`zenklav_emitter_metrics_total{connection=%q,result="dead_letter",stage="main"} 1`, tenant),
		fmt.Sprintf(`zenklav_klaviyo_requests_total{account=%q,endpoint="/api/events",outcome="ok"} 2`, tenant),
		fmt.Sprintf(`zenklav_klaviyo_requests_total{account=%q,endpoint="/api/events",outcome="unauthorized"} 1`, tenant),
		fmt.Sprintf(`zenklav_klaviyo_limit_allowed_per_second{account=%q,endpoint="/api/events"}`, tenant),
		fmt.Sprintf(`zenklav_klaviyo_limit_share{account=%q} 1`, tenant),
		fmt.Sprintf(`zenklav_zendesk_requests_total{connection=%q,outcome="ok"}`, tenant),
		fmt.Sprintf(`zenklav_zendesk_rate_limit{connection=%q} %d`, tenant, zendesktest.DefaultRateLimit),
		fmt.Sprintf(`zenklav_consumer_lag_messages{group=%q,topic="ticket-events.v1"}`, emitter.Group))
}

// healthClient asks zenklav's health API as an admin.
type healthClient struct {
	t                   *testing.T
	base, token, tenant string
	secrets             []string // that no answer may hold
}

func (h *healthClient) do(method, path string) []byte {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.StatusCode/100 != 2 {
		h.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	for _, s := range h.secrets {
		if strings.Contains(string(b), s) {
			h.t.Fatalf("%s %s answers with a secret: %s", method, path, b)
		}
	}
	return b
}

func (h *healthClient) report() connstatus.Report {
	h.t.Helper()
	var rep connstatus.Report
	if err := json.Unmarshal(h.do(http.MethodGet, "/api/v1/connections/"+h.tenant+"/health"), &rep); err != nil {
		h.t.Fatal(err)
	}
	return rep
}

type testAnswer struct {
	EventID  string `json:"event_id"`
	TicketID int64  `json:"ticket_id"`
}

func (h *healthClient) test() testAnswer {
	h.t.Helper()
	var a testAnswer
	if err := json.Unmarshal(h.do(http.MethodPost, "/api/v1/connections/"+h.tenant+"/test"), &a); err != nil || a.EventID == "" || a.TicketID < ingest.TestTicketBase {
		h.t.Fatalf("test event answer %+v (%v)", a, err)
	}
	return a
}

// waitFor polls the report until ok holds, for up to a minute (as TestEndToEnd waits: the
// consumer groups may take a while to join on the shared broker), and returns it.
func (h *healthClient) waitFor(what string, ok func(connstatus.Report) bool) connstatus.Report {
	h.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		rep := h.report()
		if ok(rep) {
			return rep
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after a minute the health does not show %s: %+v", what, rep)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metricsSay checks /metrics has each line (or series).
func (h *healthClient) metricsSay(lines ...string) {
	h.t.Helper()
	resp, err := http.Get(h.base + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, l := range lines {
		if !strings.Contains(string(b), l) {
			h.t.Errorf("/metrics has no %s", l)
		}
	}
	for _, s := range h.secrets {
		if strings.Contains(string(b), s) {
			h.t.Errorf("/metrics shows a secret")
		}
	}
}
