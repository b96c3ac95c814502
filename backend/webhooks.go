package backend

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
)

// Ingest takes webhooks in (ingest.Service): it answers only once Kafka acknowledged the
// event, so the sender's retries cover every failure before that point.
type Ingest interface {
	Zendesk(ctx context.Context, subdomain string, h http.Header, body []byte) (*schemas.TicketEvent, error)
}

// zendeskWebhook accepts a Zendesk webhook: read the body, hand it to the ingest service,
// answer.
func (s *Server) zendeskWebhook(c *gin.Context) {
	body, err := readBody(c, zendesk.MaxWebhookBody)
	if err != nil {
		s.webhookResult(c, "zendesk", err)
		return
	}
	ev, err := s.opts.Ingest.Zendesk(c.Request.Context(), c.Param("subdomain"), c.Request.Header, body)
	if err != nil {
		s.webhookResult(c, "zendesk", err)
		return
	}
	if ev == nil {
		s.metrics.webhooks.WithLabelValues("zendesk", "ignored").Inc()
		c.JSON(http.StatusOK, gin.H{"status": "ignored", "reason": "event type not used by zenklav, or a brand no connection syncs"})
		return
	}
	s.metrics.webhooks.WithLabelValues("zendesk", "accepted").Inc()
	c.JSON(http.StatusAccepted, gin.H{"status": "accepted", "event_id": ev.EventID})
}

func (s *Server) webhookResult(c *gin.Context, source string, err error) {
	s.metrics.webhooks.WithLabelValues(source, zenklav.ErrorCode(err)).Inc()
	_ = c.Error(err)
}

// readBody reads at most limit bytes; a longer body is ETOOLARGE and is not read further.
func readBody(c *gin.Context, limit int64) ([]byte, error) {
	if c.Request.ContentLength > limit {
		return nil, zenklav.Errorf(zenklav.ETOOLARGE, "body is over %d bytes", limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, zenklav.Errorf(zenklav.ETOOLARGE, "body is over %d bytes", limit)
	}
	if err != nil {
		return nil, zenklav.Wrap(zenklav.EINVALID, err, "read body")
	}
	return body, nil
}
