package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav/internal/testenv"
)

// TestAdminInBrowser is the setup wizard as an admin uses it, in headless Chromium against
// `zenklav all` in sandbox mode (the simulators play Zendesk and Klaviyo, consent pages
// included): sign in with the banner's admin token; name a connection and its Zendesk
// account; "Connect with Zendesk" and "Connect with Klaviyo" through their consent pages
// (authorization code with PKCE); all brands, SMS with the automation and the view; Finish.
// Then the simulated Zendesk sends a ticket event to the webhook the wizard made, and the new
// connection's health page shows it, with no restart; its test button's event reaches Klaviyo
// through the grant. Finishing again makes nothing twice;
// Disconnect removes what was made and revokes both grants. Screenshots land in
// zendesk-app/e2e/screenshots/ (admin-*.png) and docs/admin.png.
func TestAdminInBrowser(t *testing.T) {
	broker, ch := testenv.Kafka(t), testenv.ClickHouse(t)
	b := startBrowserScript(t, "../../zendesk-app", "pages.e2e.mjs")
	out := &syncBuffer{}
	startZenklavOut(t, map[string]string{
		"ZENKLAV_HTTP_ADDR": "127.0.0.1:0", "ZENKLAV_KAFKA_BROKERS": broker,
		"ZENKLAV_CLICKHOUSE_ADDR": ch, "ZENKLAV_CLICKHOUSE_DATABASE": fmt.Sprintf("admin_browser_%d", rand.N(1_000_000)),
		"ZENKLAV_DATA_DIR": t.TempDir(),
	}, out)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("zenklav's log:\n%s", out.String())
		}
	})
	banner := out.String()
	admin := regexp.MustCompile(`sign in at (http://127\.0\.0\.1:\d+/admin) with this 24-hour admin token: (\S+)`).FindStringSubmatch(banner)
	zendeskSim := regexp.MustCompile(`Zendesk is a simulator at (http://127\.0\.0\.1:\d+)`).FindStringSubmatch(banner)
	if admin == nil || zendeskSim == nil {
		t.Fatalf("the banner shows no admin page and token, or no Zendesk simulator:\n%s", banner)
	}
	shots, err := filepath.Abs("../../zendesk-app/e2e/screenshots")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	do := func(op, selector string, more ...any) pageStep {
		t.Helper()
		step := map[string]any{"op": op, "page": "admin", "selector": selector, "timeoutMs": 30_000}
		for i := 0; i+1 < len(more); i += 2 {
			step[more[i].(string)] = more[i+1]
		}
		return b.do(t, step)
	}
	wait := func(selector, text string) pageStep { t.Helper(); return do("wait", selector, "text", text) }
	shot := func(name string) { t.Helper(); do("shot", "", "path", filepath.Join(shots, name)) }
	id := fmt.Sprintf("shop%d", rand.N(1_000_000))

	// Sign in, and start a connection.
	b.do(t, map[string]any{"op": "open", "page": "admin", "url": admin[1]})
	do("fill", "input[name=token]", "value", admin[2])
	do("click", "form[data-testid=login] button")
	wait("h1", "Connections")
	do("click", "nav a[href='/admin/setup']")
	do("fill", "input[name=id]", "value", id)
	do("fill", "input[name=zendesk_url]", "value", "https://"+id+".zendesk.com")
	do("click", "[data-testid=step-start] button")
	wait("[data-testid=draft-id]", id)

	// Connect with Zendesk and with Klaviyo: each sends the browser to its consent page.
	do("click", "[data-testid=connect-zendesk]")
	wait("h1", "Allow access?")
	shot("admin-zendesk-consent.png")
	do("click", "button[value=allow]")
	wait("[data-testid=step-zendesk]", "Connected: connected with Zendesk")
	do("click", "[data-testid=connect-klaviyo]")
	wait("h1", "Klaviyo simulator")
	do("click", "button[value=allow]")
	wait("[data-testid=step-klaviyo]", "Connected: connected with Klaviyo")

	// Brands: all. SMS on, with the automation and the view.
	do("click", "input[name=brands][value=all]")
	do("click", "input[name=sms]")
	do("click", "input[name=close_solved]")
	do("click", "input[name=view]")
	do("click", "[data-testid=options] > button")
	wait("[data-testid=step-sms]", "Sync SMS conversations")
	shot("admin-wizard.png")
	do("click", "[data-testid=finish]")
	made := wait("[data-testid=changes]", "Klaviyo webhook").Text
	for _, want := range []string{"Zendesk webhook\tcreated or updated", "Zendesk automation", "Zendesk view", "Klaviyo webhook\tcreated or updated", "connection " + id + "\tstored"} {
		if !strings.Contains(made, want) {
			t.Errorf("Finish did not report %q:\n%s", want, made)
		}
	}
	wait("[data-testid=summary]", "connected with Zendesk")

	// The simulated Zendesk sends a ticket event to every webhook made through its API: the
	// new connection's is accepted by the running process, and its health page says so.
	resp, err := http.Post(zendeskSim[1]+"/sandbox/webhooks?event=ticket.created", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("the Zendesk simulator's webhook send: %d", resp.StatusCode)
	}
	page := admin[1] + "/connections/" + id
	seen := false
	// Each look is a page load, which reads every process's status: the loop is paced by it.
	for deadline := time.Now().Add(30 * time.Second); !seen && time.Now().Before(deadline); {
		b.do(t, map[string]any{"op": "open", "page": "admin", "url": page})
		health := wait("[data-testid=health]", "Last Zendesk webhook").Text
		seen = !strings.Contains(health, "Last Zendesk webhook\tnever")
	}
	if !seen {
		t.Fatal("the new connection's health page never showed its Zendesk webhook")
	}
	// The test button: a ticket event through the webhooks' path, delivered to Klaviyo with
	// the grant the wizard got.
	do("click", "[data-testid=send-test]")
	wait("[data-testid=notice]", "Test ticket event")
	delivered := false
	for deadline := time.Now().Add(30 * time.Second); !delivered && time.Now().Before(deadline); {
		b.do(t, map[string]any{"op": "open", "page": "admin", "url": page})
		health := wait("[data-testid=health]", "Last metric delivered to Klaviyo").Text
		delivered = !strings.Contains(health, "Last metric delivered to Klaviyo\tnever")
	}
	if !delivered {
		t.Fatal("the test ticket event never showed as delivered to Klaviyo on the health page")
	}
	shot("admin-connection.png")
	docs, err := filepath.Abs("../../docs/admin.png")
	if err != nil {
		t.Fatal(err)
	}
	do("shot", "", "path", docs)

	// Finish again, from the stored connection: nothing is made twice.
	do("click", "a[href='/admin/setup?edit="+id+"']")
	wait("[data-testid=draft-id]", id)
	do("click", "[data-testid=finish]")
	again := wait("[data-testid=changes]", "Klaviyo webhook").Text
	if strings.Contains(again, "created or updated") || strings.Contains(again, "\tstored") {
		t.Errorf("finishing again changed something:\n%s", again)
	}

	// Disconnect: what was made is removed, and both grants are revoked.
	do("click", "input[name=confirm]")
	do("click", "[data-testid=disconnect]")
	gone := wait("[data-testid=changes]", "removed").Text
	for _, want := range []string{"Zendesk webhook\tremoved", "Zendesk automation\tremoved", "Zendesk view\tremoved", "Klaviyo webhook\tremoved",
		"Zendesk grant\trevoked", "Klaviyo grant\trevoked", "connection " + id + "\tremoved"} {
		if !strings.Contains(gone, want) {
			t.Errorf("Disconnect did not report %q:\n%s", want, gone)
		}
	}
	if list := wait("[data-testid=connections]", "sandbox").Text; strings.Contains(list, id) {
		t.Errorf("the connection is still listed after disconnect:\n%s", list)
	}
	if r := do("wait", "main", "text", ""); len(r.ConsoleErrors) > 0 {
		t.Errorf("the admin pages logged errors: %v", r.ConsoleErrors)
	}
}
