package klaviyo_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/golden"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/schemas"
)

var inboundTarget = klaviyo.InboundTarget{
	Connection: "acme", InboundTopics: []string{"event:custom.text_received"},
	ReceivedAt: time.Date(2025, 1, 8, 10, 12, 9, 0, time.UTC),
}

// TestSMSEventOfGolden maps every item of each fixture in testdata/webhooks and compares what
// became of each (its kind and event, or why none) with the golden file; every event must
// satisfy sms_event.v1.
func TestSMSEventOfGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/webhooks/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, in := range files {
		if strings.HasSuffix(in, ".golden.json") {
			continue
		}
		t.Run(filepath.Base(in), func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			w, err := klaviyo.ParseWebhook(body, vectorWebhookID)
			if err != nil {
				t.Fatal(err)
			}
			type outcome struct {
				Result string          `json:"result"`
				Event  json.RawMessage `json:"event,omitempty"`
			}
			var got []outcome
			for _, item := range w.Data {
				ev, result := klaviyo.SMSEventOf(item, inboundTarget)
				o := outcome{Result: result}
				if ev != nil {
					if o.Event, err = ev.Marshal(); err != nil {
						t.Fatalf("item %s: %v", item.ExternalID, err)
					}
				}
				got = append(got, o)
			}
			out, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, strings.TrimSuffix(in, ".json")+".golden.json", append(out, '\n'))
		})
	}
}

func item(topic, props string) klaviyo.WebhookItem {
	return klaviyo.WebhookItem{ExternalID: "7Xy", Topic: topic, Payload: json.RawMessage(`{"attributes":{"event_properties":` + props + `}}`)}
}

// TestSMSEventOf: the customer is the sender of an inbound text and the recipient of a sent
// one; what sms_event.v1 cannot hold is cut or left out, never an invalid event.
func TestSMSEventOf(t *testing.T) {
	const customer, brand = "+15005550006", "+18885550100"
	longBody := strings.Repeat("é", schemas.MaxSMSBody+10)
	for _, tc := range []struct {
		name   string
		item   klaviyo.WebhookItem
		result string
		check  func(*schemas.SMSEvent) bool
	}{
		{"inbound: from is the customer", item(zenklav.TopicInboundSMS, `{"from_phone_number":"`+customer+`","to_phone_number":"`+brand+`"}`), schemas.SMSInbound,
			func(e *schemas.SMSEvent) bool {
				return e.CustomerPhone == customer && e.BrandPhone == brand && e.Key() == "acme/"+customer
			}},
		{"sent: to is the customer", item(zenklav.TopicSentSMS, `{"from_phone_number":"`+brand+`","to_phone_number":"`+customer+`"}`), schemas.SMSSent,
			func(e *schemas.SMSEvent) bool { return e.CustomerPhone == customer && e.BrandPhone == brand }},
		{"failed: to is the customer", item(zenklav.TopicFailedToDeliverSMS, `{"to_phone_number":"`+customer+`"}`), schemas.SMSFailed,
			func(e *schemas.SMSEvent) bool { return e.CustomerPhone == customer && e.BrandPhone == "" }},
		{"a configured inbound topic", item("event:custom.text_received", `{"from_phone_number":"`+customer+`"}`), schemas.SMSInbound,
			func(e *schemas.SMSEvent) bool { return e.Topic == "event:custom.text_received" }},
		{"inbound names no campaign", item(zenklav.TopicInboundSMS, `{"from_phone_number":"`+customer+`","campaign_name":"Sale"}`), schemas.SMSInbound,
			func(e *schemas.SMSEvent) bool { return e.CampaignName == "" }},
		{"long body is cut", item(zenklav.TopicInboundSMS, `{"from_phone_number":"`+customer+`","body":"`+longBody+`"}`), schemas.SMSInbound,
			func(e *schemas.SMSEvent) bool {
				return strings.HasSuffix(e.Body, "é…") && len([]rune(e.Body)) == schemas.MaxSMSBody
			}},
		{"overlong ids are left out", item(zenklav.TopicInboundSMS, `{"from_phone_number":"`+customer+`","message_id":"`+strings.Repeat("m", schemas.MaxSMSID+1)+`"}`), schemas.SMSInbound,
			func(e *schemas.SMSEvent) bool { return e.MessageID == "" }},
		{"media beyond 10 are left out", item(zenklav.TopicInboundSMS, `{"from_phone_number":"`+customer+`","media":[`+strings.Repeat(`{"url":"u"},`, 11)+`{}]}`), schemas.SMSInbound,
			func(e *schemas.SMSEvent) bool { return len(e.Media) == schemas.MaxSMSMedia }},
		{"alpha sender", item(zenklav.TopicInboundSMS, `{"from_phone_number":"`+customer+`","to_phone_number":"ACME","sender_type":"alpha"}`), schemas.SMSInbound,
			func(e *schemas.SMSEvent) bool { return e.SenderType == zenklav.SenderAlpha && e.BrandPhone == "" }},
		{"timestamp when no datetime", klaviyo.WebhookItem{ExternalID: "7Xy", Topic: zenklav.TopicSentSMS, Payload: json.RawMessage(`{"attributes":{"timestamp":1736331127,"event_properties":{"to_phone_number":"` + customer + `"}}}`)}, schemas.SMSSent,
			func(e *schemas.SMSEvent) bool { return e.OccurredAt.Equal(time.Unix(1736331127, 0)) }},
		{"a datetime past 9999 in UTC is replaced", klaviyo.WebhookItem{ExternalID: "7Xy", Topic: zenklav.TopicSentSMS, Payload: json.RawMessage(`{"attributes":{"datetime":"9999-12-31T23:00:00-05:00","event_properties":{"to_phone_number":"` + customer + `"}}}`)}, schemas.SMSSent,
			func(e *schemas.SMSEvent) bool { return e.OccurredAt.Equal(inboundTarget.ReceivedAt) }},
		{"sent without a number", item(zenklav.TopicSentSMS, `{"body":"hi"}`), klaviyo.ItemNoPhone, nil},
		{"a number not in E.164", item(zenklav.TopicInboundSMS, `{"from_phone_number":"555-0006"}`), klaviyo.ItemNoPhone, nil},
		{"another topic", item("event:klaviyo.clicked_sms", `{"to_phone_number":"`+customer+`"}`), klaviyo.ItemIgnored, nil},
		{"no topic", item("", `{"from_phone_number":"`+customer+`"}`), klaviyo.ItemIgnored, nil},
		{"an external id with a space", klaviyo.WebhookItem{ExternalID: "7 Xy", Topic: zenklav.TopicInboundSMS, Payload: json.RawMessage(`{}`)}, klaviyo.ItemNoExternalID, nil},
		{"no payload", klaviyo.WebhookItem{ExternalID: "7Xy", Topic: zenklav.TopicInboundSMS}, klaviyo.ItemMalformedEvent, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, result := klaviyo.SMSEventOf(tc.item, inboundTarget)
			if result != tc.result || (ev != nil) != (tc.check != nil) {
				t.Fatalf("SMSEventOf = %+v, %q; want result %q", ev, result, tc.result)
			}
			if ev == nil {
				return
			}
			if _, err := ev.Marshal(); err != nil {
				t.Fatal(err)
			}
			if ev.EventID != "klaviyo:7Xy" || !tc.check(ev) {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

// TestSMSEventOfRedelivery: the same item delivered again, later, is the same event: only
// received_at differs, so the event id deduplicates it.
func TestSMSEventOfRedelivery(t *testing.T) {
	body, err := os.ReadFile("testdata/webhooks/inbound_mms.json")
	if err != nil {
		t.Fatal(err)
	}
	w, err := klaviyo.ParseWebhook(body, vectorWebhookID)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := klaviyo.SMSEventOf(w.Data[0], inboundTarget)
	later := inboundTarget
	later.ReceivedAt = later.ReceivedAt.Add(time.Hour)
	again, _ := klaviyo.SMSEventOf(w.Data[0], later)
	again.ReceivedAt = first.ReceivedAt
	a, _ := first.Marshal()
	b, _ := again.Marshal()
	if !bytes.Equal(a, b) {
		t.Errorf("a redelivery is another event:\n%s\n%s", a, b)
	}
}
