package backend

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"

	"github.com/gin-gonic/gin"
)

// reportsPageCSP lets the reports page load and call nothing but zenklav itself, and be
// framed by no one. ECharts draws on canvas and styles its elements through element.style,
// which style-src 'self' allows; the page has no inline script or style.
const reportsPageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// reportsPage is the rendered /reports page and its files.
type reportsPage struct {
	html []byte
	webFiles
}

// loadReportsPage reads the page's files (reportsui.Page()) and renders index.html once:
// it holds no data and no token, only the files' versioned prefix.
func loadReportsPage(web fs.FS) (*reportsPage, error) {
	files, err := loadWebFiles(web)
	if err != nil {
		return nil, err
	}
	p := &reportsPage{webFiles: files}
	t, err := template.ParseFS(web, "index.html")
	if err != nil {
		return nil, fmt.Errorf("reports page: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, map[string]string{"Assets": files.prefix("/reports/web")}); err != nil {
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
	s.theme = p.prefix("/reports/web") + "reports.css"
	e.GET("/reports", p.page)
	e.GET("/reports/web/:version/:file", p.serve)
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
