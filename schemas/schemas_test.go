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
