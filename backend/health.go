package backend

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/health"
)

// CheckTimeout bounds each of /readyz's checks. They run side by side, so /readyz answers
// within it: a load balancer or an operator polling every second learns of an outage within
// two.
const CheckTimeout = 1500 * time.Millisecond

// readyz reports whether every dependency answers a real round trip now, and how each part of
// the process is doing: 503 names the dependencies that do not answer, and a part that
// stopped for good makes the process unready too. A part waiting for a dependency is listed
// but does not by itself make the process unready: its dependency's check says so, and one
// connection's Klaviyo being down is no reason to take a whole process out of service.
func (s *Server) readyz(c *gin.Context) {
	checks, ready := s.check(c.Request.Context())
	body := gin.H{"checks": checks}
	if s.opts.Health != nil {
		parts := s.opts.Health.States()
		for _, p := range parts {
			if p.Condition == health.Stopped {
				ready = false
			}
		}
		body["parts"] = parts
	}
	body["ready"] = ready
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, body)
}

// check runs every dependency check side by side, each within CheckTimeout. A check that does
// not return by then is answered for all the same (a client that dials with a timeout of its
// own may ignore the context): it finishes in the background, and its result is dropped.
func (s *Server) check(ctx context.Context) (map[string]string, bool) {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	results := make(chan [2]string, len(s.opts.Ready))
	for name, check := range s.opts.Ready {
		go func() {
			result := "ok"
			if err := check(ctx); err != nil {
				result = zenklav.ErrorMessage(err)
			}
			results <- [2]string{name, result}
		}()
	}
	checks, ready := map[string]string{}, true
	for range s.opts.Ready {
		select {
		case r := <-results:
			checks[r[0]] = r[1]
			ready = ready && r[1] == "ok"
		case <-ctx.Done():
			for name := range s.opts.Ready {
				if _, ok := checks[name]; !ok {
					checks[name] = "no answer within " + CheckTimeout.String()
				}
			}
			return checks, false
		}
	}
	return checks, ready
}
