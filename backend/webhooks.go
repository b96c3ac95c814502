package backend

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/klaviyo"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/zendesk"
)

// Ingest takes webhooks in (ingest.Service): it answers only once Kafka acknowledged the
// events, so the sender's retries cover every failure before that point.
type Ingest interface {
	// AdmitZendesk makes the checks that need no body, before the body is read.
	AdmitZendesk(subdomain string, h http.Header) error
	Zendesk(ctx context.Context, subdomain string, h http.Header, body []byte) (*schemas.TicketEvent, error)
	// AdmitKlaviyo makes the checks of a Klaviyo system webhook that need no body.
	AdmitKlaviyo(connection string, h http.Header) error
	Klaviyo(ctx context.Context, connection string, h http.Header, body []byte) ([]schemas.SMSEvent, error)
}

// webhookBodyTimeout bounds the read of a webhook's body, which holds its share of the byte
// budget all along: tighter than the server's ReadTimeout (30 s, for every route), so a slow
// sender cannot sit on the budget for long. Zendesk's bodies are a few KB and arrive in
// milliseconds, and Zendesk gives up on a webhook after 10 s, so a body still arriving after
// 5 s could not be answered in time anyway.
const webhookBodyTimeout = 5 * time.Second

// zendeskWebhook accepts a Zendesk webhook: one ticket event.
func (s *Server) zendeskWebhook(c *gin.Context) {
	subdomain := c.Param("subdomain")
	s.webhook(c, "zendesk", zendesk.MaxWebhookBody,
		func() error { return s.opts.Ingest.AdmitZendesk(subdomain, c.Request.Header) },
		func(body []byte) (gin.H, error) {
			ev, err := s.opts.Ingest.Zendesk(c.Request.Context(), subdomain, c.Request.Header, body)
			if err != nil || ev == nil {
				return nil, err
			}
			s.recordWebhook(ev.Connection)
			return gin.H{"status": "accepted", "event_id": ev.EventID}, nil
		},
		"event type not used by zenklav, or a brand no connection syncs")
}

// klaviyoWebhook accepts a Klaviyo system webhook: a batch of items, each an SMS event or
// nothing zenklav reads.
func (s *Server) klaviyoWebhook(c *gin.Context) {
	connection := c.Param("connection")
	s.webhook(c, "klaviyo", klaviyo.MaxWebhookBody,
		func() error { return s.opts.Ingest.AdmitKlaviyo(connection, c.Request.Header) },
		func(body []byte) (gin.H, error) {
			events, err := s.opts.Ingest.Klaviyo(c.Request.Context(), connection, c.Request.Header, body)
			if err != nil || len(events) == 0 {
				return nil, err
			}
			return gin.H{"status": "accepted", "events": len(events)}, nil
		},
		"no item of a topic zenklav reads, or none with a customer's phone number")
}

// webhook is the way every webhook goes: refuse what the path and headers already rule out
// (admit), reserve the body's bytes (at most limit), read the body, hand it to the ingest
// service (handle), answer. handle returns the 202's body once Kafka acknowledged, or nil
// when nothing in the webhook is for zenklav, which is answered 200 with ignored's reason.
func (s *Server) webhook(c *gin.Context, source string, limit int64, admit func() error, handle func(body []byte) (gin.H, error), ignored string) {
	if err := admit(); err != nil {
		s.webhookResult(c, source, err)
		return
	}
	// Released however the handler ends, panics included: the body's bytes are held until
	// then.
	release, err := s.reserveBody(c.Request, limit)
	if err != nil {
		s.webhookResult(c, source, err)
		return
	}
	defer release()
	body, err := readWebhookBody(c, limit)
	if err != nil {
		s.webhookResult(c, source, err)
		return
	}
	accepted, err := handle(body)
	if err != nil {
		s.webhookResult(c, source, err)
		return
	}
	if accepted == nil {
		s.metrics.webhooks.WithLabelValues(source, "ignored").Inc()
		c.JSON(http.StatusOK, gin.H{"status": "ignored", "reason": ignored})
		return
	}
	if s.publishing != nil {
		s.publishing.Working()
	}
	s.metrics.webhooks.WithLabelValues(source, "accepted").Inc()
	c.JSON(http.StatusAccepted, accepted)
}

// reportedKey marks a request whose error the health tracker has already reported, so the
// error renderer does not log it again.
const reportedKey = "zenklav.reported"

func (s *Server) webhookResult(c *gin.Context, source string, err error) {
	result := zenklav.ErrorCode(err)
	switch {
	case errors.Is(err, errOverloaded):
		result = "overloaded" // not Kafka's unavailability, which shares the error kind
	case result == zenklav.EUNAVAILABLE && s.publishing != nil:
		s.publishing.Waiting(err) // Kafka did not acknowledge: said once for the outage
		c.Set(reportedKey, true)
	}
	s.metrics.webhooks.WithLabelValues(source, result).Inc()
	_ = c.Error(err)
}

// reserveBody reserves the bytes of r's body, of at most limit bytes, in the budget: its
// Content-Length, or limit when it has none. release gives them back. It returns
// ETOOLARGE for a Content-Length over limit, and errOverloaded when the budget has no room.
func (s *Server) reserveBody(r *http.Request, limit int64) (release func(), err error) {
	size := r.ContentLength // -1 when the sender did not say
	if size > limit {
		return nil, errTooLarge(limit)
	}
	if size < 0 {
		size = limit
	}
	release, ok := s.budget.reserve(size)
	if !ok {
		return nil, errOverloaded
	}
	return release, nil
}

// readWebhookBody reads the body of at most limit bytes, within webhookBodyTimeout.
func readWebhookBody(c *gin.Context, limit int64) ([]byte, error) {
	rc := http.NewResponseController(c.Writer)
	// An error means the writer has no connection to set a deadline on (httptest): nothing
	// to bound then.
	_ = rc.SetReadDeadline(time.Now().Add(webhookBodyTimeout))
	// The deadline would go on counting while Kafka acknowledges, and its expiry would
	// cancel the request's context: once the body is in, lift it.
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	return readBody(c.Request.Body, c.Request.ContentLength, limit)
}

// readBody reads a body of size bytes into a buffer of that size, or, when size is -1 (no
// Content-Length), of at most limit bytes into a buffer that never grows past limit+1:
// io.ReadAll's growth could hold up to twice what it read, more than the budget reserved.
func readBody(r io.Reader, size, limit int64) ([]byte, error) {
	if size >= 0 {
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, zenklav.Wrap(zenklav.EINVALID, err, "read body")
		}
		return body, nil
	}
	buf := make([]byte, 0, min(16<<10, limit+1))
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case int64(len(buf)) > limit:
			return nil, errTooLarge(limit)
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return nil, zenklav.Wrap(zenklav.EINVALID, err, "read body")
		case len(buf) == cap(buf):
			grown := make([]byte, len(buf), min(2*int64(cap(buf)), limit+1))
			copy(grown, buf)
			buf = grown
		}
	}
}

func errTooLarge(limit int64) error {
	return zenklav.Errorf(zenklav.ETOOLARGE, "body is over %d bytes", limit)
}
