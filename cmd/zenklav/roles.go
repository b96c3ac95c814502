package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zenklav/zenklav/backend"
	"github.com/zenklav/zenklav/emitter"
	"github.com/zenklav/zenklav/kafka"
	"github.com/zenklav/zenklav/schemas"
	"github.com/zenklav/zenklav/sink"
	"github.com/zenklav/zenklav/sms"
)

// role is one row of the role table: a part of zenklav that runs until stopped. `zenklav
// all` runs every row in one process; in production each runs, and scales out, on its own.
// Every role needs Kafka. Adding a role is a row here and a build function.
type role struct {
	name  string
	usage string
	// needs are what the env makes ready before build: build finds them in e.conns,
	// e.clients and e.store.
	needs needs
	// topics are the topics it reads or writes (created when missing); dlq, when set, is
	// the topic of its dead letters, which `zenklav replay` reads.
	topics []string
	dlq    string
	tables []string // compacted topics it keeps state in (kafka.Table)
	groups []string // its consumer groups
	// sections are the parts of the configuration it reads, checked before anything starts.
	sections func(e *env) []validator
	// build makes the role's runner, and adds what the role serves to the HTTP server.
	build func(ctx context.Context, e *env, srv *backend.Options, b *banner) (runner, error)
}

// needs are a role's dependencies besides Kafka.
type needs struct {
	connections bool // the connections (sandbox mode's, for `zenklav all` without a file)
	apis        bool // the connections' Zendesk and Klaviyo clients
	// clickhouse is the ticket store, opened and migrated; the role's readiness then depends
	// on it. (The api role opens it only for the sidebar or the reports, and stays ready
	// without it.)
	clickhouse bool
}

// validator is a section of the configuration.
type validator interface{ Validate() error }

// runner runs a role until ctx ends or it fails.
type runner func(ctx context.Context) error

var roles = []role{
	{
		name: "api", usage: "HTTP: Zendesk and Klaviyo webhooks in, the sidebar, the reports API and page, the /admin setup wizard and connections' health, health, metrics",
		needs:    needs{connections: true},
		topics:   []string{schemas.TicketEventsTopic, schemas.SMSEventsTopic},
		sections: func(e *env) []validator { return []validator{e.cfg.Server, e.cfg.APIs} },
		build:    buildAPI,
	},
	{
		name: "emitter", usage: "turns ticket events into Klaviyo metrics (Opened Ticket, Resolved Ticket)",
		needs:  needs{connections: true, apis: true, clickhouse: true},
		topics: []string{schemas.TicketEventsTopic, schemas.TicketEventsParkedTopic}, dlq: schemas.TicketEventsDLQTopic,
		groups:   []string{emitter.Group, emitter.ParkedGroup},
		sections: func(e *env) []validator { return []validator{e.cfg.ClickHouse, e.cfg.APIs, e.cfg.Emitter} },
		build:    buildEmitter,
	},
	{
		name: "sink", usage: "copies ticket events from Kafka into ClickHouse",
		needs:  needs{clickhouse: true},
		topics: []string{schemas.TicketEventsTopic}, dlq: schemas.TicketEventsDLQTopic,
		groups:   []string{sink.Group, sink.Group + sink.TicketRowsSuffix},
		sections: func(e *env) []validator { return []validator{e.cfg.ClickHouse, e.cfg.Sink} },
		build:    buildSink,
	},
	{
		name: "sms", usage: "SMS conversations: customers' texts (Klaviyo) into Zendesk tickets, agents' replies back by SMS",
		needs:  needs{connections: true, apis: true},
		topics: []string{schemas.SMSEventsTopic, schemas.TicketEventsTopic}, dlq: schemas.SMSEventsDLQTopic,
		groups:   []string{sms.Group, sms.ReplyGroup},
		tables:   []string{sms.ConversationsTopic},
		sections: func(e *env) []validator { return []validator{e.cfg.APIs} },
		build:    buildSMS,
	},
}

// roleNamed returns the role of that name; "all" is every role.
func rolesNamed(name string) []role {
	if name == "all" {
		return roles
	}
	for _, r := range roles {
		if r.name == name {
			return []role{r}
		}
	}
	return nil
}

// replayRoles are the roles whose dead letters land in topic; with "", every role that has
// dead letters.
func replayRoles(topic string) []string {
	var out []string
	for _, r := range roles {
		if r.dlq != "" && (topic == "" || r.dlq == topic) {
			out = append(out, r.name)
		}
	}
	return out
}

// runRoles runs the roles of name ("all", or one role) until ctx ends or one fails.
func runRoles(ctx context.Context, name string, getenv func(string) string, stdout io.Writer) error {
	e, err := newEnv(getenv, stdout, envOptions{})
	if err != nil {
		return err
	}
	defer e.close()
	e.sandboxOK, e.waitForServers = name == "all", true
	run := rolesNamed(name)
	for _, r := range run {
		for _, s := range r.sections(e) {
			if err := s.Validate(); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b := &banner{role: name}
	if err := e.startKafka(ctx, name, run, b); err != nil {
		return err
	}
	// Build every part first; start them only when nothing can fail any more, so a start-up
	// error never leaves a running part behind.
	opts := backend.Options{Registry: e.registry, Ready: map[string]func(context.Context) error{
		"kafka": func(ctx context.Context) error { return kafka.Ping(ctx, e.brokers) },
	}}
	runners := map[string]runner{}
	for _, r := range run {
		if err := e.provide(ctx, r); err != nil {
			return err
		}
		if runners[r.name], err = r.build(ctx, e, &opts, b); err != nil {
			return err
		}
		if r.needs.clickhouse {
			// Only the roles that cannot work without ClickHouse say so in /readyz: the api
			// reads it for the sidebar and the reports, and its outage must not pull the
			// webhook receiver out of a load balancer.
			opts.Ready["clickhouse"] = e.store.Ping
		}
	}
	if err := e.serveStatus(ctx, name, &opts, runners); err != nil {
		return err
	}
	if e.store != nil {
		b.clickhouse = fmt.Sprintf("%s, database %s", e.cfg.ClickHouseAddr, e.cfg.ClickHouseDatabase)
	}
	if e.conns != nil && e.sandbox == nil {
		from := e.cfg.ConnectionsFile
		if from == "" {
			from = "the connections store (" + e.cfg.ConnectionsTopic + ", followed as it changes)"
		}
		b.zendesk = fmt.Sprintf("%d connection(s) from %s", len(e.conns.All()), from)
	}
	return e.serve(ctx, cancel, name, opts, runners, b)
}

// provide makes ready what r needs.
func (e *env) provide(ctx context.Context, r role) error {
	who := r.name + " role"
	if r.needs.connections {
		if _, err := e.connections(ctx, who); err != nil {
			return err
		}
	}
	if r.needs.apis {
		if _, err := e.apis(ctx, who); err != nil {
			return err
		}
	}
	if r.needs.clickhouse {
		if _, err := e.ticketStore(ctx); err != nil {
			return err
		}
	}
	return nil
}

// startKafka finds the brokers (the embedded one for `zenklav all` when none is configured),
// waits for them and creates the roles' topics.
func (e *env) startKafka(ctx context.Context, name string, run []role, b *banner) error {
	e.brokers = e.cfg.KafkaBrokers
	if len(e.brokers) == 0 {
		if name != "all" {
			return errors.New("ZENKLAV_KAFKA_BROKERS is empty: only `zenklav all` runs an embedded broker; point the other roles at Kafka")
		}
		addr, err := e.embeddedKafka()
		if err != nil {
			return err
		}
		e.brokers = []string{addr}
		b.kafka = fmt.Sprintf("embedded broker at %s, data in %s/kafka (set ZENKLAV_KAFKA_BROKERS for a real cluster)", addr, e.cfg.DataDir)
	} else {
		b.kafka = strings.Join(e.brokers, ",")
	}
	if err := kafka.WaitForBrokers(ctx, e.logger, e.brokers); err != nil {
		return err
	}
	var topics []kafka.Topic
	for _, r := range run {
		for _, t := range append(slices.Clone(r.topics), r.dlq) {
			if t != "" && !slices.ContainsFunc(topics, func(x kafka.Topic) bool { return x.Name == t }) {
				topics = append(topics, e.topic(t, false))
			}
		}
		for _, t := range r.tables {
			topics = append(topics, e.topic(t, true))
		}
	}
	return kafka.EnsureTopics(ctx, e.brokers, topics...)
}

// serve listens, starts the roles and the HTTP server, and waits until ctx ends; then it
// stops them all and waits for them before the env closes what they used. A role never
// stops on a dependency that may come back (it waits, and /readyz says so); one that stops
// for good (a configuration error that cannot heal) ends a process that runs only it, but in
// `zenklav all` the others go on, the webhooks keep their answers, and /readyz reports the
// stopped role. Only the HTTP server's failure ends every process.
func (e *env) serve(ctx context.Context, cancel context.CancelCauseFunc, name string, opts backend.Options, runners map[string]runner, b *banner) error {
	opts.Health = e.health
	srv, err := backend.New(e.logger.With("role", "api"), opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", e.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on ZENKLAV_HTTP_ADDR=%s: %w", e.cfg.HTTPAddr, err)
	}
	defer ln.Close()
	b.http, b.routes = "http://"+ln.Addr().String(), srv.Routes()
	e.sandbox.finish(b.http)
	if err := e.servePprof(runners, b); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer func() {
		cancel(nil)
		wg.Wait()
	}()
	wg.Go(func() {
		if err := srv.Serve(ctx, ln); err != nil {
			cancel(fmt.Errorf("http: %w", err))
		}
	})
	for part, run := range runners {
		if run != nil {
			wg.Go(func() { e.runPart(ctx, cancel, part, run, name == "all") })
		}
	}
	b.sandbox = e.sandbox
	b.print(e.stdout)
	e.logger.Info("zenklav started", "role", name, "http", b.http)
	<-ctx.Done()
	e.logger.Info("zenklav stopping", "role", name)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// runPart runs one role until ctx ends. Should it stop before (an error that cannot heal, or
// a runner that returned early, which is a bug), it is reported stopped in /readyz and the
// logs; with others beside it the process goes on, alone it ends.
func (e *env) runPart(ctx context.Context, cancel context.CancelCauseFunc, part string, run runner, others bool) {
	err := run(ctx)
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		err = errors.New("stopped without an error")
	}
	e.health.Part(part).Stopped(err)
	if !others {
		cancel(fmt.Errorf("%s: %w", part, err))
	}
}

// servePprof adds Go's profiler on its own listener when ZENKLAV_PPROF_ADDR asks for it.
// Profiling is an operator's tool: off unless asked for, and never exposed with the webhooks.
func (e *env) servePprof(runners map[string]runner, b *banner) error {
	addr := e.cfg.PprofAddr
	if addr == "" {
		return nil
	}
	pln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on ZENKLAV_PPROF_ADDR=%s: %w", addr, err)
	}
	e.onClose(func() { pln.Close() })
	b.pprof = "http://" + pln.Addr().String() + "/debug/pprof/"
	runners["pprof"] = func(ctx context.Context) error { return servePprof(ctx, pln) }
	return nil
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
