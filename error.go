package zenklav

import (
	"errors"
	"fmt"
	"time"
)

// Error kinds. A kind is what callers branch on; the message is for people.
const (
	EINVALID      = "invalid"      // bad input: 400/422, never retried
	EUNAUTHORIZED = "unauthorized" // missing or wrong credentials: 401
	EFORBIDDEN    = "forbidden"    // valid credentials, wrong connection: 403
	ENOTFOUND     = "not_found"    // 404
	ECONFLICT     = "conflict"     // 409
	ETOOLARGE     = "too_large"    // 413
	EMETHOD       = "method"       // 405: the path exists, the method does not
	EUNAVAILABLE  = "unavailable"  // a dependency failed: 503, retried
	EINTERNAL     = "internal"     // a bug: 500
)

// Error is an error with a kind and a message that is safe to show to the caller. An
// adapter that called an API also says here what the API answered, so that no caller needs
// to know the API's own error type.
type Error struct {
	Code    string
	Message string
	Err     error // the cause, for logs; never shown to callers

	// Throttled says a rate limit refused the call (a 429); the adapter's own limiter then
	// waits it out, so a caller need not back off on top of it.
	Throttled bool
	// RetryAfter is the wait the API asked for (its Retry-After); 0 when it named none.
	RetryAfter time.Duration
	// Response is the failing answer in short (status and the API's error list), for a dead
	// letter's headers; "" when there was no answer.
	Response string
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

// Throttled reports whether any *Error in err's chain is a rate limit's refusal.
func Throttled(err error) bool {
	return anyError(err, func(e *Error) bool { return e.Throttled })
}

// RetryAfter returns the wait an API asked for in err's chain, and 0 when none did.
func RetryAfter(err error) time.Duration {
	var d time.Duration
	anyError(err, func(e *Error) bool { d = e.RetryAfter; return d > 0 })
	return d
}

// Response returns the failing answer an *Error in err's chain keeps, or "".
func Response(err error) string {
	var r string
	anyError(err, func(e *Error) bool { r = e.Response; return r != "" })
	return r
}

// anyError reports whether f holds for any *Error in err's chain: callers wrap an adapter's
// error in errors of their own, and the API's answer is on the innermost.
func anyError(err error, f func(*Error) bool) bool {
	if err == nil {
		return false
	}
	if e, ok := err.(*Error); ok && f(e) {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return anyError(u.Unwrap(), f)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if anyError(e, f) {
				return true
			}
		}
	}
	return false
}
