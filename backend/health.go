package backend

import (
	"context"
	"net/http"
	"sync"
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

// check runs every dependency check side by side, each within CheckTimeout.
func (s *Server) check(ctx context.Context) (map[string]string, bool) {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		checks = map[string]string{}
		ready  = true
	)
	for name, check := range s.opts.Ready {
		wg.Go(func() {
			result := "ok"
			if err := check(ctx); err != nil {
				result = zenklav.ErrorMessage(err)
				if ctx.Err() != nil {
					result = "no answer within " + CheckTimeout.String() + ": " + result
				}
			}
			mu.Lock()
			defer mu.Unlock()
			checks[name] = result
			ready = ready && result == "ok"
		})
	}
	wg.Wait()
	return checks, ready
}
