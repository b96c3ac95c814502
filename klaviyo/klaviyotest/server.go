// Package klaviyotest is a Klaviyo simulator in the way of net/http/httptest: in-memory
// accounts, one per private key, served over HTTP with the API's paths, auth and JSON:API
// bodies. It serves event creation, single and bulk, bulk profile imports, and the reads
// of the agent sidebar (get_profiles, get_events, a profile's segments and lists), and lets
// a test read back what each account accepted and seed profiles with SetProfileDetails.
//
// For two-way SMS (conversations.go, webhooks.go) it keeps profiles with phone numbers and
// SMS consent (SetSMSProfile), one SMS conversation each (get_conversations_for_profile),
// and the replies sent into them (create_conversation_message, read back with
// ConversationMessages); it sends signed system webhooks (SendWebhook, Sign), and plays a
// customer's phone (Text).
//
// For setting up a connection (admin.go, oauth.go) it serves the Webhooks API, whose webhooks
// then receive the system webhooks of their topics, and Klaviyo's OAuth for an app: a consent
// page, the token and revocation endpoints, and access tokens that work on every API route
// alongside the private keys.
//
// Every request is validated against Klaviyo's OpenAPI document (stable.json, revision
// 2026-07-15), and so is every answer the simulator gives. A request that does not conform
// is answered 400 with a JSON:API error list and recorded; tests read the record with
// Violations or fail on it with AssertNoViolations, so a test that passes against the
// simulator sends requests the real API accepts.
//
// Like Klaviyo it deduplicates events (same profile, metric and unique_id: the first one
// wins), merges imported profile properties per key, and enforces the published
// per-account rate limits of each endpoint with 429 and Retry-After, reporting the quota
// left in RateLimit-* headers otherwise. Tests can add latency and make the next requests
// fail.
//
// Tests use NewServer; a sandbox serves the *Server from New (an http.Handler) on a
// listener of its own. GET /sandbox is a page, and GET /sandbox/events.json its JSON, of
// what each account received; paths under /sandbox are the simulator's own, not
// Klaviyo's, and are not validated.
package klaviyotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/zenklav/zenklav/internal/apispec"
	"github.com/zenklav/zenklav/klaviyo"
)

// maxPayload is the largest request body Klaviyo accepts on the event endpoints.
const maxPayload = 5 << 20

// Server is a simulated Klaviyo. It is safe for concurrent use.
type Server struct {
	// Recorder keeps the spec violations: Violations and AssertNoViolations read them.
	*apispec.Recorder

	// Loopback is the server NewServer starts: its URL is the API's base URL, e.g.
	// "http://127.0.0.1:54321", empty for a Server from New until the caller serves it.
	apispec.Loopback

	logger *slog.Logger
	spec   *apispec.Spec

	mu         sync.Mutex
	now        func() time.Time
	latency    time.Duration
	failN      int
	failStatus int
	fault      fault
	opFaults   map[string]fault // by operation id
	refuse     func(klaviyo.Event) bool
	onAccept   func(privateKey string, events []klaviyo.Event)
	accounts   map[string]*account // by private key

	// The webhooks it sends (webhooks.go): their meta, where Text sends them, and how.
	hookAccount, hookID string
	hookURL, hookSecret string
	hookClient          *http.Client
	phone               Phone

	oauth oauthState // the OAuth app, its grants and tokens (oauth.go)
}

// New returns a simulator that is not listening anywhere: serve it as an http.Handler.
// The logger gets spec violations at warn level; nil discards them. New fails only if the
// embedded OpenAPI document cannot be loaded.
func New(logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sp, err := spec()
	if err != nil {
		return nil, err
	}
	return &Server{
		Recorder: apispec.NewRecorder("Klaviyo", logger),
		logger:   logger,
		spec:     sp,
		now:      time.Now,
		accounts: map[string]*account{},

		hookAccount: DefaultWebhookAccountID,
		hookID:      DefaultWebhookID,
		hookClient:  &http.Client{Timeout: webhookTimeout},

		oauth: newOAuthState(),
	}, nil
}

// NewServer starts a simulator on a loopback port. Close it when done. Like
// httptest.NewServer it panics if it cannot start.
func NewServer() *Server {
	s, err := New(nil)
	if err != nil {
		panic("klaviyotest: " + err.Error())
	}
	s.Listen(s)
	return s
}

// AddAccount makes the server accept privateKey (Klaviyo's look like "pk_…"), as the key
// of a new, empty account. Adding a key twice keeps the account it has.
func (s *Server) AddAccount(privateKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.accounts[privateKey]; !ok {
		s.accounts[privateKey] = newAccount()
	}
}

// Events returns the events the account of privateKey accepted and kept after
// deduplication, in the order they arrived; nil for an unknown key. Times are truncated to
// the second as Klaviyo stores them, and an event sent without a time has the time the
// server received it. The events are copies, properties and all.
func (s *Server) Events(privateKey string) []klaviyo.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[privateKey]
	if !ok {
		return nil
	}
	out := make([]klaviyo.Event, len(a.events))
	for i, e := range a.events {
		out[i] = cloneEvent(e)
	}
	return out
}

// SetLatency makes the server wait d before answering each API request (or until the
// client gives up).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// FailNext answers the next n valid, authenticated API requests with status (a 5xx, or
// 429 with Retry-After: 1) instead of handling them.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failStatus = n, status
}

// fault is an outage in progress: a fraction of requests answered with status.
type fault struct {
	status   int
	fraction float64
}

// SetFault answers the given fraction (0 to 1) of valid, authenticated API requests with
// status (a 5xx, or 429 with Retry-After: 1) until SetFault(0, 0): an outage when fraction
// is 1, a flaky Klaviyo below. Which requests fail is random.
func (s *Server) SetFault(status int, fraction float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = fault{status: status, fraction: fraction}
}

// SetOperationFault is SetFault for one operation of the spec (its operationId, e.g.
// "get_segments_for_profile"): a Klaviyo failing in one endpoint only. A zero status
// clears it.
func (s *Server) SetOperationFault(opID string, status int, fraction float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opFaults == nil {
		s.opFaults = map[string]fault{}
	}
	if status == 0 {
		delete(s.opFaults, opID)
		return
	}
	s.opFaults[opID] = fault{status: status, fraction: fraction}
}

// RefuseEvents makes the server refuse, with a 400 that points at them, the events match
// selects, as Klaviyo refuses an event it finds invalid; nil accepts them again.
func (s *Server) RefuseEvents(match func(klaviyo.Event) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = match
}

// refused is the error for an event RefuseEvents selects, or nil.
func (s *Server) refused(e klaviyo.Event, pointer string) *apiError {
	s.mu.Lock()
	match := s.refuse
	s.mu.Unlock()
	if match == nil || !match(e) {
		return nil
	}
	err := invalid("klaviyotest: this event is refused by the test (RefuseEvents).", pointer)
	return &err
}

// OnAccept makes the server call f with the events each API request added to the account
// of privateKey (what deduplication kept; none is not a call), before the request is
// answered: a load generator times deliveries with it rather than reading Events over
// and over. f runs on the request's goroutine, outside the server's lock, and must not
// change the events; nil stops the calls.
func (s *Server) OnAccept(f func(privateKey string, events []klaviyo.Event)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onAccept = f
}

// SetClock replaces time.Now for the server: the rate-limit windows and the time of
// events sent without one.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Violation is a request, or an answer of the simulator's, that breaks Klaviyo's OpenAPI
// document.
type Violation = apispec.Violation

// errNoKey and errUnknownKey tell a request the spec forbids (no private key at all) from
// one it allows but no account matches.
var (
	errNoKey      = errors.New("no Klaviyo-API-Key authorization")
	errUnknownKey = errors.New("unknown private key, or an access token that expired or was revoked")
)

// keyPrefix starts the Authorization header of private-key requests, bearerPrefix that of
// requests with an OAuth access token.
const (
	keyPrefix    = "Klaviyo-API-Key "
	bearerPrefix = "Bearer "
)

// authenticate is the openapi3filter hook for the spec's security schemes. stable.json
// declares one, Klaviyo-API-Key: an apiKey in the Authorization header whose value is
// "Klaviyo-API-Key <private key>", required by every /api/ operation. Klaviyo takes "Bearer
// <access token>" in the same header from an OAuth app (its OAuth guide, not the spec), and
// so does the simulator, for the tokens it issued.
func (s *Server) authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme := in.SecurityScheme
	if scheme.Type != "apiKey" || scheme.In != "header" {
		return fmt.Errorf("security scheme %q (%s in %s) is not simulated", in.SecuritySchemeName, scheme.Type, scheme.In)
	}
	v := in.RequestValidationInput.Request.Header.Get(scheme.Name)
	if token, ok := strings.CutPrefix(v, bearerPrefix); ok && !s.issued(token) {
		// A private key sent as a Bearer token, say: a client's mistake, not a grant that
		// ended.
		return fmt.Errorf("%w in header %s, but a Bearer token the simulator never issued", errNoKey, scheme.Name)
	}
	key, ok := strings.CutPrefix(v, keyPrefix)
	if !ok {
		key, ok = strings.CutPrefix(v, bearerPrefix)
	}
	if !ok || key == "" {
		return fmt.Errorf("%w in header %s, which security scheme %q requires", errNoKey, scheme.Name, in.SecuritySchemeName)
	}
	if s.credentials(in.RequestValidationInput.Request).key == "" {
		return errUnknownKey
	}
	return nil
}

// credential is what a request's Authorization names: the private key of its account, and
// for an access token the scopes its grant gave.
type credential struct {
	key    string // "" when the header names no account
	bearer bool
	scopes []string
}

// credentials reads r's Authorization: a private key an account has, or an access token
// the simulator issued that still works, for the account that granted it.
func (s *Server) credentials(r *http.Request) credential {
	v := r.Header.Get("Authorization")
	s.mu.Lock()
	defer s.mu.Unlock()
	if key, ok := strings.CutPrefix(v, keyPrefix); ok {
		if _, known := s.accounts[key]; known {
			return credential{key: key}
		}
		return credential{}
	}
	if token, ok := strings.CutPrefix(v, bearerPrefix); ok {
		if key, scopes, ok := s.bearer(token); ok {
			if _, known := s.accounts[key]; known {
				return credential{key: key, bearer: true, scopes: scopes}
			}
		}
	}
	return credential{}
}

// call is one API request that passed validation.
type call struct {
	body    []byte
	key     string // the private key the request came with
	account *account
	base    string // scheme and host the request came to, for links in answers
	query   url.Values
	params  map[string]string // path parameters
}

// answer is what a handler decided: a status and either the JSON:API error list or, for
// an operation whose success has a body, that body.
type answer struct {
	status int
	errors []apiError
	body   any
}

// handler answers one operation of the spec.
type handler func(s *Server, c *call) answer

// handlers are the operations the simulator serves, by operationId. Any other operation of
// the spec is validated and then answered 501.
var handlers = map[string]handler{
	"create_event":         (*Server).createEvent,
	"bulk_create_events":   (*Server).bulkCreateEvents,
	"bulk_import_profiles": (*Server).bulkImportProfiles,

	"get_profiles":             (*Server).getProfiles,
	"get_events":               (*Server).getEvents,
	"get_segments_for_profile": (*Server).getSegmentsForProfile,
	"get_lists_for_profile":    (*Server).getListsForProfile,

	"get_conversations_for_profile": (*Server).getConversationsForProfile,
	"create_conversation_message":   (*Server).createConversationMessage,

	"get_webhooks":       (*Server).getWebhooks,
	"create_webhook":     (*Server).createWebhook,
	"get_webhook":        (*Server).getWebhook,
	"update_webhook":     (*Server).updateWebhook,
	"delete_webhook":     (*Server).deleteWebhook,
	"get_webhook_topics": (*Server).getWebhookTopics,
	"get_webhook_topic":  (*Server).getWebhookTopic,
}

// ServeHTTP answers Klaviyo's API and, under /sandbox, the simulator's own pages.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/sandbox" || strings.HasPrefix(r.URL.Path, "/sandbox/") {
		s.serveSandbox(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/oauth/") {
		s.serveOAuth(w, r)
		return
	}
	s.serveAPI(w, r)
}

// countAnswer counts status against the account the request's credentials name. Requests
// with no known key or working token belong to no account and are not counted.
func (s *Server) countAnswer(r *http.Request, status int) {
	key := s.credentials(r).key
	if key == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.accounts[key]; a != nil {
		a.answers.count(status)
	}
}

// serveAPI answers Klaviyo's API.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPayload))
	if err != nil {
		writeErrors(w, http.StatusRequestEntityTooLarge, apiError{Code: "payload_too_large", Title: "Payload too large.", Detail: fmt.Sprintf("The request body is larger than %d bytes.", maxPayload)})
		s.countAnswer(r, http.StatusRequestEntityTooLarge)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))

	// The wait comes after reading the body: only then does net/http notice a client that
	// gave up and cancel r.Context().
	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}

	// Only answers sent are counted: not those to clients that gave up during the latency.
	sw := &apispec.StatusWriter{ResponseWriter: w}
	s.spec.Serve(sw, r, s.Recorder, s.authenticate, errUnknownKey, refusals,
		func(w http.ResponseWriter, r *http.Request, route *routers.Route, params map[string]string) {
			s.handle(w, r, route, params, body)
		})
	s.countAnswer(r, sw.Status)
}

// handle answers a request that passed validation: the access token's scopes, injected
// failures and the rate limit first, then the operation's handler.
func (s *Server) handle(w http.ResponseWriter, r *http.Request, route *routers.Route, params map[string]string, body []byte) {
	cred := s.credentials(r)
	opID := route.Operation.OperationID
	a := scopeAnswer(cred, route)
	if a.status == 0 {
		a = s.admit(w, cred.key, opID, limitKey(opID, r.URL.Query()))
	}
	if a.status == 0 {
		if h, ok := handlers[opID]; ok {
			s.mu.Lock()
			acct := s.accounts[cred.key]
			s.mu.Unlock()
			a = h(s, &call{body: body, key: cred.key, account: acct, base: baseURL(r), query: r.URL.Query(), params: params})
		} else {
			a = answer{status: http.StatusNotImplemented, errors: []apiError{{Code: "not_simulated", Title: "Not simulated.", Detail: fmt.Sprintf("klaviyotest does not simulate %s (%s %s)", opID, r.Method, route.Path)}}}
		}
	}
	switch {
	case len(a.errors) > 0:
		writeErrors(w, a.status, a.errors...)
	case a.body != nil:
		writeJSON(w, a.status, a.body)
	default:
		w.WriteHeader(a.status)
	}
}

// scopeAnswer refuses an access token that expired since it was authenticated, and one
// without every scope the operation names in x-klaviyo-scopes; a private key has every
// scope.
func scopeAnswer(cred credential, route *routers.Route) answer {
	if cred.key == "" {
		return answer{status: http.StatusUnauthorized, errors: []apiError{{Code: "authentication_failed", Title: "Incorrect authentication credentials.", Detail: "Incorrect authentication credentials."}}}
	}
	if !cred.bearer {
		return answer{}
	}
	need, _ := route.Operation.Extensions["x-klaviyo-scopes"].([]any)
	for _, sc := range need {
		if name, _ := sc.(string); !slices.Contains(cred.scopes, name) {
			return answer{status: http.StatusForbidden, errors: []apiError{{Code: "permission_denied", Title: "You do not have permission to perform this action.",
				Detail: fmt.Sprintf("The access token lacks the scope %s, which %s requires.", name, route.Operation.OperationID)}}}
		}
	}
	return answer{}
}

// baseURL is the scheme and host r came to.
func baseURL(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// refusals are Klaviyo's answers to requests it will not serve.
var refusals = apispec.Refusals{
	NoOperation: func(w http.ResponseWriter, r *http.Request, err error) {
		writeErrors(w, http.StatusBadRequest, invalid(fmt.Sprintf("%s %s is not an operation of Klaviyo's OpenAPI spec: %v", r.Method, r.URL.Path, err), ""))
	},
	Unauthenticated: func(w http.ResponseWriter) {
		writeErrors(w, http.StatusUnauthorized, apiError{Code: "authentication_failed", Title: "Incorrect authentication credentials.", Detail: "Incorrect authentication credentials."})
	},
	Invalid: func(w http.ResponseWriter, op string, err error) {
		writeErrors(w, http.StatusBadRequest, invalid(fmt.Sprintf("request does not conform to Klaviyo's OpenAPI spec (operation %s): %v", op, err), ""))
	},
	Broken: func(w http.ResponseWriter, err error) {
		writeErrors(w, http.StatusInternalServerError, apiError{Code: "error", Title: "A server error occurred.", Detail: fmt.Sprintf("klaviyotest built an answer that does not conform to Klaviyo's OpenAPI spec: %v", err)})
	},
}

// admit applies injected failures and the rate limit of opID for the account of key. It
// returns a zero answer when the request may proceed, and then sets the RateLimit-* headers
// of a rate-limited operation: Klaviyo sends them on every answer but a 429, which carries
// Retry-After instead. Injected failures are not counted against the limit. limitID is
// opID, or the variant of it that has limits of its own (see limitKey).
func (s *Server) admit(w http.ResponseWriter, key, opID, limitID string) answer {
	s.mu.Lock()
	defer s.mu.Unlock()
	status := 0
	opFault := s.opFaults[opID]
	switch {
	case s.failN > 0:
		s.failN--
		status = s.failStatus
	case s.fault.status != 0 && mrand.Float64() < s.fault.fraction:
		status = s.fault.status
	case opFault.status != 0 && mrand.Float64() < opFault.fraction:
		status = opFault.status
	}
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
		return answer{status: status, errors: []apiError{throttled(1)}}
	}
	if status != 0 {
		return answer{status: status, errors: []apiError{{Code: "error", Title: "A server error occurred.", Detail: fmt.Sprintf("klaviyotest: injected failure %d", status)}}}
	}
	lim, ok := limits[limitID]
	if !ok {
		return answer{}
	}
	q, wait, ok := s.accounts[key].take(limitID, lim, s.now())
	if !ok {
		secs := apispec.RetryAfterSeconds(wait)
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		return answer{status: http.StatusTooManyRequests, errors: []apiError{throttled(secs)}}
	}
	w.Header().Set("RateLimit-Limit", fmt.Sprint(q.limit))
	w.Header().Set("RateLimit-Remaining", fmt.Sprint(q.remaining))
	w.Header().Set("RateLimit-Reset", fmt.Sprint(apispec.RetryAfterSeconds(q.reset)))
	return answer{}
}

// apiError is one entry of Klaviyo's JSON:API error list (components.responses.ClientError).
type apiError struct {
	ID     string `json:"id"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Source *struct {
		Pointer string `json:"pointer,omitempty"`
	} `json:"source,omitempty"`
}

func invalid(detail, pointer string) apiError {
	e := apiError{Code: "invalid", Title: "Invalid input.", Detail: detail}
	if pointer != "" {
		e.Source = &struct {
			Pointer string `json:"pointer,omitempty"`
		}{pointer}
	}
	return e
}

func throttled(secs int) apiError {
	return apiError{Code: "throttled", Title: "Request was throttled.", Detail: fmt.Sprintf("Request was throttled. Expected available in %d second(s).", secs)}
}

// writeJSON writes a JSON:API body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, apiError{Code: "error", Title: "A server error occurred.", Detail: "klaviyotest: encode answer: " + err.Error()})
		return
	}
	w.Header().Set("Content-Type", klaviyo.MediaType)
	w.WriteHeader(status)
	w.Write(body)
}

// writeErrors writes Klaviyo's error body: {"errors":[…]}, each with an id and the status.
func writeErrors(w http.ResponseWriter, status int, errs ...apiError) {
	for i := range errs {
		errs[i].ID = newID()
		errs[i].Status = status
	}
	body, err := json.Marshal(map[string]any{"errors": errs})
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"errors":[{"id":"0","status":500,"code":"error","title":"A server error occurred.","detail":"encode answer"}]}`)
	}
	w.Header().Set("Content-Type", klaviyo.MediaType)
	w.WriteHeader(status)
	w.Write(body)
}

// newID returns a random id shaped like a UUID, as Klaviyo's error ids are.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
