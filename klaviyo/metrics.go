package klaviyo

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the metrics of the clients made with them (ClientConfig.Metrics): how each
// account uses its rate limits. The labels are bounded: account is a name the caller gives
// (zenklav: a connection id, never a key), endpoint one of the client's rate-limit buckets
// (limitsByPath, 16), outcome one of apiclient's six; an account's series exist only for the
// endpoints it called. The distribution of the waits is by endpoint only: by account it
// would be a dozen series per account and endpoint, where a counter of the time waited is
// one.
type Metrics struct {
	requests *prometheus.CounterVec   // by account, endpoint, outcome
	wait     *prometheus.HistogramVec // by endpoint
	waited   *prometheus.CounterVec   // by account, endpoint

	allowed, share *prometheus.Desc

	mu      sync.Mutex
	clients map[string]*Client // by account: the last client made for it, read at each scrape
}

// NewMetrics makes the clients' metrics and registers them with reg (none when nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "zenklav_klaviyo_requests_total",
			Help: "Requests sent to Klaviyo by account (a connection id), endpoint (its rate-limit bucket) and outcome: ok, not_found, throttled (429), unauthorized, refused, unavailable (5xx or no answer).",
		}, []string{"account", "endpoint", "outcome"}),
		wait: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zenklav_klaviyo_limit_wait_seconds",
			Help:    "How long requests waited for their account's rate limit (a token of the endpoint's bucket, or a 429's pause), by endpoint.",
			Buckets: []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		waited: f.NewCounterVec(prometheus.CounterOpts{
			Name: "zenklav_klaviyo_limit_waited_seconds_total",
			Help: "Time requests waited for their account's rate limit, summed, by account and endpoint; divided by zenklav_klaviyo_requests_total, the mean wait.",
		}, []string{"account", "endpoint"}),
		allowed: prometheus.NewDesc("zenklav_klaviyo_limit_allowed_per_second",
			"Requests per second this process may send to the account's endpoint now: its share of the account's limit, lowered after a 429 until successes win it back. Summed over the processes, the account's whole.",
			[]string{"account", "endpoint"}, nil),
		share: prometheus.NewDesc("zenklav_klaviyo_limit_share",
			"How many processes this one shares the account's rate limits with, itself included (the emitter's replicas; 1 elsewhere): it keeps 1/n of each limit.",
			[]string{"account"}, nil),
		clients: map[string]*Client{},
	}
	limit := f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "zenklav_klaviyo_limit_per_minute",
		Help: "Klaviyo's published steady limit of the endpoint, per account and minute (x-klaviyo-ratelimit).",
	}, []string{"endpoint"})
	for endpoint, l := range limitsByPath {
		limit.WithLabelValues(endpoint).Set(float64(l.PerMinute))
	}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

// add makes c the client whose limits the account's gauges show.
func (m *Metrics) add(c *Client) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clients[c.account] = c
}

// waitedFor records a request's wait for the rate limit of endpoint.
func (m *Metrics) waitedFor(account, endpoint string, d time.Duration) {
	if m == nil {
		return
	}
	m.wait.WithLabelValues(endpoint).Observe(d.Seconds())
	m.waited.WithLabelValues(account, endpoint).Add(d.Seconds())
}

// sent records a request sent, and its outcome.
func (m *Metrics) sent(account, endpoint, outcome string) {
	if m != nil {
		m.requests.WithLabelValues(account, endpoint, outcome).Inc()
	}
}

// Describe is prometheus.Collector's: the gauges read from the clients at each scrape.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.allowed
	ch <- m.share
}

// Collect reads each account's share and the allowed rate of each endpoint it called.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for account, c := range m.clients {
		ch <- prometheus.MustNewConstMetric(m.share, prometheus.GaugeValue, float64(c.shared.Load()), account)
		for endpoint, b := range c.buckets {
			if b.used.Load() {
				ch <- prometheus.MustNewConstMetric(m.allowed, prometheus.GaugeValue, float64(b.lim.Limit()), account, endpoint)
			}
		}
	}
}
