// Package zendesktest is a Zendesk simulator in the way of net/http/httptest: an in-memory
// account (tickets, users, groups, brands) served over HTTP with the Support API's paths,
// auth and JSON, plus Zendesk's signed event webhooks.
//
// Every request is validated against Zendesk's official OpenAPI document (oas.yaml), and
// so is every answer the simulator gives. A request that does not conform is answered 400
// and recorded; tests read the record with Violations or fail on it with
// AssertNoViolations, so a test that passes against the simulator sends requests the real
// API accepts. Like Zendesk it checks Basic auth ("{email}/token" and the API token) or an
// OAuth access token (Bearer) that its OAuth flow issued (oauth.go), and enforces a
// per-minute rate limit with 429 and Retry-After.
//
// Tickets are written through the API as on Zendesk: created with their first comment (an
// Idempotency-Key makes a repeat answer the first ticket), followed up only when closed,
// updated with comments and statuses but never once closed, at most TicketUpdateLimit times
// in TicketUpdateWindow, and deleted. Users are created and searched by phone or email.
// Each change sends its event webhook to the webhook target (SetAPIWebhooks) and to the
// webhooks made through the Webhooks API that subscribe to it, and AgentReply plays an agent
// answering in the workspace; tests read what was written with Tickets and Comments.
//
// An integration's setup is served too: brands, webhooks (which Zendesk's OpenAPI document
// leaves out, so their bodies are checked by hand), automations and views; tests read them
// with Webhooks, Automations and Views, and every write the API took with Writes.
//
// Tests use NewServer; zenklav's sandbox mode uses New and serves the *Server (an
// http.Handler) on its own listener. Paths under /sandbox/ are the simulator's own, not
// Zendesk's, and are not validated; nor are the agent's pages under /agent/, where a
// ticket view loads the sidebar app installed with InstallApp as Zendesk does, nor the OAuth
// consent page under /oauth/authorizations, which plays an admin who is signed in.
package zendesktest

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/zenklav/zenklav/internal/apispec"
	"github.com/zenklav/zenklav/zendesk"
)

// Credentials a new Server accepts until SetCredentials changes them.
const (
	DefaultEmail    = "integration@example.com"
	DefaultAPIToken = "zendesktest-api-token"
)

// DefaultRateLimit is the requests per minute a new Server allows: the limit Zendesk's
// rate-limit documentation shows in its X-Rate-Limit example (the Enterprise plan's).
const DefaultRateLimit = 700

// DefaultAccountID is the account_id of the webhooks a new Server builds.
const DefaultAccountID int64 = 22129848

// WebhookID is the X-Zendesk-Webhook-Id the simulator sends, shaped like Zendesk's ids.
const WebhookID = "01HZS1MULAT0RWEBH00KZENDSK"

// Server is a simulated Zendesk account. It is safe for concurrent use.
type Server struct {
	// Recorder keeps the spec violations: Violations and AssertNoViolations read them.
	*apispec.Recorder

	// Loopback is the server NewServer starts: its URL is the API's base URL, e.g.
	// "http://127.0.0.1:54321", empty for a Server from New until the caller serves it.
	apispec.Loopback

	logger  *slog.Logger
	spec    *apispec.Spec
	webhook *http.Client
	created time.Time // created_at of users, groups and brands

	mu         sync.Mutex
	email      string
	token      string
	now        func() time.Time
	accountID  int64
	limit      int
	window     apispec.Window // the rate-limit minute
	target     string         // webhook target of the sandbox endpoint
	secret     string
	tickets    map[int64]zendesk.Ticket
	users      map[int64]zendesk.User
	groups     map[int64]zendesk.Group
	brands     map[int64]zendesk.Brand
	lastTicket int64
	lastID     int64
	samples    int
	app        *installedApp // the sidebar app the agent pages load; nil until InstallApp
	export     exportState   // the Incremental Ticket Export's own limit and page size
	desk       deskState     // comments, idempotency keys, per-ticket update limit, follow-ups
	outbox     outbox        // event webhooks waiting to be sent, in order
	oauth      oauthState    // the OAuth client, its codes and tokens
	admin      adminState    // webhooks, automations, views, and the writes taken
}

// New returns a simulator that is not listening anywhere: serve it as an http.Handler
// (sandbox mode does, on its own loopback listener). The logger gets spec violations at
// warn level and sandbox deliveries at info level; nil discards them. New fails only if
// the embedded OpenAPI document cannot be loaded.
func New(logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sp, err := spec()
	if err != nil {
		return nil, err
	}
	return &Server{
		Recorder: apispec.NewRecorder("Zendesk", logger),
		logger:   logger,
		spec:     sp,
		// Zendesk gives a webhook endpoint ten seconds to answer.
		webhook:   &http.Client{Timeout: 10 * time.Second},
		created:   time.Now().UTC().Truncate(time.Second),
		email:     DefaultEmail,
		token:     DefaultAPIToken,
		now:       time.Now,
		accountID: DefaultAccountID,
		limit:     DefaultRateLimit,
		tickets:   map[int64]zendesk.Ticket{},
		users:     map[int64]zendesk.User{},
		groups:    map[int64]zendesk.Group{},
		brands:    map[int64]zendesk.Brand{},
		desk:      newDeskState(),
		oauth:     newOAuthState(),
		admin:     newAdminState(),
		// Zendesk's user, group and brand ids are past 2^32 on most accounts; starting
		// there catches code that squeezes them into 32 bits.
		lastID: 360000000000,
	}, nil
}

// NewServer starts a simulator on a loopback port. Close it when done. Like
// httptest.NewServer it panics if it cannot start.
func NewServer() *Server {
	s, err := New(nil)
	if err != nil {
		panic("zendesktest: " + err.Error())
	}
	s.Listen(s)
	return s
}

// SetCredentials sets the email and API token the server accepts.
func (s *Server) SetCredentials(email, apiToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.email, s.token = email, apiToken
}

// SetRateLimit sets how many API requests per minute the server answers before 429.
func (s *Server) SetRateLimit(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = perMinute
}

// SetAccountID sets the account_id of the webhooks the server builds.
func (s *Server) SetAccountID(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accountID = id
}

// SetClock replaces time.Now for the server: default timestamps of new records and
// events, webhook signature timestamps, and the rate-limit window.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

func (s *Server) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

// Violation is a request, or an answer of the simulator's, that breaks Zendesk's OpenAPI
// document.
type Violation = apispec.Violation

// ServeHTTP answers the Zendesk API, under /sandbox/ the simulator's own endpoints, under
// /agent/ the agent's pages (a ticket view with the sidebar app), and under
// /oauth/authorizations the OAuth consent page.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/sandbox/"):
		s.serveSandbox(w, r)
	case path == "/agent" || strings.HasPrefix(path, "/agent/"):
		s.serveAgent(w, r)
	case path == "/oauth/authorizations" || path == "/oauth/authorizations/new":
		s.serveConsent(w, r)
	default:
		sw := &apispec.StatusWriter{ResponseWriter: w}
		if path == "/api/v2/webhooks" || strings.HasPrefix(path, "/api/v2/webhooks/") {
			s.serveWebhooks(sw, r)
		} else {
			s.serveAPI(sw, r)
		}
		s.noteWrite(r, sw.Status)
	}
}

// errNoCredentials and errBadCredentials tell a request the spec forbids (no Basic auth
// at all) from one it allows but the account refuses (wrong email or token).
var (
	errNoCredentials  = errors.New("no HTTP Basic credentials")
	errBadCredentials = errors.New("wrong email or API token")
)

// authenticate is the openapi3filter hook for the spec's security schemes. oas.yaml
// declares one, basicAuth (http basic), required on every operation; Zendesk takes an OAuth
// access token (Bearer) in its place on every one, which serveAPI has checked already.
func (s *Server) authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme := in.SecurityScheme
	if scheme.Type != "http" || !strings.EqualFold(scheme.Scheme, "basic") {
		return fmt.Errorf("security scheme %q (%s %s) is not simulated", in.SecuritySchemeName, scheme.Type, scheme.Scheme)
	}
	r := in.RequestValidationInput.Request
	if route := in.RequestValidationInput.Route; route != nil && route.Operation.OperationID == "CreateTokenForGrantType" {
		// The document's global security reaches the token endpoint too, but it knows the
		// OAuth client by the body's client_id and client_secret.
		return nil
	}
	if token, ok := bearerToken(r); ok {
		if s.liveToken(token) == nil {
			return errBadCredentials
		}
		return nil
	}
	err := s.checkBasic(r)
	if errors.Is(err, errNoCredentials) {
		return fmt.Errorf("%w, which security scheme %q requires", err, in.SecuritySchemeName)
	}
	return err
}

// checkBasic checks r's Basic credentials: errNoCredentials without any,
// errBadCredentials when the account has other ones.
func (s *Server) checkBasic(r *http.Request) error {
	user, password, ok := r.BasicAuth()
	if !ok {
		return errNoCredentials
	}
	s.mu.Lock()
	wantUser, wantToken := s.email+"/token", s.token
	s.mu.Unlock()
	// Zendesk compares emails case-insensitively; the token must match exactly.
	userOK := subtle.ConstantTimeCompare([]byte(strings.ToLower(user)), []byte(strings.ToLower(wantUser))) == 1
	tokenOK := subtle.ConstantTimeCompare([]byte(password), []byte(wantToken)) == 1
	if !userOK || !tokenOK {
		return errBadCredentials
	}
	return nil
}

// call is one API request that passed validation.
type call struct {
	r      *http.Request
	params map[string]string // path parameters
	base   string            // scheme and host the client used, for the url fields
	header http.Header       // the answer's headers, for those an endpoint sets itself
}

// handler answers one operation of the spec with a status and a JSON body.
type handler func(s *Server, c *call) (int, any)

// handlers are the operations the simulator serves, by operationId. Any other operation
// of the spec is validated and then answered 501.
var handlers = map[string]handler{
	"ShowTicket":                    (*Server).showTicket,
	"ShowUser":                      (*Server).showUser,
	"ShowManyUsers":                 (*Server).showManyUsers,
	"TicketsShowMany":               (*Server).showManyTickets,
	"ShowGroupById":                 (*Server).showGroup,
	"ListBrands":                    (*Server).listBrands,
	"IncrementalTicketExportCursor": (*Server).exportTickets,
	"CreateTicket":                  (*Server).createTicket,
	"UpdateTicket":                  (*Server).updateTicket,
	"DeleteTicket":                  (*Server).deleteTicket,
	"ListTicketComments":            (*Server).listComments,
	"ListSearchResults":             (*Server).search,
	"CreateUser":                    (*Server).createUser,
	"ShowCurrentUser":               (*Server).showCurrentUser,
	"CreateTokenForGrantType":       (*Server).grantToken,
	"ListOAuthTokens":               (*Server).listTokens,
	"RevokeOAuthToken":              (*Server).revokeToken,
	"ListAutomations":               (*Server).listAutomations,
	"CreateAutomation":              (*Server).createAutomation,
	"ShowAutomation":                (*Server).showAutomation,
	"UpdateAutomation":              (*Server).updateAutomation,
	"DeleteAutomation":              (*Server).deleteAutomation,
	"ListViews":                     (*Server).listViews,
	"CreateView":                    (*Server).createView,
	"ShowView":                      (*Server).showView,
	"UpdateView":                    (*Server).updateView,
	"DeleteView":                    (*Server).deleteView,
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/oauth/tokens" && s.refuseBearer(w, r) {
		return
	}
	s.spec.Serve(w, r, s.Recorder, s.authenticate, errBadCredentials, refusals,
		func(w http.ResponseWriter, r *http.Request, route *routers.Route, params map[string]string) {
			switch h, ok := handlers[route.Operation.OperationID]; {
			case !s.allow(w):
				writeJSON(w, http.StatusTooManyRequests, errorBody("TooManyRequests", "Rate limit exceeded; retry after the number of seconds in Retry-After"))
			case ok:
				status, body := h(s, &call{r: r, params: params, base: baseURL(r), header: w.Header()})
				writeJSON(w, status, body)
			default:
				writeJSON(w, http.StatusNotImplemented, errorBody("NotSimulated", fmt.Sprintf("zendesktest does not simulate %s (%s %s)", route.Operation.OperationID, r.Method, route.Path)))
			}
		})
}

// refusals are Zendesk's answers to requests it will not serve.
var refusals = apispec.Refusals{
	NoOperation: func(w http.ResponseWriter, r *http.Request, err error) {
		writeJSON(w, http.StatusBadRequest, errorBody("InvalidEndpoint", fmt.Sprintf("%s %s is not an operation of Zendesk's OpenAPI spec: %v", r.Method, r.URL.Path, err)))
	},
	Unauthenticated: func(w http.ResponseWriter) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Couldn't authenticate you"})
	},
	Invalid: func(w http.ResponseWriter, op string, err error) {
		writeJSON(w, http.StatusBadRequest, errorBody("InvalidRequest", fmt.Sprintf("request does not conform to Zendesk's OpenAPI spec (operation %s): %v", op, err)))
	},
	Broken: func(w http.ResponseWriter, err error) {
		writeJSON(w, http.StatusInternalServerError, errorBody("SimulatorError", fmt.Sprintf("zendesktest built an answer that does not conform to Zendesk's OpenAPI spec: %v", err)))
	},
}

// allow counts a request against the per-minute limit and sets Zendesk's rate-limit
// headers; when the limit is used up it sets Retry-After and returns false.
func (s *Server) allow(w http.ResponseWriter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("X-Rate-Limit", fmt.Sprint(s.limit))
	if wait := s.window.Wait(s.now(), time.Minute, s.limit); wait > 0 {
		w.Header().Set("X-Rate-Limit-Remaining", "0")
		w.Header().Set("Retry-After", fmt.Sprint(apispec.RetryAfterSeconds(wait)))
		return false
	}
	s.window.Take()
	w.Header().Set("X-Rate-Limit-Remaining", fmt.Sprint(s.limit-s.window.Used()))
	return true
}

func baseURL(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// errorBody is the error shape Zendesk uses for most failures.
func errorBody(code, description string) map[string]string {
	return map[string]string{"error": code, "description": description}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body, _ = json.Marshal(errorBody("SimulatorError", "encode answer: "+err.Error()))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(body)
}
