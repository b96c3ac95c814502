package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/zenklav/zenklav/internal/testenv"
)

// pageStep is what zendesk-app/e2e/pages.e2e.mjs answers to one step.
type pageStep struct {
	Error          string   `json:"error"`
	Text           string   `json:"text"`
	URL            string   `json:"url"`
	ConsoleErrors  []string `json:"consoleErrors"`
	FailedRequests []string `json:"failedRequests"`
}

// do runs one step of zendesk-app/e2e/pages.e2e.mjs and fails the test when it fails.
func (b *browser) do(t *testing.T, step map[string]any) pageStep {
	t.Helper()
	b.send(t, step)
	if !b.out.Scan() {
		t.Fatalf("the browser script ended: %v", b.out.Err())
	}
	var r pageStep
	if err := json.Unmarshal(b.out.Bytes(), &r); err != nil {
		t.Fatalf("browser result %q: %v", b.out.Text(), err)
	}
	if r.Error != "" {
		t.Fatalf("step %v: %s", step, r.Error)
	}
	return r
}

// TestSMSSandboxInBrowser is `make run`'s SMS conversation, played in headless Chromium
// against `zenklav all` in sandbox mode (the test's Kafka and ClickHouse): a customer texts
// the brand on the Klaviyo simulator's phone page, the ticket appears in the Zendesk
// simulator's agent view, the agent replies publicly there, and the reply arrives on the
// phone. Screenshots land in zendesk-app/e2e/screenshots/ (sms-phone.png, sms-agent.png).
func TestSMSSandboxInBrowser(t *testing.T) {
	broker, ch := testenv.Kafka(t), testenv.ClickHouse(t)
	b := startBrowserScript(t, "../../zendesk-app", "pages.e2e.mjs")
	out := &syncBuffer{}
	startZenklavOut(t, map[string]string{
		"ZENKLAV_HTTP_ADDR": "127.0.0.1:0", "ZENKLAV_KAFKA_BROKERS": broker,
		"ZENKLAV_CLICKHOUSE_ADDR": ch, "ZENKLAV_CLICKHOUSE_DATABASE": fmt.Sprintf("sms_browser_%d", rand.N(1_000_000)),
		"ZENKLAV_DATA_DIR": t.TempDir(),
	}, out)
	banner := out.String()
	phonePage := regexp.MustCompile(`text the brand as a customer: (http://127\.0\.0\.1:\d+/sandbox/phone)`).FindStringSubmatch(banner)
	agentPage := regexp.MustCompile(`answer the texts as an agent.*: (http://127\.0\.0\.1:\d+/agent/)`).FindStringSubmatch(banner)
	if phonePage == nil || agentPage == nil {
		t.Fatalf("the banner shows no phone page or no agent view:\n%s", banner)
	}
	shots, err := filepath.Abs("../../zendesk-app/e2e/screenshots")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	wait := func(page, selector, text string) pageStep {
		t.Helper()
		return b.do(t, map[string]any{"op": "wait", "page": page, "selector": selector, "text": text, "timeoutMs": 30_000})
	}

	// The phone starts on the sandbox's subscribed customer.
	b.do(t, map[string]any{"op": "open", "page": "phone", "url": phonePage[1]})
	wait("phone", "#customer", "Sofia Reyes")
	// Sofia's conversation is remembered in the test's Kafka from earlier runs, which
	// the simulators of this run know nothing of: a number of this run's own starts afresh,
	// typed in as a person would.
	phone := fmt.Sprintf("+1555%07d", rand.N(10_000_000))
	b.do(t, map[string]any{"op": "fill", "page": "phone", "selector": "#pick-phone", "value": phone})
	b.do(t, map[string]any{"op": "click", "page": "phone", "selector": "#pick-form button"})
	wait("phone", "#customer", phone)
	b.do(t, map[string]any{"op": "fill", "page": "phone", "selector": "#text-body", "value": "Where is my order?"})
	b.do(t, map[string]any{"op": "click", "page": "phone", "selector": "#text-send"})
	wait("phone", "#text-status", "Sent.")
	wait("phone", "#thread", "Where is my order?")

	// The text is a ticket in the agent view, marked SMS; the agent answers it there.
	b.do(t, map[string]any{"op": "open", "page": "agent", "url": agentPage[1]})
	row := wait("agent", "#tickets", "SMS: Where is my order?")
	if !strings.Contains(row.Text, "SMS: Where is my order?\tSMS") && !strings.Contains(row.Text, "SMS: Where is my order? SMS") {
		t.Errorf("the SMS ticket is not marked SMS in the list:\n%s", row.Text)
	}
	b.do(t, map[string]any{"op": "click", "page": "agent", "selector": `#tickets tr:has-text("Where is my order?") a`})
	wait("agent", "#comments", "Where is my order?")
	const reply = "It ships tomorrow: tracking 1Z999AA10123456784"
	b.do(t, map[string]any{"op": "fill", "page": "agent", "selector": "#reply-body", "value": reply})
	b.do(t, map[string]any{"op": "click", "page": "agent", "selector": "#reply-submit"})
	wait("agent", "#reply-status", "Reply sent.")
	wait("agent", "#comments", reply)

	// The reply went out through Klaviyo's Conversations API, to the phone.
	got := wait("phone", "#thread", reply)
	if i, j := strings.Index(got.Text, "Where is my order?"), strings.Index(got.Text, reply); i < 0 || j < i {
		t.Errorf("the phone's thread is not the text then the reply:\n%s", got.Text)
	}
	b.do(t, map[string]any{"op": "shot", "page": "phone", "path": filepath.Join(shots, "sms-phone.png")})
	last := b.do(t, map[string]any{"op": "shot", "page": "agent", "path": filepath.Join(shots, "sms-agent.png")})
	phoneEnd := b.do(t, map[string]any{"op": "open", "page": "phone", "url": phonePage[1] + "?phone=" + url.QueryEscape(phone)})
	for name, r := range map[string]pageStep{"agent view": last, "phone page": phoneEnd} {
		// The sidebar app in the agent view is zenklav's; its errors are the sidebar test's.
		if len(r.ConsoleErrors) > 0 || len(r.FailedRequests) > 0 {
			t.Errorf("%s: errors in the browser console %q, failed requests %q", name, r.ConsoleErrors, r.FailedRequests)
		}
	}
}
