package backend_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/reportsui"
)

func newReportsPageServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{Registry: prometheus.NewRegistry(), ReportsPage: reportsui.Page()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func getReportsPage(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// TestReportsPage serves the real page: a strict CSP, never cached, and its files under a
// version that a year's cache may keep.
func TestReportsPage(t *testing.T) {
	ts := newReportsPageServer(t)
	res, page := getReportsPage(t, ts.URL+"/reports")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /reports: %d %s", res.StatusCode, page)
	}
	for name, want := range map[string]string{
		"Content-Type": "text/html; charset=utf-8",
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
			"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
		"Cache-Control":          "no-store",
		"Referrer-Policy":        "no-referrer",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := res.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	m := regexp.MustCompile(`src="/reports/web/([0-9a-f]{12})/reports\.js"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the page loads no versioned reports.js:\n%s", page)
	}
	version := m[1]
	for _, tc := range []struct{ file, ctype, body string }{
		{"reports.js", "text/javascript; charset=utf-8", "zenklavReports"},
		{"charts.js", "text/javascript; charset=utf-8", "ZenklavCharts"},
		{"reports.css", "text/css; charset=utf-8", "prefers-color-scheme: dark"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			if !strings.Contains(page, `"/reports/web/`+version+`/`+tc.file+`"`) {
				t.Errorf("the page does not load %s under its version", tc.file)
			}
			res, body := getReportsPage(t, ts.URL+"/reports/web/"+version+"/"+tc.file)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", res.StatusCode, body)
			}
			if got := res.Header.Get("Content-Type"); got != tc.ctype {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if got := res.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
				t.Errorf("Cache-Control %q", got)
			}
			if !strings.Contains(body, tc.body) {
				t.Errorf("the file does not contain %q", tc.body)
			}
		})
	}

	for name, path := range map[string]string{
		"another version":      "/reports/web/000000000000/reports.js",
		"no such file":         "/reports/web/" + version + "/nope.js",
		"the page as an asset": "/reports/web/" + version + "/index.html",
	} {
		t.Run(name, func(t *testing.T) {
			res, body := getReportsPage(t, ts.URL+path)
			if res.StatusCode != http.StatusNotFound || !strings.Contains(body, `"code":"not_found"`) {
				t.Errorf("GET %s: %d %s, want 404 not_found", path, res.StatusCode, body)
			}
			if cc := res.Header.Get("Cache-Control"); strings.Contains(cc, "max-age") {
				t.Errorf("a 404 is cached: %q", cc)
			}
		})
	}
}

// TestReportsPageOff: without the page, /reports is not found.
func TestReportsPageOff(t *testing.T) {
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	if res, _ := getReportsPage(t, ts.URL+"/reports"); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /reports without the page: %d, want 404", res.StatusCode)
	}
}
