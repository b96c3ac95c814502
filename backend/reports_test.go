package backend_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	zauth "github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/internal/golden"
	"github.com/zenklav/zenklav/reports/reportstest"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/reports"
)

// The keys of the tests: 2026-11 signs, 2026-10 (the previous generation) still verifies,
// 2026-09 was rotated out.
var (
	currentKey  = zauth.SigningKey{ID: "2026-11", Secret: "reports-key-2026-11-0123456789abcdef"}
	previousKey = zauth.SigningKey{ID: "2026-10", Secret: "reports-key-2026-10-0123456789abcdef"}
	retiredKey  = zauth.SigningKey{ID: "2026-09", Secret: "reports-key-2026-09-0123456789abcdef"}
)

func hours(h float64) *float64 { return &h }

// fixedSource answers every report with fixed rows, or with err when the test sets it.
type fixedSource struct {
	reportstest.Source
	err error
}

func newFixedSource() *fixedSource {
	f := &fixedSource{}
	f.Answer = func(kind string, flt reports.Filter) (any, error) {
		if f.err != nil {
			return nil, f.err
		}
		return fixedRows(kind, flt), nil
	}
	return f
}

func fixedRows(kind string, flt reports.Filter) any {
	switch kind {
	case reports.KindTrends:
		if flt.By != "" {
			return []reports.TrendRow{
				{Period: "2024-12-30", Key: "email", Opened: 7, Resolved: 3, Backlog: 4},
				{Period: "2024-12-30", Key: "=HYPERLINK(\"x\")", Opened: 1, Resolved: 0, Backlog: 1},
			}
		}
		return []reports.TrendRow{
			{Period: "2024-12-23", Opened: 12, Resolved: 9, Backlog: 3},
			{Period: "2024-12-30", Opened: 8, Resolved: 10, Backlog: 1},
			{Period: "2025-01-06", Opened: 0, Resolved: 0, Backlog: 1},
		}
	case reports.KindResolutionCohorts:
		return []reports.ResolutionCohortRow{
			{Cohort: "2024-12-23", Tickets: 12, Closed1d: 0.25, Closed3d: 0.5, Closed7d: 0.75, Closed14d: 11.0 / 12, Closed30d: 1,
				MedianHours: hours(50.5), P90Hours: hours(240), ReopenRate: 1.0 / 12},
			{Cohort: "2024-12-30", Tickets: 3},
		}
	case reports.KindRepeatCohorts:
		return []reports.RepeatCohortRow{
			{Cohort: "2024-12-23", Customers: 10, Offset: 0, Returned: 1, Share: 0.1},
			{Cohort: "2024-12-23", Customers: 10, Offset: 1, Returned: 3, Share: 0.3},
			{Cohort: "2024-12-30", Customers: 4, Offset: 0, Returned: 0, Share: 0},
		}
	}
	return nil // no segment yet: the answer is an empty list, never null
}

type reportsServer struct {
	url    string
	source *fixedSource
	auth   *zauth.Reports
	conns  *zenklav.Connections
}

// newReportsServer serves the reports API of the acme and globex connections with the
// current and previous keys, at the tests' now.
func newReportsServer(t *testing.T) *reportsServer {
	t.Helper()
	conns := sidebarConns(t, 101)
	auth, err := zauth.NewReports([]zauth.SigningKey{currentKey, previousKey}, conns, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	src := newFixedSource()
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{
		Registry: prometheus.NewRegistry(),
		Reports:  &backend.Reports{Auth: auth, Source: src},
		Now:      func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &reportsServer{url: ts.URL, source: src, auth: auth, conns: conns}
}

// get asks for path (and query) with the token, and headers as "Name: value".
func (s *reportsServer) get(t *testing.T, path, token string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readBody(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reportClaims are the claims of a good marketer token for acme.
func reportClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "zenklav", "aud": "zenklav:reports", "sub": "maria@acme.test",
		"role": "marketer", "tenants": []string{"acme"},
		"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func reportClaimsWith(change func(jwt.MapClaims)) jwt.MapClaims {
	c := reportClaims()
	change(c)
	return c
}

// signHS signs claims with method and secret, naming kid in the header unless it is "".
func signHS(t *testing.T, method jwt.SigningMethod, kid string, secret zenklav.Secret, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString([]byte(secret.Reveal()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReportsAuth(t *testing.T) {
	s := newReportsServer(t)
	good := func(c jwt.MapClaims) string {
		return signHS(t, jwt.SigningMethodHS256, currentKey.ID, currentKey.Secret, c)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, reportClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// A real sidebar session, signed with the same secret (the sidebar signs with the
	// current key): its audience keeps it out of the reports.
	sidebar, err := zauth.NewSidebar(s.conns, []zauth.SigningKey{currentKey}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	session, _, err := sidebar.IssueSession(zauth.AppIdentity{Connection: "acme", Subdomain: "acme", Installation: 101})
	if err != nil {
		t.Fatal(err)
	}
	issued, _, err := s.auth.Issue(zauth.TokenRequest{Subject: "ops", Role: "admin", Connections: []string{"*"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, token, query string
		header             string // instead of the Bearer token
		status             int
		message            string   // part of the error's message
		tenants            []string // what the source is asked with, on 200
		connection         string
	}{
		{name: "no token", status: 401, message: "missing report token"},
		{name: "not bearer", header: "Basic YWRtaW46YWRtaW4=", status: 401, message: "missing report token"},
		{name: "empty bearer", header: "Bearer  ", status: 401, message: "missing report token"},
		{name: "malformed", token: "not.a.jwt", status: 401, message: "malformed report token"},
		{name: "garbage", token: "hello", status: 401, message: "malformed report token"},
		{name: "oversized", token: strings.Repeat("a", 9000), status: 401, message: "over"},
		{name: "expired", token: good(reportClaimsWith(func(c jwt.MapClaims) {
			c["iat"], c["nbf"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Minute).Unix()
		})), status: 401, message: "has expired"},
		{name: "not yet valid", token: good(reportClaimsWith(func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Minute).Unix() })), status: 401, message: "not valid yet"},
		{name: "issued in the future", token: good(reportClaimsWith(func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Minute).Unix() })), status: 401, message: "not valid yet"},
		{name: "no exp", token: good(reportClaimsWith(func(c jwt.MapClaims) { delete(c, "exp") })), status: 401, message: "lacks a required claim"},
		{name: "no nbf", token: good(reportClaimsWith(func(c jwt.MapClaims) { delete(c, "nbf") })), status: 401, message: "lacks a required claim"},
		{name: "sidebar session", token: session, status: 401, message: "for another audience"},
		{name: "sidebar audience with the current kid", token: good(reportClaimsWith(func(c jwt.MapClaims) { c["aud"] = "zenklav:sidebar" })), status: 401, message: "another audience"},
		{name: "no audience", token: good(reportClaimsWith(func(c jwt.MapClaims) { delete(c, "aud") })), status: 401},
		{name: "wrong issuer", token: good(reportClaimsWith(func(c jwt.MapClaims) { c["iss"] = "acme.zendesk.com" })), status: 401, message: "wrong issuer"},
		{name: "unknown kid", token: signHS(t, jwt.SigningMethodHS256, "2027-01", currentKey.Secret, reportClaims()), status: 401, message: `(kid "2027-01")`},
		{name: "no kid", token: signHS(t, jwt.SigningMethodHS256, "", currentKey.Secret, reportClaims()), status: 401, message: `(kid "")`},
		{name: "rotated-out key", token: signHS(t, jwt.SigningMethodHS256, retiredKey.ID, retiredKey.Secret, reportClaims()), status: 401, message: "ask for a new token"},
		{name: "current kid, previous key's secret", token: signHS(t, jwt.SigningMethodHS256, currentKey.ID, previousKey.Secret, reportClaims()), status: 401, message: "not signed with the expected key"},
		{name: "HS256 with another key", token: signHS(t, jwt.SigningMethodHS256, currentKey.ID, "someone-elses-key-0123456789abcdef", reportClaims()), status: 401, message: "not signed with the expected key"},
		{name: "HS512 with the right key", token: signHS(t, jwt.SigningMethodHS512, currentKey.ID, currentKey.Secret, reportClaims()), status: 401, message: "not signed with the expected key"},
		{name: "alg none", token: none, status: 401},
		{name: "wrong role", token: good(reportClaimsWith(func(c jwt.MapClaims) { c["role"] = "agent" })), status: 403, message: `role "agent"`},
		{name: "no role", token: good(reportClaimsWith(func(c jwt.MapClaims) { delete(c, "role") })), status: 403},
		{name: "marketer with every tenant", token: good(reportClaimsWith(func(c jwt.MapClaims) { c["tenants"] = []string{"*"} })), status: 403, message: "only an admin"},
		{name: "no tenants", token: good(reportClaimsWith(func(c jwt.MapClaims) { delete(c, "tenants") })), status: 403, message: "no connection"},
		{name: "tenants zenklav does not have", token: good(reportClaimsWith(func(c jwt.MapClaims) { c["tenants"] = []string{"initech"} })), status: 403, message: "no connection"},
		{name: "other tenant's connection", token: good(reportClaims()), query: "?connection=globex", status: 403, message: `connection "globex" is not one this token may read`},
		{name: "unknown connection", token: good(reportClaims()), query: "?connection=initech", status: 403, message: `connection "initech" is not one this token may read`},
		{name: "other tenant's connection, bad dates too", token: good(reportClaims()), query: "?connection=globex&from=nope", status: 403},

		{name: "valid marketer", token: good(reportClaims()), status: 200, tenants: []string{"acme"}},
		{name: "previous key still listed", token: signHS(t, jwt.SigningMethodHS256, previousKey.ID, previousKey.Secret, reportClaims()), status: 200, tenants: []string{"acme"}},
		{name: "clock skew within leeway", token: good(reportClaimsWith(func(c jwt.MapClaims) {
			c["nbf"], c["iat"] = now.Add(3*time.Second).Unix(), now.Add(3*time.Second).Unix()
		})), status: 200, tenants: []string{"acme"}},
		{name: "unknown tenant dropped", token: good(reportClaimsWith(func(c jwt.MapClaims) { c["tenants"] = []string{"initech", "acme"} })), status: 200, tenants: []string{"acme"}},
		{name: "own connection", token: good(reportClaims()), query: "?connection=acme", status: 200, tenants: []string{"acme"}, connection: "acme"},
		{name: "marketer of both", token: good(reportClaimsWith(func(c jwt.MapClaims) { c["tenants"] = []string{"globex", "acme"} })), status: 200, tenants: []string{"acme", "globex"}},
		{name: "admin of every tenant", token: issued, status: 200, tenants: []string{"acme", "globex"}},
		{name: "admin of every tenant, one connection", token: issued, query: "?connection=globex", status: 200, tenants: []string{"acme", "globex"}, connection: "globex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.source.Asked())
			var headers []string
			if tc.header != "" {
				headers = append(headers, "Authorization: "+tc.header)
			}
			resp := s.get(t, "/api/v1/reports/trends"+tc.query, tc.token, headers...)
			body := readBody(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tc.status)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			asked := s.source.Asked()[before:]
			if tc.status != http.StatusOK {
				var e struct {
					Error struct{ Code, Message string }
				}
				if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Error.Message, tc.message) {
					t.Errorf("error %s (%v), want a message containing %q", body, err, tc.message)
				}
				if want := map[int]string{401: zenklav.EUNAUTHORIZED, 403: zenklav.EFORBIDDEN}[tc.status]; e.Error.Code != want {
					t.Errorf("code %q, want %q", e.Error.Code, want)
				}
				if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("a 401 without WWW-Authenticate")
				}
				if len(asked) != 0 || bytes.Contains(body, []byte("rows")) {
					t.Errorf("a refused request reached the source (%v) or got rows: %s", asked, body)
				}
				return
			}
			if len(asked) != 1 {
				t.Fatalf("the source was asked %d times, want once", len(asked))
			}
			if !slices.Equal(asked[0].Connections, tc.tenants) || asked[0].Connection != tc.connection {
				t.Errorf("the source was asked for tenants %v, connection %q; want %v, %q", asked[0].Connections, asked[0].Connection, tc.tenants, tc.connection)
			}
		})
	}
}

// TestReportTokenAudiences: a report token and a sidebar session, signed with the same
// secret, are not taken for each other.
func TestReportTokenAudiences(t *testing.T) {
	s := newReportsServer(t)
	token, _, err := s.auth.Issue(zauth.TokenRequest{Subject: "maria", Role: "marketer", Connections: []string{"acme"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sidebar, err := zauth.NewSidebar(s.conns, []zauth.SigningKey{currentKey}, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sidebar.VerifySession(token); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
		t.Errorf("the sidebar took a report token: %v", err)
	}
}

func TestIssueReportToken(t *testing.T) {
	s := newReportsServer(t)
	token, exp, err := s.auth.Issue(zauth.TokenRequest{Subject: "maria@acme.test", Role: "marketer", Connections: []string{"acme", "acme"}, TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(24 * time.Hour)) {
		t.Errorf("expires %v, want a day after now", exp)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header["kid"] != currentKey.ID || parsed.Header["alg"] != "HS256" {
		t.Errorf("header %v, want kid %s and HS256", parsed.Header, currentKey.ID)
	}
	claims := parsed.Claims.(jwt.MapClaims)
	for k, want := range map[string]any{"iss": "zenklav", "sub": "maria@acme.test", "role": "marketer", "tenants": []any{"acme"}, "aud": []any{"zenklav:reports"}} {
		if !reflect.DeepEqual(claims[k], want) {
			t.Errorf("claim %s = %v, want %v", k, claims[k], want)
		}
	}
	caller, err := s.auth.Verify(token)
	if err != nil || caller.Subject != "maria@acme.test" || caller.KeyID != currentKey.ID || !slices.Equal(caller.Connections, []string{"acme"}) {
		t.Errorf("Verify = %+v, %v", caller, err)
	}

	for _, tc := range []struct {
		name string
		req  zauth.TokenRequest
		want string
	}{
		{"unknown role", zauth.TokenRequest{Subject: "x", Role: "agent", Connections: []string{"acme"}, TTL: time.Hour}, `role "agent"`},
		{"no subject", zauth.TokenRequest{Role: "marketer", Connections: []string{"acme"}, TTL: time.Hour}, "who it is for"},
		{"no tenant", zauth.TokenRequest{Subject: "x", Role: "marketer", TTL: time.Hour}, "at least one tenant"},
		{"tenant not a connection", zauth.TokenRequest{Subject: "x", Role: "marketer", Connections: []string{"initech"}, TTL: time.Hour}, `tenant "initech" is not a connection`},
		{"every tenant for a marketer", zauth.TokenRequest{Subject: "x", Role: "marketer", Connections: []string{"*"}, TTL: time.Hour}, "only an admin"},
		{"ttl over 90 days", zauth.TokenRequest{Subject: "x", Role: "marketer", Connections: []string{"acme"}, TTL: 91 * 24 * time.Hour}, "at most"},
		{"no ttl", zauth.TokenRequest{Subject: "x", Role: "marketer", Connections: []string{"acme"}}, "positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.auth.Issue(tc.req)
			if zenklav.ErrorCode(err) != zenklav.EINVALID || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Issue = %v, want EINVALID saying %q", err, tc.want)
			}
		})
	}
}

func TestNewReportsAuthRefusesWeakKeys(t *testing.T) {
	if _, err := zauth.NewReports(nil, nil, nil); err == nil {
		t.Error("no keys accepted")
	}
	if _, err := zauth.NewReports([]zauth.SigningKey{{ID: "k", Secret: "short"}}, nil, nil); err == nil {
		t.Error("a short key accepted")
	}
}

// TestReportAnswers checks each report's JSON and CSV against testdata, and what the
// source was asked.
func TestReportAnswers(t *testing.T) {
	s := newReportsServer(t)
	token, _, err := s.auth.Issue(zauth.TokenRequest{Subject: "maria", Role: "marketer", Connections: []string{"acme", "globex"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		headers    []string
		csv        bool
		filename   string
		want       string // the filter the source is asked with (reports.Filter.String)
	}{
		{name: "trends", path: "/api/v1/reports/trends",
			want: `tenants=[acme globex] connection="" brand=0 channel="" tag="" 2024-10-11..2025-01-08 week UTC by="" kind=""`},
		{name: "trends_csv", path: "/api/v1/reports/trends", headers: []string{"Accept: text/csv"}, csv: true, filename: "zenklav-trends-2024-10-11-2025-01-08.csv",
			want: `tenants=[acme globex] connection="" brand=0 channel="" tag="" 2024-10-11..2025-01-08 week UTC by="" kind=""`},
		{name: "trends_by_channel", path: "/api/v1/reports/trends?by=channel&connection=acme&brand=360001&channel=email&tag=vip&from=2024-12-01&to=2025-01-31&interval=month&tz=Europe/Madrid",
			want: `tenants=[acme globex] connection="acme" brand=360001 channel="email" tag="vip" 2024-12-01..2025-01-31 month Europe/Madrid by="channel" kind=""`},
		{name: "trends_by_channel_csv", path: "/api/v1/reports/trends?by=channel&format=csv&from=2024-12-01&to=2025-01-31", csv: true, filename: "zenklav-trends-2024-12-01-2025-01-31.csv",
			want: `tenants=[acme globex] connection="" brand=0 channel="" tag="" 2024-12-01..2025-01-31 week UTC by="channel" kind=""`},
		{name: "resolution-cohorts", path: "/api/v1/reports/resolution-cohorts?interval=day&tz=America/New_York",
			want: `tenants=[acme globex] connection="" brand=0 channel="" tag="" 2024-10-11..2025-01-08 day America/New_York by="" kind=""`},
		{name: "resolution-cohorts_csv", path: "/api/v1/reports/resolution-cohorts", headers: []string{"Accept: text/csv;q=0.9, application/xml"}, csv: true, filename: "zenklav-resolution-cohorts-2024-10-11-2025-01-08.csv",
			want: `tenants=[acme globex] connection="" brand=0 channel="" tag="" 2024-10-11..2025-01-08 week UTC by="" kind=""`},
		{name: "repeat-cohorts", path: "/api/v1/reports/repeat-cohorts?to=2024-12-31&format=json", headers: []string{"Accept: text/csv"}, // format wins over Accept
			want: `tenants=[acme globex] connection="" brand=0 channel="" tag="" 2024-10-03..2024-12-31 week UTC by="" kind=""`},
		{name: "repeat-cohorts_csv", path: "/api/v1/reports/repeat-cohorts?format=csv", csv: true, filename: "zenklav-repeat-cohorts-2024-10-11-2025-01-08.csv",
			want: `tenants=[acme globex] connection="" brand=0 channel="" tag="" 2024-10-11..2025-01-08 week UTC by="" kind=""`},
		{name: "segments", path: "/api/v1/reports/segments?kind=list", headers: []string{"Accept: application/json, text/csv"},
			want: `tenants=[acme globex] connection="" brand=0 channel="" tag="" 2024-10-11..2025-01-08 week UTC by="" kind="list"`},
		{name: "segments_csv", path: "/api/v1/reports/segments?format=csv", csv: true, filename: "zenklav-segments-2024-10-11-2025-01-08.csv",
			want: `tenants=[acme globex] connection="" brand=0 channel="" tag="" 2024-10-11..2025-01-08 week UTC by="" kind="segment"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.source.Asked())
			resp := s.get(t, tc.path, token, tc.headers...)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			asked := s.source.Asked()[before:]
			if len(asked) != 1 || asked[0].String() != tc.want {
				t.Errorf("the source was asked %v, want once with %s", asked, tc.want)
			}
			ctype, disp := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition")
			if tc.csv {
				if ctype != "text/csv; charset=utf-8" || disp != `attachment; filename=`+tc.filename {
					t.Errorf("Content-Type %q, Content-Disposition %q; want CSV as %s", ctype, disp, tc.filename)
				}
				if _, err := csv.NewReader(bytes.NewReader(body)).ReadAll(); err != nil {
					t.Errorf("not CSV: %v", err)
				}
				golden.Check(t, filepath.Join("testdata", "report_"+tc.name+".csv"), body)
				return
			}
			if !strings.HasPrefix(ctype, "application/json") || disp != "" {
				t.Errorf("Content-Type %q, Content-Disposition %q; want JSON", ctype, disp)
			}
			var indented bytes.Buffer
			if err := json.Indent(&indented, body, "", "  "); err != nil {
				t.Fatal(err)
			}
			indented.WriteByte('\n')
			golden.Check(t, filepath.Join("testdata", "report_"+tc.name+".json"), indented.Bytes())
		})
	}
}

func TestReportBadFilters(t *testing.T) {
	s := newReportsServer(t)
	token, _, err := s.auth.Issue(zauth.TokenRequest{Subject: "maria", Role: "marketer", Connections: []string{"acme"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"unknown parameter", "trends?conection=acme", `unknown parameter "conection"`},
		{"parameter twice", "trends?tag=a&tag=b", "tag is given 2 times"},
		{"from not a date", "trends?from=2024-13-01", `from "2024-13-01" is not a date`},
		{"to not a date", "trends?to=yesterday", `to "yesterday" is not a date`},
		{"to a timestamp", "trends?to=2025-01-01T00:00:00Z", "is not a date"},
		{"before 1970", "trends?from=1969-12-31&to=1970-01-02", "between 1970 and 2105"},
		{"to before from", "trends?from=2025-01-02&to=2025-01-01", "is before from"},
		{"over three years", "trends?from=2020-01-01&to=2024-01-01", "longer than three years"},
		{"from after the default to", "trends?from=2025-06-01", "is before from"},
		{"bad interval", "trends?interval=year", `interval "year"`},
		{"bad tz", "trends?tz=Mars/Olympus", `tz "Mars/Olympus"`},
		{"local tz", "trends?tz=Local", `tz "Local"`},
		{"tz path", "trends?tz=../../etc/passwd", "is not an IANA time zone"},
		{"bad by", "trends?by=colour", `by "colour"`},
		{"by on cohorts", "resolution-cohorts?by=channel", "trends report only"},
		{"kind on trends", "trends?kind=list", "segments report only"},
		{"bad kind", "segments?kind=flow", `kind "flow"`},
		{"brand not a number", "trends?brand=acme", "brand must be"},
		{"brand zero", "trends?brand=0", "brand must be"},
		{"bad format", "trends?format=xlsx", `format "xlsx"`},
		{"control character", "trends?tag=a%0Ab", "printable"},
		{"long tag", "trends?tag=" + strings.Repeat("t", 201), "at most 200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.get(t, "/api/v1/reports/"+tc.path, token)
			body := readBody(t, resp)
			var e struct {
				Error struct{ Code, Message string }
			}
			if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Error.Code != zenklav.EINVALID || !strings.Contains(e.Error.Message, tc.want) {
				t.Errorf("answer %d %s, want 400 saying %q", resp.StatusCode, body, tc.want)
			}
		})
	}
	if n := len(s.source.Asked()); n != 0 {
		t.Errorf("bad filters reached the source %d times", n)
	}
	resp := s.get(t, "/api/v1/reports/funnels", token)
	if body := readBody(t, resp); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown report: %d %s, want 404", resp.StatusCode, body)
	}
}

func TestReportSourceFailure(t *testing.T) {
	s := newReportsServer(t)
	s.source.err = zenklav.Errorf(zenklav.EUNAVAILABLE, "clickhouse is down")
	token, _, err := s.auth.Issue(zauth.TokenRequest{Subject: "maria", Role: "marketer", Connections: []string{"acme"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	resp := s.get(t, "/api/v1/reports/trends?format=csv", token)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !bytes.Contains(body, []byte(`"code":"unavailable"`)) {
		t.Errorf("answer %d %s, want 503 in the JSON error shape", resp.StatusCode, body)
	}
}

// TestOpenAPIDocument loads the served document with kin-openapi, validates it, checks that
// its row schemas are the Go row types' JSON fields, and validates real answers of the
// handlers (JSON, CSV, errors) against it.
func TestOpenAPIDocument(t *testing.T) {
	s := newReportsServer(t)
	resp := s.get(t, "/api/v1/openapi.json", "")
	served := readBody(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromData(served)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("the document is not valid OpenAPI 3: %v", err)
	}

	for schema, row := range map[string]any{
		"TrendRow": reports.TrendRow{}, "ResolutionCohortRow": reports.ResolutionCohortRow{},
		"RepeatCohortRow": reports.RepeatCohortRow{}, "SegmentRow": reports.SegmentRow{}, "Filters": reports.Filters{},
	} {
		sc := doc.Components.Schemas[schema]
		if sc == nil {
			t.Errorf("no schema %s", schema)
			continue
		}
		var fields, required []string
		typ := reflect.TypeOf(row)
		for i := range typ.NumField() {
			name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			fields = append(fields, name)
			if opts != "omitempty" {
				required = append(required, name)
			}
		}
		var props []string
		for p := range sc.Value.Properties {
			props = append(props, p)
		}
		slices.Sort(fields)
		slices.Sort(props)
		slices.Sort(required)
		req := slices.Sorted(slices.Values(sc.Value.Required))
		if !slices.Equal(fields, props) || !slices.Equal(required, req) {
			t.Errorf("schema %s has properties %v (required %v); %T has %v (required %v)", schema, props, req, row, fields, required)
		}
	}

	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	marketer, _, err := s.auth.Issue(zauth.TokenRequest{Subject: "maria", Role: "marketer", Connections: []string{"acme"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, token string
		accept            string
		status            int
	}{
		{"trends", "/api/v1/reports/trends", marketer, "", 200},
		{"trends by", "/api/v1/reports/trends?by=tag&connection=acme&brand=7&channel=web&tag=vip&from=2024-12-01&to=2024-12-31&interval=day&tz=Europe/Madrid", marketer, "", 200},
		{"trends csv", "/api/v1/reports/trends", marketer, "text/csv", 200},
		{"resolution cohorts", "/api/v1/reports/resolution-cohorts?interval=month", marketer, "", 200},
		{"resolution cohorts csv", "/api/v1/reports/resolution-cohorts?format=csv", marketer, "", 200},
		{"repeat cohorts", "/api/v1/reports/repeat-cohorts", marketer, "", 200},
		{"repeat cohorts csv", "/api/v1/reports/repeat-cohorts", marketer, "text/csv", 200},
		{"segments", "/api/v1/reports/segments?kind=list", marketer, "", 200},
		{"segments csv", "/api/v1/reports/segments?format=csv", marketer, "", 200},
		{"bad filter", "/api/v1/reports/trends?interval=year", marketer, "", 400},
		{"no token", "/api/v1/reports/trends", "", "", 401},
		{"bad token", "/api/v1/reports/trends", "x.y.z", "", 401},
		{"other tenant", "/api/v1/reports/segments?connection=globex", marketer, "", 403},
		{"openapi", "/api/v1/openapi.json", "", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("the document has no operation for %s: %v", tc.path, err)
			}
			resp := s.get(t, tc.path, tc.token, "Accept: "+cmp.Or(tc.accept, "*/*"))
			body := readBody(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tc.status)
			}
			opts := &openapi3filter.Options{
				IncludeResponseStatus: true, // a status the document does not list is an error
				AuthenticationFunc:    func(context.Context, *openapi3filter.AuthenticationInput) error { return nil },
			}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
			if tc.status != http.StatusBadRequest {
				// Every request but the bad filter's is one the document allows.
				if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
					t.Errorf("request: %v", err)
				}
			}
			if err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
				RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
				Body: io.NopCloser(bytes.NewReader(body)), Options: opts,
			}); err != nil {
				t.Errorf("response %d %s: %v", resp.StatusCode, body, err)
			}
		})
	}
}
