package backend

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"

	"github.com/gin-gonic/gin"
	"github.com/zenklav/zenklav"
)

// reportsPageCSP lets the reports page load and call nothing but zenklav itself, and be
// framed by no one. ECharts draws on canvas and styles its elements through element.style,
// which style-src 'self' allows; the page has no inline script or style.
const reportsPageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// reportsPage is the rendered /reports page and its files under their version.
type reportsPage struct {
	html []byte
	// version changes whenever a file of the page does; it is part of the files' URLs, so
	// they may be cached for good.
	version string
	files   map[string][]byte
}

// loadReportsPage reads the page's files (reportsui.Page()) and renders index.html once:
// it holds no data and no token, only the files' versioned prefix.
func loadReportsPage(web fs.FS) (*reportsPage, error) {
	p := &reportsPage{files: map[string][]byte{}}
	names, err := fs.Glob(web, "*")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, name := range names {
		b, err := fs.ReadFile(web, name)
		if err != nil {
			continue // a directory
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
		if path.Ext(name) != ".html" {
			p.files[name] = b
		}
	}
	p.version = hex.EncodeToString(h.Sum(nil))[:12]
	t, err := template.ParseFS(web, "index.html")
	if err != nil {
		return nil, fmt.Errorf("reports page: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, map[string]string{"Assets": "/reports/web/" + p.version + "/"}); err != nil {
		return nil, fmt.Errorf("reports page: %w", err)
	}
	p.html = buf.Bytes()
	return p, nil
}

// routeReportsPage adds GET /reports and its files.
func (s *Server) routeReportsPage(e *gin.Engine) error {
	p, err := loadReportsPage(s.opts.ReportsPage)
	if err != nil {
		return err
	}
	e.GET("/reports", p.page)
	e.GET("/reports/web/:version/:file", p.file)
	return nil
}

// page answers the page. It is never cached, so a new release's page (and the files it
// names) is the one loaded, and it never sends its URL on as a referrer.
func (p *reportsPage) page(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", reportsPageCSP)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	c.Data(http.StatusOK, "text/html; charset=utf-8", p.html)
}

// file serves the page's scripts and styles. Their URLs carry the version of the page's
// files, so they are cached for a year and a new release loads new ones; another version
// is not found.
func (p *reportsPage) file(c *gin.Context) {
	b, ok := p.files[c.Param("file")]
	if !ok || c.Param("version") != p.version {
		_ = c.Error(zenklav.Errorf(zenklav.ENOTFOUND, "no file %s", c.Request.URL.Path))
		return
	}
	ctype := mime.TypeByExtension(path.Ext(c.Param("file")))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	c.Header("Cache-Control", "public, max-age=31536000, immutable")
	c.Header("X-Content-Type-Options", "nosniff")
	c.Data(http.StatusOK, ctype, b)
}
