// Package zenklav holds what every part of zenklav shares: the error kinds that decide an
// HTTP status in one place and whether the pipeline retries.
package zenklav

import (
	"errors"
	"fmt"
)

// Error kinds. A kind is what callers branch on; the message is for people.
const (
	EINVALID      = "invalid"      // bad input: 400/422, never retried
	EUNAUTHORIZED = "unauthorized" // missing or wrong credentials: 401
	EFORBIDDEN    = "forbidden"    // valid credentials, wrong tenant: 403
	ENOTFOUND     = "not_found"    // 404
	ECONFLICT     = "conflict"     // 409
	ETOOLARGE     = "too_large"    // 413
	EMETHOD       = "method"       // 405: the path exists, the method does not
	EUNAVAILABLE  = "unavailable"  // a dependency failed: 503, retried
	EINTERNAL     = "internal"     // a bug: 500
)

// Error is an error with a kind and a message that is safe to show to the caller.
type Error struct {
	Code    string
	Message string
	Err     error // the cause, for logs; never shown to callers
}

// Errorf returns an *Error of the given kind.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error of the given kind that keeps err as its cause.
func Wrap(code string, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the kind of the first *Error in err's chain, EINTERNAL for any other
// error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the caller-safe message of err: an *Error's message, or a generic
// one for anything else so internals never leak.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Transient reports whether err is worth retrying.
func Transient(err error) bool { return ErrorCode(err) == EUNAVAILABLE }
