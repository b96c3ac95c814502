package backend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	zauth "github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/connstatus"
	"github.com/zenklav/zenklav/schemas"
)

// healthReports answers health reports of the connections it has.
type healthReports struct {
	conns *zenklav.Connections
	asked []string
}

func (h *healthReports) Known(id string) bool { return h.conns.ByID(id) != nil }

func (h *healthReports) Report(_ context.Context, id string) (connstatus.Report, error) {
	h.asked = append(h.asked, id)
	at := now.Add(-time.Minute)
	return connstatus.Report{
		Connection: id, At: now, LastWebhook: at, LastDelivery: at, Lag: map[string]int64{"zenklav-emitter": 0},
		Errors:   []connstatus.ErrorSummary{{Kind: "klaviyo_unauthorized", Count: 2, Last: at, Message: "create event (HTTP 401)", Advice: "reconnect Klaviyo"}},
		SMS:      connstatus.SMSStatus{Enabled: true, LastMessage: at, LastDirection: connstatus.Inbound, LastInbound: at},
		Problems: []string{"Klaviyo refused the connection's credentials: reconnect Klaviyo."},
	}, nil
}

// testEvents "sends" test events.
type testEvents struct{ sent []string }

func (t *testEvents) TestEvent(_ context.Context, id string) (*schemas.TicketEvent, error) {
	t.sent = append(t.sent, id)
	return &schemas.TicketEvent{EventID: "zt:0123", Connection: id, ReceivedAt: now, Ticket: schemas.Ticket{ID: 9_000_000_000_000_001}}, nil
}

// TestConnectionHealthAuth: only an admin whose token covers the connection reads its health
// or sends its test event; every answer is what the OpenAPI document says.
func TestConnectionHealthAuth(t *testing.T) {
	conns := sidebarConns(t, 101)
	tokens, err := zauth.NewReports([]zauth.SigningKey{currentKey}, conns, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	reps, tests := &healthReports{conns: conns}, &testEvents{}
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{
		Registry: prometheus.NewRegistry(), Now: func() time.Time { return now },
		ConnectionHealth: &backend.ConnectionHealth{Auth: tokens, Reports: reps, Tester: tests},
	})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(role string, tenants ...string) string {
		tok, _, err := tokens.Issue(zauth.TokenRequest{Subject: "ops", Role: role, Connections: tenants, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	sidebar, err := zauth.NewSidebar(conns, []zauth.SigningKey{currentKey}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	session, _, err := sidebar.IssueSession(zauth.AppIdentity{Connection: "acme", Subdomain: "acme", Installation: 101})
	if err != nil {
		t.Fatal(err)
	}
	admin, acmeAdmin, marketer := issue("admin", "*"), issue("admin", "acme"), issue("marketer", "acme")
	validate := openAPIValidator(t)

	for _, tc := range []struct {
		name, method, path, token string
		status                    int
	}{
		{"admin reads", "GET", "/api/v1/connections/acme/health", admin, 200},
		{"admin of the connection", "GET", "/api/v1/connections/acme/health", acmeAdmin, 200},
		{"admin of another connection", "GET", "/api/v1/connections/globex/health", acmeAdmin, 403},
		{"marketer", "GET", "/api/v1/connections/acme/health", marketer, 403},
		{"no token", "GET", "/api/v1/connections/acme/health", "", 401},
		{"sidebar session", "GET", "/api/v1/connections/acme/health", session, 401},
		{"unknown connection", "GET", "/api/v1/connections/initech/health", admin, 404},
		{"admin tests", "POST", "/api/v1/connections/globex/test", admin, 202},
		{"marketer tests", "POST", "/api/v1/connections/acme/test", marketer, 403},
		{"test of unknown connection", "POST", "/api/v1/connections/initech/test", admin, 404},
		{"test without token", "POST", "/api/v1/connections/acme/test", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
			validate(t, req, rec)
		})
	}
	if !slices.Equal(reps.asked, []string{"acme", "acme"}) || !slices.Equal(tests.sent, []string{"globex"}) {
		t.Errorf("reports made for %v, test events sent for %v: want only the admitted requests'", reps.asked, tests.sent)
	}
}

// TestConnectionHealthBody: the report is the JSON of connstatus.Report, and the test event's
// answer carries its event id.
func TestConnectionHealthBody(t *testing.T) {
	conns := sidebarConns(t, 101)
	tokens, err := zauth.NewReports([]zauth.SigningKey{currentKey}, conns, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{
		Registry:         prometheus.NewRegistry(),
		ConnectionHealth: &backend.ConnectionHealth{Auth: tokens, Reports: &healthReports{conns: conns}, Tester: &testEvents{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	admin, _, err := tokens.Issue(zauth.TokenRequest{Subject: "ops", Role: "admin", Connections: []string{"*"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	rec := do("GET", "/api/v1/connections/acme/health")
	var rep connstatus.Report
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Connection != "acme" || len(rep.Errors) != 1 || rep.Errors[0].Advice != "reconnect Klaviyo" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("report %s (Cache-Control %q)", rec.Body, rec.Header().Get("Cache-Control"))
	}
	rec = do("POST", "/api/v1/connections/acme/test")
	var sent struct {
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &sent); err != nil || sent.EventID != "zt:0123" {
		t.Errorf("test event answer %s (%v)", rec.Body, err)
	}
}

// openAPIValidator checks requests and answers against the served OpenAPI document.
func openAPIValidator(t *testing.T) func(*testing.T, *http.Request, *httptest.ResponseRecorder) {
	t.Helper()
	b, err := backend.OpenAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatal(err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return func(t *testing.T, req *http.Request, rec *httptest.ResponseRecorder) {
		t.Helper()
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("the document has no operation for %s %s: %v", req.Method, req.URL.Path, err)
		}
		opts := &openapi3filter.Options{
			IncludeResponseStatus: true,
			AuthenticationFunc:    func(context.Context, *openapi3filter.AuthenticationInput) error { return nil },
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("request: %v", err)
		}
		body := rec.Body.Bytes()
		if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
			Body: io.NopCloser(bytes.NewReader(body)), Options: opts,
		}); err != nil {
			t.Errorf("response %d %s: %v", rec.Code, body, err)
		}
	}
}
