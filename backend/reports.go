package backend

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/reports"
	"sigs.k8s.io/yaml"
)

// Reports enables the marketers' reports API: GET /api/v1/reports/{kind}, and its OpenAPI
// document at GET /api/v1/openapi.json.
type Reports struct {
	Auth   *auth.Reports
	Source reports.Source
}

// openAPIYAML describes the reports API (kept in YAML for people; served as JSON).
//
//go:embed openapi.yaml
var openAPIYAML []byte

// OpenAPIDocument returns the reports API's OpenAPI 3 document, as JSON.
func OpenAPIDocument() ([]byte, error) {
	b, err := yaml.YAMLToJSON(openAPIYAML)
	if err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	return b, nil
}

// reportTimeout bounds one report's queries: a browser gives up long before this, and a
// query nobody waits for should not keep ClickHouse busy.
const reportTimeout = 20 * time.Second

// routeReports adds the reports API.
func (s *Server) routeReports(e *gin.Engine) error {
	rp := s.opts.Reports
	if rp.Auth == nil || rp.Source == nil {
		return errors.New("the reports API needs its auth and a report source")
	}
	doc, err := OpenAPIDocument()
	if err != nil {
		return err
	}
	api := e.Group("/api/v1", noStore)
	api.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", doc) })
	api.GET("/reports/:kind", requireCaller(rp.Auth), s.report)
	return nil
}

// report answers GET /api/v1/reports/{kind}.
func (s *Server) report(c *gin.Context) {
	caller := callerFrom(c)
	kind := c.Param("kind")
	if !slices.Contains(reports.Kinds, kind) {
		_ = c.Error(zenklav.Errorf(zenklav.ENOTFOUND, "no report %q: use one of %s", kind, strings.Join(reports.Kinds, ", ")))
		return
	}
	q := c.Request.URL.Query()
	asCSV, err := wantsCSV(q.Get("format"), c.GetHeader("Accept"))
	if err != nil {
		_ = c.Error(err)
		return
	}
	f, err := reports.ParseQuery(kind, q, caller.Connections, s.opts.Now())
	if err != nil {
		_ = c.Error(err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), reportTimeout)
	defer cancel()
	start := time.Now()
	rows, err := reports.Run(ctx, s.opts.Reports.Source, kind, f)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && zenklav.ErrorCode(err) == zenklav.EINTERNAL {
			err = zenklav.Wrap(zenklav.EUNAVAILABLE, err, "the report took over %s: narrow its dates or filters", reportTimeout)
		}
		_ = c.Error(err)
		return
	}
	// Who read which tenants' reports is the audit trail; the token itself is never logged.
	s.logger.Info("report read", "sub", caller.Subject, "role", caller.Role, "kid", caller.KeyID, "report", kind,
		"filter", f.String(), "rows", reflect.ValueOf(rows).Len(), "csv", asCSV, "took", time.Since(start))
	if asCSV {
		var buf bytes.Buffer
		if err := reports.WriteCSV(&buf, rows); err != nil {
			_ = c.Error(zenklav.Wrap(zenklav.EINTERNAL, err, "write csv"))
			return
		}
		name := fmt.Sprintf("zenklav-%s-%s-%s.csv", kind, f.From.Format(time.DateOnly), f.To.Format(time.DateOnly))
		c.Header("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		c.Data(http.StatusOK, "text/csv; charset=utf-8", buf.Bytes())
		return
	}
	c.JSON(http.StatusOK, reports.Body{Report: kind, Filters: reports.Echo(f), Rows: rows})
}

// wantsCSV decides the answer's format: ?format= when given, else the Accept header
// (text/csv listed, with no JSON type before it), else JSON.
func wantsCSV(format, accept string) (bool, error) {
	switch format {
	case "csv":
		return true, nil
	case "json":
		return false, nil
	case "":
	default:
		return false, zenklav.Errorf(zenklav.EINVALID, "format %q: use json or csv", format)
	}
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || params["q"] == "0" {
			continue
		}
		switch mt {
		case "text/csv":
			return true, nil
		case "application/json", "application/*":
			return false, nil
		}
	}
	return false, nil
}
