package reports_test

import (
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/reports"
)

func TestFilterValidate(t *testing.T) {
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Fatal(err)
	}
	day := func(s string) time.Time {
		d, err := time.ParseInLocation(time.DateOnly, s, la)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	good := reports.Filter{Connections: []string{"acme", "globex"}, From: day("2026-01-01"), To: day("2026-03-31"), Interval: reports.Week, TZ: la}
	with := func(change func(*reports.Filter)) reports.Filter {
		f := good
		change(&f)
		return f
	}
	for _, tc := range []struct {
		name string
		f    reports.Filter
		code string
		says string
	}{
		{"good", good, "", ""},
		{"one connection of the token's", with(func(f *reports.Filter) { f.Connection = "globex" }), "", ""},
		{"a breakdown", with(func(f *reports.Filter) { f.By = "channel" }), "", ""},
		{"one day", with(func(f *reports.Filter) { f.To = f.From }), "", ""},
		{"no tenants", with(func(f *reports.Filter) { f.Connections = nil }), zenklav.EFORBIDDEN, "no connection"},
		{"another tenant's connection", with(func(f *reports.Filter) { f.Connection = "initech" }), zenklav.EFORBIDDEN, "initech"},
		{"no time zone", with(func(f *reports.Filter) { f.TZ = nil }), zenklav.EINVALID, "tz"},
		{"no dates", with(func(f *reports.Filter) { f.From = time.Time{} }), zenklav.EINVALID, "from and to"},
		{"backwards", with(func(f *reports.Filter) { f.From, f.To = f.To, f.From }), zenklav.EINVALID, "before"},
		{"over three years", with(func(f *reports.Filter) { f.From = day("2022-01-01") }), zenklav.EINVALID, "three years"},
		{"unknown interval", with(func(f *reports.Filter) { f.Interval = "hour" }), zenklav.EINVALID, "interval"},
		{"unknown breakdown", with(func(f *reports.Filter) { f.By = "requester" }), zenklav.EINVALID, "by"},
		{"unknown kind", with(func(f *reports.Filter) { f.Kind = "flow" }), zenklav.EINVALID, "kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.Validate()
			if got := zenklav.ErrorCode(err); got != tc.code {
				t.Fatalf("Validate() = %v (%q), want kind %q", err, got, tc.code)
			}
			if err != nil && !strings.Contains(zenklav.ErrorMessage(err), tc.says) {
				t.Errorf("message %q does not say %q", zenklav.ErrorMessage(err), tc.says)
			}
		})
	}
}

func TestPeriodStart(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, kolkata)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		t        time.Time
		interval string
		want     string
	}{
		{at("2026-11-25 23:59"), reports.Day, "2026-11-25"},
		{at("2026-11-25 00:00"), reports.Day, "2026-11-25"},
		{at("2026-11-25 12:00"), reports.Week, "2026-11-23"}, // a Wednesday: its Monday
		{at("2026-11-23 00:30"), reports.Week, "2026-11-23"}, // a Monday is its own
		{at("2026-11-29 23:00"), reports.Week, "2026-11-23"}, // a Sunday ends the ISO week
		{at("2026-01-01 08:00"), reports.Week, "2025-12-29"}, // across the year
		{at("2026-11-25 12:00"), reports.Month, "2026-11-01"},
		{at("2026-12-31 23:59"), reports.Month, "2026-12-01"},
	} {
		got := reports.PeriodStart(tc.t, tc.interval)
		if got.Format(time.DateOnly) != tc.want || got.Location() != kolkata || got.Hour() != 0 {
			t.Errorf("PeriodStart(%s, %s) = %s, want %s at midnight in Kolkata", tc.t, tc.interval, got, tc.want)
		}
	}
}
