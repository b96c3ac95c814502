package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/sidebar"
)

// Sidebar enables the agent sidebar: the app page Zendesk frames in the ticket sidebar, and
// the API its scripts call.
type Sidebar struct {
	Auth  *auth.Sidebar
	Cards Cards
	// Web holds the page: the templates sidebar.html and error.html, and the scripts and
	// styles they load, served under /app/web/.
	Web fs.FS
	// FrameAncestors returns the origins that may frame the page of a Zendesk subdomain:
	// the account's own (https://{subdomain}.zendesk.com), and the simulator's in sandbox
	// mode. The ZAF origin the page is loaded with must be one of them.
	FrameAncestors func(subdomain string) []string
}

// Cards builds profile cards (sidebar.Service).
type Cards interface {
	Card(ctx context.Context, v sidebar.Viewer, q sidebar.Query) (sidebar.Card, error)
}

// maxAppForm bounds the body of Zendesk's signed-URL request: one form field, a JWT.
const maxAppForm = 16 << 10

// sidebarPage is the parsed page, its refusal, and their files.
type sidebarPage struct {
	page, refusal *template.Template
	webFiles
}

func loadSidebarPage(web fs.FS) (*sidebarPage, error) {
	files, err := loadWebFiles(web)
	if err != nil {
		return nil, err
	}
	p := &sidebarPage{webFiles: files}
	if p.page, err = template.ParseFS(web, "sidebar.html"); err != nil {
		return nil, fmt.Errorf("sidebar page: %w", err)
	}
	if p.refusal, err = template.ParseFS(web, "error.html"); err != nil {
		return nil, fmt.Errorf("sidebar error page: %w", err)
	}
	return p, nil
}

// routeSidebar adds the sidebar's routes.
func (s *Server) routeSidebar(e *gin.Engine) error {
	sb := s.opts.Sidebar
	if sb.Auth == nil || sb.Cards == nil || sb.Web == nil || sb.FrameAncestors == nil {
		return errors.New("the sidebar needs its auth, cards, web files and frame ancestors")
	}
	page, err := loadSidebarPage(sb.Web)
	if err != nil {
		return err
	}
	s.page = page
	e.POST("/app/sidebar", s.sidebarPage)
	e.GET("/app/web/:version/:file", s.page.serve)
	api := e.Group("/api/v1/sidebar", noStore)
	api.GET("/profile", RequireSession(sb.Auth, false), s.sidebarProfile)
	api.POST("/session", RequireSession(sb.Auth, true), s.renewSession)
	return nil
}

func noStore(c *gin.Context) {
	c.Header("Cache-Control", "no-store")
	c.Next()
}

// sidebarPage answers Zendesk's signed-URL request with the app page: it verifies Zendesk's
// token and hands the page a session token of its own. A refusal is a page too, since
// an agent reads it in the sidebar.
func (s *Server) sidebarPage(c *gin.Context) {
	lang := pageLang(c.GetHeader("Accept-Language"))
	// Zendesk names its colour scheme in the URL: the page starts in it, before any script.
	theme := c.Query("colorScheme")
	if theme != "light" && theme != "dark" {
		theme = ""
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxAppForm)
	token := c.PostForm("token")
	id, err := s.opts.Sidebar.Auth.VerifyAppToken(token)
	if err != nil {
		// Whose page it would have been is unknown: any Zendesk may frame the refusal.
		s.refusePage(c, lang, theme, strings.Join(s.opts.Sidebar.FrameAncestors("*"), " "), err)
		return
	}
	ancestors := s.opts.Sidebar.FrameAncestors(id.Subdomain)
	origin, guid := c.Query("origin"), c.Query("app_guid")
	switch {
	case guid == "" || origin == "":
		s.refusePage(c, lang, theme, strings.Join(ancestors, " "), zenklav.Errorf(zenklav.EINVALID, "the page needs the origin and app_guid Zendesk puts in its URL"))
		return
	case !slices.Contains(ancestors, origin):
		// The ZAF SDK talks to origin; only the account's Zendesk may be it.
		s.refusePage(c, lang, theme, strings.Join(ancestors, " "), zenklav.Errorf(zenklav.EFORBIDDEN, "origin %q is not this account's Zendesk", origin))
		return
	}
	session, sess, err := s.opts.Sidebar.Auth.IssueSession(id)
	if err != nil {
		s.refusePage(c, lang, theme, origin, err)
		return
	}
	s.logger.Info("sidebar session issued", "tenant", id.Connection, "installation", id.Installation, "user", id.UserID, "session", sess.ID)
	s.renderPage(c, http.StatusOK, origin, s.page.page, map[string]any{
		"Session":        session,
		"SessionExpires": sess.ExpiresAt.Unix(),
		"Assets":         s.page.prefix("/app/web"),
		"Lang":           lang,
		"Theme":          theme,
	})
}

// refusePage shows why the page cannot be shown, in the sidebar, framed by ancestors.
func (s *Server) refusePage(c *gin.Context, lang, theme, ancestors string, err error) {
	code := zenklav.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	msg := zenklav.ErrorMessage(err)
	if code == zenklav.EINTERNAL {
		s.logger.Error("sidebar page", "err", err)
		msg = "internal error"
	} else {
		s.logger.Info("sidebar page refused", "status", status, "err", err)
	}
	s.renderPage(c, status, ancestors, s.page.refusal, map[string]any{
		"Lang":    lang,
		"Theme":   theme,
		"Title":   refusalTitle[lang],
		"Message": msg,
		"Assets":  s.page.prefix("/app/web"),
	})
}

var refusalTitle = map[string]string{
	"en": "The Klaviyo profile cannot be shown",
	"es": "No se puede mostrar el perfil de Klaviyo",
}

// renderPage writes an HTML page with the headers that keep it to its purpose: framed by
// Zendesk only, loading nothing but its own files, never cached (it holds a session token)
// and never leaking its URL.
func (s *Server) renderPage(c *gin.Context, status int, ancestors string, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		_ = c.Error(zenklav.Wrap(zenklav.EINTERNAL, err, "render sidebar page"))
		return
	}
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors "+ancestors)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	c.Data(status, "text/html; charset=utf-8", buf.Bytes())
}

// sidebarProfile answers the profile card: ?ticket_id= (with the requester_id the page
// sees), or ?requester_id=&brand_id= on a new ticket.
func (s *Server) sidebarProfile(c *gin.Context) {
	sess, _ := SessionFrom(c)
	var q sidebar.Query
	for name, dst := range map[string]*int64{"ticket_id": &q.TicketID, "requester_id": &q.RequesterID, "brand_id": &q.BrandID} {
		v := c.Query(name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			_ = c.Error(zenklav.Errorf(zenklav.EINVALID, "%s must be a Zendesk id, a positive integer", name))
			return
		}
		*dst = n
	}
	card, err := s.opts.Sidebar.Cards.Card(c.Request.Context(), sidebar.Viewer{Connection: sess.Connection, Session: sess.ID, TicketID: sess.TicketID}, q)
	if err != nil {
		_ = c.Error(err)
		return
	}
	c.JSON(http.StatusOK, card)
}

// renewSession gives the page a fresh session token before its own expires.
func (s *Server) renewSession(c *gin.Context) {
	sess, _ := SessionFrom(c)
	token, renewed, err := s.opts.Sidebar.Auth.RenewSession(sess)
	if err != nil {
		_ = c.Error(err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"token": token, "expires_at": renewed.ExpiresAt.Format(time.RFC3339)})
}

// pageLang picks the page's first language from the browser's Accept-Language: Spanish
// when it comes before English, else English. The page's script then follows the agent's
// Zendesk locale.
func pageLang(accept string) string {
	for _, part := range strings.Split(accept, ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.ToLower(strings.SplitN(tag, "-", 2)[0]) {
		case "es":
			return "es"
		case "en":
			return "en"
		}
	}
	return "en"
}

// ZendeskOrigins returns the origin of a Zendesk account's agent workspace, and the origin
// of baseURL (ZENKLAV_ZENDESK_BASE_URL, with {subdomain}) when it is another, as for the
// simulator: the origins that may frame the sidebar page.
func ZendeskOrigins(baseURL string) func(subdomain string) []string {
	return func(subdomain string) []string {
		out := []string{"https://" + subdomain + ".zendesk.com"}
		u, err := url.Parse(strings.ReplaceAll(baseURL, "{subdomain}", subdomain))
		if err == nil && u.Scheme != "" && u.Host != "" {
			if o := u.Scheme + "://" + u.Host; o != out[0] {
				out = append(out, o)
			}
		}
		return out
	}
}
