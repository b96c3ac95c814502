package apiclient_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zenklav/zenklav/internal/apiclient"
)

func TestParseBase(t *testing.T) {
	for _, tc := range []struct {
		raw, want string // want = "" for an error
	}{
		{"https://acme.zendesk.com/", "https://acme.zendesk.com"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"ftp://acme.zendesk.com", ""},
		{"acme.zendesk.com", ""},
		{"https://u:s3cret@acme.zendesk.com", ""},
		{"https://acme.zendesk.com?token=s3cret", ""},
		{"https://acme.zendesk.com#s3cret", ""},
		{"https://u:s3cret@[::1", ""},
	} {
		got, err := apiclient.ParseBase(tc.raw)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseBase(%q) = %v, want an error", tc.raw, got)
			} else if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("ParseBase(%q) error shows the secret: %v", tc.raw, err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseBase(%q) = %v, %v; want %s", tc.raw, got, err, tc.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	now := at.Add(200 * time.Millisecond) // HTTP dates have whole seconds; our clock does not
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{" 45 ", 45 * time.Second},
		{"-3", 0},
		{"soon", 0},
		{"99999999999", apiclient.MaxRetryAfter},
		{at.Add(2 * time.Second).Format(http.TimeFormat), 2 * time.Second}, // 1.8 s, rounded up
		{at.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{at.Add(-time.Minute).Format(http.TimeFormat), 0},
		{at.AddDate(70, 0, 0).Format(http.TimeFormat), apiclient.MaxRetryAfter},
	} {
		if got := apiclient.RetryAfter(tc.v, now); got != tc.want {
			t.Errorf("RetryAfter(%q) = %s, want %s", tc.v, got, tc.want)
		}
	}
}

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		err    error
		want   string
	}{
		{"created", http.StatusCreated, nil, apiclient.OutcomeOK},
		{"accepted", http.StatusAccepted, nil, apiclient.OutcomeOK},
		{"no answer", 0, errors.New("connection refused"), apiclient.OutcomeUnavailable},
		{"not found", http.StatusNotFound, nil, apiclient.OutcomeNotFound},
		{"rate limit", http.StatusTooManyRequests, nil, apiclient.OutcomeThrottled},
		{"bad key", http.StatusUnauthorized, nil, apiclient.OutcomeUnauthorized},
		{"no scope", http.StatusForbidden, nil, apiclient.OutcomeUnauthorized},
		{"invalid", http.StatusBadRequest, nil, apiclient.OutcomeRefused},
		{"conflict", http.StatusConflict, nil, apiclient.OutcomeRefused},
		{"timeout", http.StatusRequestTimeout, nil, apiclient.OutcomeUnavailable},
		{"down", http.StatusBadGateway, nil, apiclient.OutcomeUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := apiclient.Outcome(tc.status, tc.err); got != tc.want {
				t.Errorf("Outcome(%d, %v) = %q, want %q", tc.status, tc.err, got, tc.want)
			}
		})
	}
}
