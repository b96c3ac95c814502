// Package apispec is what the API simulators (zendesktest, klaviyotest) share: an official
// OpenAPI document parsed once, its router, and a log of the requests and answers that break
// it, so a test that passes against a simulator means the real API would take the request.
package apispec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Spec is a parsed OpenAPI document and its router.
type Spec struct {
	doc    *openapi3.T
	Router routers.Router
}

// Load parses data, the OpenAPI document of api (for messages). The official documents
// do not pass kin-openapi's whole-document validation (each has a few faults in parts no
// simulator uses), so only the operations in served are validated, which keeps what the
// simulator checks against sound.
func Load(api string, data []byte, served []string) (*Spec, error) {
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("load %s openapi spec: %w", api, err)
	}
	// The documents name the real hosts as servers, which the router would match on; the
	// simulators answer on loopback, so routes match on path and method alone.
	doc.Servers = nil
	s := &Spec{doc: doc}
	for _, id := range served {
		op := s.operation(id)
		if op == nil {
			return nil, fmt.Errorf("load %s openapi spec: operation %s is missing", api, id)
		}
		if err := op.Validate(context.Background()); err != nil {
			return nil, fmt.Errorf("load %s openapi spec: operation %s: %w", api, id, err)
		}
	}
	if s.Router, err = gorillamux.NewRouter(doc); err != nil {
		return nil, fmt.Errorf("build %s openapi router: %w", api, err)
	}
	return s, nil
}

// operation returns the operation with the given operationId, or nil.
func (s *Spec) operation(id string) *openapi3.Operation {
	for _, item := range s.doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.OperationID == id {
				return op
			}
		}
	}
	return nil
}

// A Violation is a request that does not conform to the API's OpenAPI document, or an
// answer of the simulator's own that does not (a bug in the simulator, or in what a test
// stored in it).
type Violation struct {
	API      string
	Method   string
	Path     string // path and query of the request
	Response bool   // the simulator's answer, not the request, broke the spec
	Err      string
}

func (v Violation) String() string {
	what := "request"
	if v.Response {
		what = "response"
	}
	return fmt.Sprintf("%s %s: %s violates %s's OpenAPI spec: %s", v.Method, v.Path, what, v.API, v.Err)
}

// Recorder keeps the violations a simulator saw. Its zero value is not usable: use
// NewRecorder.
type Recorder struct {
	api    string
	logger *slog.Logger
	mu     sync.Mutex
	v      []Violation
}

// NewRecorder returns a Recorder for api that also logs each violation.
func NewRecorder(api string, logger *slog.Logger) *Recorder {
	return &Recorder{api: api, logger: logger}
}

// Record notes that r (or, with response set, the answer to r) broke the spec.
func (rec *Recorder) Record(r *http.Request, response bool, err error) {
	v := Violation{API: rec.api, Method: r.Method, Path: r.URL.RequestURI(), Response: response, Err: err.Error()}
	rec.mu.Lock()
	rec.v = append(rec.v, v)
	rec.mu.Unlock()
	rec.logger.Warn("simulator: spec violation", "api", rec.api, "method", v.Method, "path", r.URL.Path, "response", response, "err", v.Err)
}

// Violations returns what was recorded so far, oldest first.
func (rec *Recorder) Violations() []Violation {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.v)
}

// TB is the part of testing.TB that AssertNoViolations needs; taking it instead of
// testing.TB keeps the testing package out of binaries that run a simulator (sandbox mode).
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// AssertNoViolations fails t for each violation recorded.
func (rec *Recorder) AssertNoViolations(t TB) {
	t.Helper()
	for _, v := range rec.Violations() {
		t.Errorf("%s", v)
	}
}

// Refusals words a simulator's refusals the way its API does.
type Refusals struct {
	// NoOperation answers a request that matches no operation of the document (400).
	NoOperation func(w http.ResponseWriter, r *http.Request, err error)
	// Unauthenticated answers a request whose credentials fail (401).
	Unauthenticated func(w http.ResponseWriter)
	// Invalid answers a request that breaks the document (400).
	Invalid func(w http.ResponseWriter, operationID string, err error)
	// Broken answers in place of an answer of the simulator's own that breaks the document
	// (500): a bug in the simulator, or in what a test stored in it.
	Broken func(w http.ResponseWriter, err error)
}

// Handler serves one checked request: route is the operation it matched.
type Handler func(w http.ResponseWriter, r *http.Request, route *routers.Route, params map[string]string)

// Serve is the round every simulated request makes: find its operation, validate it
// (authentication through auth; an authentication error that wraps quiet is a valid request
// with credentials no account has, and is not recorded), let h answer into a buffer,
// validate that answer too, and only then send it. Violations go to rec.
func (s *Spec) Serve(w http.ResponseWriter, r *http.Request, rec *Recorder, auth openapi3filter.AuthenticationFunc,
	quiet error, refuse Refusals, h Handler) {
	route, params, err := s.Router.FindRoute(r)
	if err != nil {
		rec.Record(r, false, err)
		refuse.NoOperation(w, r, err)
		return
	}
	input := &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			AuthenticationFunc: auth,
			// Without this every schema error carries the schema and value as indented
			// JSON, which buries the one line that says what is wrong.
			SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
		},
	}
	if err := openapi3filter.ValidateRequest(r.Context(), input); err != nil {
		var authErr *openapi3filter.SecurityRequirementsError
		if errors.As(err, &authErr) {
			if quiet == nil || !errors.Is(err, quiet) {
				rec.Record(r, false, err)
			}
			refuse.Unauthenticated(w)
			return
		}
		rec.Record(r, false, err)
		refuse.Invalid(w, route.Operation.OperationID, err)
		return
	}

	buf := httptest.NewRecorder()
	h(buf, r, route, params)
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input,
		Status:                 buf.Code,
		Header:                 buf.Header(),
		Body:                   io.NopCloser(bytes.NewReader(buf.Body.Bytes())),
		Options:                input.Options,
	}
	if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
		rec.Record(r, true, err)
		refuse.Broken(w, err)
		return
	}
	for k, v := range buf.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(buf.Code)
	w.Write(buf.Body.Bytes()) //nolint:errcheck // the client went away; nothing to do
}

// Window counts requests in a fixed window that starts with its first request, the way
// Zendesk and Klaviyo document their limits.
type Window struct {
	start time.Time
	used  int
}

// Wait returns how long until the window, of length d allowing max requests, has room for
// one more: 0 when it has room now.
func (w *Window) Wait(now time.Time, d time.Duration, max int) time.Duration {
	if now.Sub(w.start) >= d || now.Before(w.start) {
		w.start, w.used = now, 0
	}
	if w.used >= max {
		return w.start.Add(d).Sub(now)
	}
	return 0
}

// Take counts one request.
func (w *Window) Take() { w.used++ }

// Used is how many requests the current window has counted.
func (w *Window) Used() int { return w.used }

// RetryAfterSeconds is the Retry-After value for a wait: whole seconds, rounded up, at
// least 1.
func RetryAfterSeconds(wait time.Duration) int {
	return max(1, int((wait+time.Second-1)/time.Second))
}

// StatusWriter notes the status of an answer as it is written, for counting answers.
type StatusWriter struct {
	http.ResponseWriter
	Status int
}

func (w *StatusWriter) WriteHeader(status int) {
	if w.Status == 0 {
		w.Status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Loopback is a simulator's own server on a loopback port, as httptest.NewServer gives one.
// A simulator embeds it for its URL and Close.
type Loopback struct {
	// URL is the base URL of the API, e.g. "http://127.0.0.1:54321"; set by Listen, empty
	// for a simulator its caller serves somewhere else.
	URL string
	ts  *httptest.Server
}

// Listen serves h on a loopback port.
func (l *Loopback) Listen(h http.Handler) {
	l.ts = httptest.NewServer(h)
	l.URL = l.ts.URL
}

// Close shuts down the server Listen started and waits for its requests to finish.
func (l *Loopback) Close() {
	if l.ts != nil {
		l.ts.Close()
	}
}
