package connstatus

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The lag metric's reading of Kafka: at most every lagCacheFor (scrapes closer together, or
// from several Prometheus servers, get the last reading), and bounded by lagTimeout, well
// inside a scrape's default timeout of 10 s.
const (
	lagCacheFor = 10 * time.Second
	lagTimeout  = 5 * time.Second
)

// LagCollector exports the consumer groups' lag, zenklav_consumer_lag_messages{group,topic},
// read from Kafka at scrape time through the same KafkaSource the health report reads it
// with: the group's committed offsets against the topic's end offsets, summed over the
// partitions. A group's lag is the group's, not a process's: whichever process reads it
// gets the same number, so the api role exports it (any replica can answer, and it goes on
// answering while the role whose lag grows is down), and the queries take the max over
// the instances, never the sum. A group that never committed is left out, as in the report.
type LagCollector struct {
	src    *KafkaSource
	logger *slog.Logger
	now    func() time.Time
	desc   *prometheus.Desc

	mu      sync.Mutex // one reading at a time
	read    time.Time  // when last is from
	last    []groupLag
	failing bool // the last reading failed (said once)
}

// NewLagCollector returns a collector of src's groups' lag. now is its clock; nil is time.Now.
func NewLagCollector(logger *slog.Logger, src *KafkaSource, now func() time.Time) *LagCollector {
	if now == nil {
		now = time.Now
	}
	return &LagCollector{src: src, logger: logger, now: now, desc: prometheus.NewDesc("zenklav_consumer_lag_messages",
		"Messages the consumer group is behind on the topic (the end offsets minus its committed offsets), read from Kafka when scraped. Every api process exports the same value: aggregate with max, not sum.",
		[]string{"group", "topic"}, nil)}
}

// Describe is prometheus.Collector's.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect gives the lag of each group, read anew unless the last reading is recent. When
// Kafka cannot say, the groups it answered for are given, and the others left out: a gap in
// a graph, not a number that was true a while ago.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.lags() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Messages), l.Group.Group, l.Topic)
	}
}

// lags is the last reading, read anew when it is older than lagCacheFor.
func (c *LagCollector) lags() []groupLag {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.read.IsZero() && now.Sub(c.read) < lagCacheFor {
		return c.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
	defer cancel()
	lags, err := c.src.lags(ctx)
	switch {
	case err != nil && !c.failing:
		c.logger.Warn("reading the consumer groups' lag from Kafka failed: the lag metric lacks those groups until it works", "err", err)
	case err == nil && c.failing:
		c.logger.Info("reading the consumer groups' lag from Kafka works again")
	}
	c.failing = err != nil
	c.read, c.last = now, lags
	return lags
}
