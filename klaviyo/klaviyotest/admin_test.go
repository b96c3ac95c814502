package klaviyotest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

// webhookSim is a simulator with one account whose clock moves a minute at each reading, so
// the Webhooks API's limit of 1/s never refuses a test's quick calls.
func webhookSim(t *testing.T) *klaviyotest.Server {
	t.Helper()
	sim := klaviyotest.NewServer()
	t.Cleanup(sim.Close)
	sim.AddAccount(key)
	start := time.Now()
	var ticks atomic.Int64
	sim.SetClock(func() time.Time { return start.Add(time.Duration(ticks.Add(1)) * time.Minute) })
	return sim
}

// createBody is a create_webhook body.
func createBody(name, endpoint string, topics ...string) string {
	refs := []any{}
	for _, t := range topics {
		refs = append(refs, map[string]any{"type": "webhook-topic", "id": t})
	}
	b, _ := json.Marshal(map[string]any{"data": map[string]any{
		"type":          "webhook",
		"attributes":    map[string]any{"name": name, "endpoint_url": endpoint, "secret_key": "s3cret-0123456789abcdef"},
		"relationships": map[string]any{"webhook-topics": map[string]any{"data": refs}},
	}})
	return string(b)
}

// webhookDoc is the part of a webhook answer the tests read.
type webhookDoc struct {
	Data struct {
		ID         string `json:"id"`
		Attributes struct {
			Name        string `json:"name"`
			EndpointURL string `json:"endpoint_url"`
			Enabled     bool   `json:"enabled"`
		} `json:"attributes"`
		Relationships struct {
			Topics struct {
				Data *[]struct{ ID string } `json:"data"`
			} `json:"webhook-topics"`
		} `json:"relationships"`
	} `json:"data"`
	Included []struct{ Type, ID string } `json:"included"`
}

func TestCreateWebhookRefusals(t *testing.T) {
	tests := []struct {
		name          string
		body          string
		wantStatus    int
		wantPointer   string
		wantViolation bool
	}{
		{"https", createBody("a", "https://hooks.example.com/k", zenklav.TopicSentSMS), http.StatusCreated, "", false},
		{"http on 127.0.0.1", createBody("a", "http://127.0.0.1:8080/k", zenklav.TopicInboundSMS), http.StatusCreated, "", false},
		{"http on localhost", createBody("a", "http://localhost/k", zenklav.TopicInboundSMS), http.StatusCreated, "", false},
		{"http elsewhere", createBody("a", "http://hooks.example.com/k", zenklav.TopicSentSMS), http.StatusBadRequest, "/data/attributes/endpoint_url", false},
		{"not a URL", createBody("a", "hooks.example.com/k", zenklav.TopicSentSMS), http.StatusBadRequest, "/data/attributes/endpoint_url", false},
		{"unknown topic", createBody("a", "https://hooks.example.com/k", zenklav.TopicSentSMS, "event:klaviyo.nope"), http.StatusBadRequest, "/data/relationships/webhook-topics/data/1/id", false},
		{"no topics", createBody("a", "https://hooks.example.com/k"), http.StatusBadRequest, "/data/relationships/webhook-topics/data", false},
		{"empty name", createBody("", "https://hooks.example.com/k", zenklav.TopicSentSMS), http.StatusBadRequest, "/data/attributes/name", false},
		{"no secret key", strings.Replace(createBody("a", "https://hooks.example.com/k", zenklav.TopicSentSMS), `,"secret_key":"s3cret-0123456789abcdef"`, "", 1), http.StatusBadRequest, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := webhookSim(t)
			resp, body := do(t, sim, request{path: "/api/webhooks", body: tt.body})
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if tt.wantPointer != "" && !strings.Contains(body, `"pointer":"`+tt.wantPointer+`"`) {
				t.Errorf("body %s, want an error at %s", body, tt.wantPointer)
			}
			if n := len(sim.Webhooks(key)); (n == 1) != (tt.wantStatus == http.StatusCreated) {
				t.Errorf("%d webhooks after a %d", n, resp.StatusCode)
			}
			if got := len(sim.Violations()); (got > 0) != tt.wantViolation {
				t.Errorf("violations %v, want some: %v", sim.Violations(), tt.wantViolation)
			}
			for _, v := range sim.Violations() {
				if v.Response {
					t.Errorf("the simulator's own answer broke the spec: %s", v)
				}
			}
		})
	}
}

// TestWebhooksAPI: a webhook's life through the API, read back as Klaviyo shows it: the
// endpoint truncated, the secret never, the topics when included.
func TestWebhooksAPI(t *testing.T) {
	sim := webhookSim(t)
	resp, body := do(t, sim, request{path: "/api/webhooks", body: createBody("zenklav", "https://hooks.example.com/k/c1?t=1", zenklav.TopicSentSMS, zenklav.TopicInboundSMS)})
	var made webhookDoc
	if resp.StatusCode != http.StatusCreated || json.Unmarshal([]byte(body), &made) != nil || made.Data.ID == "" {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	id := made.Data.ID
	if a := made.Data.Attributes; a.EndpointURL != "https://hooks.example.com" || !a.Enabled || strings.Contains(body, "s3cret") {
		t.Errorf("create answered %s: want the endpoint truncated, enabled, no secret", body)
	}
	var got webhookDoc
	_, body = do(t, sim, request{method: http.MethodGet, path: "/api/webhooks/" + id})
	if json.Unmarshal([]byte(body), &got); got.Data.Relationships.Topics.Data != nil || got.Included != nil {
		t.Errorf("get without include answered topics: %s", body)
	}
	_, body = do(t, sim, request{method: http.MethodGet, path: "/api/webhooks?include=webhook-topics"})
	var raw struct {
		Data []struct {
			ID            string
			Relationships struct {
				Topics struct{ Data []struct{ ID string } } `json:"webhook-topics"`
			}
		}
		Included []struct{ Type, ID string }
	}
	if err := json.Unmarshal([]byte(body), &raw); err != nil || len(raw.Data) != 1 || raw.Data[0].ID != id || len(raw.Data[0].Relationships.Topics.Data) != 2 || len(raw.Included) != 2 {
		t.Errorf("list with include: %s", body)
	}

	patch := fmt.Sprintf(`{"data":{"type":"webhook","id":%q,"attributes":{"enabled":false,"endpoint_url":"https://new.example.com/k"},
		"relationships":{"webhook-topics":{"data":[{"type":"webhook-topic","id":%q}]}}}}`, id, zenklav.TopicFailedToDeliverSMS)
	if resp, body := do(t, sim, request{method: http.MethodPatch, path: "/api/webhooks/" + id, body: patch}); resp.StatusCode != http.StatusOK {
		t.Fatalf("patch: %d %s", resp.StatusCode, body)
	}
	hooks := sim.Webhooks(key)
	if len(hooks) != 1 || hooks[0].Enabled || hooks[0].EndpointURL != "https://new.example.com/k" || hooks[0].Name != "zenklav" ||
		hooks[0].SecretKey != "s3cret-0123456789abcdef" || !slices.Equal(hooks[0].Topics, []string{zenklav.TopicFailedToDeliverSMS}) {
		t.Errorf("after the patch: %+v", hooks)
	}
	other := strings.Replace(patch, id, "01JOTHER000000000000000000", 1)
	if resp, body := do(t, sim, request{method: http.MethodPatch, path: "/api/webhooks/" + id, body: other}); resp.StatusCode != http.StatusConflict {
		t.Errorf("patch naming another id: %d %s, want 409", resp.StatusCode, body)
	}

	for i, want := range []int{http.StatusNoContent, http.StatusNotFound} {
		if resp, body := do(t, sim, request{method: http.MethodDelete, path: "/api/webhooks/" + id}); resp.StatusCode != want {
			t.Errorf("delete #%d: %d %s, want %d", i+1, resp.StatusCode, body, want)
		}
	}
	if resp, _ := do(t, sim, request{method: http.MethodGet, path: "/api/webhooks/" + id}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("get after delete: %d, want 404", resp.StatusCode)
	}
	if len(sim.Webhooks(key)) != 0 {
		t.Errorf("webhooks left: %+v", sim.Webhooks(key))
	}
	sim.AssertNoViolations(t)
}

func TestWebhookTopics(t *testing.T) {
	sim := webhookSim(t)
	_, body := do(t, sim, request{method: http.MethodGet, path: "/api/webhook-topics"})
	var doc struct{ Data []struct{ Type, ID string } }
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range doc.Data {
		ids = append(ids, d.ID)
	}
	for _, want := range []string{zenklav.TopicSentSMS, zenklav.TopicFailedToDeliverSMS, zenklav.TopicInboundSMS,
		"event:klaviyo.subscribed_to_sms_marketing", "event:klaviyo.unsubscribed_from_sms_marketing"} {
		if !slices.Contains(ids, want) {
			t.Errorf("topics %v lack %s", ids, want)
		}
	}
	if resp, _ := do(t, sim, request{method: http.MethodGet, path: "/api/webhook-topics/event:klaviyo.sent_sms"}); resp.StatusCode != http.StatusOK {
		t.Errorf("get_webhook_topic: %d", resp.StatusCode)
	}
	if resp, _ := do(t, sim, request{method: http.MethodGet, path: "/api/webhook-topics/event:klaviyo.nope"}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("get_webhook_topic of an unknown topic: %d, want 404", resp.StatusCode)
	}
	sim.AssertNoViolations(t)
}

// TestWebhooksReceiveTheirTopics: each enabled webhook made through the API gets the items of
// its topics, signed with its own secret and named by its own id; the target of
// SetWebhookTarget keeps getting the texts too.
func TestWebhooksReceiveTheirTopics(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	at := time.Date(2026, 7, 20, 12, 0, 5, 0, time.UTC)
	sim.SetClock(func() time.Time { return at })
	inbound, gotInbound := receiver(t, http.StatusAccepted)
	sent, gotSent := receiver(t, http.StatusAccepted)
	off, gotOff := receiver(t, http.StatusAccepted)
	legacy, gotLegacy := receiver(t, http.StatusAccepted)
	inboundID := sim.AddWebhook(key, klaviyotest.Webhook{Name: "in", EndpointURL: inbound.URL + "/in", SecretKey: "in-secret", Enabled: true, Topics: []string{zenklav.TopicInboundSMS, zenklav.TopicSentSMS}})
	sentID := sim.AddWebhook(key, klaviyotest.Webhook{Name: "sent", EndpointURL: sent.URL, SecretKey: "sent-secret", Enabled: true, Topics: []string{zenklav.TopicSentSMS}})
	sim.AddWebhook(key, klaviyotest.Webhook{Name: "off", EndpointURL: off.URL, SecretKey: "off-secret", Enabled: false, Topics: []string{zenklav.TopicInboundSMS}})
	sim.SetWebhookTarget(legacy.URL, "legacy-secret")
	sim.SetSMSProfile(key, klaviyotest.SMSProfile{Phone: "+15005550001"})

	item, err := sim.Text("+15005550001", "hello")
	if err != nil {
		t.Fatalf("Text: %v", err)
	}
	d := gotInbound()
	if len(d) != 1 {
		t.Fatalf("the inbound webhook got %d deliveries, want 1", len(d))
	}
	env := checkSigned(t, d[0], "in-secret", at)
	if env.Meta.WebhookID != inboundID || len(env.Data) != 1 || env.Data[0].ExternalID != item.ExternalID {
		t.Errorf("inbound delivery %+v, want the text, from webhook %s", env, inboundID)
	}
	if n := len(gotLegacy()); n != 1 {
		t.Errorf("the SetWebhookTarget target got %d deliveries, want 1", n)
	}
	if n := len(gotSent()) + len(gotOff()); n != 0 {
		t.Errorf("webhooks without the topic, or disabled, got %d deliveries", n)
	}

	n, err := sim.DeliverWebhooks(key, sim.SentSMSItem(klaviyotest.SentSMS{From: "+15005550000", To: "+15005550001", Body: "20% off"}))
	if err != nil || n != 2 {
		t.Fatalf("DeliverWebhooks = %d, %v; want 2 deliveries", n, err)
	}
	if d := gotSent(); len(d) != 1 || checkSigned(t, d[0], "sent-secret", at).Meta.WebhookID != sentID {
		t.Errorf("the sent webhook got %d deliveries, want 1 from %s", len(d), sentID)
	}
	if d := gotInbound(); len(d) != 2 || checkSigned(t, d[1], "in-secret", at).Data[0].Topic != zenklav.TopicSentSMS {
		t.Errorf("the inbound webhook, also of sent_sms, got %d deliveries, want 2", len(d))
	}
	if n := len(gotLegacy()); n != 1 {
		t.Errorf("the SetWebhookTarget target got %d deliveries, want only the text", n)
	}
}

// TestTextNeedsATarget: without SetWebhookTarget nor a webhook of the inbound topic, Text
// says so; a failing target is an error too.
func TestTextNeedsATarget(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	sim.SetSMSProfile(key, klaviyotest.SMSProfile{Phone: "+15005550001"})
	if _, err := sim.Text("+15005550001", "hello"); err == nil || !strings.Contains(err.Error(), "no webhook target") {
		t.Errorf("Text without a target: %v", err)
	}
	broken, _ := receiver(t, http.StatusInternalServerError)
	id := sim.AddWebhook(key, klaviyotest.Webhook{Name: "in", EndpointURL: broken.URL, SecretKey: "s", Enabled: true, Topics: []string{zenklav.TopicInboundSMS}})
	if _, err := sim.Text("+15005550001", "hello"); err == nil || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "500") {
		t.Errorf("Text to a failing webhook: %v", err)
	}
	if !sim.RemoveWebhook(key, id) || sim.RemoveWebhook(key, id) {
		t.Error("RemoveWebhook did not remove it once")
	}
}
