package backend

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/auth"
	"github.com/zenklav/zenklav/connstatus"
	"github.com/zenklav/zenklav/schemas"
)

// ConnectionHealth is the connections' health on the HTTP side. Status, when set, is told of
// every Zendesk webhook accepted. With Auth and Reports it serves admins GET
// /api/v1/connections/{id}/health, and with Tester POST /api/v1/connections/{id}/test.
type ConnectionHealth struct {
	Status WebhookStatus
	// Auth verifies the report tokens; only a token of role admin that covers the connection
	// is let in.
	Auth    TokenVerifier
	Reports HealthReports
	Tester  TestEvents
}

// TokenVerifier verifies report tokens: an *auth.Reports, or one that verifies against the
// connections as they stand at each request (connections change at run time).
type TokenVerifier interface {
	Verify(token string) (auth.Caller, error)
}

// WebhookStatus is told of every Zendesk webhook accepted (a connstatus.Recorder).
type WebhookStatus interface {
	Webhook(connection string, at time.Time)
}

// HealthReports makes a connection's health report (a connstatus.Reader).
type HealthReports interface {
	// Known says whether zenklav has the connection.
	Known(connection string) bool
	Report(ctx context.Context, connection string) (connstatus.Report, error)
}

// TestEvents sends a connection's test ticket event through the webhooks' own path
// (ingest.Service.TestEvent): it returns the event once Kafka has it.
type TestEvents interface {
	TestEvent(ctx context.Context, connection string) (*schemas.TicketEvent, error)
}

// healthTimeout bounds a health report: its reads of Kafka are bounded tighter still.
const healthTimeout = 10 * time.Second

// routeConnectionHealth adds the connections' health API, when the server has one.
func (s *Server) routeConnectionHealth(e *gin.Engine) {
	h := s.opts.ConnectionHealth
	if h == nil || h.Auth == nil || h.Reports == nil {
		return
	}
	g := e.Group("/api/v1/connections/:id", noStore, requireCaller(h.Auth), s.requireAdmin)
	g.GET("/health", s.connectionHealth)
	if h.Tester != nil {
		g.POST("/test", s.connectionTest)
	}
}

// requireAdmin lets through an admin whose token covers a connection zenklav has: a marketer
// is 403, an unknown connection 404.
func (s *Server) requireAdmin(c *gin.Context) {
	caller, id := callerFrom(c), c.Param("id")
	var err error
	switch {
	case caller.Role != auth.RoleAdmin:
		err = zenklav.Errorf(zenklav.EFORBIDDEN, "only an admin token reads a connection's health (zenklav token --role admin)")
	case !s.opts.ConnectionHealth.Reports.Known(id):
		err = zenklav.Errorf(zenklav.ENOTFOUND, "no connection %q", id)
	case !slices.Contains(caller.Connections, id):
		err = zenklav.Errorf(zenklav.EFORBIDDEN, "this token does not cover connection %q", id)
	}
	if err != nil {
		_ = c.Error(err)
		c.Abort()
		return
	}
	c.Next()
}

// connectionHealth answers GET /api/v1/connections/{id}/health.
func (s *Server) connectionHealth(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), healthTimeout)
	defer cancel()
	rep, err := s.opts.ConnectionHealth.Reports.Report(ctx, c.Param("id"))
	if err != nil {
		_ = c.Error(err)
		return
	}
	c.JSON(http.StatusOK, rep)
}

// connectionTest answers POST /api/v1/connections/{id}/test: a test ticket event, accepted
// as a webhook would be, whose delivery the health report then shows.
func (s *Server) connectionTest(c *gin.Context) {
	caller, id := callerFrom(c), c.Param("id")
	ev, err := s.opts.ConnectionHealth.Tester.TestEvent(c.Request.Context(), id)
	if err != nil {
		_ = c.Error(err)
		return
	}
	s.logger.Info("test event sent", "sub", caller.Subject, "kid", caller.KeyID, "connection", id, "event_id", ev.EventID)
	c.JSON(http.StatusAccepted, gin.H{"status": "accepted", "event_id": ev.EventID, "ticket_id": ev.Ticket.ID, "received_at": ev.ReceivedAt})
}

// recordWebhook tells the status a Zendesk webhook of the connection was accepted.
func (s *Server) recordWebhook(connection string) {
	if h := s.opts.ConnectionHealth; h != nil && h.Status != nil {
		h.Status.Webhook(connection, s.opts.Now())
	}
}
