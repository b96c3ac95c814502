package sms

import (
	"errors"
	"testing"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/connstatus"
)

// told is a Status that keeps what it is told.
type told struct{ failures []string }

func (t *told) SMS(string, string, time.Time) {}
func (t *told) Failed(connection, system string, err error) {
	t.failures = append(t.failures, connection+"/"+system+"/"+zenklav.ErrorCode(err))
}

// TestFailedNamesTheSystem: a failed call is told with the system it went to, through any
// wrapping, and keeps its kind; a failure of the conversations store is no system's.
func TestFailedNamesTheSystem(t *testing.T) {
	st := &told{}
	unauthorized := zenklav.Errorf(zenklav.EUNAUTHORIZED, "send message")
	failed(st, "acme", klaviyoErr(unauthorized))
	failed(st, "acme", zenklav.Wrap(zenklav.EUNAVAILABLE, zendeskErr(zenklav.Errorf(zenklav.EUNAVAILABLE, "create ticket")), "step"))
	failed(st, "acme", zenklav.Errorf(zenklav.EUNAVAILABLE, "save conversation"))
	want := []string{"acme/" + connstatus.Klaviyo + "/unauthorized", "acme/" + connstatus.Zendesk + "/unavailable"}
	if len(st.failures) != 2 || st.failures[0] != want[0] || st.failures[1] != want[1] {
		t.Errorf("told %v, want %v", st.failures, want)
	}
	if err := klaviyoErr(unauthorized); !errors.Is(err, unauthorized) || err.Error() != "send message" {
		t.Errorf("the mark changed the error: %v", err)
	}
}
