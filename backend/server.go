// Package backend is zenklav's HTTP side (Gin): webhooks in, the agent sidebar's page and
// API, health and metrics. Handlers decode and validate, make one service call, and
// encode; errors go through c.Error and one middleware renders them.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/health"
)

// Options are the Server's dependencies.
type Options struct {
	// Ingest enables the webhook endpoints; without it the server answers health and
	// metrics only.
	Ingest Ingest
	// MaxInflightBytes, required with Ingest, bounds the bytes that webhook bodies being
	// read or handled hold at once (ZENKLAV_HTTP_MAX_INFLIGHT_BYTES); past it a webhook is
	// answered 503 with Retry-After, unread.
	MaxInflightBytes int64
	// Ready lists the dependencies /readyz checks, by name: each a real round trip, bounded
	// by CheckTimeout.
	Ready map[string]func(context.Context) error
	// Health, when set, holds the states of the process's parts, which /readyz lists: a part
	// that stopped for good makes the process unready.
	Health *health.Tracker
	// Sidebar, when set, serves the agent sidebar's page and API.
	Sidebar  *Sidebar
	Registry *prometheus.Registry
	Now      func() time.Time // the clock reports' default dates are read by

	// ReportsPage, when set, holds the marketers' /reports page (reportsui.Page()): it is
	// served at GET /reports, its files under /reports/web/{version}/.
	ReportsPage fs.FS
	// Reports, when set, serves the reports API (GET /api/v1/reports/{kind}) and its
	// OpenAPI document (GET /api/v1/openapi.json).
	Reports *Reports
	// Admin, when set, serves the operators' /admin pages: the setup wizard, the
	// connections and their health.
	Admin *Admin
	// ConnectionHealth, when set, is told of the webhooks accepted, and serves admins each
	// connection's health (GET /api/v1/connections/{id}/health, POST …/test).
	ConnectionHealth *ConnectionHealth
}

// Server is zenklav's HTTP server.
type Server struct {
	logger  *slog.Logger
	opts    Options
	engine  *gin.Engine
	metrics serverMetrics
	page    *sidebarPage
	// theme is the reports page's stylesheet (its colours, light and dark, and its type),
	// which the /admin pages share; "" without the reports page.
	theme  string
	budget *byteBudget // of the webhooks' bodies; nil without Ingest
	// publishing is the webhooks' view of Kafka in the health tracker (part
	// "webhooks/kafka"): an outage is logged when the first webhook meets it and when one
	// is accepted again, not at every 503. Nil without Health: then each 503 is logged.
	publishing *health.Part
}

type serverMetrics struct {
	requests *prometheus.HistogramVec
	webhooks *prometheus.CounterVec
}

// New returns a Server.
func New(logger *slog.Logger, opts Options) (*Server, error) {
	if opts.Registry == nil {
		return nil, errors.New("backend needs a metrics registry")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{logger: logger, opts: opts}
	if opts.Health != nil && opts.Ingest != nil {
		s.publishing = opts.Health.Part("webhooks/kafka")
	}
	f := promauto.With(opts.Registry)
	s.metrics = serverMetrics{
		requests: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zenklav_http_request_seconds",
			Help:    "HTTP requests by route and status.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "status"}),
		webhooks: f.NewCounterVec(prometheus.CounterOpts{
			Name: "zenklav_webhooks_total",
			Help: "Webhooks by source and result (accepted, ignored, overloaded when the in-flight byte budget had no room, or the error kind).",
		}, []string{"source", "result"}),
	}
	if opts.Ingest != nil {
		if opts.MaxInflightBytes <= 0 {
			return nil, errors.New("backend needs MaxInflightBytes to take webhooks")
		}
		s.budget = newByteBudget(logger, opts.MaxInflightBytes, f.NewGauge(prometheus.GaugeOpts{
			Name: "zenklav_webhook_inflight_bytes",
			Help: "Bytes of webhook bodies reserved by the requests in flight, out of ZENKLAV_HTTP_MAX_INFLIGHT_BYTES.",
		}))
	}

	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(s.observe, gin.CustomRecovery(s.recovered), s.renderErrors)
	e.HandleMethodNotAllowed = true
	// Unknown paths and methods answer in the same JSON error shape as everything else.
	e.NoRoute(func(c *gin.Context) {
		_ = c.Error(zenklav.Errorf(zenklav.ENOTFOUND, "no endpoint %s %s", c.Request.Method, c.Request.URL.Path))
	})
	e.NoMethod(func(c *gin.Context) {
		_ = c.Error(zenklav.Errorf(zenklav.EMETHOD, "%s is not allowed on %s", c.Request.Method, c.Request.URL.Path))
	})
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{})))
	if opts.Ingest != nil {
		// Roles other than api serve only health and metrics.
		e.POST("/webhooks/zendesk/:subdomain", s.zendeskWebhook)
		e.POST("/webhooks/klaviyo/:connection", s.klaviyoWebhook)
	}
	if opts.Sidebar != nil {
		if err := s.routeSidebar(e); err != nil {
			return nil, err
		}
	}
	if opts.Reports != nil {
		if err := s.routeReports(e); err != nil {
			return nil, err
		}
	}
	if opts.ReportsPage != nil {
		if err := s.routeReportsPage(e); err != nil {
			return nil, err
		}
	}
	if opts.Admin != nil {
		if err := s.routeAdmin(e); err != nil {
			return nil, err
		}
	}
	s.routeConnectionHealth(e)
	s.engine = e
	return s, nil
}

// Handler returns the http.Handler to serve.
func (s *Server) Handler() http.Handler { return s.engine }

// Routes lists what the server serves, as "METHOD /path", in the order they were added: what
// a start-up banner tells.
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.engine.Routes() {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

// Serve serves on ln until ctx ends, then lets requests in flight finish for up to 10 s, so
// a webhook that Kafka already acknowledged still gets its answer.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// ReadTimeout bounds a request's headers and body on every route; the webhooks, whose
	// bodies hold the byte budget while they arrive, bound theirs tighter (webhookBodyTimeout).
	srv := &http.Server{
		Handler:           s.engine,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	return nil
}

// observe records every request's latency by route and status.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	s.metrics.requests.WithLabelValues(route, strconv.Itoa(c.Writer.Status())).Observe(time.Since(start).Seconds())
}

func (s *Server) recovered(c *gin.Context, v any) {
	s.logger.Error("panic in handler", "route", c.FullPath(), "panic", v)
	c.AbortWithStatusJSON(http.StatusInternalServerError, errorBody(zenklav.EINTERNAL, "internal error"))
}

// statusOf is the one place an error kind becomes an HTTP status.
var statusOf = map[string]int{
	zenklav.EINVALID:      http.StatusBadRequest,
	zenklav.EUNAUTHORIZED: http.StatusUnauthorized,
	zenklav.EFORBIDDEN:    http.StatusForbidden,
	zenklav.ENOTFOUND:     http.StatusNotFound,
	zenklav.ECONFLICT:     http.StatusConflict,
	zenklav.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	zenklav.EMETHOD:       http.StatusMethodNotAllowed,
	zenklav.EUNAVAILABLE:  http.StatusServiceUnavailable,
	zenklav.EINTERNAL:     http.StatusInternalServerError,
}

// renderErrors answers a request whose handler called c.Error: the first error decides the
// status; internal details go to the log, never to the caller.
func (s *Server) renderErrors(c *gin.Context) {
	c.Next()
	if len(c.Errors) == 0 || c.Writer.Written() {
		return
	}
	err := c.Errors[0].Err
	code := zenklav.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	switch code {
	case zenklav.EUNAVAILABLE:
		// Zendesk retries a 503; Retry-After tells well-behaved senders when.
		c.Header("Retry-After", "5")
		// The byte budget logs its overload when it starts and ends: a line per refusal
		// would let a flood fill the logs too.
		if !errors.Is(err, errOverloaded) && !c.GetBool(reportedKey) {
			s.logger.Warn("dependency unavailable", "route", c.FullPath(), "err", err)
		}
	case zenklav.EINTERNAL:
		s.logger.Error("internal error", "route", c.FullPath(), "err", err)
	default:
		s.logger.Debug("request refused", "route", c.FullPath(), "status", status, "err", err)
	}
	c.AbortWithStatusJSON(status, errorBody(code, zenklav.ErrorMessage(err)))
}

func errorBody(code, message string) gin.H {
	return gin.H{"error": gin.H{"code": code, "message": message}}
}
