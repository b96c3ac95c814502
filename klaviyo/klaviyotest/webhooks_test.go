package klaviyotest_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

// TestSignTestVector: the local test vector of reference/klaviyo-sms-and-oauth.md §2.4. The
// body comes first and the timestamp after; the other order gives another signature.
func TestSignTestVector(t *testing.T) {
	const (
		secret    = "klaviyo-test-secret"
		timestamp = "Thu, 04 Jan 2024 18:05:25 GMT"
		body      = `{"data":[{"external_id":"4L3cwQae2TX","topic":"event:klaviyo.sent_sms"}],"meta":{"klaviyo_webhook_id":"a8b890458b4bbfaa26d961471b83c101d6de23bd826e7e5173a15310985ec3cb"}}`
	)
	if got, want := klaviyo.Sign(secret, timestamp, []byte(body)), "5aa0e720d80b3a04ca04baf3c65cdfe31da57504af69fee8da29c35d45f0596b"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	if got, wrong := klaviyo.Sign(secret, "", []byte(timestamp+body)), "041e913b20e8df375c7984608bb7ec1407cda7b94300c4db19ab8eefb95ac329"; got != wrong {
		t.Errorf("timestamp before body = %s, want the vector's wrong-order value %s", got, wrong)
	}
}

// delivery is one webhook request a receiver got.
type delivery struct {
	header http.Header
	body   []byte
}

// receiver is a webhook target that keeps what it gets and answers status.
func receiver(t *testing.T, status int) (*httptest.Server, func() []delivery) {
	t.Helper()
	var mu sync.Mutex
	var got []delivery
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, delivery{r.Header.Clone(), body})
		mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []delivery {
		mu.Lock()
		defer mu.Unlock()
		return append([]delivery(nil), got...)
	}
}

// envelope is the body of a system webhook, as a receiver reads it.
type envelope struct {
	Data []struct {
		ExternalID string `json:"external_id"`
		Topic      string `json:"topic"`
		Payload    struct {
			Type       string `json:"type"`
			ID         string `json:"id"`
			Attributes struct {
				Timestamp       int64          `json:"timestamp"`
				Datetime        string         `json:"datetime"`
				EventProperties map[string]any `json:"event_properties"`
			} `json:"attributes"`
			Relationships struct {
				Profile struct {
					Data struct{ Type, ID string } `json:"data"`
				} `json:"profile"`
			} `json:"relationships"`
		} `json:"payload"`
	} `json:"data"`
	Meta struct {
		AccountID string `json:"klaviyo_account_id"`
		WebhookID string `json:"klaviyo_webhook_id"`
		Timestamp string `json:"timestamp"`
	} `json:"meta"`
}

// checkSigned checks what every delivery must be: JSON, its id header equal to its meta,
// its timestamp an IMF-fixdate of at, and signed with secret over body then timestamp.
func checkSigned(t *testing.T, d delivery, secret string, at time.Time) envelope {
	t.Helper()
	var env envelope
	if err := json.Unmarshal(d.body, &env); err != nil {
		t.Fatalf("body %s: %v", d.body, err)
	}
	if ct := d.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if id := d.header.Get("Klaviyo-Webhook-Id"); id == "" || id != env.Meta.WebhookID {
		t.Errorf("Klaviyo-Webhook-Id %q, meta.klaviyo_webhook_id %q: want equal", id, env.Meta.WebhookID)
	}
	ts := d.header.Get("Klaviyo-Timestamp")
	if when, err := http.ParseTime(ts); err != nil || !when.Equal(at.Truncate(time.Second)) || ts != at.UTC().Format(http.TimeFormat) {
		t.Errorf("Klaviyo-Timestamp %q, want %s as IMF-fixdate", ts, at)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(d.body)
	mac.Write([]byte(ts))
	if got, want := d.header.Get("Klaviyo-Signature"), hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("Klaviyo-Signature %q, want %q", got, want)
	}
	return env
}

func TestSendWebhook(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	at := time.Date(2026, 7, 20, 12, 0, 5, 0, time.UTC)
	sim.SetClock(func() time.Time { return at })
	sim.SetWebhookIDs("AbC123", strings.Repeat("ab", 32))
	target, got := receiver(t, http.StatusAccepted)

	inbound := sim.InboundSMSItem(klaviyotest.InboundSMS{
		EventID: "4L3cwQae2TX", MessageID: "msg-1", ConversationID: "conv-1", ProfileID: "01JPROFILE",
		From: "+15005550001", To: "+15005550000", Body: "Where is my order?",
		Media: []klaviyotest.Media{{ContentType: "image/jpeg", URL: "https://example.com/a.jpg"}},
	})
	sent := sim.SentSMSItem(klaviyotest.SentSMS{ProfileID: "01JPROFILE", From: "+15005550000", To: "+15005550001",
		Body: "20% off today", CampaignName: "Summer sale"})
	resp, err := sim.SendWebhook(target.URL, "s3cret", inbound, sent)
	if err != nil {
		t.Fatalf("SendWebhook: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("status %d, want the receiver's 202", resp.StatusCode)
	}
	deliveries := got()
	if len(deliveries) != 1 {
		t.Fatalf("%d deliveries, want 1 with both items", len(deliveries))
	}
	env := checkSigned(t, deliveries[0], "s3cret", at)
	if env.Meta.AccountID != "AbC123" || env.Meta.Timestamp != "2026-07-20T12:00:05Z" {
		t.Errorf("meta %+v", env.Meta)
	}
	if len(env.Data) != 2 {
		t.Fatalf("%d items, want 2", len(env.Data))
	}
	in := env.Data[0]
	if in.Topic != zenklav.TopicInboundSMS || in.ExternalID != "4L3cwQae2TX" || in.Payload.ID != in.ExternalID || in.Payload.Type != "event" {
		t.Errorf("inbound item %q %q, payload %q %q", in.Topic, in.ExternalID, in.Payload.Type, in.Payload.ID)
	}
	if in.Payload.Relationships.Profile.Data.ID != "01JPROFILE" || in.Payload.Attributes.Datetime != "2026-07-20T12:00:05Z" || in.Payload.Attributes.Timestamp != at.Unix() {
		t.Errorf("inbound payload %+v", in.Payload)
	}
	want := map[string]any{
		"message_id": "msg-1", "conversation_id": "conv-1", "from_phone_number": "+15005550001",
		"to_phone_number": "+15005550000", "body": "Where is my order?", "sender_type": "long_code",
		"media": []any{map[string]any{"content_type": "image/jpeg", "url": "https://example.com/a.jpg"}},
	}
	if !reflect.DeepEqual(in.Payload.Attributes.EventProperties, want) {
		t.Errorf("inbound event_properties %v, want %v", in.Payload.Attributes.EventProperties, want)
	}
	out := env.Data[1]
	wantSent := map[string]any{"body": "20% off today", "from_phone_number": "+15005550000", "to_phone_number": "+15005550001", "campaign_name": "Summer sale"}
	if out.Topic != zenklav.TopicSentSMS || out.ExternalID == "" || out.ExternalID == in.ExternalID || !reflect.DeepEqual(out.Payload.Attributes.EventProperties, wantSent) {
		t.Errorf("sent item %q %q %v, want %v", out.Topic, out.ExternalID, out.Payload.Attributes.EventProperties, wantSent)
	}
}

// TestWebhookRequestCanBeTamperedWith: a test builds the request, changes it, and sends it
// itself; the defaults name a webhook as Klaviyo's ids look.
func TestWebhookRequestCanBeTamperedWith(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	target, got := receiver(t, http.StatusUnauthorized)
	req, err := sim.WebhookRequest(target.URL, "s3cret", sim.InboundSMSItem(klaviyotest.InboundSMS{Body: "hi"}))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Klaviyo-Signature", strings.Repeat("0", 64))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	d := got()
	if len(d) != 1 || d[0].header.Get("Klaviyo-Signature") != strings.Repeat("0", 64) {
		t.Fatalf("the receiver got %v", d)
	}
	var env envelope
	if err := json.Unmarshal(d[0].body, &env); err != nil {
		t.Fatal(err)
	}
	if env.Meta.AccountID != klaviyotest.DefaultWebhookAccountID || len(env.Meta.WebhookID) != 64 {
		t.Errorf("default meta %+v", env.Meta)
	}
	if empty, err := sim.WebhookRequest(target.URL, "s"); err != nil {
		t.Error(err)
	} else if b, _ := io.ReadAll(empty.Body); !strings.HasPrefix(string(b), `{"data":[],`) {
		t.Errorf("no items: body %s, want an empty data list", b)
	}
}
