package klaviyo_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
)

// The local test vector of ../shared/reference/klaviyo-sms-and-oauth.md §2.4: the signature is
// over the body followed by the timestamp.
const (
	vectorSecret    = "klaviyo-test-secret"
	vectorTimestamp = "Thu, 04 Jan 2024 18:05:25 GMT"
	vectorWebhookID = "a8b890458b4bbfaa26d961471b83c101d6de23bd826e7e5173a15310985ec3cb"
	vectorBody      = `{"data":[{"external_id":"4L3cwQae2TX","topic":"event:klaviyo.sent_sms"}],"meta":{"klaviyo_webhook_id":"` + vectorWebhookID + `"}}`
	vectorSignature = "5aa0e720d80b3a04ca04baf3c65cdfe31da57504af69fee8da29c35d45f0596b"
	// vectorReversed is the signature of the timestamp followed by the body: what a verifier
	// that got the order wrong would accept.
	vectorReversed = "041e913b20e8df375c7984608bb7ec1407cda7b94300c4db19ab8eefb95ac329"
)

var vectorNow = time.Date(2024, 1, 4, 18, 6, 0, 0, time.UTC)

func headers(sig, ts, id string) http.Header {
	h := http.Header{}
	for k, v := range map[string]string{klaviyo.HeaderSignature: sig, klaviyo.HeaderTimestamp: ts, klaviyo.HeaderWebhookID: id} {
		if v != "" {
			h.Set(k, v)
		}
	}
	return h
}

func TestSignTestVector(t *testing.T) {
	if got := klaviyo.Sign(vectorSecret, vectorTimestamp, []byte(vectorBody)); got != vectorSignature {
		t.Fatalf("Sign = %s, want %s", got, vectorSignature)
	}
	if got := klaviyo.Timestamp(time.Date(2024, 1, 4, 18, 5, 25, 0, time.UTC)); got != vectorTimestamp {
		t.Errorf("Timestamp = %q, want %q", got, vectorTimestamp)
	}
	for name, tc := range map[string]struct {
		sig     string
		secrets []string
		ok      bool
	}{
		"the vector":                   {vectorSignature, []string{vectorSecret}, true},
		"upper-case hex":               {strings.ToUpper(vectorSignature), []string{vectorSecret}, true},
		"the second secret of two":     {vectorSignature, []string{"klaviyo-new-secret-0001", vectorSecret}, true},
		"timestamp before the body":    {vectorReversed, []string{vectorSecret}, false},
		"another secret":               {vectorSignature, []string{"klaviyo-other-secret"}, false},
		"no secret":                    {vectorSignature, nil, false},
		"well-formed, signs something": {strings.Repeat("ab", 32), []string{vectorSecret}, false},
	} {
		t.Run(name, func(t *testing.T) {
			sig, err := klaviyo.ParseSignature(headers(tc.sig, vectorTimestamp, vectorWebhookID), vectorNow)
			if err != nil {
				t.Fatal(err)
			}
			if err := sig.Verify(tc.secrets, []byte(vectorBody)); (err == nil) != tc.ok {
				t.Errorf("Verify = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
				t.Errorf("Verify's error is %s, want unauthorized", zenklav.ErrorCode(err))
			}
		})
	}
}

// TestParseSignature: what the headers alone rule out is refused before any body.
func TestParseSignature(t *testing.T) {
	at := func(d time.Duration) string { return klaviyo.Timestamp(vectorNow.Add(d)) }
	for _, tc := range []struct {
		name, sig, ts, id string
		ok                bool
	}{
		{"the vector", vectorSignature, vectorTimestamp, vectorWebhookID, true},
		{"5 minutes old", vectorSignature, at(-5 * time.Minute), vectorWebhookID, true},
		{"5 minutes ahead", vectorSignature, at(5 * time.Minute), vectorWebhookID, true},
		{"no signature", "", vectorTimestamp, vectorWebhookID, false},
		{"no timestamp", vectorSignature, "", vectorWebhookID, false},
		{"no webhook id", vectorSignature, vectorTimestamp, "", false},
		{"signature not hex", strings.Repeat("zz", 32), vectorTimestamp, vectorWebhookID, false},
		{"signature of 16 bytes", vectorSignature[:32], vectorTimestamp, vectorWebhookID, false},
		{"signature with sha256= prefix", "sha256=" + vectorSignature, vectorTimestamp, vectorWebhookID, false},
		{"timestamp in ISO 8601", vectorSignature, "2024-01-04T18:05:25Z", vectorWebhookID, false},
		{"timestamp in Unix seconds", vectorSignature, "1704391525", vectorWebhookID, false},
		{"timestamp not GMT", vectorSignature, "Thu, 04 Jan 2024 18:05:25 +0100", vectorWebhookID, false},
		{"stale", vectorSignature, at(-5*time.Minute - time.Second), vectorWebhookID, false},
		{"ahead", vectorSignature, at(5*time.Minute + time.Second), vectorWebhookID, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := klaviyo.ParseSignature(headers(tc.sig, tc.ts, tc.id), vectorNow)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseSignature = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
				t.Errorf("error kind %s, want unauthorized", zenklav.ErrorCode(err))
			}
			if err == nil && sig.WebhookID() != tc.id {
				t.Errorf("WebhookID = %q", sig.WebhookID())
			}
		})
	}
}

func TestParseWebhook(t *testing.T) {
	w, err := klaviyo.ParseWebhook([]byte(vectorBody), vectorWebhookID)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Data) != 1 || w.Data[0].ExternalID != "4L3cwQae2TX" || w.Data[0].Topic != zenklav.TopicSentSMS || w.Meta.WebhookID != vectorWebhookID {
		t.Errorf("ParseWebhook = %+v", w)
	}
	for _, tc := range []struct{ name, body, id, kind string }{
		{"another webhook's id", vectorBody, "b" + vectorWebhookID[1:], zenklav.EUNAUTHORIZED},
		{"no meta id", `{"data":[],"meta":{}}`, vectorWebhookID, zenklav.EUNAUTHORIZED},
		{"malformed JSON", vectorBody[:40], vectorWebhookID, zenklav.EINVALID},
		{"no data", `{"meta":{"klaviyo_webhook_id":"x"}}`, "x", zenklav.EINVALID},
		{"no meta", `{"data":[]}`, "x", zenklav.EINVALID},
		{"data not a list", `{"data":{},"meta":{"klaviyo_webhook_id":"x"}}`, "x", zenklav.EINVALID},
		{"not an object", `[]`, "x", zenklav.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := klaviyo.ParseWebhook([]byte(tc.body), tc.id); zenklav.ErrorCode(err) != tc.kind {
				t.Errorf("ParseWebhook = %v, want kind %s", err, tc.kind)
			}
		})
	}
}
