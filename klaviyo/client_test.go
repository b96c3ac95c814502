package klaviyo_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/klaviyo/klaviyotest"
)

const testKey = "pk_test_0123456789abcdef"

// setup starts a simulator with one account and a client for it.
func setup(t *testing.T) (*klaviyotest.Server, *klaviyo.Client) {
	t.Helper()
	sim := klaviyotest.NewServer()
	t.Cleanup(sim.Close)
	sim.AddAccount(testKey)
	return sim, newClient(t, sim, testKey)
}

func newClient(t *testing.T, sim *klaviyotest.Server, key string) *klaviyo.Client {
	t.Helper()
	c, err := klaviyo.NewClient(slog.New(slog.DiscardHandler), klaviyo.ClientConfig{BaseURL: sim.URL, PrivateKey: key, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func ptr(f float64) *float64 { return &f }

func event(email, metric, uid string) klaviyo.Event {
	return klaviyo.Event{
		Metric:     metric,
		Profile:    klaviyo.Profile{Email: email},
		Properties: map[string]any{"ticket_id": "123"},
		Time:       time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC),
		UniqueID:   uid,
	}
}

func TestCreateEvent(t *testing.T) {
	sim, c := setup(t)
	want := klaviyo.Event{
		Metric:     "Opened Ticket",
		Profile:    klaviyo.Profile{Email: "a@example.com", PhoneNumber: "+15005550006", ExternalID: "crm-42"},
		Properties: map[string]any{"ticket_id": "123", "priority": float64(2)},
		Time:       time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC),
		UniqueID:   "zendesk:123:opened",
		Value:      ptr(9.99),
	}
	if err := c.CreateEvent(context.Background(), want); err != nil {
		t.Fatalf("CreateEvent: %v", err)
	}
	got := sim.Events(testKey)
	if len(got) != 1 {
		t.Fatalf("simulator holds %d events, want 1", len(got))
	}
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("stored event:\n got %+v\nwant %+v", got[0], want)
	}
	sim.AssertNoViolations(t)
}

func TestCreateEventWithoutTimeOrProperties(t *testing.T) {
	sim, c := setup(t)
	if err := c.CreateEvent(context.Background(), klaviyo.Event{Metric: "Resolved Ticket", Profile: klaviyo.Profile{ExternalID: "crm-1"}, UniqueID: "u1"}); err != nil {
		t.Fatalf("CreateEvent: %v", err)
	}
	got := sim.Events(testKey)
	if len(got) != 1 || got[0].Time.IsZero() {
		t.Errorf("stored %+v, want one event with the receipt time", got)
	}
	sim.AssertNoViolations(t)
}

func TestBulkCreateEvents(t *testing.T) {
	sim, c := setup(t)
	events := []klaviyo.Event{
		event("a@example.com", "Opened Ticket", "1:opened"),
		event("b@example.com", "Opened Ticket", "2:opened"),
		event("a@example.com", "Resolved Ticket", "1:resolved"),
	}
	events[1].Profile = klaviyo.Profile{PhoneNumber: "+447700900123"}
	if err := c.BulkCreateEvents(context.Background(), events); err != nil {
		t.Fatalf("BulkCreateEvents: %v", err)
	}
	got := sim.Events(testKey)
	if len(got) != len(events) {
		t.Fatalf("simulator holds %d events, want %d: %+v", len(got), len(events), got)
	}
	// The bulk job holds one entry per profile, so a@'s two events arrive together, in the
	// order given, before the phone profile's.
	var order []string
	for _, e := range got {
		order = append(order, e.UniqueID)
	}
	if want := []string{"1:opened", "1:resolved", "2:opened"}; !slices.Equal(order, want) {
		t.Errorf("stored in order %v, want %v", order, want)
	}
	sim.AssertNoViolations(t)
}

func TestDeduplication(t *testing.T) {
	sim, c := setup(t)
	ctx := context.Background()
	first := event("a@example.com", "Opened Ticket", "1:opened")
	second := first
	second.Properties = map[string]any{"ticket_id": "changed"}
	other := event("b@example.com", "Opened Ticket", "1:opened") // other profile: kept
	for _, e := range []klaviyo.Event{first, second, other} {
		if err := c.CreateEvent(ctx, e); err != nil {
			t.Fatalf("CreateEvent: %v", err)
		}
	}
	if err := c.BulkCreateEvents(ctx, []klaviyo.Event{second}); err != nil {
		t.Fatalf("BulkCreateEvents: %v", err)
	}
	got := sim.Events(testKey)
	if len(got) != 2 {
		t.Fatalf("simulator holds %d events, want 2: %+v", len(got), got)
	}
	if got[0].Properties["ticket_id"] != "123" {
		t.Errorf("kept %v, want the first event", got[0].Properties)
	}
	sim.AssertNoViolations(t)
}

// TestBulkDropsRedeliveredDuplicates: the same event twice in one batch (at-least-once
// delivery) is sent once, instead of making Klaviyo refuse the whole request.
func TestBulkDropsRedeliveredDuplicates(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	const key = "pk_dup_0123456789"
	sim.AddAccount(key)
	c, err := klaviyo.NewClient(slog.New(slog.DiscardHandler), klaviyo.ClientConfig{BaseURL: sim.URL, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	e := event("a@example.com", "Opened Ticket", "acme:1:opened:e1")
	if err := c.BulkCreateEvents(context.Background(), []klaviyo.Event{e, event("b@example.com", "Opened Ticket", "acme:2:opened:e2"), e}); err != nil {
		t.Fatalf("a batch with a redelivered event: %v", err)
	}
	if got := sim.Events(key); len(got) != 2 {
		t.Fatalf("simulator holds %d events, want 2", len(got))
	}
	sim.AssertNoViolations(t)
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		call       func(sim *klaviyotest.Server, c *klaviyo.Client) error
		wantKind   string
		wantStatus int // 0: the client refuses before sending
	}{
		{
			name: "bulk reuses a unique_id for another profile",
			call: func(_ *klaviyotest.Server, c *klaviyo.Client) error {
				return c.BulkCreateEvents(ctx, []klaviyo.Event{event("a@example.com", "Opened Ticket", "dup"), event("b@example.com", "Opened Ticket", "dup")})
			},
			wantKind: zenklav.EINVALID, wantStatus: 0,
		},
		{
			name: "unknown key",
			call: func(sim *klaviyotest.Server, _ *klaviyo.Client) error {
				return newClient(t, sim, "pk_unknown").CreateEvent(ctx, event("a@example.com", "Opened Ticket", "1"))
			},
			wantKind: zenklav.EUNAUTHORIZED, wantStatus: http.StatusUnauthorized,
		},
		{
			name: "server error",
			call: func(sim *klaviyotest.Server, c *klaviyo.Client) error {
				sim.FailNext(1, http.StatusInternalServerError)
				return c.CreateEvent(ctx, event("a@example.com", "Opened Ticket", "1"))
			},
			wantKind: zenklav.EUNAVAILABLE, wantStatus: http.StatusInternalServerError,
		},
		{
			name: "no profile identifier",
			call: func(_ *klaviyotest.Server, c *klaviyo.Client) error {
				return c.CreateEvent(ctx, klaviyo.Event{Metric: "Opened Ticket"})
			},
			wantKind: zenklav.EINVALID,
		},
		{
			name: "phone number not E.164",
			call: func(_ *klaviyotest.Server, c *klaviyo.Client) error {
				return c.CreateEvent(ctx, klaviyo.Event{Metric: "Opened Ticket", Profile: klaviyo.Profile{PhoneNumber: "0700 900123"}})
			},
			wantKind: zenklav.EINVALID,
		},
		{
			name: "no metric",
			call: func(_ *klaviyotest.Server, c *klaviyo.Client) error {
				return c.CreateEvent(ctx, klaviyo.Event{Profile: klaviyo.Profile{Email: "a@example.com"}})
			},
			wantKind: zenklav.EINVALID,
		},
		{
			name: "too many bulk events",
			call: func(_ *klaviyotest.Server, c *klaviyo.Client) error {
				return c.BulkCreateEvents(ctx, make([]klaviyo.Event, klaviyo.MaxBulkEvents+1))
			},
			wantKind: zenklav.EINVALID,
		},
		{
			name: "empty bulk",
			call: func(_ *klaviyotest.Server, c *klaviyo.Client) error {
				return c.BulkCreateEvents(ctx, nil)
			},
			wantKind: zenklav.EINVALID,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t)
			err := tt.call(sim, c)
			if got := zenklav.ErrorCode(err); got != tt.wantKind {
				t.Fatalf("error kind %q (%v), want %q", got, err, tt.wantKind)
			}
			var apiErr *klaviyo.APIError
			gotStatus := 0
			if errors.As(err, &apiErr) {
				gotStatus = apiErr.StatusCode
				if len(apiErr.Errors) == 0 || apiErr.Errors[0].Code == "" {
					t.Errorf("APIError %v has no decoded error list", apiErr)
				}
			}
			if gotStatus != tt.wantStatus {
				t.Errorf("status %d (%v), want %d", gotStatus, err, tt.wantStatus)
			}
			if len(sim.Events(testKey)) != 0 {
				t.Errorf("simulator stored %v, want nothing", sim.Events(testKey))
			}
			sim.AssertNoViolations(t)
		})
	}
}

func TestBulkRateLimit(t *testing.T) {
	sim, c := setup(t)
	// A stopped clock: all eleven requests fall in one second however slow the machine is.
	now := time.Now()
	sim.SetClock(func() time.Time { return now })
	ctx := context.Background()
	var err error
	for i := range 11 {
		err = c.BulkCreateEvents(ctx, []klaviyo.Event{event("a@example.com", "Opened Ticket", fmt.Sprint(i))})
		if i < 10 && err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
	if zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE {
		t.Fatalf("11th bulk request: %v, want unavailable", err)
	}
	var apiErr *klaviyo.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("11th bulk request: %v, want 429", err)
	}
	if d := zenklav.RetryAfter(err); d != time.Second {
		t.Errorf("RetryAfter = %s, want 1s", d)
	}
	// Single events have their own, larger limit.
	if err := c.CreateEvent(ctx, event("a@example.com", "Opened Ticket", "single")); err != nil {
		t.Errorf("CreateEvent after bulk limit: %v", err)
	}
	sim.AssertNoViolations(t)
}

func TestFailNext(t *testing.T) {
	sim, c := setup(t)
	sim.FailNext(2, http.StatusServiceUnavailable)
	e := event("a@example.com", "Opened Ticket", "1")
	for i := range 2 {
		err := c.CreateEvent(context.Background(), e)
		if zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE || !zenklav.Transient(err) {
			t.Fatalf("attempt %d: %v, want unavailable", i+1, err)
		}
	}
	if err := c.CreateEvent(context.Background(), e); err != nil {
		t.Fatalf("third attempt: %v", err)
	}
	if n := len(sim.Events(testKey)); n != 1 {
		t.Errorf("simulator holds %d events, want 1", n)
	}
	sim.AssertNoViolations(t)
}

func TestTimeout(t *testing.T) {
	sim := klaviyotest.NewServer()
	defer sim.Close()
	sim.AddAccount(testKey)
	sim.SetLatency(time.Second)
	c, err := klaviyo.NewClient(slog.New(slog.DiscardHandler), klaviyo.ClientConfig{BaseURL: sim.URL, PrivateKey: testKey, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = c.CreateEvent(context.Background(), event("a@example.com", "Opened Ticket", "1"))
	if zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow Klaviyo: %v, want unavailable with a deadline", err)
	}
}

func TestNetworkError(t *testing.T) {
	sim := klaviyotest.NewServer()
	url := sim.URL
	sim.Close()
	c, err := klaviyo.NewClient(slog.New(slog.DiscardHandler), klaviyo.ClientConfig{BaseURL: url, PrivateKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CreateEvent(context.Background(), event("a@example.com", "Opened Ticket", "1")); zenklav.ErrorCode(err) != zenklav.EUNAVAILABLE {
		t.Errorf("closed server: %v, want unavailable", err)
	}
}

func TestNewClientRejectsBadConfig(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	tests := []struct {
		name string
		cfg  klaviyo.ClientConfig
	}{
		{"no key", klaviyo.ClientConfig{BaseURL: "https://a.klaviyo.com"}},
		{"no scheme", klaviyo.ClientConfig{BaseURL: "a.klaviyo.com", PrivateKey: testKey}},
		{"credentials in url", klaviyo.ClientConfig{BaseURL: "https://u:p@a.klaviyo.com", PrivateKey: testKey}},
		{"negative timeout", klaviyo.ClientConfig{BaseURL: "https://a.klaviyo.com", PrivateKey: testKey, Timeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := klaviyo.NewClient(logger, tt.cfg); zenklav.ErrorCode(err) != zenklav.EINVALID {
				t.Errorf("NewClient: %v, want invalid", err)
			}
		})
	}
	if _, err := klaviyo.NewClient(nil, klaviyo.ClientConfig{BaseURL: "https://a.klaviyo.com", PrivateKey: testKey}); err == nil {
		t.Error("NewClient with a nil logger succeeded")
	}
}

func TestClientConfigRedactsKey(t *testing.T) {
	cfg := klaviyo.ClientConfig{BaseURL: "https://a.klaviyo.com", PrivateKey: testKey}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logged.String()} {
		if strings.Contains(s, testKey) || !strings.Contains(s, "[redacted]") {
			t.Errorf("config printed as %s", s)
		}
	}
}
