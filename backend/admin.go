package backend

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/seal"
	"github.com/zenklav/zenklav/setup"
)

// Admin serves the operators' /admin pages: sign-in with an admin token, the setup wizard,
// the connections and each one's health (adminui has the pages).
type Admin struct {
	// Verify checks a token; only reports tokens of role admin sign in
	// (auth.Reports.VerifyAdmin).
	Verify func(token string) (auth.Caller, error)
	Setup  *setup.Service
	// Keys seal the wizard's connection in progress in its cookie: it holds the grants and
	// keys given so far, and any api process may serve the next step.
	Keys *seal.Keyring
	// ZendeskOAuth and KlaviyoOAuth, when set, offer "Connect with …".
	ZendeskOAuth, KlaviyoOAuth zenklav.OAuthProvider
	// PublicURL is zenklav's address as browsers and the vendors reach it: the OAuth
	// redirects come back under it.
	PublicURL string
	Pages     fs.FS // adminui.Pages()
	Now       func() time.Time
}

const (
	adminCookie = "zenklav_admin" // the admin token
	draftCookie = "zenklav_setup" // the wizard's connection in progress, sealed
	// grantWait bounds the trip to a vendor's consent page and back.
	grantWait = 10 * time.Minute
)

// admin is the running /admin: its templates and settings.
type admin struct {
	Admin
	// health is the server's connection health (Options.ConnectionHealth): each connection's
	// page shows its report and sends its test event.
	health *ConnectionHealth
	theme  string // the reports page's stylesheet, which /admin shares; "" without it
	pages  *template.Template
	css    []byte
	secure bool // cookies only over https
}

// routeAdmin adds /admin and its pages.
func (s *Server) routeAdmin(e *gin.Engine) error {
	a := &admin{Admin: *s.opts.Admin, health: s.opts.ConnectionHealth, theme: s.theme, secure: strings.HasPrefix(s.opts.Admin.PublicURL, "https://")}
	if a.Now == nil {
		a.Now = time.Now
	}
	var err error
	if a.pages, err = template.ParseFS(a.Pages, "*.html"); err != nil {
		return err
	}
	if a.css, err = fs.ReadFile(a.Pages, "admin.css"); err != nil {
		return err
	}
	g := e.Group("/admin", func(c *gin.Context) { a.headers(c) })
	g.GET("/web/admin.css", func(c *gin.Context) {
		c.Data(http.StatusOK, "text/css; charset=utf-8", a.css)
	})
	g.GET("", a.index)
	g.POST("/login", a.login)
	in := g.Group("", a.signedIn)
	in.POST("/logout", a.logout)
	in.GET("/setup", a.wizard)
	in.GET("/oauth/:vendor/callback", a.callback)
	in.GET("/connections/:id", a.connection)
	for path, step := range map[string]func(*gin.Context, *wizard){
		"/setup/start": a.start, "/setup/cancel": a.cancel, "/setup/zendesk/oauth": a.connectZendesk,
		"/setup/zendesk/token": a.zendeskToken, "/setup/klaviyo/oauth": a.connectKlaviyo, "/setup/klaviyo/key": a.klaviyoKey,
		"/setup/options": a.options, "/setup/finish": a.finish,
	} {
		in.POST(path, a.step(step))
	}
	in.POST("/connections/:id/test", a.test)
	in.POST("/connections/:id/disconnect", a.disconnect)
	return nil
}

// page is what every template gets.
type page struct {
	Title, CSRF, Error, Notice, PublicURL string
	Theme                                 string // the shared stylesheet's URL
	Connections                           []connectionRow
	Draft                                 *draftView
	Changes                               []setup.Change
	Conn                                  *connectionView
	Health                                *healthView
}

// render answers a page under the admin's CSP: nothing but zenklav's stylesheet, forms sent
// to zenklav or to the vendors' consent pages (formTo), framed by no one.
func (a *admin) render(c *gin.Context, status int, name string, p page, formTo ...string) {
	if p.PublicURL == "" {
		p.PublicURL = a.PublicURL
	}
	p.Theme = a.theme
	var buf bytes.Buffer
	if err := a.pages.ExecuteTemplate(&buf, name, p); err != nil {
		_ = c.Error(zenklav.Wrap(zenklav.EINTERNAL, err, "admin page %s", name))
		return
	}
	a.headers(c, formTo...)
	c.Data(status, "text/html; charset=utf-8", buf.Bytes())
}

// headers are every /admin answer's: its CSP allows nothing but zenklav's stylesheet, forms
// sent to zenklav or to the vendors' consent pages (formTo), and no framing; nothing is
// cached or sent on as a referrer.
func (a *admin) headers(c *gin.Context, formTo ...string) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "+
		"form-action 'self'"+strings.Join(append([]string{""}, formTo...), " "))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// caller is the signed-in admin of a request, and the token's digest naming its session.
func (a *admin) caller(c *gin.Context) (session string, ok bool) {
	tok, err := c.Cookie(adminCookie)
	if err != nil || tok == "" {
		return "", false
	}
	who, err := a.Verify(tok)
	if err != nil || who.Role != auth.RoleAdmin {
		return "", false
	}
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:16]), true
}

// csrf is the session's CSRF token: only a page zenklav served to the session holds it.
func csrf(session string) string {
	m := hmac.New(sha256.New, []byte(session))
	m.Write([]byte("zenklav admin csrf"))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// signedIn lets signed-in admins through; a POST must also carry the session's CSRF token
// and come from no other site.
func (a *admin) signedIn(c *gin.Context) {
	session, ok := a.caller(c)
	if !ok {
		if c.Request.Method == http.MethodGet {
			c.Redirect(http.StatusSeeOther, "/admin")
		} else {
			a.render(c, http.StatusUnauthorized, "login.html", page{Title: "Sign in", Error: "Your session ended: sign in again."})
		}
		c.Abort()
		return
	}
	if c.Request.Method == http.MethodPost {
		sent := c.PostForm("csrf")
		if c.GetHeader("Sec-Fetch-Site") == "cross-site" || !hmac.Equal([]byte(sent), []byte(csrf(session))) {
			a.render(c, http.StatusForbidden, "login.html", page{Title: "Refused", Error: "This form did not come from this admin session: open the page again."})
			c.Abort()
			return
		}
	}
	c.Set("session", session)
}

// index is the sign-in page, or the connections.
func (a *admin) index(c *gin.Context) {
	session, ok := a.caller(c)
	if !ok {
		a.render(c, http.StatusOK, "login.html", page{Title: "Sign in"})
		return
	}
	a.list(c, session, http.StatusOK, page{})
}

// list renders the connections with p's notices.
func (a *admin) list(c *gin.Context, session string, status int, p page) {
	entries, err := a.Setup.Connections(c.Request.Context())
	if err != nil {
		p.Error = "The connections store did not answer: " + zenklav.ErrorMessage(err)
	}
	for _, e := range entries {
		p.Connections = append(p.Connections, rowOf(e))
	}
	p.Title, p.CSRF = "Connections", csrf(session)
	a.render(c, status, "index.html", p)
}

// login signs an admin in: the token goes into an HttpOnly cookie for /admin only.
func (a *admin) login(c *gin.Context) {
	tok := strings.TrimSpace(c.PostForm("token"))
	if o := c.GetHeader("Origin"); o != "" && o != "null" && !sameOrigin(o, c.Request) {
		a.render(c, http.StatusForbidden, "login.html", page{Title: "Sign in", Error: "Sign in from this site's own page."})
		return
	}
	who, err := a.Verify(tok)
	switch {
	case err != nil:
		a.render(c, pageStatus(err), "login.html", page{Title: "Sign in", Error: "That token was refused: " + zenklav.ErrorMessage(err)})
		return
	case who.Role != auth.RoleAdmin:
		a.render(c, http.StatusForbidden, "login.html", page{Title: "Sign in", Error: "That token is not an admin's: zenklav token --role admin prints one."})
		return
	}
	a.setCookie(c, adminCookie, tok, int(time.Until(who.ExpiresAt).Seconds()))
	c.Redirect(http.StatusSeeOther, "/admin")
}

// sameOrigin says whether a request's Origin header is the host it was sent to.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

func (a *admin) logout(c *gin.Context) {
	a.setCookie(c, adminCookie, "", -1)
	a.setCookie(c, draftCookie, "", -1)
	c.Redirect(http.StatusSeeOther, "/admin")
}

// setCookie sets an /admin cookie: HttpOnly, SameSite=Lax (the vendors' consent pages send
// the browser back with a top-level GET, which Lax lets carry it), Secure over https.
func (a *admin) setCookie(c *gin.Context, name, value string, maxAge int) {
	http.SetCookie(c.Writer, &http.Cookie{Name: name, Value: value, Path: "/admin", MaxAge: maxAge,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode})
}

// randomToken is an unguessable value for OAuth state.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
