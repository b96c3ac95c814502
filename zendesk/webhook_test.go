package zendesk_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav/internal/golden"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
)

var received = time.Date(2025, 1, 8, 10, 12, 9, 0, time.UTC)

var target = zendesk.WebhookTarget{Connection: "acme", Subdomain: "acme", ReceivedAt: received}

// TestParseWebhookGolden parses every fixture in testdata/webhooks and compares the ticket
// event with its golden file; each event must also satisfy ticket_event.v1.
func TestParseWebhookGolden(t *testing.T) {
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
			ev, err := zendesk.ParseWebhook(body, target)
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if ev == nil {
				t.Fatal("ParseWebhook ignored a ticket event")
			}
			got, err := ev.Marshal()
			if err != nil {
				t.Fatalf("Marshal (schema validation): %v", err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, got, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden.Check(t, strings.TrimSuffix(in, ".json")+".golden.json", pretty.Bytes())
		})
	}
}

func TestParseWebhookDuplicateKeepsEventID(t *testing.T) {
	for _, name := range []string{"event_created.json", "trigger_created.json"} {
		body, err := os.ReadFile(filepath.Join("testdata/webhooks", name))
		if err != nil {
			t.Fatal(err)
		}
		first, err := zendesk.ParseWebhook(body, target)
		if err != nil {
			t.Fatal(err)
		}
		later := target
		later.ReceivedAt = received.Add(time.Hour)
		again, err := zendesk.ParseWebhook(body, later)
		if err != nil {
			t.Fatal(err)
		}
		if first.EventID != again.EventID {
			t.Errorf("%s: redelivery changed the event id: %s then %s", name, first.EventID, again.EventID)
		}
	}
}

func TestTriggerNotificationsOfOneSecondStayApart(t *testing.T) {
	body := `{"zenklav":"ticket_event.v1","event":"comment_added","occurred_at":"2025-01-08T10:12:07Z","ticket":{"id":"1","description":"%s"}}`
	a, err := zendesk.ParseWebhook(fmt.Appendf(nil, body, "first"), target)
	if err != nil {
		t.Fatal(err)
	}
	b, err := zendesk.ParseWebhook(fmt.Appendf(nil, body, "second"), target)
	if err != nil {
		t.Fatal(err)
	}
	if a.EventID == b.EventID {
		t.Errorf("two different notifications in the same second share the id %s", a.EventID)
	}
}

func TestParseWebhookIgnoresOtherEvents(t *testing.T) {
	for name, body := range map[string]string{
		"user event":         `{"type":"zen:event-type:user.created","account_id":1,"id":"a-1","time":"2025-01-08T10:12:07Z","detail":{"id":"5"},"event":{}}`,
		"organization event": `{"type":"zen:event-type:organization.created","id":"b-2","detail":{}}`,
		"trigger other":      `{"zenklav":"ticket_event.v1","event":"satisfaction_rated","occurred_at":"2025-01-08T10:12:07Z","ticket":{"id":"1"}}`,
	} {
		ev, err := zendesk.ParseWebhook([]byte(body), target)
		if err != nil || ev != nil {
			t.Errorf("%s: got (%v, %v), want (nil, nil)", name, ev, err)
		}
	}
}

func TestParseWebhookRejects(t *testing.T) {
	created := `{"type":"zen:event-type:ticket.created","id":"e-1","time":"2025-01-08T10:12:07Z","detail":{"id":"5","status":"NEW"},"event":{}}`
	for _, tc := range []struct {
		name, body, want string
	}{
		{"malformed JSON", `{"type":`, "malformed JSON"},
		{"not an object", `[1,2]`, "malformed JSON"},
		{"unrecognised shape", `{"hello":"world"}`, "not a Zendesk event webhook"},
		{"no event id", strings.Replace(created, `"id":"e-1",`, ``, 1), "no usable id"},
		{"event id with odd characters", strings.Replace(created, `"e-1"`, `"e/1"`, 1), "no usable id"},
		{"no ticket id", strings.Replace(created, `"id":"5",`, ``, 1), "no ticket id"},
		{"ticket id not a number", strings.Replace(created, `"id":"5"`, `"id":"five"`, 1), "malformed Zendesk event"},
		{"negative ticket id", strings.Replace(created, `"id":"5"`, `"id":-5`, 1), "malformed Zendesk event"},
		{"bad time", strings.Replace(created, `2025-01-08T10:12:07Z`, `yesterday`, 1), "event time"},
		{"time before 1970", strings.Replace(created, `2025-01-08T10:12:07Z`, `1969-12-31T23:59:59Z`, 1), "outside 1970"},
		{"time after 2106", strings.Replace(created, `2025-01-08T10:12:07Z`, `2107-01-01T00:00:00Z`, 1), "outside 1970"},
		{"unknown status", strings.Replace(created, `"NEW"`, `"ARCHIVED"`, 1), "unknown ticket status"},
		{"status change without current", `{"type":"zen:event-type:ticket.status_changed","id":"e-2","time":"2025-01-08T10:12:07Z","detail":{"id":"5"},"event":{"previous":"OPEN"}}`, "without a current status"},
		{"trigger of another version", `{"zenklav":"ticket_event.v9","event":"created","ticket":{"id":"1"}}`, "this version reads"},
		{"trigger without ticket id", `{"zenklav":"ticket_event.v1","event":"created","occurred_at":"2025-01-08T10:12:07Z","ticket":{"id":""}}`, "no ticket.id"},
		{"trigger with a bad field id", `{"zenklav":"ticket_event.v1","event":"created","occurred_at":"2025-01-08T10:12:07Z","ticket":{"id":"1","custom_fields":{"color":"red"}}}`, "not a field id"},
		{"trigger with a bad time", `{"zenklav":"ticket_event.v1","event":"created","occurred_at":"{{ticket.updated_at_with_timestamp}}","ticket":{"id":"1"}}`, "occurred_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := zendesk.ParseWebhook([]byte(tc.body), target)
			if err == nil {
				t.Fatalf("accepted: %+v", ev)
			}
			if zenklav.ErrorCode(err) != zenklav.EINVALID {
				t.Errorf("kind = %s, want %s", zenklav.ErrorCode(err), zenklav.EINVALID)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// FuzzParseWebhook checks that no input panics the parser, and that whatever it accepts is a
// valid ticket_event.v1 with the event id it derives again from the same bytes.
func FuzzParseWebhook(f *testing.F) {
	files, _ := filepath.Glob("testdata/webhooks/*.json")
	for _, in := range files {
		if b, err := os.ReadFile(in); err == nil && !strings.HasSuffix(in, ".golden.json") {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"type":"zen:event-type:ticket.created","id":"x","detail":{"id":1}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := zendesk.ParseWebhook(body, target)
		if err != nil {
			if zenklav.ErrorCode(err) != zenklav.EINVALID {
				t.Fatalf("error of kind %s: %v", zenklav.ErrorCode(err), err)
			}
			return
		}
		if ev == nil {
			return
		}
		if ev.Ticket.ID <= 0 || ev.EventID == "" || ev.Connection != "acme" {
			t.Fatalf("accepted an event without identity: %+v", ev)
		}
		if _, err := ev.Marshal(); err != nil {
			// Free text can break the schema only through invalid UTF-8, which encoding/json
			// repairs; anything else is a parser bug.
			var e *schemas.TicketEvent = ev
			t.Fatalf("accepted an event that fails ticket_event.v1: %v\n%+v", err, e)
		}
		again, _ := zendesk.ParseWebhook(body, target)
		if again == nil || again.EventID != ev.EventID {
			t.Fatalf("event id is not deterministic")
		}
	})
}

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"say": "hello"}`)
	const ts = "2021-07-25T10:00:00Z"
	now, _ := time.Parse(time.RFC3339, ts)
	secrets := []string{"old-secret-0123456789", "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="}
	// The vector computed in shared/reference/zendesk-api.md §4.
	const vector = "gf3v0LzLRHPUnIdhbvwRDVEvzSb07/QN0GYjSNlkBT0="
	if got := zendesk.Sign(secrets[1], ts, body); got != vector {
		t.Fatalf("Sign = %s, want the reference vector %s", got, vector)
	}
	for _, tc := range []struct {
		name       string
		sig, stamp string
		body       []byte
		now        time.Time
		ok         bool
	}{
		{"second secret of a rotation", vector, ts, body, now, true},
		{"first secret of a rotation", zendesk.Sign(secrets[0], ts, body), ts, body, now, true},
		{"4 minutes late", vector, ts, body, now.Add(4 * time.Minute), true},
		{"6 minutes late", vector, ts, body, now.Add(6 * time.Minute), false},
		{"6 minutes early", vector, ts, body, now.Add(-6 * time.Minute), false},
		{"missing signature", "", ts, body, now, false},
		{"missing timestamp", vector, "", body, now, false},
		{"timestamp not ISO", vector, "1627207200", body, now, false},
		{"other secret", zendesk.Sign("someone-elses-secret", ts, body), ts, body, now, false},
		{"body changed", vector, ts, []byte(`{"say": "hellO"}`), now, false},
		{"body then timestamp (old doc order)", zendesk.Sign(secrets[1], string(body), []byte(ts)), ts, body, now, false},
		{"signature not base64", "x", ts, body, now, false},
		{"signature of 31 bytes", base64.StdEncoding.EncodeToString(make([]byte, 31)), ts, body, now, false},
		{"signature in hex", hex.EncodeToString(make([]byte, 32)), ts, body, now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := zendesk.VerifySignature(secrets, tc.sig, tc.stamp, tc.body, tc.now)
			if (err == nil) != tc.ok {
				t.Fatalf("VerifySignature = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
				t.Errorf("kind = %s, want unauthorized", zenklav.ErrorCode(err))
			}
		})
	}
}

// TestParseSignature: what the headers alone rule out is refused before any body, and a
// well-formed signature of the wrong body or secret passes, to be caught by Verify.
func TestParseSignature(t *testing.T) {
	body := []byte(`{"say": "hello"}`)
	const ts = "2021-07-25T10:00:00Z"
	now, _ := time.Parse(time.RFC3339, ts)
	secrets := []string{"dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="}
	good := zendesk.Sign(secrets[0], ts, body)
	for _, tc := range []struct {
		name, sig, stamp string
		parsed, verified bool
	}{
		{"signed", good, ts, true, true},
		{"well-formed, another secret", zendesk.Sign("someone-elses-secret", ts, body), ts, true, false},
		{"well-formed, another body", zendesk.Sign(secrets[0], ts, []byte("{}")), ts, true, false},
		{"missing signature", "", ts, false, false},
		{"missing timestamp", good, "", false, false},
		{"signature x", "x", ts, false, false},
		{"signature of 33 bytes", base64.StdEncoding.EncodeToString(make([]byte, 33)), ts, false, false},
		{"signature unpadded", strings.TrimRight(good, "="), ts, false, false},
		{"timestamp not ISO", good, "1627207200", false, false},
		{"timestamp stale", good, "2021-07-25T09:54:59Z", false, false},
		{"timestamp ahead", good, "2021-07-25T10:05:01Z", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := zendesk.ParseSignature(tc.sig, tc.stamp, now)
			if (err == nil) != tc.parsed {
				t.Fatalf("ParseSignature = %v, want ok=%v", err, tc.parsed)
			}
			if err != nil {
				if zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
					t.Errorf("kind = %s, want unauthorized", zenklav.ErrorCode(err))
				}
				return
			}
			if err := sig.Verify(secrets, body); (err == nil) != tc.verified || (err != nil && zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED) {
				t.Errorf("Verify = %v, want ok=%v", err, tc.verified)
			}
		})
	}
}
