package backend_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	zauth "github.com/zenklav/zenklav/auth"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/sidebar"
)

// fakeCards answers a card naming the viewer and query it was asked with.
type fakeCards struct {
	mu   sync.Mutex
	seen []sidebar.Viewer
	err  error
}

func (f *fakeCards) Card(_ context.Context, v sidebar.Viewer, q sidebar.Query) (sidebar.Card, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, v)
	if f.err != nil {
		return sidebar.Card{}, f.err
	}
	return sidebar.Card{Requester: zenklav.Person{ID: q.RequesterID, Name: v.Connection}, TicketID: q.TicketID, Klaviyo: sidebar.KlaviyoNotFound}, nil
}

// testWeb is a page with the template fields the real one uses.
var testWeb = fstest.MapFS{
	"sidebar.html": {Data: []byte(`<html lang="{{.Lang}}"{{with .Theme}} data-theme="{{.}}"{{end}}><meta name="zenklav-session" content="{{.Session}}">` +
		`<meta name="zenklav-session-expires" content="{{.SessionExpires}}"><script src="{{.Assets}}sidebar.js"></script></html>`)},
	"error.html": {Data: []byte(`<html lang="{{.Lang}}"{{with .Theme}} data-theme="{{.}}"{{end}}><link href="{{.Assets}}sidebar.css"><h1>{{.Title}}</h1><p>{{.Message}}</p></html>`)},
	"sidebar.js": {Data: []byte(`console.log("zenklav")`)},
}

type sidebarServer struct {
	url   string
	cards *fakeCards
	auth  *zauth.Sidebar
}

func newSidebarServer(t *testing.T, clock time.Time) *sidebarServer {
	t.Helper()
	s := &sidebarServer{cards: &fakeCards{}, auth: sidebarAuth(t, signingKey, clock)}
	srv, err := backend.New(slog.New(slog.DiscardHandler), backend.Options{
		Registry: prometheus.NewRegistry(),
		Sidebar: &backend.Sidebar{
			Auth: s.auth, Cards: s.cards, Web: testWeb,
			FrameAncestors: backend.ZendeskOrigins("https://{subdomain}.zendesk.com"),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	s.url = ts.URL
	return s
}

// openPage posts token to the app page as Zendesk does, with the given ZAF origin, in
// Zendesk's dark theme.
func (s *sidebarServer) openPage(t *testing.T, token, origin string) (*http.Response, string) {
	t.Helper()
	q := url.Values{"origin": {origin}, "app_guid": {"8f14e45f-ceea-467f-a8f5-3a5f2d0c1a9b"}, "colorScheme": {"dark"}}
	resp, err := http.PostForm(s.url+"/app/sidebar?"+q.Encode(), url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var sessionMeta = regexp.MustCompile(`name="zenklav-session" content="([^"]+)"`)

func (s *sidebarServer) get(t *testing.T, method, path, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, s.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestSidebarPage(t *testing.T) {
	keys := testKeys()
	srv := newSidebarServer(t, now)
	good := signRS(t, jwt.SigningMethodRS256, keys["acme"], zafClaims())

	resp, body := srv.openPage(t, good, "https://acme.zendesk.com")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"frame-ancestors https://acme.zendesk.com", "default-src 'none'", "script-src 'self'", "connect-src 'self'", "form-action 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "*") {
		t.Errorf("CSP %q allows more than the page's own files", csp)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store: the page holds a session token", cc)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("the page answers with CORS headers; nothing cross-origin reads it")
	}
	if !strings.HasPrefix(body, `<html lang="en" data-theme="dark">`) {
		t.Errorf("the page does not start in Zendesk's dark theme: %s", body)
	}
	m := sessionMeta.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no session token in the page: %s", body)
	}
	s, err := srv.auth.VerifySession(m[1])
	if err != nil || s.Connection != "acme" || s.TicketID != 5158 || s.UserID != 9001 {
		t.Fatalf("session %+v, %v; want acme's agent 9001 on ticket 5158", s, err)
	}

	// The page's script is served under the page's version, cached for good.
	js := regexp.MustCompile(`src="(/app/web/[0-9a-f]+/sidebar\.js)"`).FindStringSubmatch(body)
	if js == nil {
		t.Fatalf("no script URL in the page: %s", body)
	}
	if code, b := srv.get(t, http.MethodGet, js[1], ""); code != http.StatusOK || string(b) != `console.log("zenklav")` {
		t.Errorf("GET %s = %d %q", js[1], code, b)
	}
	for _, path := range []string{"/app/web/000000000000/sidebar.js", strings.Replace(js[1], "sidebar.js", "sidebar.html", 1)} {
		if code, _ := srv.get(t, http.MethodGet, path, ""); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, code)
		}
	}
}

// TestSidebarPageRefusals runs the JWT table through the page: no refusal hands out a
// session token.
func TestSidebarPageRefusals(t *testing.T) {
	keys := testKeys()
	srv := newSidebarServer(t, now)
	acme := func(c jwt.MapClaims) string { return signRS(t, jwt.SigningMethodRS256, keys["acme"], c) }
	good := acme(zafClaims())
	hs, err := jwt.NewWithClaims(jwt.SigningMethodHS256, zafClaims()).SignedString([]byte(publicPEM(t, keys["acme"])))
	if err != nil {
		t.Fatal(err)
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, zafClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	for _, tc := range []struct {
		name, token, origin string
		status              int
	}{
		{"expired", acme(with(func(c jwt.MapClaims) {
			c["exp"] = now.Add(-time.Minute).Unix()
			c["iat"] = now.Add(-6 * time.Minute).Unix()
		})), "https://acme.zendesk.com", http.StatusUnauthorized},
		{"not yet valid", acme(with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), "https://acme.zendesk.com", http.StatusUnauthorized},
		{"wrong audience", acme(with(func(c jwt.MapClaims) { c["aud"] = globexAud })), "https://acme.zendesk.com", http.StatusUnauthorized},
		{"wrong issuer", acme(with(func(c jwt.MapClaims) { c["iss"] = "globex.zendesk.com" })), "https://acme.zendesk.com", http.StatusUnauthorized},
		{"signed by another key", signRS(t, jwt.SigningMethodRS256, keys["stranger"], zafClaims()), "https://acme.zendesk.com", http.StatusUnauthorized},
		{"alg none", none, "https://acme.zendesk.com", http.StatusUnauthorized},
		{"HS256 with the public key", hs, "https://acme.zendesk.com", http.StatusUnauthorized},
		{"tampered payload", parts[0] + "." + parts[1][:len(parts[1])-2] + "x" + parts[1][len(parts[1])-1:] + "." + parts[2], "https://acme.zendesk.com", http.StatusUnauthorized},
		{"missing token", "", "https://acme.zendesk.com", http.StatusUnauthorized},
		{"good token, framed by another account", good, "https://globex.zendesk.com", http.StatusForbidden},
		{"good token, framed by a stranger", good, "https://evil.test", http.StatusForbidden},
		{"good token, no origin", good, "", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := srv.openPage(t, tc.token, tc.origin)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if strings.Contains(body, "zenklav-session") {
				t.Errorf("a refused page holds a session token: %s", body)
			}
			if !strings.Contains(body, `data-theme="dark"`) || !regexp.MustCompile(`href="/app/web/[0-9a-f]{12}/sidebar.css"`).MatchString(body) {
				t.Errorf("the refusal page lacks the theme or the versioned style sheet: %s", body)
			}
			if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors https://") {
				t.Errorf("refusal CSP %q: Zendesk could not show it", resp.Header.Get("Content-Security-Policy"))
			}
		})
	}
}

func TestSidebarProfileAPI(t *testing.T) {
	srv := newSidebarServer(t, now)
	acmeID := zauth.AppIdentity{Connection: "acme", Subdomain: "acme", Installation: 101, TicketID: 5158}
	acmeToken, _, err := srv.auth.IssueSession(acmeID)
	if err != nil {
		t.Fatal(err)
	}
	globexToken, _, err := srv.auth.IssueSession(zauth.AppIdentity{Connection: "globex", Subdomain: "globex", Installation: 202})
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Split(acmeToken, ".")
	forgedToken := forged[0] + "." + forged[1] + "." + strings.Repeat("A", len(forged[2]))
	expiredAuth := sidebarAuth(t, signingKey, now.Add(-time.Hour))
	expired, _, err := expiredAuth.IssueSession(acmeID)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, path, token string
		status            int
		tenant            string
	}{
		{"ticket card", "/api/v1/sidebar/profile?ticket_id=5158", acmeToken, http.StatusOK, "acme"},
		{"new ticket's requester", "/api/v1/sidebar/profile?requester_id=42", globexToken, http.StatusOK, "globex"},
		{"no token", "/api/v1/sidebar/profile?ticket_id=5158", "", http.StatusUnauthorized, ""},
		{"forged signature", "/api/v1/sidebar/profile?ticket_id=5158", forgedToken, http.StatusUnauthorized, ""},
		{"expired session", "/api/v1/sidebar/profile?ticket_id=5158", expired, http.StatusUnauthorized, ""},
		{"Zendesk's own token", "/api/v1/sidebar/profile?ticket_id=5158", signRS(t, jwt.SigningMethodRS256, testKeys()["acme"], zafClaims()), http.StatusUnauthorized, ""},
		{"bad ticket id", "/api/v1/sidebar/profile?ticket_id=abc", acmeToken, http.StatusBadRequest, ""},
		{"zero requester id", "/api/v1/sidebar/profile?requester_id=0", acmeToken, http.StatusBadRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.cards.mu.Lock()
			srv.cards.seen = nil
			srv.cards.mu.Unlock()
			code, body := srv.get(t, http.MethodGet, tc.path, tc.token)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			srv.cards.mu.Lock()
			seen := srv.cards.seen
			srv.cards.mu.Unlock()
			if tc.tenant == "" {
				if len(seen) != 0 {
					t.Errorf("a refused request reached the cards: %+v", seen)
				}
				var e struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				if json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
					t.Errorf("refusal body %s is not the JSON error shape", body)
				}
				return
			}
			if len(seen) != 1 || seen[0].Connection != tc.tenant || seen[0].Session == "" {
				t.Fatalf("cards asked for %+v, want tenant %s only, with the session's id", seen, tc.tenant)
			}
			var card sidebar.Card
			if err := json.Unmarshal(body, &card); err != nil || card.Requester.Name != tc.tenant {
				t.Errorf("card %s (%v)", body, err)
			}
		})
	}

	// The card's refusals keep their kinds.
	srv.cards.err = zenklav.Errorf(zenklav.EFORBIDDEN, "this session is for ticket 5158, not 1")
	if code, body := srv.get(t, http.MethodGet, "/api/v1/sidebar/profile?ticket_id=1", acmeToken); code != http.StatusForbidden {
		t.Errorf("another ticket: %d %s, want 403", code, body)
	}
}

func TestSidebarSessionRenewal(t *testing.T) {
	srv := newSidebarServer(t, now)
	id := zauth.AppIdentity{Connection: "acme", Subdomain: "acme", Installation: 101}
	token, first, err := srv.auth.IssueSession(id)
	if err != nil {
		t.Fatal(err)
	}
	code, body := srv.get(t, http.MethodPost, "/api/v1/sidebar/session", token)
	if code != http.StatusOK {
		t.Fatalf("renew: %d %s", code, body)
	}
	var got struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	renewed, err := srv.auth.VerifySession(got.Token)
	if err != nil || renewed.Connection != "acme" || renewed.ID != first.ID || !renewed.AuthTime.Equal(first.AuthTime) {
		t.Fatalf("renewed %+v, %v; want the acme session going on, with its id and auth time", renewed, err)
	}

	// A session that expired while the laptop slept is renewed within the grace; the card
	// itself wants a live one.
	later := newSidebarServer(t, now.Add(zauth.SessionTTL+10*time.Minute))
	if code, body := later.get(t, http.MethodPost, "/api/v1/sidebar/session", token); code != http.StatusOK {
		t.Errorf("renewing a session 10 minutes past its expiry: %d %s", code, body)
	}
	if code, _ := later.get(t, http.MethodGet, "/api/v1/sidebar/profile?ticket_id=1", token); code != http.StatusUnauthorized {
		t.Errorf("an expired session read a card: %d", code)
	}
	muchLater := newSidebarServer(t, now.Add(zauth.SessionTTL+time.Hour))
	if code, _ := muchLater.get(t, http.MethodPost, "/api/v1/sidebar/session", token); code != http.StatusUnauthorized {
		t.Errorf("renewing a session an hour past its expiry: %d, want 401", code)
	}

	// A session whose Zendesk token was verified over MaxSessionLife ago is not renewed.
	then := sidebarAuth(t, signingKey, now.Add(-zauth.MaxSessionLife-time.Minute))
	oldToken, _, err := then.IssueSession(id)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := then.VerifySession(oldToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.auth.RenewSession(stale); zenklav.ErrorCode(err) != zenklav.EUNAUTHORIZED {
		t.Errorf("renewing a %s-old session: %v, want unauthorized", zauth.MaxSessionLife, err)
	}
}
