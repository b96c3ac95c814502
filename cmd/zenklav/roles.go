package main

import (
	zauth "github.com/zenklav/zenklav/auth"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/zenklav/zenklav/analytics"
	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/config"
	"github.com/zenklav/zenklav/pipeline"
	"github.com/zenklav/zenklav/reportsui"
	"github.com/zenklav/zenklav/schemas"
)

// env is what every role is built from.
type env struct {
	cfg      config.Config
	logger   *slog.Logger
	stdout   io.Writer
	registry *prometheus.Registry
}

func newEnv(getenv func(string) string, stdout io.Writer) (*env, error) {
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &env{
		cfg:      cfg,
		logger:   slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})),
		stdout:   stdout,
		registry: reg,
	}, nil
}

// runRoles runs role ("all", "api", "emitter" or "sink") until ctx ends or a part fails.
func runRoles(ctx context.Context, role string, getenv func(string) string, stdout io.Writer) error {
	e, err := newEnv(getenv, stdout)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b := banner{role: role}

	brokers := e.cfg.KafkaBrokers
	if len(brokers) == 0 {
		if role != "all" {
			return errors.New("ZENKLAV_KAFKA_BROKERS is empty: only `zenklav all` runs an embedded broker; point the other roles at Kafka")
		}
		cluster, addr, err := e.embeddedKafka()
		if err != nil {
			return err
		}
		defer cluster.Close()
		brokers = []string{addr}
		b.kafka = fmt.Sprintf("embedded broker at %s, data in %s (set ZENKLAV_KAFKA_BROKERS for a real cluster)", addr, e.dataDir("kafka"))
	} else {
		b.kafka = strings.Join(brokers, ",")
	}
	if err := pipeline.WaitForBrokers(ctx, e.logger, brokers); err != nil {
		return err
	}
	if err := pipeline.EnsureTopics(ctx, brokers,
		pipeline.Topic{Name: schemas.TicketEventsTopic, Partitions: e.cfg.TopicPartitions},
		pipeline.Topic{Name: schemas.TicketEventsDLQTopic, Partitions: e.cfg.TopicPartitions},
	); err != nil {
		return err
	}
	producer := pipeline.NewProducer(e.logger, brokers)
	defer producer.Close()
	ready := map[string]func(context.Context) error{
		"kafka": func(ctx context.Context) error { return pipeline.Ping(ctx, brokers) },
	}

	// Build every part first; start them only when nothing can fail any more, so a start-up
	// error never leaves a running part behind.
	var conns *zenklav.Connections
	var sb *sandbox
	cfg := e.cfg
	if role == "all" || role == "api" || role == "emitter" {
		if conns, sb, err = e.connections(ctx, role, &b); err != nil {
			return err
		}
		if sb != nil {
			defer sb.Close()
			cfg.KlaviyoBaseURL, cfg.ZendeskBaseURL = sb.klaviyoURL, sb.url
			if cfg.JWTSigningKey == "" {
				cfg.SetSigningKeys([]zauth.SigningKey{{ID: "sandbox", Secret: randomSigningKey()}})
			}
		}
	}
	withSidebar := (role == "all" || role == "api") && sidebarWanted(conns)
	// Report tokens are verified with ZENKLAV_JWT_SIGNING_KEY: without it there is no
	// reports API (the /reports page then shows the API's 404).
	withReports := (role == "all" || role == "api") && len(cfg.JWTKeys) > 0
	var store *analytics.Store
	if role == "all" || role == "sink" || role == "emitter" || withSidebar || withReports {
		if store, err = e.openStore(ctx); err != nil {
			return err
		}
		defer store.Close()
		if role != "api" {
			// The api role reads ClickHouse for the sidebar's support history and the
			// reports only; a ClickHouse outage leaves that section out (or answers a
			// report 503), and must not pull the webhook receiver out of a load balancer.
			ready["clickhouse"] = store.Ping
		}
		b.clickhouse = fmt.Sprintf("%s, database %s", e.cfg.ClickHouseAddr, e.cfg.ClickHouseDatabase)
	}
	var clients *apiClients
	if conns != nil {
		if clients, err = newAPIClients(e.logger, cfg, conns); err != nil {
			return err
		}
	}
	var sink *pipeline.Sink
	if role == "all" || role == "sink" {
		sink, err = pipeline.NewSink(e.logger.With("role", "sink"), e.registry, pipeline.ConsumerConfig{
			Brokers: brokers, Topic: schemas.TicketEventsTopic, Group: pipeline.SinkGroup,
			BatchSize: e.cfg.SinkBatchSize, BatchWait: e.cfg.SinkBatchWait,
		}, store, producer)
		if err != nil {
			return err
		}
	}

	var emitter *pipeline.Emitter
	if role == "all" || role == "emitter" {
		logger := e.logger.With("role", "emitter")
		rs, err := routes(logger, conns, clients)
		if err != nil {
			return err
		}
		emitter, err = pipeline.NewEmitter(logger, e.registry, pipeline.EmitterConfig{
			Brokers: brokers, Topic: schemas.TicketEventsTopic, Group: pipeline.EmitterGroup,
			Routes: rs, States: ticketStates{store}, RetryFor: cfg.EmitterRetryFor, BackfillAfter: cfg.EmitterBackfillAfter,
		}, producer)
		if err != nil {
			return err
		}
		b.klaviyo = fmt.Sprintf("%s, %d connection(s) with a Klaviyo account", cfg.KlaviyoBaseURL, len(rs))
	}

	opts := backend.Options{Registry: e.registry, Ready: ready}
	if role == "all" || role == "api" {
		opts.Connections, opts.Publisher = conns, producer
		opts.ReportsPage = reportsui.Page()
	}
	if withReports {
		auth, err := zauth.NewReports(cfg.JWTKeys, conns, nil)
		if err != nil {
			return err
		}
		opts.Reports = &backend.Reports{Auth: auth, Source: store}
		if sb != nil {
			// Sandbox mode's key lives as long as the process: the banner hands out a
			// marketer's token for the sandbox connection, as `zenklav token` would.
			if b.reportsToken, _, err = auth.Issue(zauth.TokenRequest{
				Subject: "sandbox", Role: zauth.RoleMarketer, Tenants: []string{sandboxSubdomain}, TTL: 24 * time.Hour,
			}); err != nil {
				return err
			}
		}
	} else if role == "all" || role == "api" {
		e.logger.Info("reports API off: ZENKLAV_JWT_SIGNING_KEY is empty")
	}
	if withSidebar {
		if opts.Sidebar, err = newSidebar(e.logger.With("role", "api"), e.registry, cfg, conns, clients, store); err != nil {
			return err
		}
	}
	srv, err := backend.New(e.logger.With("role", "api"), opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", e.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on ZENKLAV_HTTP_ADDR=%s: %w", e.cfg.HTTPAddr, err)
	}
	defer ln.Close()
	b.http = "http://" + ln.Addr().String()
	b.sandbox.finish(b.http)
	var pln net.Listener
	if addr := e.cfg.PprofAddr; addr != "" {
		// Profiling is an operator's tool: off unless asked for, on its own listener so it is
		// never exposed with the webhooks.
		if pln, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("listen on ZENKLAV_PPROF_ADDR=%s: %w", addr, err)
		}
		defer pln.Close()
		b.pprof = "http://" + pln.Addr().String() + "/debug/pprof/"
	}

	// Start. The parts stop, and are waited for, before the deferred closes above run.
	var wg sync.WaitGroup
	defer func() {
		cancel(nil)
		wg.Wait()
	}()
	start := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil {
				e.logger.Error("role stopped", "role", name, "err", err)
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		})
	}
	if sink != nil {
		start("sink", sink.Run)
	}
	if emitter != nil {
		start("emitter", emitter.Run)
	}
	start("http", func(ctx context.Context) error { return srv.Serve(ctx, ln) })
	if pln != nil {
		start("pprof", func(ctx context.Context) error { return servePprof(ctx, pln) })
	}
	b.print(e.stdout)
	e.logger.Info("zenklav started", "role", role, "http", b.http)
	<-ctx.Done()
	e.logger.Info("zenklav stopping", "role", role)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// connections reads the connections file, or starts sandbox mode when there is none.
func (e *env) connections(ctx context.Context, role string, b *banner) (*zenklav.Connections, *sandbox, error) {
	if e.cfg.ConnectionsFile != "" {
		conns, err := config.LoadConnections(e.cfg.ConnectionsFile)
		if err != nil {
			return nil, nil, err
		}
		b.zendesk = fmt.Sprintf("%d connection(s) from %s", len(conns.Connections), e.cfg.ConnectionsFile)
		return conns, nil, nil
	}
	if role != "all" {
		return nil, nil, fmt.Errorf("ZENKLAV_CONNECTIONS_FILE is empty: only `zenklav all` runs in sandbox mode; give the %s role a connections file", role)
	}
	sb, err := startSandbox(ctx, e.logger.With("role", "sandbox"))
	if err != nil {
		return nil, nil, err
	}
	b.sandbox = sb
	return sb.conns, sb, nil
}

func (e *env) openStore(ctx context.Context) (*analytics.Store, error) {
	if e.cfg.ClickHouseAddr == "" {
		return nil, errors.New("ZENKLAV_CLICKHOUSE_ADDR is empty: `make run` starts a local ClickHouse for you; " +
			"otherwise point zenklav at an existing server with ZENKLAV_CLICKHOUSE_ADDR=host:9000 (native protocol)")
	}
	store, err := analytics.Open(ctx, e.logger, analytics.Config{
		Addr: e.cfg.ClickHouseAddr, Database: e.cfg.ClickHouseDatabase,
		User: e.cfg.ClickHouseUser, Password: e.cfg.ClickHousePassword.Reveal(),
	})
	if err != nil {
		return nil, err
	}
	if _, err := store.Migrate(ctx); err != nil {
		store.Close()
		return nil, err
	}
	return store, nil
}

// migrate is `zenklav migrate`.
func migrate(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	e, err := newEnv(getenv, stdout)
	if err != nil {
		return err
	}
	store, err := e.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	fmt.Fprintf(stdout, "ClickHouse database %s at %s is up to date\n", e.cfg.ClickHouseDatabase, e.cfg.ClickHouseAddr)
	return nil
}

func (e *env) dataDir(name string) string {
	return filepath.Join(e.cfg.DataDir, name)
}

// embeddedKafka starts the in-process Kafka-protocol broker that `zenklav all` uses when no
// brokers are configured. It keeps its log on disk, so a restart loses nothing.
func (e *env) embeddedKafka() (*kfake.Cluster, string, error) {
	dir := e.dataDir("kafka")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("embedded kafka data dir: %w", err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(e.cfg.EmbeddedKafkaPort), kfake.DataDir(dir),
		kfake.DefaultNumPartitions(e.cfg.TopicPartitions))
	if err != nil {
		return nil, "", fmt.Errorf("start embedded kafka: %w", err)
	}
	return c, c.ListenAddrs()[0], nil
}

func servePprof(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
