package klaviyotest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

// importBody is a bulk import of the given ProfileUpsertQueryResourceObject entries.
func importBody(profiles ...string) string {
	return `{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":[` + strings.Join(profiles, ",") + `]}}}}`
}

func importProfiles(t *testing.T, sim *klaviyotest.Server, profiles ...string) (*http.Response, string) {
	t.Helper()
	return do(t, sim, request{path: "/api/profile-bulk-import-jobs", body: importBody(profiles...)})
}

func TestBulkImportAnswersTheJob(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	resp, body := importProfiles(t, sim,
		`{"type":"profile","attributes":{"email":"a@example.com","properties":{"plan":"gold"}}}`,
		`{"type":"profile","attributes":{"phone_number":"+15005550006","email":null}}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var job struct {
		Data struct {
			Type       string
			ID         string
			Attributes struct {
				Status     string
				TotalCount int `json:"total_count"`
			}
			Links struct{ Self string }
		}
	}
	if err := json.Unmarshal([]byte(body), &job); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	d := job.Data
	if d.Type != "profile-bulk-import-job" || d.ID == "" || d.Attributes.Status != "queued" || d.Attributes.TotalCount != 2 ||
		d.Links.Self != sim.URL+"/api/profile-bulk-import-jobs/"+d.ID {
		t.Errorf("answer %s, want a queued job of 2 profiles linking to itself", body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.api+json" {
		t.Errorf("Content-Type %q", ct)
	}
	// The answer was validated against the spec too: no violation means it conforms.
	sim.AssertNoViolations(t)
}

func TestBulkImportMergesPropertiesPerKey(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	for _, profiles := range [][]string{
		{`{"type":"profile","attributes":{"email":"Ann@Example.com","properties":{"a":1,"b":{"x":1}}}}`},
		// One request may name a profile twice: later entries win, as in separate requests.
		{
			`{"type":"profile","attributes":{"email":"ann@example.com","properties":{"b":{"y":2},"c":3}}}`,
			`{"type":"profile","attributes":{"email":"ann@example.com","external_id":"crm-1","properties":{"c":4}}}`,
		},
		{`{"type":"profile","attributes":{"email":"ann@example.com"}}`},
	} {
		if resp, body := importProfiles(t, sim, profiles...); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	}
	got, ok := sim.Profile(key, "ann@example.com")
	// A nested object is a value like any other: replaced whole, not merged.
	want := map[string]any{"a": float64(1), "b": map[string]any{"y": float64(2)}, "c": float64(4)}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("Profile = %v, %v; want %v", got, ok, want)
	}
	if n := len(sim.Profiles(key)); n != 1 {
		t.Errorf("account holds %d profiles, want 1", n)
	}
	sim.AssertNoViolations(t)
}

func TestBulkImportRefusals(t *testing.T) {
	valid := `{"type":"profile","attributes":{"email":"a@example.com"}}`
	tooMany := make([]string, 10001)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf(`{"type":"profile","attributes":{"external_id":"%d"}}`, i)
	}
	tests := []struct {
		name          string
		body          string
		wantViolation bool
	}{
		{name: "wrong job type", body: strings.Replace(importBody(valid), "profile-bulk-import-job", "profile-import", 1), wantViolation: true},
		{name: "profile without type", body: importBody(`{"attributes":{"email":"a@example.com"}}`), wantViolation: true},
		{name: "properties not an object", body: importBody(`{"type":"profile","attributes":{"email":"a@example.com","properties":[1]}}`), wantViolation: true},
		{name: "no identifier", body: importBody(valid, `{"type":"profile","attributes":{"first_name":"Ann"}}`)},
		{name: "only a Klaviyo id", body: importBody(`{"type":"profile","id":"01ABC","attributes":{}}`)},
		{name: "profile over 100 KB", body: importBody(valid, `{"type":"profile","attributes":{"email":"b@example.com","properties":{"n":"`+strings.Repeat("n", 100<<10)+`"}}}`)},
		{name: "over 10,000 profiles", body: importBody(tooMany...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := klaviyotest.NewServer()
			defer sim.Close()
			sim.AddAccount(key)
			resp, body := do(t, sim, request{path: "/api/profile-bulk-import-jobs", body: tt.body})
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"code":"invalid"`) {
				t.Errorf("status %d (%s), want 400 invalid", resp.StatusCode, body)
			}
			if got := len(sim.Violations()); (got > 0) != tt.wantViolation {
				t.Errorf("violations %v, want some: %v", sim.Violations(), tt.wantViolation)
			}
			if got := sim.Profiles(key); len(got) != 0 {
				t.Errorf("stored %v, want nothing: a refused import stores no profile", got)
			}
		})
	}
}

// TestReadsAreCopies: what a test reads from the simulator is its own, down to nested
// values, so changing it changes neither the store nor the next read.
func TestReadsAreCopies(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(key)
	event := strings.Replace(validEvent, `"properties":{}`, `"properties":{"tags":["a"],"ticket":{"id":"1"}},"value":1.5`, 1)
	if resp, body := do(t, sim, request{body: event}); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if resp, body := importProfiles(t, sim, `{"type":"profile","attributes":{"email":"a@example.com","properties":{"ticket":{"id":"1"}}}}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}

	e := sim.Events(key)[0]
	e.Properties["tags"].([]any)[0] = "changed"
	e.Properties["ticket"].(map[string]any)["id"] = "changed"
	e.Properties["new"] = true
	*e.Value = 99
	p, _ := sim.Profile(key, "a@example.com")
	p["ticket"].(map[string]any)["id"] = "changed"
	sim.Profiles(key)["a@example.com"]["ticket"].(map[string]any)["id"] = "changed"

	again := sim.Events(key)[0]
	if want := map[string]any{"tags": []any{"a"}, "ticket": map[string]any{"id": "1"}}; !reflect.DeepEqual(again.Properties, want) || *again.Value != 1.5 {
		t.Errorf("event after changing a copy: %v value %v, want %v value 1.5", again.Properties, *again.Value, want)
	}
	if p, _ := sim.Profile(key, "a@example.com"); p["ticket"].(map[string]any)["id"] != "1" {
		t.Errorf("profile after changing copies: %v", p)
	}
	sim.AssertNoViolations(t)
}
