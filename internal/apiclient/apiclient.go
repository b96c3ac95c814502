// Package apiclient holds what zenklav's API clients (zendesk, klaviyo) do alike: checking
// the base URL they are given, sending a request and reading its answer, deciding what an
// error status means, and reading a Retry-After.
package apiclient

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
)

// ParseBase parses raw as an API base URL: http(s), with a host, and without credentials, a
// query or a fragment, which would end up in error messages and logs that quote URLs. A
// trailing slash is dropped so paths can be appended. Its errors never quote raw, which may
// hold a password.
func ParseBase(raw string) (*url.URL, error) {
	base, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return nil, errors.New("base url does not parse")
	}
	if base.Scheme != "https" && base.Scheme != "http" || base.Host == "" {
		return nil, errors.New("base url must be an http(s) URL with a host")
	}
	if base.User != nil || base.RawQuery != "" || base.Fragment != "" {
		return nil, errors.New("base url must not carry credentials, a query or a fragment")
	}
	return base, nil
}

// Kind maps an API's error status to the error kind that decides what zenklav does next.
func Kind(status int) string {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// For an integration both mean the connection's credentials need fixing (a token
		// without the scope, a user who may not read the resource), not a caller of zenklav
		// overstepping.
		return zenklav.EUNAUTHORIZED
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500:
		return zenklav.EUNAVAILABLE
	default:
		return zenklav.EINVALID
	}
}

// MaxRetryAfter bounds the wait a server can ask for: a wrong or hostile header must not stall
// a worker for days.
const MaxRetryAfter = time.Hour

// RetryAfter reads a Retry-After value, whole seconds or an HTTP date, as a wait from now,
// rounded up to the second so a retry never comes early, and at most MaxRetryAfter. An empty
// or unreadable value is 0.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(MaxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		d := min(t.Sub(now), MaxRetryAfter)
		return (d + time.Second - 1).Truncate(time.Second)
	}
	return 0
}

// Send sends req, bounded by timeout, and returns the answer's status, headers and body,
// read up to limit bytes (a caller that must tell a longer body asks for one byte more). A
// failure to get an answer (the network, a timeout, ctx ending) is EUNAVAILABLE, worth
// another try later; errors.Is still finds
// context.Canceled and DeadlineExceeded in its chain. The url.Error around a transport error
// quotes the request's URL, whose query may name a customer (an email or phone): it is
// dropped, so no log or error carries it. api names the API in the debug logs.
func Send(hc *http.Client, logger *slog.Logger, api, op string, req *http.Request, timeout time.Duration, limit int64) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(req.Context(), timeout)
	defer cancel()
	req = req.WithContext(ctx)
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		logger.DebugContext(ctx, api+" call failed", "op", op, "err", err)
		return 0, nil, nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s", op)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	logger.DebugContext(ctx, api+" call", "op", op, "status", resp.StatusCode, "elapsed", time.Since(start))
	if err != nil {
		return 0, nil, nil, zenklav.Wrap(zenklav.EUNAVAILABLE, err, "%s: read answer %d", op, resp.StatusCode)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// Failure is the error of an answer other than 2xx: of kind, with the API's own error as its
// cause, and what zenklav acts on said in the error itself: whether a rate limit refused
// the call, the Retry-After it asked for, and the answer in short for a dead letter.
func Failure(op string, status int, kind string, apiErr error, retryAfter time.Duration, response string) error {
	e := zenklav.Wrap(kind, apiErr, "%s", op)
	e.Throttled = status == http.StatusTooManyRequests
	e.RetryAfter = retryAfter
	e.Response = response
	return e
}

// The outcomes of a request, as the clients' request counters label them: a small set, the
// same for every API, so that one query reads both.
const (
	OutcomeOK           = "ok"           // 2xx
	OutcomeNotFound     = "not_found"    // 404
	OutcomeThrottled    = "throttled"    // 429: a rate limit refused it
	OutcomeUnauthorized = "unauthorized" // 401, 403: the credentials need fixing
	OutcomeRefused      = "refused"      // another 4xx
	OutcomeUnavailable  = "unavailable"  // 5xx, 408, or no answer at all
)

// Outcome sorts what Send returned into one of the outcomes: err is Send's (no answer),
// status the answer's.
func Outcome(status int, err error) string {
	switch {
	case err != nil:
		return OutcomeUnavailable
	case status >= 200 && status <= 299:
		return OutcomeOK
	case status == http.StatusNotFound:
		return OutcomeNotFound
	case status == http.StatusTooManyRequests:
		return OutcomeThrottled
	}
	switch Kind(status) {
	case zenklav.EUNAUTHORIZED:
		return OutcomeUnauthorized
	case zenklav.EUNAVAILABLE:
		return OutcomeUnavailable
	default:
		return OutcomeRefused
	}
}
