package connstatus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/internal/retry"
)

// Table is the status topic as a process follows it: key → latest value (a *kafka.Table).
type Table interface {
	// Sync waits until every record written before it was called has been read.
	Sync(ctx context.Context) error
	Keys() []string
	Get(key string) ([]byte, bool)
}

// Defaults of a Publisher.
const (
	// DefaultInterval is the least time between two publications of a process: a busy
	// connection's webhooks and deliveries cost one small record every couple of seconds.
	DefaultInterval = 2 * time.Second
	// DefaultStaleAfter is how long a record may go unchanged before a process that starts
	// takes its times over and deletes it: its process has most likely stopped.
	DefaultStaleAfter = 24 * time.Hour
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	Recorder *Recorder
	// Table follows Topic; Publisher writes to it (acks=all).
	Table     Table
	Publisher zenklav.Publisher
	Topic     string // Topic when ""
	// Role is what the process runs (all, api, emitter, sms); Instance names the process
	// (NewInstance when ""). The records' keys are connection/role/instance.
	Role, Instance string
	Interval       time.Duration // DefaultInterval when 0
	StaleAfter     time.Duration // DefaultStaleAfter when 0
	Logger         *slog.Logger
}

// Publisher publishes a process's Recorder to the status topic.
type Publisher struct {
	cfg     PublisherConfig
	failing bool // the last publication failed: said once, and again when it works
}

// NewPublisher returns a Publisher.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Recorder == nil || cfg.Table == nil || cfg.Publisher == nil || cfg.Logger == nil || cfg.Role == "" {
		return nil, errors.New("connstatus: a publisher needs a recorder, the table, a publisher, a logger and its role")
	}
	if cfg.Topic == "" {
		cfg.Topic = Topic
	}
	if cfg.Instance == "" {
		cfg.Instance = NewInstance()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = DefaultStaleAfter
	}
	return &Publisher{cfg: cfg}, nil
}

// NewInstance names a process: its host name and a random suffix, so that a restart is a new
// instance and two processes on one host are two.
func NewInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "zenklav"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// key is the record key of the process's observation of connection.
func (p *Publisher) key(connection string) string {
	return connection + "/" + p.cfg.Role + "/" + p.cfg.Instance
}

// Run publishes what the recorder saw, when it changed and at most every Interval, until ctx
// ends; then it publishes what is left, within a few seconds. It starts by taking over the
// records of processes gone for StaleAfter. It never returns before ctx ends: while Kafka
// is away it says so once and tries again.
func (p *Publisher) Run(ctx context.Context) error {
	policy := retry.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second}
	err := policy.DoReport(ctx, p.adoptStale, func(attempt int, err error) {
		if attempt == 0 {
			p.cfg.Logger.Warn("connection status: reading the status topic failed, retrying", "err", err)
		}
	})
	if err != nil && ctx.Err() == nil {
		// Only the old records stay: publishing goes on.
		p.cfg.Logger.Warn("connection status: could not take over the records of stopped processes", "err", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer cancel()
		p.publish(sctx)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.cfg.Recorder.changed:
		}
		p.publish(ctx)
		if retry.Wait(ctx, p.cfg.Interval) != nil {
			return nil
		}
	}
}

// publish publishes what changed, and says when that starts or stops failing.
func (p *Publisher) publish(ctx context.Context) {
	err := p.Flush(ctx)
	switch {
	case err != nil && !p.failing && ctx.Err() == nil:
		p.cfg.Logger.Warn("connection status: publishing failed, retrying", "err", err)
	case err == nil && p.failing:
		p.cfg.Logger.Info("connection status: publishing again")
	}
	p.failing = err != nil
}

// Flush publishes the observations that changed since the last Flush, in one write. When the
// write fails they stay to publish.
func (p *Publisher) Flush(ctx context.Context) error {
	obs := p.cfg.Recorder.takeDirty()
	if len(obs) == 0 {
		return nil
	}
	now := p.cfg.Recorder.now().UTC()
	msgs := make([]zenklav.Message, 0, len(obs))
	connections := make([]string, 0, len(obs))
	for _, o := range obs {
		o.Role, o.Instance, o.UpdatedAt = p.cfg.Role, p.cfg.Instance, now
		v, err := json.Marshal(o)
		if err != nil {
			return err
		}
		msgs = append(msgs, zenklav.Message{Topic: p.cfg.Topic, Key: []byte(p.key(o.Connection)), Value: v})
		connections = append(connections, o.Connection)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.cfg.Publisher.Publish(ctx, msgs...); err != nil {
		p.cfg.Recorder.markDirty(connections)
		return err
	}
	return nil
}

// adoptStale takes over the times of the records no process has changed for StaleAfter,
// publishes them as this process's, and deletes the old records, so that the topic does not
// grow with every restart.
func (p *Publisher) adoptStale(ctx context.Context) error {
	if err := p.cfg.Table.Sync(ctx); err != nil {
		return err
	}
	cutoff := p.cfg.Recorder.now().Add(-p.cfg.StaleAfter)
	var tombstones []zenklav.Message
	for _, key := range p.cfg.Table.Keys() {
		v, ok := p.cfg.Table.Get(key)
		var o observation
		if !ok || json.Unmarshal(v, &o) != nil || o.Connection == "" {
			continue // deleted meanwhile, or not a record this version reads: left alone
		}
		if o.UpdatedAt.Before(cutoff) && key != p.key(o.Connection) {
			p.cfg.Recorder.adopt(o)
			tombstones = append(tombstones, zenklav.Message{Topic: p.cfg.Topic, Key: []byte(key)})
		}
	}
	if len(tombstones) == 0 {
		return nil
	}
	// What was adopted is written before the old records go, so a crash in between loses
	// nothing.
	if err := p.Flush(ctx); err != nil {
		return err
	}
	p.cfg.Logger.Info("connection status: took over the records of stopped processes", "records", len(tombstones))
	return p.cfg.Publisher.Publish(ctx, tombstones...)
}

// local is the process's own observation of the connection, fresher than its record, with
// the record's key.
func (p *Publisher) local(connection string) (observation, string, bool) {
	o, ok := p.cfg.Recorder.snapshot(connection)
	return o, p.key(connection), ok
}
