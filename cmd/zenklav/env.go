package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/config"
	"github.com/zenklav/zenklav/connstatus"
	"github.com/zenklav/zenklav/connstore"
	"github.com/zenklav/zenklav/internal/health"
	"github.com/zenklav/zenklav/internal/retry"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/setup"
)

// env is what every role and tool is built from: the configuration, a logger, a metrics
// registry, and the dependencies, each made on first use and closed by close.
type env struct {
	cfg      config.Config
	logger   *slog.Logger
	stdout   io.Writer
	registry *prometheus.Registry
	// health holds the states of the process's parts (its consumers, its roles), for the
	// logs, the metrics and /readyz.
	health *health.Tracker
	// waitForServers makes the env wait for a ClickHouse that does not answer yet, as the
	// roles do, rather than fail at once, as the tools do.
	waitForServers bool
	// sandboxOK lets connections start sandbox mode when there is no connections file
	// (`zenklav all` only).
	sandboxOK bool

	brokers  []string
	producer *kafka.Producer
	conns    *zenklav.Connections
	// catchUp reads the connections store to its end (nil unless the store is the source).
	catchUp func(context.Context) error
	ctx     context.Context // ends when the env closes
	warned  sync.Map        // what warnOnce said
	sandbox *sandbox
	store   *analytics.Store
	clients *apiClients
	// connStore is the connections store, once opened: the one the roles follow when it is
	// their source (storedConnections), which setup writes to.
	connStore *connstore.Store
	// setup is the setup service, made on first use (setup.go).
	setup   *setup.Service
	status  *connstatus.Recorder // what the roles see of each connection (status.go)
	closers []func()
}

// envOptions say how a command's env logs.
type envOptions struct {
	logTo    io.Writer  // where logs go; stdout when nil
	minLevel slog.Level // the least level logged, above ZENKLAV_LOG_LEVEL when higher
}

// newEnv reads the configuration: the one start-up path of every role and tool.
func newEnv(getenv func(string) string, stdout io.Writer, o envOptions) (*env, error) {
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	logTo := o.logTo
	if logTo == nil {
		logTo = stdout
	}
	logger := slog.New(slog.NewJSONHandler(logTo, &slog.HandlerOptions{Level: max(cfg.LogLevel, o.minLevel)}))
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{
		cfg:      cfg,
		logger:   logger,
		stdout:   stdout,
		registry: reg,
		health:   health.NewTracker(logger, reg),
		ctx:      ctx,
	}
	e.onClose(cancel)
	return e, nil
}

// close closes what the env opened, the last first.
func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

func (e *env) onClose(f func()) { e.closers = append(e.closers, f) }

// needBrokers returns the configured brokers, or says why a command needs them.
func (e *env) needBrokers(what string) ([]string, error) {
	if len(e.cfg.KafkaBrokers) == 0 {
		return nil, errors.New("ZENKLAV_KAFKA_BROKERS is empty: " + what + " a running Kafka cluster (for `zenklav all`, " +
			"the embedded broker's address from its start-up banner)")
	}
	return e.cfg.KafkaBrokers, nil
}

// topic is how zenklav creates the topic name when it is missing, the one place that reads
// the topics' settings: ZENKLAV_TOPIC_PARTITIONS, and the replication
// (ZENKLAV_KAFKA_REPLICATION_FACTOR, ZENKLAV_KAFKA_MIN_INSYNC_REPLICAS; where unset, chosen
// from the cluster).
func (e *env) topic(name string, compacted bool) kafka.Topic {
	return kafka.Topic{
		Name: name, Partitions: e.cfg.TopicPartitions, Compacted: compacted,
		Replication: kafka.Replication{Factor: e.cfg.ReplicationFactor, MinInsync: e.cfg.MinInsyncReplicas},
	}
}

// kafkaProducer returns the producer for the env's brokers, made on first use.
func (e *env) kafkaProducer() *kafka.Producer {
	if e.producer == nil {
		e.producer = kafka.NewProducer(e.logger, e.brokers)
		e.onClose(func() { e.producer.Close() })
	}
	return e.producer
}

// connections returns the connections of ZENKLAV_CONNECTIONS_FILE, or starts sandbox mode
// when there is none and the command allows it.
func (e *env) connections(ctx context.Context, who string) (*zenklav.Connections, error) {
	if e.conns != nil {
		return e.conns, nil
	}
	if e.cfg.ConnectionsFile != "" {
		conns, err := config.LoadConnections(e.cfg.ConnectionsFile)
		if err != nil {
			return nil, err
		}
		e.conns = conns
		return conns, nil
	}
	if e.cfg.SecretsKey != "" && len(e.brokers) > 0 {
		return e.storedConnections(ctx)
	}
	if !e.sandboxOK {
		return nil, fmt.Errorf("ZENKLAV_CONNECTIONS_FILE and ZENKLAV_SECRETS_KEY are empty: only `zenklav all` runs in sandbox mode; "+
			"give the %s a connections file, or the key of the connections store (zenklav connections)", who)
	}
	return e.sandboxMode(ctx)
}

// connectionsPoll is how often a role looks at the connections store: a change is in force
// within about that (the store's topic is followed as it is written).
const connectionsPoll = time.Second

// storedConnections are the enabled connections of the connections store, followed while
// the process runs: a connection added, changed, disabled or removed there is in force here
// within connectionsPoll, for every part that looks connections up as it goes (the webhooks,
// the sidebar's and reports' tokens).
func (e *env) storedConnections(ctx context.Context) (*zenklav.Connections, error) {
	store, err := e.openStore(ctx, "the connections store is")
	if err != nil {
		return nil, err
	}
	return e.followStore(ctx, store)
}

// followStore makes store the source of the env's connections, followed until the env
// closes.
func (e *env) followStore(ctx context.Context, store *connstore.Store) (*zenklav.Connections, error) {
	e.connStore = store
	conns := &zenklav.Connections{}
	followCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	e.onClose(stop)
	if err := store.Follow(followCtx, e.logger, conns, connectionsPoll); err != nil {
		return nil, err
	}
	e.conns = conns
	e.catchUp = func(ctx context.Context) error { return store.CatchUp(ctx, conns) }
	return conns, nil
}

// connection returns the connection of id as the connections stand now, or nil when there is
// none. With the connections store as the source, a connection not known yet may have been
// added a moment ago: the store is read to its end before the answer is no, and read again
// until it answers (a message must not become a dead letter for want of a look).
func (e *env) connection(id string) *zenklav.Connection {
	if c := e.conns.ByID(id); c != nil || e.catchUp == nil {
		return c
	}
	p := retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	err := p.DoReport(e.ctx, e.catchUp, func(attempt int, err error) {
		e.logger.Warn("reading the connections store failed, retrying", "connection", id, "attempt", attempt+1, "err", err)
	})
	if err != nil {
		return nil // shutting down
	}
	return e.conns.ByID(id)
}

// randomSigningKey is sandbox mode's signing key when none is configured: its sessions and
// tokens need not outlive the process.
func randomSigningKey() zenklav.Secret {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return zenklav.Secret(hex.EncodeToString(b[:]))
}

// ticketStore opens ClickHouse and migrates it, on first use. A role waits for a ClickHouse
// that does not answer yet (roles start in any order with their servers); a tool fails at once.
func (e *env) ticketStore(ctx context.Context) (*analytics.Store, error) {
	if e.store != nil {
		return e.store, nil
	}
	if err := e.cfg.ClickHouse.Validate(); err != nil {
		return nil, err
	}
	open := func(ctx context.Context) error {
		store, err := analytics.Open(ctx, e.logger, analytics.Config{
			Addr: e.cfg.ClickHouseAddr, Database: e.cfg.ClickHouseDatabase,
			User: e.cfg.ClickHouseUser, Password: e.cfg.ClickHousePassword.Reveal(),
			Cluster: e.cfg.ClickHouseCluster,
		})
		if err != nil {
			return err
		}
		if _, err := store.Migrate(ctx); err != nil {
			store.Close()
			return err
		}
		e.store = store
		return nil
	}
	var err error
	if e.waitForServers {
		part := e.health.Part("clickhouse")
		p := retry.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second}
		err = p.DoReport(ctx, open, func(_ int, err error) { part.Waiting(err) })
		if err == nil {
			part.Working()
		}
	} else {
		err = open(ctx)
	}
	if err != nil {
		return nil, err
	}
	e.onClose(func() { e.store.Close() })
	return e.store, nil
}

// embeddedKafka starts the in-process Kafka-protocol broker that `zenklav all` uses when no
// brokers are configured. It keeps its log on disk, so a restart loses nothing.
func (e *env) embeddedKafka() (string, error) {
	dir := filepath.Join(e.cfg.DataDir, "kafka")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("embedded kafka data dir: %w", err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(e.cfg.EmbeddedKafkaPort), kfake.DataDir(dir),
		kfake.DefaultNumPartitions(e.cfg.TopicPartitions))
	if err != nil {
		return "", fmt.Errorf("start embedded kafka: %w", err)
	}
	e.onClose(c.Close)
	return c.ListenAddrs()[0], nil
}
