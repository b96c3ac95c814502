package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav/internal/testenv"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
	"github.com/zenklav/zenklav/seal"
	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

// TestNoSecretLeaks runs `zenklav all` with every kind of secret configured (the connections'
// Zendesk token, webhook secrets, Klaviyo key and webhook secret, the JWT signing key, the
// sealing key), drives it through accepted and refused webhooks, a failing Klaviyo and the
// operator's pages, and greps everything it said for every one of them: its logs and banner,
// the answers of its pages and APIs, and its metrics.
func TestNoSecretLeaks(t *testing.T) {
	broker, ch := testenv.Kafka(t), testenv.ClickHouse(t)
	id := fmt.Sprintf("leak-%d", rand.N(1_000_000))
	sealKey, _ := seal.NewKey("leak")
	secrets := map[string]string{
		"zendesk api token":      zendesktest.DefaultAPIToken,
		"zendesk webhook secret": "zendesk-webhook-secret-" + id,
		"klaviyo private key":    "pk_leak_private_key_" + id,
		"klaviyo webhook secret": "klaviyo-webhook-secret-" + id,
		"jwt signing key":        "jwt-signing-key-that-is-long-enough-" + id,
		"sealing key (base64)":   strings.SplitN(sealKey, ":", 2)[1],
	}
	zd := zendesktest.NewServer()
	defer zd.Close()
	kl := klaviyotest.NewServer()
	defer kl.Close()
	kl.AddAccount(secrets["klaviyo private key"])
	kl.FailNext(3, http.StatusServiceUnavailable) // failures are where secrets like to slip into logs
	accepted := make(chan struct{}, 100)
	kl.OnAccept(func(string, []klaviyo.Event) {
		select {
		case accepted <- struct{}{}:
		default:
		}
	})
	dir := t.TempDir()
	conns := filepath.Join(dir, "connections.json")
	if err := os.WriteFile(conns, fmt.Appendf(nil, `{"connections":[{"id":%q,"zendesk":{"subdomain":%q,"email":%q,"api_token":%q,
		"webhook_secrets":[%q],"brands":"all"},"klaviyo":{"private_key":%q,"webhook_secrets":[%q]},"sms":{"enabled":true}}]}`,
		id, id, zendesktest.DefaultEmail, secrets["zendesk api token"], secrets["zendesk webhook secret"],
		secrets["klaviyo private key"], secrets["klaviyo webhook secret"]), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	base := startZenklavOut(t, map[string]string{
		"ZENKLAV_ZENDESK_BASE_URL": zd.URL, "ZENKLAV_KLAVIYO_BASE_URL": kl.URL, "ZENKLAV_HTTP_ADDR": "127.0.0.1:0",
		"ZENKLAV_KAFKA_BROKERS": broker, "ZENKLAV_CLICKHOUSE_ADDR": ch, "ZENKLAV_CLICKHOUSE_DATABASE": fmt.Sprintf("leak_%d", rand.N(1_000_000)),
		"ZENKLAV_CONNECTIONS_FILE": conns, "ZENKLAV_DATA_DIR": dir, "ZENKLAV_LOG_LEVEL": "debug",
		"ZENKLAV_JWT_SIGNING_KEY": secrets["jwt signing key"], "ZENKLAV_SECRETS_KEY": sealKey,
	}, out)
	var said strings.Builder
	get := func(method, path string, body string, header http.Header) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&said, "%s %s → %d %v\n%s\n", method, path, resp.StatusCode, resp.Header, b)
	}
	sample := zd.Seed()
	ctx := context.Background()
	for i, tk := range sample.Tickets[:3] {
		body, err := zd.TicketCreated(tk.ID, zendesktest.EventMeta{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Time: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := zd.SendWebhook(ctx, base+"/webhooks/zendesk/"+id, secrets["zendesk webhook secret"], body); err == nil {
			resp.Body.Close()
		}
		ts := zendesk.Timestamp(time.Now())
		get(http.MethodPost, "/webhooks/zendesk/"+id, string(body), http.Header{ // refused: signed with another secret
			zendesk.HeaderSignatureTimestamp: {ts}, zendesk.HeaderSignature: {zendesk.Sign("not-"+secrets["zendesk webhook secret"], ts, body)},
		})
	}
	get(http.MethodPost, "/webhooks/klaviyo/"+id, `{"data":[]}`, nil)
	for _, path := range []string{"/readyz", "/healthz", "/metrics", "/reports", "/api/v1/reports/trends", "/api/v1/openapi.json"} {
		get(http.MethodGet, path, "", nil)
	}
	// Let the emitter get through Klaviyo's failures (and log them) before reading the logs.
	select {
	case <-accepted:
	case <-time.After(time.Minute):
		t.Fatalf("Klaviyo accepted no metric within a minute:\n%s", tail(out.String(), 30))
	}
	get(http.MethodGet, "/metrics", "", nil)
	everything := out.String() + said.String()
	for name, secret := range secrets {
		if strings.Contains(everything, secret) {
			i := strings.Index(everything, secret)
			t.Errorf("the %s appears in what zenklav said: …%s…", name, everything[max(0, i-200):min(len(everything), i+len(secret)+50)])
		}
	}
	// The grep saw what it should: the logs, and the metrics of the connection's work. (Which
	// log lines name the connection depends on which request met Klaviyo's failures, so the
	// connection is looked for in everything.)
	if !strings.Contains(said.String(), "zenklav_webhooks_total") || !strings.Contains(out.String(), `"msg":"zenklav started"`) || !strings.Contains(everything, id) {
		t.Errorf("the grep did not see the metrics or the logs:\n%s", tail(everything, 40))
	}
}
