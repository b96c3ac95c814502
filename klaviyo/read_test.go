package klaviyo_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

func TestFindProfile(t *testing.T) {
	sim, c := setup(t)
	ctx := context.Background()
	subscribed := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	next := time.Date(2026, 8, 15, 0, 0, 0, 0, time.UTC)
	if err := c.BulkImportProfiles(ctx, []klaviyo.ProfileUpdate{{
		Profile:    klaviyo.Profile{Email: "ann@example.com", PhoneNumber: "+15005550006"},
		Properties: map[string]any{"open_ticket_count": 2},
	}}); err != nil {
		t.Fatalf("BulkImportProfiles: %v", err)
	}
	id := sim.SetProfileDetails(testKey, "ann@example.com", klaviyotest.ProfileDetails{
		FirstName: "Ann", LastName: "Lee",
		Location:     klaviyo.Location{City: "Lisbon", Country: "Portugal", Timezone: "Europe/Lisbon"},
		EmailConsent: &klaviyo.Consent{Consent: "SUBSCRIBED", CanReceive: true, Timestamp: subscribed, Method: "FORM"},
		SMSConsent:   &klaviyo.Consent{Consent: "UNSUBSCRIBED", Timestamp: subscribed},
		Predictive: &klaviyo.PredictiveAnalytics{
			HistoricCLV: ptr(120.5), PredictedCLV: ptr(80), ChurnProbability: ptr(0.25),
			ExpectedDateOfNextOrder: &next, RankedChannelAffinity: []string{"email", "sms"},
		},
	})
	// An event's profile is findable too, with an id of its own.
	if err := c.CreateEvent(ctx, event("bob@example.com", "Opened Ticket", "u1")); err != nil {
		t.Fatalf("CreateEvent: %v", err)
	}

	tests := []struct {
		name      string
		profile   klaviyo.Profile
		wantFound bool
		wantID    string
		wantEmail string
	}{
		{"by email, any case", klaviyo.Profile{Email: "ANN@example.com"}, true, id, "ann@example.com"},
		{"by phone", klaviyo.Profile{PhoneNumber: "+15005550006"}, true, id, "ann@example.com"},
		{"email wins over phone", klaviyo.Profile{Email: "nobody@example.com", PhoneNumber: "+15005550006"}, false, "", ""},
		{"made by an event", klaviyo.Profile{Email: "bob@example.com"}, true, "", "bob@example.com"},
		{"unknown", klaviyo.Profile{Email: "carol@example.com"}, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, found, err := c.FindProfile(ctx, tt.profile)
			if err != nil {
				t.Fatalf("FindProfile: %v", err)
			}
			if found != tt.wantFound {
				t.Fatalf("found = %v, want %v", found, tt.wantFound)
			}
			if !found {
				return
			}
			if tt.wantID != "" && rec.ID != tt.wantID {
				t.Errorf("ID = %q, want %q", rec.ID, tt.wantID)
			}
			if rec.ID == "" || rec.Email != tt.wantEmail {
				t.Errorf("ID %q, Email %q; want an id and %q", rec.ID, rec.Email, tt.wantEmail)
			}
		})
	}

	rec, _, err := c.FindProfile(ctx, klaviyo.Profile{Email: "ann@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.FirstName != "Ann" || rec.LastName != "Lee" || rec.PhoneNumber != "+15005550006" {
		t.Errorf("name and phone: %q %q %q", rec.FirstName, rec.LastName, rec.PhoneNumber)
	}
	if want := (klaviyo.Location{City: "Lisbon", Country: "Portugal", Timezone: "Europe/Lisbon"}); rec.Location != want {
		t.Errorf("Location = %+v, want %+v", rec.Location, want)
	}
	if !reflect.DeepEqual(rec.Properties, map[string]any{"open_ticket_count": float64(2)}) {
		t.Errorf("Properties = %v", rec.Properties)
	}
	if want := (&klaviyo.Consent{Consent: "SUBSCRIBED", CanReceive: true, Timestamp: subscribed, Method: "FORM"}); !reflect.DeepEqual(rec.EmailConsent, want) {
		t.Errorf("EmailConsent = %+v, want %+v", rec.EmailConsent, want)
	}
	if want := (&klaviyo.Consent{Consent: "UNSUBSCRIBED", Timestamp: subscribed}); !reflect.DeepEqual(rec.SMSConsent, want) {
		t.Errorf("SMSConsent = %+v, want %+v", rec.SMSConsent, want)
	}
	want := &klaviyo.PredictiveAnalytics{
		HistoricCLV: ptr(120.5), PredictedCLV: ptr(80), ChurnProbability: ptr(0.25),
		ExpectedDateOfNextOrder: &next, RankedChannelAffinity: []string{"email", "sms"},
	}
	if !reflect.DeepEqual(rec.Predictive, want) {
		t.Errorf("Predictive = %+v, want %+v", rec.Predictive, want)
	}
	if rec.Created.IsZero() {
		t.Error("Created is zero")
	}

	// A profile with no details: never subscribed, predictions all null.
	bob, _, err := c.FindProfile(ctx, klaviyo.Profile{Email: "bob@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if bob.EmailConsent == nil || bob.EmailConsent.Consent != "NEVER_SUBSCRIBED" || bob.EmailConsent.CanReceive {
		t.Errorf("bob's EmailConsent = %+v, want NEVER_SUBSCRIBED", bob.EmailConsent)
	}
	if bob.Predictive == nil || bob.Predictive.PredictedCLV != nil || bob.Predictive.ExpectedDateOfNextOrder != nil {
		t.Errorf("bob's Predictive = %+v, want all nil", bob.Predictive)
	}
	sim.AssertNoViolations(t)
}

func TestRecentEvents(t *testing.T) {
	sim, c := setup(t)
	ctx := context.Background()
	base := time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)
	events := []klaviyo.Event{
		{Metric: "Placed Order", Profile: klaviyo.Profile{Email: "ann@example.com"}, Time: base, UniqueID: "o1", Value: ptr(42.5), Properties: map[string]any{"item": "mug"}},
		{Metric: "Opened Ticket", Profile: klaviyo.Profile{Email: "ann@example.com"}, Time: base.Add(2 * time.Hour), UniqueID: "t1"},
		{Metric: "Solved Ticket", Profile: klaviyo.Profile{Email: "ann@example.com"}, Time: base.Add(time.Hour), UniqueID: "t0"},
		{Metric: "Opened Ticket", Profile: klaviyo.Profile{Email: "bob@example.com"}, Time: base.Add(3 * time.Hour), UniqueID: "t2"},
	}
	if err := c.BulkCreateEvents(ctx, events); err != nil {
		t.Fatalf("BulkCreateEvents: %v", err)
	}
	id, ok := sim.ProfileID(testKey, "ann@example.com")
	if !ok {
		t.Fatal("ann has no profile id")
	}
	got, err := c.RecentEvents(ctx, id, 10)
	if err != nil {
		t.Fatalf("RecentEvents: %v", err)
	}
	type row struct {
		metric string
		at     time.Time
	}
	var rows []row
	for _, e := range got {
		rows = append(rows, row{e.Metric, e.Time})
	}
	want := []row{{"Opened Ticket", base.Add(2 * time.Hour)}, {"Solved Ticket", base.Add(time.Hour)}, {"Placed Order", base}}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("events:\n got %v\nwant %v", rows, want)
	}
	order := got[2]
	if order.Value == nil || *order.Value != 42.5 || order.Properties["item"] != "mug" || order.ID == "" {
		t.Errorf("order = %+v, want value 42.5, item mug and an id", order)
	}
	if got[0].Value != nil {
		t.Errorf("ticket value = %v, want nil", *got[0].Value)
	}

	two, err := c.RecentEvents(ctx, id, 2)
	if err != nil || len(two) != 2 || two[0].Metric != "Opened Ticket" {
		t.Errorf("RecentEvents(2) = %+v, %v; want the newest two", two, err)
	}
	none, err := c.RecentEvents(ctx, "01UNKNOWNPROFILE0000000000", 5)
	if err != nil || len(none) != 0 {
		t.Errorf("unknown profile: %v, %v; want no events", none, err)
	}
	if _, err := c.RecentEvents(ctx, `bad"id`, 5); zenklav.ErrorCode(err) != zenklav.EINVALID {
		t.Errorf("bad id: %v, want invalid", err)
	}
	sim.AssertNoViolations(t)
}

func TestProfileSegmentsAndLists(t *testing.T) {
	sim, c := setup(t)
	ctx := context.Background()
	id := sim.SetProfileDetails(testKey, "+15005550006", klaviyotest.ProfileDetails{
		Segments: []string{"VIP", "Churn risk"},
		Lists:    []string{"Newsletter"},
	})
	other := sim.SetProfileDetails(testKey, "ann@example.com", klaviyotest.ProfileDetails{Segments: []string{"VIP"}})

	names := func(ms []klaviyo.Membership) []string {
		var out []string
		for _, m := range ms {
			if m.ID == "" {
				t.Errorf("membership %q has no id", m.Name)
			}
			out = append(out, m.Name)
		}
		return out
	}
	segs, err := c.ProfileSegments(ctx, id)
	if err != nil {
		t.Fatalf("ProfileSegments: %v", err)
	}
	if got := names(segs); !reflect.DeepEqual(got, []string{"VIP", "Churn risk"}) {
		t.Errorf("segments = %v", got)
	}
	lists, err := c.ProfileLists(ctx, id)
	if err != nil {
		t.Fatalf("ProfileLists: %v", err)
	}
	if got := names(lists); !reflect.DeepEqual(got, []string{"Newsletter"}) {
		t.Errorf("lists = %v", got)
	}
	// One segment has one id, whoever is in it.
	otherSegs, err := c.ProfileSegments(ctx, other)
	if err != nil || len(otherSegs) != 1 || otherSegs[0].ID != segs[0].ID {
		t.Errorf("other's segments = %+v, %v; want VIP with id %s", otherSegs, err, segs[0].ID)
	}
	if _, err := c.ProfileLists(ctx, "01UNKNOWNPROFILE0000000000"); zenklav.ErrorCode(err) != zenklav.ENOTFOUND {
		t.Errorf("unknown profile: %v, want not found", err)
	}

	// One failing endpoint leaves the others answering.
	sim.SetOperationFault("get_segments_for_profile", http.StatusBadRequest, 1)
	if _, err := c.ProfileSegments(ctx, id); zenklav.ErrorCode(err) != zenklav.EINVALID {
		t.Errorf("segments with their endpoint failing: %v, want the injected 400", err)
	}
	if _, err := c.ProfileLists(ctx, id); err != nil {
		t.Errorf("lists while only segments fail: %v", err)
	}
	sim.SetOperationFault("get_segments_for_profile", 0, 0)
	if _, err := c.ProfileSegments(ctx, id); err != nil {
		t.Errorf("segments after the fault cleared: %v", err)
	}
	sim.AssertNoViolations(t)
}

func TestReadsHonourThrottling(t *testing.T) {
	sim, c := setup(t)
	ctx := context.Background()
	sim.FailNext(1, http.StatusTooManyRequests)
	_, _, err := c.FindProfile(ctx, klaviyo.Profile{Email: "ann@example.com"})
	var apiErr *klaviyo.APIError
	if !errors.As(err, &apiErr) || !apiErr.Throttled() || apiErr.RetryAfter != time.Second {
		t.Fatalf("FindProfile: %v, want a 429 with Retry-After 1s", err)
	}
	if zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE {
		t.Errorf("kind %q, want unavailable", zenklav.ErrorCode(err))
	}
	// The next call on the endpoint waits out Retry-After before it goes.
	start := time.Now()
	if _, found, err := c.FindProfile(ctx, klaviyo.Profile{Email: "ann@example.com"}); err != nil || found {
		t.Fatalf("FindProfile after 429: found %v, %v", found, err)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Errorf("second call went after %s, want it to wait out Retry-After (1s)", waited)
	}
	sim.AssertNoViolations(t)
}

// TestReadErrorsNameNoCustomer: a read that fails on the way (Klaviyo unreachable) says which
// operation failed, never the URL, whose filter holds the customer's email.
func TestReadErrorsNameNoCustomer(t *testing.T) {
	sim := klaviyotest.NewServer()
	sim.AddAccount(testKey)
	c := newClient(t, sim, testKey)
	sim.Close() // nothing listens there any more
	_, _, err := c.FindProfile(context.Background(), klaviyo.Profile{Email: "private.person@example.com"})
	if zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE {
		t.Fatalf("err = %v, want unavailable", err)
	}
	if strings.Contains(err.Error(), "private.person") || strings.Contains(err.Error(), "filter") {
		t.Errorf("the error names the customer: %v", err)
	}
}
