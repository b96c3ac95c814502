package sms

import (
	"errors"
	"time"

	"github.com/zenklav/zenklav/connstatus"
)

// Status is told what becomes of a connection's texts and replies (a connstatus.Recorder).
type Status interface {
	// SMS is told of a customer's text put on its ticket (connstatus.Inbound) or an agent's
	// reply Klaviyo took (connstatus.Outbound).
	SMS(connection, direction string, at time.Time)
	// Failed is told of a failed call to system (connstatus.Zendesk or connstatus.Klaviyo).
	Failed(connection, system string, err error)
}

// noStatus is the Status of a handler that has none.
type noStatus struct{}

func (noStatus) SMS(string, string, time.Time) {}
func (noStatus) Failed(string, string, error)  {}

// callError marks an error of a call to Zendesk or Klaviyo, so that the status can tell the
// two apart (and from the conversations store's). It changes nothing else: kinds and
// messages are the wrapped error's.
type callError struct {
	system string
	err    error
}

func (e *callError) Error() string { return e.err.Error() }
func (e *callError) Unwrap() error { return e.err }

func zendeskErr(err error) error { return &callError{system: connstatus.Zendesk, err: err} }
func klaviyoErr(err error) error { return &callError{system: connstatus.Klaviyo, err: err} }

// failed tells status of err when it is a failed call to Zendesk or Klaviyo.
func failed(status Status, connection string, err error) {
	if ce, ok := errors.AsType[*callError](err); ok {
		status.Failed(connection, ce.system, err)
	}
}
