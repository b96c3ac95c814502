package zendesk

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The headers of Zendesk's account-wide rate limit: the requests a minute the plan allows, and
// how many of this minute's are left (reference/zendesk-api.md §2). Some endpoints send
// limits of their own besides (ratelimit-*, zendesk-ratelimit-*), which are not the account's.
const (
	headerRateLimit          = "X-Rate-Limit"
	headerRateLimitRemaining = "X-Rate-Limit-Remaining"
)

// rateLimitWindow is Zendesk's rate-limit window: a Remaining read longer ago says nothing of
// the minute now.
const rateLimitWindow = time.Minute

// Metrics are the metrics of the clients made with them (ClientConfig.Metrics): each
// connection's requests by outcome, and its account's rate limit as Zendesk's last answer
// gave it. The labels are bounded: connection is a name the caller gives (zenklav: the
// connection's id), outcome one of apiclient's six.
type Metrics struct {
	now      func() time.Time
	requests *prometheus.CounterVec // by connection, outcome

	limit, remaining *prometheus.Desc

	mu       sync.Mutex
	readings map[string]reading // by connection
}

// reading is what the rate-limit headers of a connection's last answer said, and when.
type reading struct {
	limit, remaining float64
	hasLimit, hasRem bool
	at               time.Time
}

// NewMetrics makes the clients' metrics and registers them with reg (none when nil). now is
// its clock; nil is time.Now.
func NewMetrics(reg prometheus.Registerer, now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	m := &Metrics{
		now: now,
		requests: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "zenklav_zendesk_requests_total",
			Help: "Requests sent to the connection's Zendesk account by outcome: ok, not_found, throttled (429), unauthorized, refused, unavailable (5xx or no answer).",
		}, []string{"connection", "outcome"}),
		limit: prometheus.NewDesc("zenklav_zendesk_rate_limit",
			"The requests a minute the connection's Zendesk plan allows (X-Rate-Limit of Zendesk's last answer to this process).",
			[]string{"connection"}, nil),
		remaining: prometheus.NewDesc("zenklav_zendesk_rate_limit_remaining",
			"The requests left in the connection's Zendesk account this minute (X-Rate-Limit-Remaining), as Zendesk's last answer to this process said; gone when that answer is over a minute old. Every process calling the account sees the same count: take the min, not the sum.",
			[]string{"connection"}, nil),
		readings: map[string]reading{},
	}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

// answered records a request of the connection, its outcome and the answer's rate-limit
// headers (header is nil when there was no answer).
func (m *Metrics) answered(connection, outcome string, header http.Header) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(connection, outcome).Inc()
	limit, hasLimit := headerNumber(header, headerRateLimit)
	remaining, hasRem := headerNumber(header, headerRateLimitRemaining)
	if !hasLimit && !hasRem {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.readings[connection]
	if hasLimit {
		r.limit, r.hasLimit = limit, true
	}
	if hasRem {
		r.remaining, r.hasRem, r.at = remaining, true, m.now()
	}
	m.readings[connection] = r
}

// headerNumber reads a header of a whole number.
func headerNumber(h http.Header, name string) (float64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(h.Get(name)), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return float64(n), true
}

// Describe is prometheus.Collector's: the rate-limit gauges.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.limit
	ch <- m.remaining
}

// Collect gives each connection's limit, and what remains of it when read within the window.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for connection, r := range m.readings {
		if r.hasLimit {
			ch <- prometheus.MustNewConstMetric(m.limit, prometheus.GaugeValue, r.limit, connection)
		}
		if r.hasRem && now.Sub(r.at) < rateLimitWindow {
			ch <- prometheus.MustNewConstMetric(m.remaining, prometheus.GaugeValue, r.remaining, connection)
		}
	}
}
