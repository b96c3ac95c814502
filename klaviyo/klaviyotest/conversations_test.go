package klaviyotest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

// message is a create_conversation_message body for conv.
func message(conv, body string) string {
	b, _ := json.Marshal(map[string]any{"data": map[string]any{
		"type": "conversation-message", "attributes": map[string]any{"body": body},
		"relationships": map[string]any{"conversation": map[string]any{"data": map[string]any{"type": "conversation", "id": conv}}},
	}})
	return string(b)
}

func TestConversationMessageRefusals(t *testing.T) {
	tests := []struct {
		name          string
		prepare       func(sim *klaviyotest.Server) string // the body to post
		wantStatus    int
		wantCode      string
		wantViolation bool
	}{
		{"accepted", func(sim *klaviyotest.Server) string { return message(conv(sim, klaviyotest.Subscribed), "hello") }, http.StatusAccepted, "", false},
		{"unsubscribed", func(sim *klaviyotest.Server) string { return message(conv(sim, klaviyotest.Unsubscribed), "hello") }, http.StatusBadRequest, "invalid", false},
		{"never subscribed", func(sim *klaviyotest.Server) string { return message(conv(sim, klaviyotest.NeverSubscribed), "hello") }, http.StatusBadRequest, "invalid", false},
		{"empty body", func(sim *klaviyotest.Server) string { return message(conv(sim, klaviyotest.Subscribed), "") }, http.StatusBadRequest, "invalid", false},
		{"blank body", func(sim *klaviyotest.Server) string { return message(conv(sim, klaviyotest.Subscribed), " \t") }, http.StatusBadRequest, "invalid", false},
		{"unknown conversation", func(*klaviyotest.Server) string { return message("01JNOSUCHCONVERSATION00000", "hello") }, http.StatusNotFound, "not_found", false},
		{"conversations disabled", func(sim *klaviyotest.Server) string {
			id := conv(sim, klaviyotest.Subscribed)
			sim.SetSMS(key, klaviyotest.SMSSettings{ConversationsDisabled: true})
			return message(id, "hello")
		}, http.StatusForbidden, "permission_denied", false},
		{"no conversation relationship", func(*klaviyotest.Server) string {
			return `{"data":{"type":"conversation-message","attributes":{"body":"hello"}}}`
		}, http.StatusBadRequest, "invalid", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := klaviyotest.NewServer()
			defer sim.Close()
			sim.AddAccount(key)
			resp, body := do(t, sim, request{path: "/api/conversation-messages", body: tt.prepare(sim)})
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if tt.wantCode == "" && body != "" {
				t.Errorf("body %q, want none", body)
			}
			if tt.wantCode != "" && !strings.Contains(body, `"code":"`+tt.wantCode+`"`) {
				t.Errorf("body %s, want code %q", body, tt.wantCode)
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

// conv makes the customer +15005550001 with consent and returns the id of its conversation.
func conv(sim *klaviyotest.Server, consent string) string {
	_, id := sim.SetSMSProfile(key, klaviyotest.SMSProfile{Phone: "+15005550001", Consent: consent})
	return id
}

func TestProfileConversations(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	profile, id := sim.SetSMSProfile(key, klaviyotest.SMSProfile{Phone: "+15005550001"})
	resp, body := do(t, sim, request{method: http.MethodGet, path: "/api/profiles/" + profile + "/conversations?fields%5Bconversation%5D=channel"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var doc struct {
		Data []struct {
			Type, ID   string
			Attributes struct{ Channel string }
		}
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil || len(doc.Data) != 1 {
		t.Fatalf("body %s: %v", body, err)
	}
	if d := doc.Data[0]; d.Type != "conversation" || d.ID != id || d.Attributes.Channel != "sms" {
		t.Errorf("conversation %+v, want sms %s", d, id)
	}
	if resp, body := do(t, sim, request{method: http.MethodGet, path: "/api/profiles/01JNOSUCHPROFILE0000000000/conversations"}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown profile: status %d: %s", resp.StatusCode, body)
	}
	sim.AssertNoViolations(t)
}

// TestConversationLimits: both endpoints allow 3 a second, 60 a minute, per account.
func TestConversationLimits(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	now := time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)
	sim.SetClock(func() time.Time { return now })
	profile, id := sim.SetSMSProfile(key, klaviyotest.SMSProfile{Phone: "+15005550001"})
	for name, req := range map[string]func(i int) request{
		"messages": func(i int) request {
			return request{path: "/api/conversation-messages", body: message(id, fmt.Sprint("reply ", i))}
		},
		"conversations": func(int) request {
			return request{method: http.MethodGet, path: "/api/profiles/" + profile + "/conversations"}
		},
	} {
		start := now
		sent := 0
		for sec := 0; sent < 60; sec++ {
			for range 3 {
				if resp, body := do(t, sim, req(sent)); resp.StatusCode >= 300 {
					t.Fatalf("%s: request %d: status %d: %s", name, sent+1, resp.StatusCode, body)
				}
				sent++
			}
			if resp, _ := do(t, sim, req(sent)); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("%s: a 4th request in a second: status %d, Retry-After %q; want 429", name, resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			now = now.Add(time.Second)
		}
		// 60 in the minute: the next waits for the minute to end.
		resp, _ := do(t, sim, req(sent))
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "40" {
			t.Errorf("%s: 61st in a minute: status %d, Retry-After %q; want 429 and 40", name, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		now = start.Add(time.Minute)
		if resp, body := do(t, sim, req(sent)); resp.StatusCode >= 300 {
			t.Errorf("%s: next minute: status %d: %s", name, resp.StatusCode, body)
		}
		now = now.Add(time.Minute)
	}
	if n := len(sim.ConversationMessages(id)); n != 61 {
		t.Errorf("%d messages kept, want the 61 accepted", n)
	}
	sim.AssertNoViolations(t)
}

func TestText(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	sim.SetSMS(key, klaviyotest.SMSSettings{Number: "+15005559999", SenderType: zenklav.SenderShortCode})
	at := time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)
	sim.SetClock(func() time.Time { return at })
	target, got := receiver(t, http.StatusAccepted)

	if _, err := sim.Text("+15005550001", "hello"); err == nil || !strings.Contains(err.Error(), "SetWebhookTarget") {
		t.Errorf("Text with no target: %v, want an error naming SetWebhookTarget", err)
	}
	sim.SetWebhookTarget(target.URL, "s3cret")
	sim.SetPhone(klaviyotest.Phone{AutoSubscribe: true})
	item, err := sim.Text("+15005550002", "Where is my order?")
	if err != nil {
		t.Fatalf("Text: %v", err)
	}
	conv, ok := sim.ConversationID(key, "+15005550002")
	profile, _ := sim.ProfileID(key, "+15005550002")
	if !ok || profile == "" {
		t.Fatal("the first text made no profile and conversation")
	}
	d := got()
	if len(d) != 1 {
		t.Fatalf("%d deliveries, want 1", len(d))
	}
	env := checkSigned(t, d[0], "s3cret", at)
	if len(env.Data) != 1 || env.Data[0].ExternalID != item.ExternalID || env.Data[0].Topic != zenklav.TopicInboundSMS {
		t.Fatalf("delivered %+v, want the item Text returned (%s)", env.Data, item.ExternalID)
	}
	p := env.Data[0].Payload
	props := p.Attributes.EventProperties
	if p.Relationships.Profile.Data.ID != profile || props["conversation_id"] != conv || props["from_phone_number"] != "+15005550002" ||
		props["to_phone_number"] != "+15005559999" || props["sender_type"] != "short_code" || props["body"] != "Where is my order?" || props["message_id"] == "" {
		t.Errorf("payload %+v", p)
	}
	// Subscribed on the first text: a reply goes through.
	if resp, body := do(t, sim, request{path: "/api/conversation-messages", body: message(conv, "On its way!")}); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("reply: status %d: %s", resp.StatusCode, body)
	}
	// STOP unsubscribes, as Klaviyo does, and the reply after it is refused; START undoes it.
	for _, step := range []struct {
		text       string
		wantStatus int
	}{{"Stop!", http.StatusBadRequest}, {"start", http.StatusAccepted}} {
		if _, err := sim.Text("+15005550002", step.text); err != nil {
			t.Fatal(err)
		}
		if resp, body := do(t, sim, request{path: "/api/conversation-messages", body: message(conv, "after "+step.text)}); resp.StatusCode != step.wantStatus {
			t.Errorf("reply after %q: status %d (%s), want %d", step.text, resp.StatusCode, body, step.wantStatus)
		}
	}
	var thread []string
	for _, m := range sim.Messages(conv) {
		thread = append(thread, fmt.Sprintf("%v:%s", m.Inbound, m.Body))
	}
	if want := []string{"true:Where is my order?", "false:On its way!", "true:Stop!", "true:start", "false:after start"}; !slices.Equal(thread, want) {
		t.Errorf("thread %q, want %q", thread, want)
	}
	sim.AssertNoViolations(t)
}

// TestTextWithoutAutoSubscribe: a stranger's text makes a profile that was never subscribed,
// and a target that refuses the webhook is an error.
func TestTextWithoutAutoSubscribe(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	target, _ := receiver(t, http.StatusUnauthorized)
	sim.SetWebhookTarget(target.URL, "s3cret")
	_, err := sim.Text("+15005550003", "hi")
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Text to a target answering 401: %v, want an error", err)
	}
	conv, ok := sim.ConversationID(key, "+15005550003")
	if !ok {
		t.Fatal("no conversation")
	}
	if resp, _ := do(t, sim, request{path: "/api/conversation-messages", body: message(conv, "hello")}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("reply to a never-subscribed profile: status %d, want 400", resp.StatusCode)
	}
	if _, err := sim.Text("5550003", "hi"); err == nil {
		t.Error("Text from a number not in E.164: no error")
	}
	sim.AddAccount("pk_second")
	if _, err := sim.Text("+15005550003", "hi"); err == nil {
		t.Error("Text with two accounts and none chosen: no error")
	}
}
