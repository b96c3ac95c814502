package klaviyo_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

func TestProfileByPhone(t *testing.T) {
	sim, c := setup(t)
	ctx := context.Background()
	ann, _ := sim.SetSMSProfile(testKey, klaviyotest.SMSProfile{Phone: "+15005550001", Email: "ann@example.com", FirstName: "Ann", Consent: klaviyotest.Subscribed})
	bob, _ := sim.SetSMSProfile(testKey, klaviyotest.SMSProfile{Phone: "+15005550002", Consent: klaviyotest.Unsubscribed})
	cat, _ := sim.SetSMSProfile(testKey, klaviyotest.SMSProfile{Phone: "+15005550003", Consent: klaviyotest.NeverSubscribed})
	tests := []struct {
		name        string
		phone       string
		wantID      string // "" for not found
		wantConsent string
		wantReceive bool
		wantEmail   string
	}{
		{"subscribed", "+15005550001", ann, klaviyotest.Subscribed, true, "ann@example.com"},
		{"unsubscribed", "+15005550002", bob, klaviyotest.Unsubscribed, false, ""},
		{"never subscribed", "+15005550003", cat, klaviyotest.NeverSubscribed, false, ""},
		{"unknown", "+15005550009", "", "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, found, err := c.ProfileByPhone(ctx, tt.phone)
			if err != nil {
				t.Fatalf("ProfileByPhone: %v", err)
			}
			if found != (tt.wantID != "") {
				t.Fatalf("found = %v, want %v", found, tt.wantID != "")
			}
			if !found {
				return
			}
			if p.ID != tt.wantID || p.PhoneNumber != tt.phone || p.Email != tt.wantEmail {
				t.Errorf("profile %q %q %q, want %q %q %q", p.ID, p.PhoneNumber, p.Email, tt.wantID, tt.phone, tt.wantEmail)
			}
			if p.SMSConsent == nil || p.SMSConsent.Consent != tt.wantConsent || p.SMSConsent.CanReceive != tt.wantReceive {
				t.Errorf("SMSConsent = %+v, want %s, can receive %v", p.SMSConsent, tt.wantConsent, tt.wantReceive)
			}
			if p.Predictive != nil {
				t.Error("ProfileByPhone asked for predictive analytics, which cost a lower rate limit")
			}
		})
	}
	if p, _, _ := c.ProfileByPhone(ctx, "+15005550001"); p.FirstName != "Ann" {
		t.Errorf("FirstName = %q, want Ann", p.FirstName)
	}
	for _, bad := range []string{"", "5005550001", `+1500"5550001`} {
		if _, _, err := c.ProfileByPhone(ctx, bad); zenklav.ErrorCode(err) != zenklav.EINVALID {
			t.Errorf("ProfileByPhone(%q) = %v, want invalid", bad, err)
		}
	}
	sim.AssertNoViolations(t)
}

func TestSMSConversation(t *testing.T) {
	sim, c := setup(t)
	ctx := context.Background()
	withSMS, conv := sim.SetSMSProfile(testKey, klaviyotest.SMSProfile{Phone: "+15005550001"})
	// A profile Klaviyo knows by phone that never texted nor got a text has no conversation.
	withoutSMS := sim.SetProfileDetails(testKey, "+15005550002", klaviyotest.ProfileDetails{FirstName: "Bob"})

	got, err := c.SMSConversation(ctx, withSMS)
	if err != nil || got != conv {
		t.Errorf("SMSConversation = %q, %v; want %q", got, err, conv)
	}
	for name, id := range map[string]string{"no conversation": withoutSMS, "unknown profile": "01JZZZZZZZZZZZZZZZZZZZZZZZ"} {
		if _, err := c.SMSConversation(ctx, id); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
			t.Errorf("%s: %v, want not found", name, err)
		}
	}
	if _, err := c.SMSConversation(ctx, "../profiles"); zenklav.ErrorCode(err) != zenklav.EINVALID {
		t.Errorf("bad id: %v, want invalid", err)
	}
	sim.AssertNoViolations(t)
}

func TestSendMessage(t *testing.T) {
	sim, c := setup(t)
	ctx := context.Background()
	_, conv := sim.SetSMSProfile(testKey, klaviyotest.SMSProfile{Phone: "+15005550001"})
	for _, body := range []string{"Hi Ann, your order shipped today.", "Anything else?"} {
		if err := c.SendMessage(ctx, conv, body); err != nil {
			t.Fatalf("SendMessage(%q): %v", body, err)
		}
	}
	if got, want := sim.ConversationMessages(conv), []string{"Hi Ann, your order shipped today.", "Anything else?"}; !slices.Equal(got, want) {
		t.Errorf("the customer got %q, want %q", got, want)
	}
	sim.AssertNoViolations(t)
}

// TestSendMessageRefusals: Klaviyo's refusals are final errors that carry the answer, for the
// agent's note and the dead letter; what the client refuses itself is never sent.
func TestSendMessageRefusals(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		prepare    func(sim *klaviyotest.Server, conv string) string // the conversation to send to
		body       string
		wantKind   string
		wantStatus int // 0: the client refuses before sending
	}{
		{"unsubscribed", func(sim *klaviyotest.Server, conv string) string {
			sim.SetSMSProfile(testKey, klaviyotest.SMSProfile{Phone: "+15005550001", Consent: klaviyotest.Unsubscribed})
			return conv
		}, "hello", zenklav.EINVALID, http.StatusBadRequest},
		{"conversations disabled", func(sim *klaviyotest.Server, conv string) string {
			sim.SetSMS(testKey, klaviyotest.SMSSettings{ConversationsDisabled: true})
			return conv
		}, "hello", zenklav.EUNAUTHORIZED, http.StatusForbidden},
		{"unknown conversation", func(*klaviyotest.Server, string) string { return "01JNOSUCHCONVERSATION00000" }, "hello", zenklav.EINVALID, http.StatusNotFound},
		{"empty body", func(_ *klaviyotest.Server, conv string) string { return conv }, " \n", zenklav.EINVALID, 0},
		{"no conversation id", func(*klaviyotest.Server, string) string { return "" }, "hello", zenklav.EINVALID, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t)
			_, conv := sim.SetSMSProfile(testKey, klaviyotest.SMSProfile{Phone: "+15005550001"})
			err := c.SendMessage(ctx, tt.prepare(sim, conv), tt.body)
			if zenklav.ErrorCode(err) != tt.wantKind || zenklav.Transient(err) {
				t.Fatalf("SendMessage: %v (kind %q), want final %q", err, zenklav.ErrorCode(err), tt.wantKind)
			}
			var apiErr *klaviyo.APIError
			gotStatus := 0
			if errors.As(err, &apiErr) {
				gotStatus = apiErr.StatusCode
				if resp := zenklav.Response(err); !strings.Contains(resp, apiErr.Errors[0].Detail) {
					t.Errorf("Response %q does not carry Klaviyo's detail %q", resp, apiErr.Errors[0].Detail)
				}
			}
			if gotStatus != tt.wantStatus {
				t.Errorf("status %d, want %d (%v)", gotStatus, tt.wantStatus, err)
			}
			if got := sim.ConversationMessages(conv); len(got) != 0 {
				t.Errorf("the customer got %q", got)
			}
			sim.AssertNoViolations(t)
		})
	}
}

// TestSendMessageThrottled: a 429 is worth retrying, says so with Retry-After, and the next
// message waits it out rather than meeting another 429.
func TestSendMessageThrottled(t *testing.T) {
	sim, c := setup(t)
	ctx := context.Background()
	_, conv := sim.SetSMSProfile(testKey, klaviyotest.SMSProfile{Phone: "+15005550001"})
	sim.FailNext(1, http.StatusTooManyRequests)
	err := c.SendMessage(ctx, conv, "first")
	if zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE || !zenklav.Throttled(err) || zenklav.RetryAfter(err) != time.Second {
		t.Fatalf("SendMessage: %v, want unavailable, throttled, Retry-After 1s", err)
	}
	if d := c.MessageDelay(); d < 500*time.Millisecond {
		t.Errorf("MessageDelay after a 429 = %s, want about Retry-After", d)
	}
	start := time.Now()
	if err := c.SendMessage(ctx, conv, "second"); err != nil {
		t.Fatalf("SendMessage after 429: %v", err)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Errorf("the next message went after %s, want it to wait out Retry-After", waited)
	}
	if got := sim.ConversationMessages(conv); !slices.Equal(got, []string{"second"}) {
		t.Errorf("the customer got %q", got)
	}
	sim.AssertNoViolations(t)
}

// TestSendMessageBurstWaits: replies sent at once wait in turn for the account's limit (under
// 60 a minute, so about one a second), in the order they came, and none meets a 429; a reply
// whose deadline comes before its turn fails at once, as unavailable.
func TestSendMessageBurstWaits(t *testing.T) {
	sim, c := setup(t)
	ctx := context.Background()
	_, conv := sim.SetSMSProfile(testKey, klaviyotest.SMSProfile{Phone: "+15005550001"})
	if d := c.MessageDelay(); d != 0 {
		t.Errorf("MessageDelay of an idle client = %s, want 0", d)
	}
	bodies := []string{"one", "two", "three"}
	errs := make([]error, len(bodies))
	var wg sync.WaitGroup
	start := time.Now()
	for i, body := range bodies {
		wg.Go(func() { errs[i] = c.SendMessage(ctx, conv, body) })
		// Each caller is queued before the next comes: the order is the test's.
		for give := time.Now().Add(5 * time.Second); c.MessageDelay() < time.Duration(i+1)*900*time.Millisecond; {
			if time.Now().After(give) {
				t.Fatalf("message %d never queued: MessageDelay %s", i, c.MessageDelay())
			}
			time.Sleep(time.Millisecond)
		}
	}
	if d := c.MessageDelay(); d < 2700*time.Millisecond {
		t.Errorf("MessageDelay behind two waiting messages = %s, want about 3s", d)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := c.SendMessage(short, conv, "late"); zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE || short.Err() != nil {
		t.Errorf("SendMessage with 500ms left behind a queue: %v, want unavailable at once", err)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	if elapsed := time.Since(start); elapsed < 1800*time.Millisecond {
		t.Errorf("three messages went in %s, faster than the limit allows", elapsed)
	}
	if got := sim.ConversationMessages(conv); !slices.Equal(got, bodies) {
		t.Errorf("the customer got %q, want %q in order", got, bodies)
	}
	sim.AssertNoViolations(t)
}
