package klaviyo_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

// smsTopics are the topics setup subscribes to.
var smsTopics = []string{zenklav.TopicInboundSMS, zenklav.TopicSentSMS, zenklav.TopicFailedToDeliverSMS,
	"event:klaviyo.subscribed_to_sms_marketing", "event:klaviyo.unsubscribed_from_sms_marketing"}

func webhookFor(endpoint string) zenklav.KlaviyoWebhook {
	return zenklav.KlaviyoWebhook{Name: "zenklav c1", EndpointURL: endpoint, SecretKey: "c1-webhook-secret-0123456789", Topics: smsTopics}
}

// adminSetup is a simulator with one account whose clock moves a minute at each reading,
// so that the Webhooks API's limit of 1/s and 15/min never refuses a test, and a function
// that makes a new client: each has buckets of its own, which would otherwise pace each
// operation to one call every few seconds.
func adminSetup(t *testing.T) (*klaviyotest.Server, func() *klaviyo.Client) {
	t.Helper()
	sim, _ := setup(t)
	start := time.Now()
	var ticks atomic.Int64
	sim.SetClock(func() time.Time { return start.Add(time.Duration(ticks.Add(1)) * time.Minute) })
	return sim, func() *klaviyo.Client { return newClient(t, sim, testKey) }
}

// checkWebhook fails unless the account has exactly one webhook, and it is w, enabled.
func checkWebhook(t *testing.T, sim *klaviyotest.Server, id string, w zenklav.KlaviyoWebhook) klaviyotest.Webhook {
	t.Helper()
	got := sim.Webhooks(testKey)
	if len(got) != 1 {
		t.Fatalf("the account has %d webhooks, want 1: %+v", len(got), got)
	}
	h := got[0]
	if h.ID != id || h.Name != w.Name || h.EndpointURL != w.EndpointURL || h.SecretKey != w.SecretKey.Reveal() || !h.Enabled ||
		!reflect.DeepEqual(sorted(h.Topics), sorted(w.Topics)) || !strings.HasPrefix(h.Description, "Made by zenklav") {
		t.Errorf("webhook %+v, want %s %+v", h, id, w)
	}
	return h
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// TestEnsureWebhook: made once, then found by id and left alone, updated where it differs,
// made again after someone deleted it in Klaviyo, and deleted twice without error.
func TestEnsureWebhook(t *testing.T) {
	sim, client := adminSetup(t)
	ctx := context.Background()
	w := webhookFor("https://zenklav.example.com/webhooks/klaviyo/c1")

	id, changed, err := client().EnsureWebhook(ctx, "", w)
	if err != nil || !changed || id == "" {
		t.Fatalf("EnsureWebhook = %q, %v, %v; want a new webhook", id, changed, err)
	}
	made := checkWebhook(t, sim, id, w)

	if got, changed, err := client().EnsureWebhook(ctx, id, w); err != nil || changed || got != id {
		t.Errorf("EnsureWebhook(%s) again = %q, %v, %v; want it unchanged", id, got, changed, err)
	}
	if again := checkWebhook(t, sim, id, w); !again.Updated.Equal(made.Updated) {
		t.Errorf("the webhook was written (updated %s, then %s)", made.Updated, again.Updated)
	}

	// Same origin, another path: Klaviyo shows only the origin, the description tells.
	moved := w
	moved.EndpointURL = "https://zenklav.example.com/webhooks/klaviyo/c1-moved"
	fewer := moved
	fewer.Topics = smsTopics[:2]
	for _, next := range []zenklav.KlaviyoWebhook{moved, fewer} {
		if got, changed, err := client().EnsureWebhook(ctx, id, next); err != nil || !changed || got != id {
			t.Errorf("EnsureWebhook(%s %v) = %q, %v, %v; want %s changed", next.EndpointURL, next.Topics, got, changed, err, id)
		}
		checkWebhook(t, sim, id, next)
		if _, changed, err := client().EnsureWebhook(ctx, id, next); err != nil || changed {
			t.Errorf("EnsureWebhook(%s %v) again: changed %v, %v; want unchanged", next.EndpointURL, next.Topics, changed, err)
		}
	}
	moved = fewer

	// A lost id: the webhook of the same name is taken, with zenklav's secret set again.
	if got, changed, err := client().EnsureWebhook(ctx, "01JNOSUCHWEBHOOK0000000000", moved); err != nil || !changed || got != id {
		t.Errorf("EnsureWebhook(unknown id) = %q, %v, %v; want %s, changed (the secret)", got, changed, err, id)
	}

	if !sim.RemoveWebhook(testKey, id) {
		t.Fatal("RemoveWebhook found nothing")
	}
	again, changed, err := client().EnsureWebhook(ctx, id, w)
	if err != nil || !changed || again == id || again == "" {
		t.Fatalf("EnsureWebhook after an out-of-band delete = %q, %v, %v; want a new webhook", again, changed, err)
	}
	checkWebhook(t, sim, again, w)

	for i := range 2 {
		if err := client().DeleteWebhook(ctx, again); err != nil {
			t.Errorf("DeleteWebhook #%d: %v", i+1, err)
		}
	}
	if err := client().DeleteWebhook(ctx, ""); err != nil {
		t.Errorf("DeleteWebhook(\"\"): %v", err)
	}
	if got := sim.Webhooks(testKey); len(got) != 0 {
		t.Errorf("webhooks left: %+v", got)
	}
	sim.AssertNoViolations(t)
}

// TestEnsureWebhookAdoptsByName: a webhook of the same name that zenklav did not make (or
// whose id it lost) is taken over: its secret, endpoint and topics become zenklav's, and it
// is enabled; the account's other webhooks are left alone.
func TestEnsureWebhookAdoptsByName(t *testing.T) {
	sim, client := adminSetup(t)
	w := webhookFor("https://zenklav.example.com/webhooks/klaviyo/c1")
	other := klaviyotest.Webhook{Name: "someone else's", EndpointURL: "https://other.example.com/hook", SecretKey: "other-secret-0123456789", Enabled: true, Topics: []string{zenklav.TopicSentSMS}}
	otherID := sim.AddWebhook(testKey, other)
	oldID := sim.AddWebhook(testKey, klaviyotest.Webhook{Name: w.Name, EndpointURL: "https://old.example.com/x", SecretKey: "a-secret-nobody-knows", Topics: []string{zenklav.TopicSentSMS}})

	id, changed, err := client().EnsureWebhook(context.Background(), "", w)
	if err != nil || !changed || id != oldID {
		t.Fatalf("EnsureWebhook = %q, %v, %v; want %s taken over", id, changed, err, oldID)
	}
	var got klaviyotest.Webhook
	for _, h := range sim.Webhooks(testKey) {
		switch h.ID {
		case oldID:
			got = h
		case otherID:
			if h.Name != other.Name || h.EndpointURL != other.EndpointURL || h.SecretKey != other.SecretKey || !reflect.DeepEqual(h.Topics, other.Topics) {
				t.Errorf("the other webhook changed: %+v", h)
			}
		default:
			t.Errorf("a new webhook %+v", h)
		}
	}
	if got.SecretKey != w.SecretKey.Reveal() || got.EndpointURL != w.EndpointURL || !got.Enabled || !reflect.DeepEqual(sorted(got.Topics), sorted(w.Topics)) {
		t.Errorf("the webhook taken over is %+v, want %+v", got, w)
	}
	sim.AssertNoViolations(t)
}

// TestEnsureWebhookRefusals: what is wrong with the webhook is EINVALID, before any call for
// what the client can tell, and with Klaviyo's answer otherwise.
func TestEnsureWebhookRefusals(t *testing.T) {
	valid := webhookFor("https://zenklav.example.com/webhooks/klaviyo/c1")
	with := func(f func(*zenklav.KlaviyoWebhook)) zenklav.KlaviyoWebhook {
		w := valid
		f(&w)
		return w
	}
	tests := []struct {
		name      string
		w         zenklav.KlaviyoWebhook
		byKlaviyo bool // Klaviyo's 400 rather than the client's check
	}{
		{"no name", with(func(w *zenklav.KlaviyoWebhook) { w.Name = " " }), false},
		{"no secret", with(func(w *zenklav.KlaviyoWebhook) { w.SecretKey = "" }), false},
		{"no topics", with(func(w *zenklav.KlaviyoWebhook) { w.Topics = nil }), false},
		{"endpoint not a URL", with(func(w *zenklav.KlaviyoWebhook) { w.EndpointURL = "/webhooks/klaviyo/c1" }), false},
		{"http endpoint", with(func(w *zenklav.KlaviyoWebhook) { w.EndpointURL = "http://zenklav.example.com/webhooks/klaviyo/c1" }), true},
		{"unknown topic", with(func(w *zenklav.KlaviyoWebhook) { w.Topics = []string{"event:klaviyo.no_such_topic"} }), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, client := adminSetup(t)
			_, _, err := client().EnsureWebhook(context.Background(), "", tt.w)
			var apiErr *klaviyo.APIError
			if zenklav.ErrorCode(err) != zenklav.EINVALID || errors.As(err, &apiErr) != tt.byKlaviyo {
				t.Fatalf("EnsureWebhook: %v, want invalid (from Klaviyo: %v)", err, tt.byKlaviyo)
			}
			if tt.w.SecretKey != "" && strings.Contains(err.Error(), tt.w.SecretKey.Reveal()) {
				t.Errorf("error %q carries the secret", err)
			}
			if got := sim.Webhooks(testKey); len(got) != 0 {
				t.Errorf("webhooks made: %+v", got)
			}
			sim.AssertNoViolations(t)
		})
	}
}

// TestWebhookCallsArePaced: a second call of the same Webhooks operation waits for the
// limit of 15 a minute, and a caller whose deadline comes first is told at once.
func TestWebhookCallsArePaced(t *testing.T) {
	sim, client := adminSetup(t)
	c := client()
	ctx := context.Background()
	w := webhookFor("https://zenklav.example.com/webhooks/klaviyo/c1")
	id, _, err := c.EnsureWebhook(ctx, "", w)
	if err != nil {
		t.Fatal(err)
	}
	if _, changed, err := c.EnsureWebhook(ctx, id, w); err != nil || changed {
		t.Fatalf("EnsureWebhook by id: %v, %v", changed, err)
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, _, err = c.EnsureWebhook(short, id, w)
	if zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE || !strings.Contains(err.Error(), "rate limit") {
		t.Errorf("a third call within a second: %v, want unavailable, waiting for the rate limit", err)
	}
	if short.Err() != nil {
		t.Error("the call spent the caller's whole deadline before failing")
	}
	sim.AssertNoViolations(t)
}

// TestRegisteredWebhookReceivesTexts: the webhook setup makes receives the customers' texts,
// signed with its secret and named by its id, which klaviyo's own checks accept.
func TestRegisteredWebhookReceivesTexts(t *testing.T) {
	sim, client := adminSetup(t)
	sim.SetClock(time.Now) // the signature's timestamp must be near the receiver's clock
	got := make(chan *http.Request, 4)
	bodies := make(chan []byte, 4)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
		w.WriteHeader(http.StatusAccepted)
	}))
	defer target.Close()
	w := webhookFor(target.URL + "/webhooks/klaviyo/c1")
	id, _, err := client().EnsureWebhook(context.Background(), "", w)
	if err != nil {
		t.Fatal(err)
	}
	sim.SetSMSProfile(testKey, klaviyotest.SMSProfile{Phone: "+15005550001"})
	item, err := sim.Text("+15005550001", "Where is my order?")
	if err != nil {
		t.Fatalf("Text: %v", err)
	}
	r, body := <-got, <-bodies
	if r.URL.Path != "/webhooks/klaviyo/c1" {
		t.Errorf("delivered to %s", r.URL.Path)
	}
	sig, err := klaviyo.ParseSignature(r.Header, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := sig.Verify([]string{w.SecretKey.Reveal()}, body); err != nil {
		t.Errorf("signature: %v", err)
	}
	hook, err := klaviyo.ParseWebhook(body, sig.WebhookID())
	if err != nil || sig.WebhookID() != id {
		t.Fatalf("webhook id %q (%v), want %s", sig.WebhookID(), err, id)
	}
	if len(hook.Data) != 1 || hook.Data[0].ExternalID != item.ExternalID || hook.Data[0].Topic != zenklav.TopicInboundSMS {
		t.Errorf("items %+v, want the text", hook.Data)
	}
}
