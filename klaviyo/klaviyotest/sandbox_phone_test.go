package klaviyotest_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

// TestSandboxPhone texts from the phone page as its script does, and reads the thread back
// with the brand's reply: the webhook goes to the target, escaped on the page, and refused
// from another site.
func TestSandboxPhone(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	sim.SetPhone(klaviyotest.Phone{Account: key, AutoSubscribe: true})
	const ana = "+15555550177"
	_, conv := sim.SetSMSProfile(key, klaviyotest.SMSProfile{Phone: ana, Email: "ana@example.com", FirstName: "Ana", LastName: "Lima"})
	var mu sync.Mutex
	var got []string
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, string(b))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer target.Close()
	sim.SetWebhookTarget(target.URL, "phone-test-secret-0001")

	resp, page := get(t, sim.URL+"/sandbox/phone")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Ana Lima") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("page %d (CSP %q) does not start on the subscribed customer:\n%s", resp.StatusCode, resp.Header.Get("Content-Security-Policy"), page)
	}
	text := func(origin, body string) int {
		req, _ := http.NewRequest(http.MethodPost, sim.URL+"/sandbox/phone/texts", strings.NewReader(url.Values{"phone": {ana}, "body": {body}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := text(sim.URL, "<b>Where</b> is my order?"); status != http.StatusOK {
		t.Fatalf("text answered %d", status)
	}
	if status := text("http://evil.example", "STOP"); status != http.StatusForbidden {
		t.Errorf("a text from another site answered %d, want 403", status)
	}
	if status := text(sim.URL, "  "); status != http.StatusUnprocessableEntity {
		t.Errorf("an empty text answered %d, want 422", status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || !strings.Contains(got[0], `\u003cb\u003eWhere\u003c/b\u003e is my order?`) {
		t.Fatalf("webhooks sent: %q", got)
	}
	kc, err := klaviyo.NewClient(slog.New(slog.DiscardHandler), klaviyo.ClientConfig{BaseURL: sim.URL, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.SendMessage(context.Background(), conv, "It ships tomorrow"); err != nil {
		t.Fatal(err)
	}
	_, body := get(t, sim.URL+"/sandbox/phone/thread.json?phone="+url.QueryEscape(ana))
	var thread struct {
		Customer struct{ Name, Consent string }
		Messages []struct {
			Inbound bool
			Body    string
		}
	}
	if err := json.Unmarshal([]byte(body), &thread); err != nil {
		t.Fatal(err)
	}
	if thread.Customer.Name != "Ana Lima" || len(thread.Messages) != 2 || !thread.Messages[0].Inbound || thread.Messages[1].Body != "It ships tomorrow" {
		t.Errorf("thread: %s", body)
	}
	if _, page := get(t, sim.URL+"/sandbox/phone?phone="+url.QueryEscape(ana)); strings.Contains(page, "<b>Where") || !strings.Contains(page, "It ships tomorrow") {
		t.Errorf("the page shows the thread unescaped or without the reply:\n%s", page)
	}
}
