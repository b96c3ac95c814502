package zendesktest_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/zenklav/zenklav/zendesk"
	"github.com/zenklav/zenklav/zendesk/zendesktest"
)

const (
	testSubdomain    = "northwind"
	testInstallation = int64(360001122334)
	testAppURL       = "http://127.0.0.1:8080/app/sidebar"
)

// testClock is the simulator's clock in the agent tests, so tokens are checked against it.
var testClock = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

// appKey is one 2048-bit key for all the tests: generating one takes a while.
var appKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// newAgentSandbox is a seeded sandbox with the app installed at testAppURL.
func newAgentSandbox(t *testing.T) (*zendesktest.Server, string, zendesktest.Sample) {
	t.Helper()
	sim, base, sample := newSandbox(t)
	sim.SetClock(func() time.Time { return testClock })
	if err := sim.InstallApp(zendesktest.AppInstallation{Subdomain: testSubdomain, InstallationID: testInstallation, URL: testAppURL, Key: appKey(), IdentityClaims: true}); err != nil {
		t.Fatal(err)
	}
	return sim, base, sample
}

// TestAgentTokenHasDocumentedClaimsOnly: by default the app token carries what Zendesk
// documents (iss, aud, exp, iat, context), not the agent or the ticket.
func TestAgentTokenHasDocumentedClaimsOnly(t *testing.T) {
	sim, base, sample := newSandbox(t)
	sim.SetClock(func() time.Time { return testClock })
	if err := sim.InstallApp(zendesktest.AppInstallation{Subdomain: testSubdomain, InstallationID: testInstallation, URL: testAppURL, Key: appKey()}); err != nil {
		t.Fatal(err)
	}
	p := getAgentPage(t, base, fmt.Sprintf("/agent/tickets/%d", sample.Tickets[0].ID))
	claims := verifyAppToken(t, sim, p.token)
	if claims.User != nil || claims.Ticket != nil {
		t.Errorf("token carries user %+v and ticket %+v, which Zendesk does not document", claims.User, claims.Ticket)
	}
	if claims.Context["location"] != "ticket_sidebar" {
		t.Errorf("context = %v", claims.Context)
	}
}

// agentPage is a ticket page as a test reads it.
type agentPage struct {
	status int
	header http.Header
	body   string
	action *url.URL // the form's action; nil when the page has no form
	token  string
	host   hostConfig
}

// hostConfig is the JSON the page hands zaf-host.js.
type hostConfig struct {
	AppOrigin   string          `json:"appOrigin"`
	AppGUID     string          `json:"appGuid"`
	ColorScheme string          `json:"colorScheme"`
	Metadata    json.RawMessage `json:"metadata"`
	Context     struct {
		Product      string `json:"product"`
		Location     string `json:"location"`
		TicketID     *int64 `json:"ticketId"`
		InstanceGUID string `json:"instanceGuid"`
		Account      struct {
			Subdomain string `json:"subdomain"`
		} `json:"account"`
	} `json:"context"`
	Data struct {
		Ticket struct {
			ID        *int64   `json:"id"`
			IsNew     bool     `json:"isNew"`
			Subject   string   `json:"subject"`
			Status    string   `json:"status"`
			Requester *zafUser `json:"requester"`
			Brand     *struct {
				ID   int64  `json:"id"`
				Name string `json:"name"`
			} `json:"brand"`
		} `json:"ticket"`
		CurrentUser zafUser `json:"currentUser"`
		ColorScheme string  `json:"colorScheme"`
	} `json:"data"`
}

type zafUser struct {
	ID         int64         `json:"id"`
	Name       string        `json:"name"`
	Email      *string       `json:"email"`
	Locale     string        `json:"locale"`
	Identities []zafIdentity `json:"identities"`
}

type zafIdentity struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

var (
	formPattern   = regexp.MustCompile(`<form id="app-form" method="post" action="([^"]*)" target="app-iframe">`)
	tokenPattern  = regexp.MustCompile(`<input type="hidden" name="token" value="([^"]*)">`)
	configPattern = regexp.MustCompile(`(?s)<script type="application/json" id="zaf-host-config">(.*?)</script>`)
	guidPattern   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
)

func getAgentPage(t *testing.T, base, path string) agentPage {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := agentPage{status: resp.StatusCode, header: resp.Header, body: string(body)}
	if m := formPattern.FindStringSubmatch(p.body); m != nil {
		if p.action, err = url.Parse(html.UnescapeString(m[1])); err != nil {
			t.Fatalf("form action: %v", err)
		}
	}
	if m := tokenPattern.FindStringSubmatch(p.body); m != nil {
		p.token = html.UnescapeString(m[1])
	}
	if m := configPattern.FindStringSubmatch(p.body); m != nil {
		if err := json.Unmarshal([]byte(m[1]), &p.host); err != nil {
			t.Fatalf("zaf-host config %s: %v", m[1], err)
		}
	}
	return p
}

// appClaims are the claims of the simulator's app token.
type appClaims struct {
	jwt.RegisteredClaims
	Context map[string]string `json:"context"`
	User    *struct {
		ID    int64  `json:"id"`
		Email string `json:"email"`
	} `json:"user"`
	Ticket *struct {
		ID int64 `json:"id"`
	} `json:"ticket"`
}

// verifyAppToken checks token as zenklav does: RS256 only, with the installation's public
// key as the simulator publishes it, and its iss, aud and exp.
func verifyAppToken(t *testing.T, sim *zendesktest.Server, token string) appClaims {
	t.Helper()
	block, _ := pem.Decode([]byte(sim.AppPublicKeyPEM()))
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("AppPublicKeyPEM is not a PEM PUBLIC KEY: %q", sim.AppPublicKeyPEM())
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var claims appClaims
	_, err = jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(testSubdomain+".zendesk.com"),
		jwt.WithAudience(fmt.Sprintf("https://%s.zendesk.com/api/v2/apps/installations/%d.json", testSubdomain, testInstallation)),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return testClock.Add(time.Minute) }),
	).ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return pub, nil })
	if err != nil {
		t.Fatalf("app token does not verify: %v", err)
	}
	return claims
}

func TestAgentTicketPage(t *testing.T) {
	sim, base, sample := newAgentSandbox(t)
	tk, customer, agent := sample.Tickets[0], sample.Customers[0], sample.Agents[0]

	p := getAgentPage(t, base, fmt.Sprintf("/agent/tickets/%d", tk.ID))
	if p.status != http.StatusOK || !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, Content-Type %q; want 200 HTML", p.status, p.header.Get("Content-Type"))
	}
	if p.header.Get("Content-Security-Policy") == "" {
		t.Errorf("no Content-Security-Policy")
	}
	text, _, _ := strings.Cut(html.UnescapeString(p.body), `<script type="application/json"`)
	for _, want := range []string{tk.Subject, tk.Description, customer.Name, customer.Email, customer.Phone, `<html lang="en-US" data-theme="light">`, `<iframe id="app-iframe" name="app-iframe"`} {
		if !strings.Contains(text, want) {
			t.Errorf("page does not contain %q", want)
		}
	}

	if !strings.Contains(p.body, `<script src="/agent/assets/zaf-host.js"></script>`) {
		t.Errorf("page does not load zaf-host.js")
	}

	// The form posts to the app's URL with the query ZAFClient.init reads.
	if p.action == nil {
		t.Fatalf("no app form in the page:\n%s", p.body)
	}
	q := p.action.Query()
	if got := p.action.Scheme + "://" + p.action.Host + p.action.Path; got != testAppURL {
		t.Errorf("form posts to %s, want %s", got, testAppURL)
	}
	if q.Get("origin") != base {
		t.Errorf("origin = %q, want the page's origin %q", q.Get("origin"), base)
	}
	if !guidPattern.MatchString(q.Get("app_guid")) {
		t.Errorf("app_guid = %q, want a random UUID", q.Get("app_guid"))
	}
	if q.Get("colorScheme") != "light" {
		t.Errorf("colorScheme = %q, want light", q.Get("colorScheme"))
	}

	claims := verifyAppToken(t, sim, p.token)
	if !claims.IssuedAt.Equal(testClock) || claims.ExpiresAt.Sub(testClock) != 5*time.Minute {
		t.Errorf("iat %v exp %v, want the server clock %v and five minutes later", claims.IssuedAt, claims.ExpiresAt, testClock)
	}
	if claims.ID == "" {
		t.Errorf("no jti")
	}
	if claims.Context["product"] != "support" || claims.Context["location"] != "ticket_sidebar" {
		t.Errorf("context = %v, want support ticket_sidebar", claims.Context)
	}
	if claims.User == nil || claims.User.ID != agent.ID || claims.User.Email != agent.Email {
		t.Errorf("user = %+v, want agent %d %s", claims.User, agent.ID, agent.Email)
	}
	if claims.Ticket == nil || claims.Ticket.ID != tk.ID {
		t.Errorf("ticket = %+v, want %d", claims.Ticket, tk.ID)
	}

	// What zaf-host.js answers the app with.
	h := p.host
	if h.AppOrigin != "http://127.0.0.1:8080" || h.AppGUID != q.Get("app_guid") || h.Context.InstanceGUID != h.AppGUID {
		t.Errorf("app origin %q guid %q instance %q; want the app URL's origin and the form's app_guid", h.AppOrigin, h.AppGUID, h.Context.InstanceGUID)
	}
	if h.Context.Product != "support" || h.Context.Location != "ticket_sidebar" || h.Context.TicketID == nil || *h.Context.TicketID != tk.ID || h.Context.Account.Subdomain != testSubdomain {
		t.Errorf("context = %+v", h.Context)
	}
	var meta struct {
		InstallationID int64             `json:"installationId"`
		Name           string            `json:"name"`
		Settings       map[string]string `json:"settings"`
	}
	if err := json.Unmarshal(h.Metadata, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.InstallationID != testInstallation || meta.Name != "zenklav" || meta.Settings["zenklav_url"] != "http://127.0.0.1:8080" {
		t.Errorf("metadata = %s", h.Metadata)
	}
	d := h.Data
	if d.Ticket.ID == nil || *d.Ticket.ID != tk.ID || d.Ticket.IsNew || d.Ticket.Subject != tk.Subject || d.Ticket.Status != "open" {
		t.Errorf("ticket = %+v", d.Ticket)
	}
	if d.Ticket.Brand == nil || d.Ticket.Brand.ID != sample.Brand.ID || d.Ticket.Brand.Name != sample.Brand.Name {
		t.Errorf("ticket.brand = %+v, want %+v", d.Ticket.Brand, sample.Brand)
	}
	r := d.Ticket.Requester
	wantIdentities := []zafIdentity{{"email", customer.Email}, {"phone_number", customer.Phone}}
	if r == nil || r.ID != customer.ID || r.Name != customer.Name || r.Email == nil || *r.Email != customer.Email || fmt.Sprint(r.Identities) != fmt.Sprint(wantIdentities) {
		t.Errorf("ticket.requester = %+v, want %+v with identities %v", r, customer, wantIdentities)
	}
	if d.CurrentUser.ID != agent.ID || d.CurrentUser.Locale != "en-US" || d.ColorScheme != "light" {
		t.Errorf("currentUser %+v colorScheme %q", d.CurrentUser, d.ColorScheme)
	}
	if regexp.MustCompile(`"phone"\s*:`).MatchString(configPattern.FindString(p.body)) {
		t.Errorf("ZAF's user object has no phone field; phones are identities")
	}

	// Each load is a new app instance with a new token.
	again := getAgentPage(t, base, fmt.Sprintf("/agent/tickets/%d", tk.ID))
	if again.action.Query().Get("app_guid") == q.Get("app_guid") || again.token == p.token {
		t.Errorf("a second load reused the app_guid or the token")
	}
}

func TestAgentTicketPageVariants(t *testing.T) {
	sim, base, sample := newAgentSandbox(t)
	tk := sample.Tickets[2] // the SMS ticket: a requester with a phone and no email

	t.Run("new ticket", func(t *testing.T) {
		p := getAgentPage(t, base, fmt.Sprintf("/agent/tickets/%d?new=1", tk.ID))
		if p.status != http.StatusOK || p.action == nil {
			t.Fatalf("status %d, form %v", p.status, p.action)
		}
		claims := verifyAppToken(t, sim, p.token)
		if claims.Ticket != nil {
			t.Errorf("a new ticket's token carries ticket %+v", claims.Ticket)
		}
		if claims.User == nil || claims.User.ID != sample.Agents[0].ID {
			t.Errorf("user = %+v, want the agent", claims.User)
		}
		if p.host.Data.Ticket.ID != nil || !p.host.Data.Ticket.IsNew || p.host.Context.TicketID != nil {
			t.Errorf("ticket.id %v isNew %v context.ticketId %v; want null, true, null", p.host.Data.Ticket.ID, p.host.Data.Ticket.IsNew, p.host.Context.TicketID)
		}
		if !strings.Contains(p.body, "New ticket (not saved)") {
			t.Errorf("the page does not say the ticket is new")
		}
	})
	t.Run("dark, Spanish, another agent", func(t *testing.T) {
		admin := sample.Agents[1]
		p := getAgentPage(t, base, fmt.Sprintf("/agent/tickets/%d?theme=dark&locale=es&user=%d", tk.ID, admin.ID))
		if p.status != http.StatusOK || p.action == nil {
			t.Fatalf("status %d, form %v", p.status, p.action)
		}
		if !strings.Contains(p.body, `<html lang="es" data-theme="dark">`) {
			t.Errorf("the page is not dark and Spanish")
		}
		if p.action.Query().Get("colorScheme") != "dark" || p.host.ColorScheme != "dark" || p.host.Data.ColorScheme != "dark" {
			t.Errorf("colorScheme: URL %q, host %q, get %q; want dark", p.action.Query().Get("colorScheme"), p.host.ColorScheme, p.host.Data.ColorScheme)
		}
		if u := p.host.Data.CurrentUser; u.ID != admin.ID || u.Locale != "es" {
			t.Errorf("currentUser = %+v, want %d in es", u, admin.ID)
		}
		if claims := verifyAppToken(t, sim, p.token); claims.User == nil || claims.User.ID != admin.ID {
			t.Errorf("token user = %+v, want %d", claims.User, admin.ID)
		}
		r := p.host.Data.Ticket.Requester
		if r == nil || r.Email != nil || fmt.Sprint(r.Identities) != fmt.Sprint([]zafIdentity{{"phone_number", "+15555550142"}}) {
			t.Errorf("SMS requester = %+v, want email null and one phone_number identity", r)
		}
	})
}

func TestAgentTicketPageEscapes(t *testing.T) {
	sim, base, sample := newAgentSandbox(t)
	const evil = `</script><script>alert("subject")</script><img src=x onerror=alert(1)>`
	tk := sim.AddTicket(zendesk.Ticket{Subject: evil, Description: "<b>" + evil, RequesterID: sample.Customers[1].ID})

	p := getAgentPage(t, base, fmt.Sprintf("/agent/tickets/%d", tk.ID))
	if p.status != http.StatusOK {
		t.Fatalf("status %d", p.status)
	}
	for _, raw := range []string{`<script>alert`, `<img src=x`, `<b>`} {
		if strings.Contains(p.body, raw) {
			t.Errorf("page contains unescaped %q", raw)
		}
	}
	if !strings.Contains(p.body, `&lt;/script&gt;&lt;script&gt;alert(&#34;subject&#34;)`) {
		t.Errorf("page does not show the subject escaped:\n%s", p.body)
	}
	if p.host.Data.Ticket.Subject != evil {
		t.Errorf("get ticket.subject = %q, want %q", p.host.Data.Ticket.Subject, evil)
	}
}

func TestAgentPagesWithoutApp(t *testing.T) {
	sim, base, sample := newSandbox(t)
	path := fmt.Sprintf("/agent/tickets/%d", sample.Tickets[0].ID)

	p := getAgentPage(t, base, path)
	if p.status != http.StatusOK || p.action != nil || !strings.Contains(p.body, "No app is installed") {
		t.Errorf("without an app: status %d, form %v; want 200, no form, and the page saying so", p.status, p.action)
	}
	if sim.AppPublicKeyPEM() != "" {
		t.Errorf("AppPublicKeyPEM without an app = %q, want empty", sim.AppPublicKeyPEM())
	}
	if err := sim.SetAppURL(testAppURL); err == nil {
		t.Errorf("SetAppURL without an app succeeded")
	}

	// Sandbox mode installs the app first and learns zenklav's address later.
	if err := sim.InstallApp(zendesktest.AppInstallation{Subdomain: testSubdomain, InstallationID: testInstallation}); err != nil {
		t.Fatal(err)
	}
	p = getAgentPage(t, base, path)
	if p.status != http.StatusOK || p.action != nil || !strings.Contains(p.body, "has no URL yet") {
		t.Errorf("without a URL: status %d, form %v; want 200, no form, and the page saying so", p.status, p.action)
	}
	if err := sim.SetAppURL("http://127.0.0.1:9999/app/sidebar"); err != nil {
		t.Fatal(err)
	}
	p = getAgentPage(t, base, path)
	if p.action == nil || p.action.Host != "127.0.0.1:9999" {
		t.Fatalf("after SetAppURL: form %v, want one posting to 127.0.0.1:9999", p.action)
	}

	// A generated key is a 2048-bit RSA key, and it signs the tokens.
	block, _ := pem.Decode([]byte(sim.AppPublicKeyPEM()))
	if block == nil {
		t.Fatalf("AppPublicKeyPEM = %q", sim.AppPublicKeyPEM())
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := pub.(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
		t.Errorf("generated key = %T, want a 2048-bit RSA key", pub)
	}
	if _, err := jwt.Parse(p.token, func(*jwt.Token) (any, error) { return pub, nil }, jwt.WithValidMethods([]string{"RS256"})); err != nil {
		t.Errorf("token does not verify with the generated key: %v", err)
	}
}

func TestAgentPagesRefuse(t *testing.T) {
	_, base, sample := newAgentSandbox(t)
	id := sample.Tickets[0].ID
	customer := sample.Customers[0].ID

	tests := []struct {
		name   string
		method string
		path   string
		status int
		says   string
	}{
		{"unknown ticket", "GET", "/agent/tickets/424242", http.StatusNotFound, "no ticket 424242"},
		{"not a ticket id", "GET", "/agent/tickets/abc", http.StatusNotFound, "not a ticket page"},
		{"other agent path", "GET", "/agent/views/1", http.StatusNotFound, "no page"},
		{"theme", "GET", fmt.Sprintf("/agent/tickets/%d?theme=blue", id), http.StatusBadRequest, "neither light nor dark"},
		{"locale", "GET", fmt.Sprintf("/agent/tickets/%d?locale=%%3Cx%%3E", id), http.StatusBadRequest, "is not a locale"},
		{"new", "GET", fmt.Sprintf("/agent/tickets/%d?new=maybe", id), http.StatusBadRequest, "neither 1 nor 0"},
		{"viewer who is no agent", "GET", fmt.Sprintf("/agent/tickets/%d?user=%d", id, customer), http.StatusBadRequest, "not a stored agent"},
		{"POST", "POST", fmt.Sprintf("/agent/tickets/%d", id), http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.says) {
				t.Errorf("status %d, body %s; want %d saying %q", resp.StatusCode, body, tt.status, tt.says)
			}
			if strings.Contains(string(body), "<x>") {
				t.Errorf("the error page echoes the parameter unescaped")
			}
		})
	}
}

func TestInstallAppRefuses(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  zendesktest.AppInstallation
	}{
		{"no subdomain", zendesktest.AppInstallation{InstallationID: 1, URL: testAppURL, Key: appKey()}},
		{"subdomain with a dot", zendesktest.AppInstallation{Subdomain: "a.b", InstallationID: 1, URL: testAppURL, Key: appKey()}},
		{"no installation id", zendesktest.AppInstallation{Subdomain: testSubdomain, URL: testAppURL, Key: appKey()}},
		{"relative URL", zendesktest.AppInstallation{Subdomain: testSubdomain, InstallationID: 1, URL: "/app/sidebar", Key: appKey()}},
		{"not http", zendesktest.AppInstallation{Subdomain: testSubdomain, InstallationID: 1, URL: "javascript:alert(1)", Key: appKey()}},
		{"small key", zendesktest.AppInstallation{Subdomain: testSubdomain, InstallationID: 1, URL: testAppURL, Key: small}},
	}
	sim := zendesktest.NewServer()
	defer sim.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := sim.InstallApp(tt.cfg); err == nil {
				t.Errorf("InstallApp(%+v) succeeded", tt.cfg)
			}
		})
	}
	if sim.AppPublicKeyPEM() != "" {
		t.Errorf("a refused installation left a key")
	}
}

func TestAgentIndexAndAssets(t *testing.T) {
	sim, base, sample := newAgentSandbox(t)

	p := getAgentPage(t, base, "/agent/")
	if p.status != http.StatusOK {
		t.Fatalf("status %d", p.status)
	}
	text := html.UnescapeString(p.body)
	for _, tk := range sample.Tickets {
		if link := fmt.Sprintf(`<a href="/agent/tickets/%d">%s</a>`, tk.ID, tk.Subject); !strings.Contains(text, link) {
			t.Errorf("index has no link %s", link)
		}
	}
	if !strings.Contains(text, sim.AppPublicKeyPEM()) {
		t.Errorf("index does not show the app's public key")
	}

	resp, err := http.Get(base + "/agent")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/agent/" {
		t.Errorf("/agent led to %s, want /agent/", resp.Request.URL.Path)
	}

	for path, typ := range map[string]string{"/agent/assets/zaf-host.js": "javascript", "/agent/assets/agent.css": "text/css"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), typ) || len(body) == 0 {
			t.Errorf("%s: status %d, Content-Type %q, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
}
