package klaviyo_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
)

func TestBulkImportProfiles(t *testing.T) {
	sim, c := setup(t)
	ctx := context.Background()
	first := []klaviyo.ProfileUpdate{
		{Profile: klaviyo.Profile{Email: "Ann@Example.com", ExternalID: "crm-1"}, Properties: map[string]any{"open_ticket_count": 2, "plan": "gold"}},
		{Profile: klaviyo.Profile{PhoneNumber: "+15005550006"}, Properties: map[string]any{"open_ticket_count": 1}},
		{Profile: klaviyo.Profile{ExternalID: "crm-3"}}, // no properties: the profile still exists
	}
	if err := c.BulkImportProfiles(ctx, first); err != nil {
		t.Fatalf("BulkImportProfiles: %v", err)
	}
	// A later import sets the keys it names and keeps the others.
	second := []klaviyo.ProfileUpdate{
		{Profile: klaviyo.Profile{Email: "ann@example.com"}, Properties: map[string]any{"open_ticket_count": 0, "last_ticket": map[string]any{"id": "123"}}},
	}
	if err := c.BulkImportProfiles(ctx, second); err != nil {
		t.Fatalf("second BulkImportProfiles: %v", err)
	}

	want := map[string]map[string]any{
		"ann@example.com": {"open_ticket_count": float64(0), "plan": "gold", "last_ticket": map[string]any{"id": "123"}},
		"+15005550006":    {"open_ticket_count": float64(1)},
		"crm-3":           {},
	}
	if got := sim.Profiles(testKey); !reflect.DeepEqual(got, want) {
		t.Errorf("Profiles:\n got %v\nwant %v", got, want)
	}
	for _, identity := range []string{"ANN@example.com", "+15005550006", "crm-3"} {
		if _, ok := sim.Profile(testKey, identity); !ok {
			t.Errorf("Profile(%q) not found", identity)
		}
	}
	// The email names the profile; its external id does not make a second one.
	if _, ok := sim.Profile(testKey, "crm-1"); ok {
		t.Error(`Profile("crm-1") found, want it known by its email only`)
	}
	sim.AssertNoViolations(t)
}

func TestBulkImportProfilesErrors(t *testing.T) {
	ctx := context.Background()
	ok := klaviyo.ProfileUpdate{Profile: klaviyo.Profile{Email: "a@example.com"}}
	many := func(n int, props map[string]any) []klaviyo.ProfileUpdate {
		out := make([]klaviyo.ProfileUpdate, n)
		for i := range out {
			out[i] = klaviyo.ProfileUpdate{Profile: klaviyo.Profile{ExternalID: fmt.Sprint("crm-", i)}, Properties: props}
		}
		return out
	}
	tests := []struct {
		name     string
		profiles []klaviyo.ProfileUpdate
		wantKind string // "" for any kind that is not worth a retry
		// mayBeSent lets Klaviyo's refusal do instead of the client's: the 5 MB limit of a
		// whole body is checked where every body is encoded, not by BulkImportProfiles.
		mayBeSent bool
	}{
		{name: "none", wantKind: zenklav.EINVALID},
		{name: "too many", profiles: many(klaviyo.MaxBulkProfiles+1, nil), wantKind: zenklav.EINVALID},
		{name: "no identifier", profiles: []klaviyo.ProfileUpdate{ok, {Properties: map[string]any{"a": 1}}}, wantKind: zenklav.EINVALID},
		{name: "phone number not E.164", profiles: []klaviyo.ProfileUpdate{ok, {Profile: klaviyo.Profile{PhoneNumber: "0700 900123"}}}, wantKind: zenklav.EINVALID},
		{name: "properties that do not encode", profiles: []klaviyo.ProfileUpdate{{Profile: ok.Profile, Properties: map[string]any{"f": func() {}}}}, wantKind: zenklav.EINVALID},
		{name: "profile over 100 KB", profiles: []klaviyo.ProfileUpdate{ok, {Profile: ok.Profile, Properties: map[string]any{"notes": strings.Repeat("n", 100_000)}}}, wantKind: zenklav.ETOOLARGE},
		// Each profile is under 100 KB, together they are over 5 MB.
		{name: "request over 5 MB", profiles: many(60, map[string]any{"notes": strings.Repeat("n", 90_000)}), mayBeSent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t)
			err := c.BulkImportProfiles(ctx, tt.profiles)
			if err == nil || zenklav.Transient(err) {
				t.Fatalf("BulkImportProfiles: %v, want a permanent error", err)
			}
			if tt.wantKind != "" && zenklav.ErrorCode(err) != tt.wantKind {
				t.Errorf("error kind %q (%v), want %q", zenklav.ErrorCode(err), err, tt.wantKind)
			}
			var apiErr *klaviyo.APIError
			if errors.As(err, &apiErr) && !tt.mayBeSent {
				t.Errorf("Klaviyo answered %v; want the client to refuse before sending", apiErr)
			}
			if got := sim.Profiles(testKey); len(got) != 0 {
				t.Errorf("simulator stored %v, want nothing", got)
			}
			sim.AssertNoViolations(t)
		})
	}
}
