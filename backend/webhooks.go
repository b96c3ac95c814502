package backend

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/config"
	"github.com/zenklav/zenklav/pipeline"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
)

// publishTimeout bounds the wait for Kafka's acknowledgement of a webhook.
const publishTimeout = 8 * time.Second

// zendeskWebhook accepts a Zendesk webhook: it answers 2xx only once Kafka acknowledged the
// event, so Zendesk's retries cover every failure before that point.
func (s *Server) zendeskWebhook(c *gin.Context) {
	body, err := readBody(c, zendesk.MaxWebhookBody)
	if err != nil {
		s.webhookResult(c, "zendesk", err)
		return
	}
	ev, err := s.ingestZendesk(c.Request.Context(), c.Param("subdomain"), c.Request.Header, body)
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

// ingestZendesk verifies, parses, validates and produces one Zendesk webhook. It returns nil
// and no error for a well-formed event that zenklav does not use.
func (s *Server) ingestZendesk(ctx context.Context, subdomain string, h http.Header, body []byte) (*schemas.TicketEvent, error) {
	conns := s.opts.Connections.BySubdomain(subdomain)
	if len(conns) == 0 {
		return nil, zenklav.Errorf(zenklav.ENOTFOUND, "no connection for Zendesk subdomain %q", subdomain)
	}
	now := s.opts.Now()
	if err := zendesk.VerifySignature(config.WebhookSecrets(conns), h.Get(zendesk.HeaderSignature),
		h.Get(zendesk.HeaderSignatureTimestamp), body, now); err != nil {
		return nil, err
	}
	ev, err := zendesk.ParseWebhook(body, zendesk.WebhookTarget{Tenant: conns[0].ID, Subdomain: subdomain, ReceivedAt: now})
	if err != nil || ev == nil {
		return nil, err
	}
	// An account shared by several connections, one per brand: the ticket's brand decides
	// whose event it is. Parsing again for that connection keeps its event ids its own.
	conn := config.ForBrand(conns, ev.BrandID)
	if conn == nil {
		return nil, nil
	}
	if conn != conns[0] {
		if ev, err = zendesk.ParseWebhook(body, zendesk.WebhookTarget{Tenant: conn.ID, Subdomain: subdomain, ReceivedAt: now}); err != nil {
			return nil, err
		}
	}
	value, err := ev.Marshal()
	if err != nil {
		// The parser only returns what the schema allows, so this is our bug, not Zendesk's:
		// a 500 makes Zendesk retry once it is fixed, and the log says what broke.
		return nil, zenklav.Wrap(zenklav.EINTERNAL, err, "webhook did not make a valid ticket event")
	}
	if len(value)+len(ev.Key())+1024 > pipeline.MaxMessageBytes {
		return nil, zenklav.Errorf(zenklav.ETOOLARGE, "ticket %d's event is over Kafka's %d-byte message limit", ev.Ticket.ID, pipeline.MaxMessageBytes)
	}
	// Zendesk gives up on a webhook after 10 s; answer 503 before that so its retry is sure.
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	err = s.opts.Publisher.Publish(ctx, pipeline.Message{
		Topic: schemas.TicketEventsTopic,
		Key:   []byte(ev.Key()),
		Value: value,
		Headers: map[string]string{
			"zenklav-schema":   "ticket_event.v1",
			"zenklav-event-id": ev.EventID,
		},
	})
	if err != nil {
		return nil, err
	}
	return ev, nil
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
