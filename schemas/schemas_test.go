package schemas_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/zenklav/zenklav/schemas"
)

// TestGoTypesRoundTrip checks that the Go types and the JSON Schema describe the same thing:
// the golden event validates, decodes into TicketEvent, and encodes back to the same JSON.
func TestGoTypesRoundTrip(t *testing.T) {
	raw, err := os.ReadFile("testdata/ticket_event.valid.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.ValidateTicketEventJSON(raw); err != nil {
		t.Fatal(err)
	}
	var e schemas.TicketEvent
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("the Go type lacks a field of the schema: %v", err)
	}
	out, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	_ = json.Unmarshal(raw, &want)
	_ = json.Unmarshal(out, &got)
	w, _ := json.Marshal(want)
	g, _ := json.Marshal(got)
	if !bytes.Equal(w, g) {
		t.Errorf("round trip changed the event:\n got %s\nwant %s", g, w)
	}
	if e.Key() != "acme/5158" {
		t.Errorf("Key = %s", e.Key())
	}
}

func TestSchemaRejects(t *testing.T) {
	raw, err := os.ReadFile("testdata/ticket_event.valid.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to string }{
		{"unknown type", `"type": "status_changed"`, `"type": "exploded"`},
		{"unknown status", `"status": "closed"`, `"status": "archived"`},
		{"upper-case status", `"status": "closed"`, `"status": "CLOSED"`},
		{"ticket id as string", `"id": 5158`, `"id": "5158"`},
		{"ticket id zero", `"id": 5158`, `"id": 0`},
		{"bad event id", `"zd:8a1f6a52`, `"xx:8a1f6a52`},
		{"bad time", `"2025-01-09T08:00:00Z"`, `"yesterday"`},
		{"unknown field", `"tenant": "acme",`, `"tenant": "acme", "tenantt": 1,`},
		{"tags not strings", `["order", "shipping"]`, `[1, 2]`},
		{"missing tenant", `"tenant": "acme",`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(string(raw), tc.from, tc.to, 1)
			if bad == string(raw) {
				t.Fatalf("fixture lacks %s", tc.from)
			}
			if err := schemas.ValidateTicketEventJSON([]byte(bad)); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestMigrationsAreNumbered(t *testing.T) {
	files, err := fs.Glob(schemas.Migrations(), "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations: %v", err)
	}
	for i, f := range files {
		if !strings.HasPrefix(f, fmt.Sprintf("%04d_", i+1)) {
			t.Errorf("migration %d is %s: numbers must run 0001, 0002, … without gaps", i+1, f)
		}
	}
}

// TestSMSEventRoundTrip: the golden SMS event validates, decodes into SMSEvent without a field
// left over, encodes back to the same JSON, and is keyed by connection and customer phone.
func TestSMSEventRoundTrip(t *testing.T) {
	raw, err := os.ReadFile("testdata/sms_event.valid.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := schemas.ValidateSMSEventJSON(raw); err != nil {
		t.Fatal(err)
	}
	var e schemas.SMSEvent
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("the Go type lacks a field of the schema: %v", err)
	}
	out, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var want, got any
	_ = json.Unmarshal(raw, &want)
	_ = json.Unmarshal(out, &got)
	w, _ := json.Marshal(want)
	g, _ := json.Marshal(got)
	if !bytes.Equal(w, g) {
		t.Errorf("round trip changed the event:\n got %s\nwant %s", g, w)
	}
	if e.Key() != "acme/+15005550006" {
		t.Errorf("Key = %s", e.Key())
	}
	var decoded schemas.SMSEvent
	if err := schemas.DecodeSMSEvent(out, &decoded); err != nil || decoded.EventID != e.EventID || decoded.Media[0].URL != e.Media[0].URL {
		t.Errorf("DecodeSMSEvent = %+v, %v", decoded, err)
	}
	var partial schemas.SMSEvent
	if err := schemas.DecodeSMSEvent([]byte(`{"schema":"sms_event.v1","connection":"acme","kind":"inbound"}`), &partial); err == nil {
		t.Error("DecodeSMSEvent took an event without event_id and customer_phone")
	}
}

// TestSMSEventMinimal: an event with only the required fields is valid, so whatever Klaviyo
// leaves out, zenklav can still say what it knows.
func TestSMSEventMinimal(t *testing.T) {
	minimal := `{"schema":"sms_event.v1","connection":"acme","event_id":"klaviyo:x","kind":"sent","received_at":"2025-01-08T10:12:09Z","occurred_at":"2025-01-08T10:12:09Z","customer_phone":"+15005550006","topic":"event:klaviyo.sent_sms"}`
	if err := schemas.ValidateSMSEventJSON([]byte(minimal)); err != nil {
		t.Error(err)
	}
}

func TestSMSSchemaRejects(t *testing.T) {
	raw, err := os.ReadFile("testdata/sms_event.valid.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to string }{
		{"other schema", `"schema": "sms_event.v1"`, `"schema": "sms_event.v2"`},
		{"unknown kind", `"kind": "inbound"`, `"kind": "outbound"`},
		{"customer phone not E.164", `"customer_phone": "+15005550006"`, `"customer_phone": "(500) 555-0006"`},
		{"customer phone without +", `"customer_phone": "+15005550006"`, `"customer_phone": "15005550006"`},
		{"brand phone not E.164", `"brand_phone": "+18885550100"`, `"brand_phone": "ACME"`},
		{"unknown sender type", `"sender_type": "toll_free"`, `"sender_type": "vanity_short_code"`},
		{"event id without prefix", `"klaviyo:4L3cwQae2TX"`, `"4L3cwQae2TX"`},
		{"event id with a space", `"klaviyo:4L3cwQae2TX"`, `"klaviyo:4L3c wQae2TX"`},
		{"empty event id", `"klaviyo:4L3cwQae2TX"`, `"klaviyo:"`},
		{"bad connection", `"connection": "acme"`, `"connection": "Acme Inc"`},
		{"bad time", `"2025-01-08T10:12:07Z"`, `"yesterday"`},
		{"body too long", `"Where is my order? It was due Friday."`, `"` + strings.Repeat("x", schemas.MaxSMSBody+1) + `"`},
		{"media field unknown", `"content_type": "image/jpeg"`, `"type": "image/jpeg"`},
		{"too many media", `[{"content_type": "image/jpeg", "url": "https://media.klaviyo.example/abc.jpg"}]`, `[` + strings.Repeat(`{},`, schemas.MaxSMSMedia) + `{}]`},
		{"empty topic", `"topic": "event:klaviyo.inbound_sms"`, `"topic": ""`},
		{"empty profile id", `"profile_id": "01JGZ3X4Q0C7N8KZ5V2W9H6T1R"`, `"profile_id": ""`},
		{"unknown field", `"kind": "inbound",`, `"kind": "inbound", "direction": "in",`},
		{"missing customer phone", `"customer_phone": "+15005550006",`, ``},
		{"missing connection", `"connection": "acme",`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(string(raw), tc.from, tc.to, 1)
			if bad == string(raw) {
				t.Fatalf("fixture lacks %s", tc.from)
			}
			if err := schemas.ValidateSMSEventJSON([]byte(bad)); err == nil {
				t.Error("accepted")
			}
		})
	}
}
