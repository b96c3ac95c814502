// Package config reads zenklav's configuration: settings from the environment and the
// connections file that joins Zendesk accounts to Klaviyo accounts. It only loads: the
// types it fills are the domain's (zenklav.Connections) and the sections below, one per
// part of zenklav, each with its own Validate. Only cmd/zenklav imports it.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/auth"
)

// Config is what the environment says, in sections; each role reads the sections it
// needs (the role table in cmd/zenklav says which).
type Config struct {
	Server
	Kafka
	ClickHouse
	APIs
	Sink
	Emitter
	Tokens
	Setup
	ConnectionsFile string     // ZENKLAV_CONNECTIONS_FILE; empty = sandbox mode
	DataDir         string     // ZENKLAV_DATA_DIR, where the embedded broker and backfill keep state
	LogLevel        slog.Level // ZENKLAV_LOG_LEVEL
}

// Server is the HTTP listener's section.
type Server struct {
	HTTPAddr  string // ZENKLAV_HTTP_ADDR
	PprofAddr string // ZENKLAV_PPROF_ADDR; empty = no profiler
	// HTTPMaxInflightBytes (ZENKLAV_HTTP_MAX_INFLIGHT_BYTES) bounds the bytes that webhook
	// bodies in flight hold; past it webhooks are answered 503 with Retry-After, unread. The
	// default, 32 MiB, holds some 10,000 of Zendesk's webhooks of a few KB at once (the
	// ingest bench's 7,000 a second keep 32 in flight); with 1,000 hostile clients sending
	// 1 MiB bodies it kept `zenklav api` at 113–120 MB, where 64 MiB took 131–162 MB and
	// 128 MiB 172–220 MB and let valid webhooks time out (docs/benchmarks.md).
	HTTPMaxInflightBytes int
}

// minInflightBytes is four of the largest webhooks (1 MiB): the biggest bodies may hold a
// quarter of the budget, and a quarter that cannot hold one would refuse them all.
const minInflightBytes = 4 << 20

// Validate checks the section.
func (s Server) Validate() error {
	switch {
	case s.HTTPAddr == "":
		return errors.New("ZENKLAV_HTTP_ADDR is empty")
	case s.HTTPMaxInflightBytes < minInflightBytes:
		return fmt.Errorf("ZENKLAV_HTTP_MAX_INFLIGHT_BYTES=%d is under %d (four of the largest webhooks, 1 MiB each)", s.HTTPMaxInflightBytes, minInflightBytes)
	}
	return nil
}

// Kafka is the event log's section.
type Kafka struct {
	KafkaBrokers []string // ZENKLAV_KAFKA_BROKERS, comma separated; empty = embedded broker
	// TopicPartitions (ZENKLAV_TOPIC_PARTITIONS) is used when zenklav creates its topics. It
	// caps how many members of a consumer group share the work, but every partition also
	// costs the producer one Kafka request per batch window: with kafka-go's per-partition
	// batches, 12 partitions ingested about 3,000 webhooks/s on 2 cores where 4 did 4,000.
	TopicPartitions   int
	EmbeddedKafkaPort int // ZENKLAV_EMBEDDED_KAFKA_PORT; 0 = any free port
	// ReplicationFactor (ZENKLAV_KAFKA_REPLICATION_FACTOR) and MinInsyncReplicas
	// (ZENKLAV_KAFKA_MIN_INSYNC_REPLICAS) are used when zenklav creates its topics; 0 = chosen
	// from the cluster then: as many replicas as brokers, up to 3, and min.insync.replicas one
	// less (at least 1), so that with the producer's acks=all one broker lost loses no
	// acknowledged webhook and stops none (docs/clusters.md).
	ReplicationFactor int
	MinInsyncReplicas int
}

// Validate checks the section.
func (k Kafka) Validate() error {
	switch {
	case k.EmbeddedKafkaPort < 0 || k.EmbeddedKafkaPort > 65535:
		return fmt.Errorf("ZENKLAV_EMBEDDED_KAFKA_PORT=%d is not a port", k.EmbeddedKafkaPort)
	case k.TopicPartitions < 1 || k.TopicPartitions > 1000:
		return fmt.Errorf("ZENKLAV_TOPIC_PARTITIONS=%d is outside 1..1000", k.TopicPartitions)
	case k.ReplicationFactor < 0 || k.ReplicationFactor > 32767:
		return fmt.Errorf("ZENKLAV_KAFKA_REPLICATION_FACTOR=%d is outside 0..32767 (0 = as many brokers as the cluster has, up to 3)", k.ReplicationFactor)
	case k.MinInsyncReplicas < 0:
		return fmt.Errorf("ZENKLAV_KAFKA_MIN_INSYNC_REPLICAS=%d is negative (0 = one less than the replication factor, at least 1)", k.MinInsyncReplicas)
	case k.ReplicationFactor > 0 && k.MinInsyncReplicas > k.ReplicationFactor:
		return fmt.Errorf("ZENKLAV_KAFKA_MIN_INSYNC_REPLICAS=%d is more than ZENKLAV_KAFKA_REPLICATION_FACTOR=%d: Kafka could acknowledge no write",
			k.MinInsyncReplicas, k.ReplicationFactor)
	}
	return nil
}

// ClickHouse is the ticket store's section.
type ClickHouse struct {
	ClickHouseAddr     string         // ZENKLAV_CLICKHOUSE_ADDR, host:port of the native protocol
	ClickHouseDatabase string         // ZENKLAV_CLICKHOUSE_DATABASE
	ClickHouseUser     string         // ZENKLAV_CLICKHOUSE_USER
	ClickHousePassword zenklav.Secret // ZENKLAV_CLICKHOUSE_PASSWORD
	ClickHouseCluster  string         // ZENKLAV_CLICKHOUSE_CLUSTER, a cluster of remote_servers; empty = one server
}

// Validate checks that a ClickHouse is named: every role that has this section needs one.
func (c ClickHouse) Validate() error {
	if c.ClickHouseAddr == "" {
		return errors.New("ZENKLAV_CLICKHOUSE_ADDR is empty: `make run` starts a local ClickHouse for you; " +
			"otherwise point zenklav at an existing server with ZENKLAV_CLICKHOUSE_ADDR=host:9000 (native protocol)")
	}
	return nil
}

// APIs says where Zendesk's and Klaviyo's APIs are.
type APIs struct {
	KlaviyoBaseURL string // ZENKLAV_KLAVIYO_BASE_URL
	ZendeskBaseURL string // ZENKLAV_ZENDESK_BASE_URL, may contain {subdomain}
}

// Validate checks the section.
func (a APIs) Validate() error {
	switch {
	case !strings.HasPrefix(a.KlaviyoBaseURL, "http://") && !strings.HasPrefix(a.KlaviyoBaseURL, "https://"):
		return fmt.Errorf("ZENKLAV_KLAVIYO_BASE_URL=%q is not an http(s) URL", a.KlaviyoBaseURL)
	case !strings.HasPrefix(a.ZendeskBaseURL, "http://") && !strings.HasPrefix(a.ZendeskBaseURL, "https://"):
		return fmt.Errorf("ZENKLAV_ZENDESK_BASE_URL=%q is not an http(s) URL", a.ZendeskBaseURL)
	}
	return nil
}

// ZendeskURL is the API base of one Zendesk account.
func (a APIs) ZendeskURL(subdomain string) string {
	return strings.ReplaceAll(a.ZendeskBaseURL, "{subdomain}", subdomain)
}

// Sink is the sink role's section.
type Sink struct {
	SinkBatchSize int           // ZENKLAV_SINK_BATCH_SIZE
	SinkBatchWait time.Duration // ZENKLAV_SINK_BATCH_WAIT
}

// Validate checks the section.
func (s Sink) Validate() error {
	switch {
	case s.SinkBatchSize < 1 || s.SinkBatchSize > 1_000_000:
		return fmt.Errorf("ZENKLAV_SINK_BATCH_SIZE=%d is outside 1..1000000", s.SinkBatchSize)
	case s.SinkBatchWait <= 0:
		return fmt.Errorf("ZENKLAV_SINK_BATCH_WAIT must be positive")
	}
	return nil
}

// Emitter is the emitter role's section.
type Emitter struct {
	// EmitterRetryFor (ZENKLAV_EMITTER_RETRY_FOR) is how long the emitter retries a Klaviyo
	// or Zendesk failure that may pass (5xx, timeouts, 429, a key being fixed) before the
	// event goes to the dead-letter topic for `zenklav replay`.
	EmitterRetryFor time.Duration
	// EmitterBackfillAfter (ZENKLAV_EMITTER_BACKFILL_AFTER) is the age past which the emitter
	// sends a metric as a Klaviyo backfill: recorded, but triggering no flows.
	EmitterBackfillAfter time.Duration
}

// Validate checks the section.
func (e Emitter) Validate() error {
	switch {
	case e.EmitterRetryFor <= 0:
		return fmt.Errorf("ZENKLAV_EMITTER_RETRY_FOR must be positive")
	case e.EmitterBackfillAfter <= 0:
		return fmt.Errorf("ZENKLAV_EMITTER_BACKFILL_AFTER must be positive")
	}
	return nil
}

// Tokens is the section of the tokens zenklav signs (sidebar sessions, report tokens).
type Tokens struct {
	JWTSigningKey zenklav.Secret // ZENKLAV_JWT_SIGNING_KEY: the current key's secret (JWTKeys[0])
	// JWTKeys are the keys of ZENKLAV_JWT_SIGNING_KEY, current first: tokens are signed with
	// the first and verified with any listed, so keys rotate without downtime.
	JWTKeys []auth.SigningKey
	// SecretsKey is ZENKLAV_SECRETS_KEY: the keys that seal the connections' secrets in the
	// connections store (seal.ParseKeyring reads it), the sealing one first.
	SecretsKey zenklav.Secret
	// ConnectionsTopic is ZENKLAV_CONNECTIONS_TOPIC: the compacted topic of the connections
	// store (connstore.Topic by default).
	ConnectionsTopic string
}

// Setup is the section of connecting accounts: the /admin wizard and `zenklav setup`, and the
// refreshing of the OAuth grants they make.
type Setup struct {
	// PublicURL (ZENKLAV_PUBLIC_URL) is where Zendesk and Klaviyo reach zenklav's webhooks,
	// e.g. https://zenklav.example.com: setup points the webhooks it makes at it.
	PublicURL string
	// ZendeskOAuthClientID and ZendeskOAuthClientSecret (ZENKLAV_ZENDESK_OAUTH_CLIENT_ID,
	// …_SECRET) are the operator's global OAuth client at Zendesk, for "Connect with
	// Zendesk" in any account; empty: Zendesk is connected with an API token.
	ZendeskOAuthClientID     string
	ZendeskOAuthClientSecret zenklav.Secret
	// KlaviyoOAuthClientID and KlaviyoOAuthClientSecret (ZENKLAV_KLAVIYO_OAUTH_CLIENT_ID,
	// …_SECRET) are zenklav's app at Klaviyo; empty: Klaviyo is connected with a private key.
	KlaviyoOAuthClientID     string
	KlaviyoOAuthClientSecret zenklav.Secret
	// KlaviyoOAuthURL (ZENKLAV_KLAVIYO_OAUTH_URL) is where the admin's browser approves
	// zenklav ({KlaviyoOAuthURL}/oauth/authorize); the token calls go to KlaviyoBaseURL.
	KlaviyoOAuthURL string
}

// Validate checks what setting a connection up needs: where zenklav is reached, and the
// OAuth clients as far as they are given.
func (s Setup) Validate() error {
	if s.PublicURL == "" {
		return errors.New("ZENKLAV_PUBLIC_URL is empty: set it to the address Zendesk and Klaviyo reach zenklav's webhooks at, " +
			"e.g. https://zenklav.example.com")
	}
	return s.check()
}

// check checks the settings that are given; none is required.
func (s Setup) check() error {
	var errs []error
	if s.PublicURL != "" {
		if err := checkBaseURL(s.PublicURL); err != nil {
			errs = append(errs, fmt.Errorf("ZENKLAV_PUBLIC_URL=%q %w", redacted(s.PublicURL), err))
		}
	}
	if err := checkBaseURL(s.KlaviyoOAuthURL); err != nil {
		errs = append(errs, fmt.Errorf("ZENKLAV_KLAVIYO_OAUTH_URL=%q %w", s.KlaviyoOAuthURL, err))
	}
	errs = append(errs,
		checkClient("ZENKLAV_ZENDESK_OAUTH_CLIENT", s.ZendeskOAuthClientID, s.ZendeskOAuthClientSecret),
		checkClient("ZENKLAV_KLAVIYO_OAUTH_CLIENT", s.KlaviyoOAuthClientID, s.KlaviyoOAuthClientSecret))
	return errors.Join(errs...)
}

// checkBaseURL says what keeps u from being the base of zenklav's or an API's addresses.
func checkBaseURL(u string) error {
	p, err := url.Parse(u)
	switch {
	case err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "":
		return errors.New("is not an absolute http(s) URL")
	case p.User != nil || p.RawQuery != "" || p.Fragment != "":
		return errors.New("must be a base URL, without credentials, query or fragment")
	}
	return nil
}

// redacted is u with the password it may hold masked, to be quoted in a message.
func redacted(u string) string {
	p, err := url.Parse(u)
	switch {
	case err == nil && p.User != nil:
		return p.Redacted()
	case err != nil && strings.Contains(u, "@"):
		return "[redacted]" // it may hold credentials that did not parse
	}
	return u
}

// checkClient checks an OAuth client's id and secret (ZENKLAV_…_ID and ZENKLAV_…_SECRET):
// both or neither. The secret is never quoted.
func checkClient(prefix, id string, secret zenklav.Secret) error {
	switch {
	case id == "" && secret != "":
		return fmt.Errorf("%s_SECRET is set but %s_ID is empty: give both, or neither", prefix, prefix)
	case id != "" && secret == "":
		return fmt.Errorf("%s_ID is set but %s_SECRET is empty: give both, or neither", prefix, prefix)
	case strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("%s_ID has spaces or control characters", prefix)
	}
	return nil
}

// FromEnv reads the configuration through getenv, with defaults for what is unset, and
// checks every section but ClickHouse's, which only the roles that use it require.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Server: Server{
			HTTPAddr: cmp.Or(getenv("ZENKLAV_HTTP_ADDR"), "127.0.0.1:8080"), PprofAddr: getenv("ZENKLAV_PPROF_ADDR"),
			HTTPMaxInflightBytes: 32 << 20,
		},
		Kafka: Kafka{TopicPartitions: 4},
		ClickHouse: ClickHouse{
			ClickHouseAddr:     getenv("ZENKLAV_CLICKHOUSE_ADDR"),
			ClickHouseDatabase: cmp.Or(getenv("ZENKLAV_CLICKHOUSE_DATABASE"), "zenklav"),
			ClickHouseUser:     cmp.Or(getenv("ZENKLAV_CLICKHOUSE_USER"), "default"),
			ClickHousePassword: zenklav.Secret(getenv("ZENKLAV_CLICKHOUSE_PASSWORD")),
			ClickHouseCluster:  getenv("ZENKLAV_CLICKHOUSE_CLUSTER"),
		},
		APIs: APIs{
			KlaviyoBaseURL: cmp.Or(getenv("ZENKLAV_KLAVIYO_BASE_URL"), "https://a.klaviyo.com"),
			ZendeskBaseURL: cmp.Or(getenv("ZENKLAV_ZENDESK_BASE_URL"), "https://{subdomain}.zendesk.com"),
		},
		Sink:    Sink{SinkBatchSize: 50_000, SinkBatchWait: time.Second},
		Emitter: Emitter{EmitterRetryFor: 15 * time.Minute, EmitterBackfillAfter: time.Hour},
		Setup: Setup{
			PublicURL:                getenv("ZENKLAV_PUBLIC_URL"),
			ZendeskOAuthClientID:     getenv("ZENKLAV_ZENDESK_OAUTH_CLIENT_ID"),
			ZendeskOAuthClientSecret: zenklav.Secret(getenv("ZENKLAV_ZENDESK_OAUTH_CLIENT_SECRET")),
			KlaviyoOAuthClientID:     getenv("ZENKLAV_KLAVIYO_OAUTH_CLIENT_ID"),
			KlaviyoOAuthClientSecret: zenklav.Secret(getenv("ZENKLAV_KLAVIYO_OAUTH_CLIENT_SECRET")),
			KlaviyoOAuthURL:          cmp.Or(getenv("ZENKLAV_KLAVIYO_OAUTH_URL"), "https://www.klaviyo.com"),
		},
		ConnectionsFile: getenv("ZENKLAV_CONNECTIONS_FILE"),
		DataDir:         cmp.Or(getenv("ZENKLAV_DATA_DIR"), ".data/run"),
	}
	if err := c.LogLevel.UnmarshalText([]byte(cmp.Or(getenv("ZENKLAV_LOG_LEVEL"), "info"))); err != nil {
		return c, fmt.Errorf("ZENKLAV_LOG_LEVEL: %w", err)
	}
	keys, err := ParseSigningKeys(getenv("ZENKLAV_JWT_SIGNING_KEY"))
	if err != nil {
		return c, err
	}
	c.SetSigningKeys(keys)
	c.SecretsKey = zenklav.Secret(getenv("ZENKLAV_SECRETS_KEY"))
	c.ConnectionsTopic = cmp.Or(getenv("ZENKLAV_CONNECTIONS_TOPIC"), "connections.v1")
	for _, b := range strings.Split(getenv("ZENKLAV_KAFKA_BROKERS"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.KafkaBrokers = append(c.KafkaBrokers, b)
		}
	}
	err = errors.Join(
		intEnv(getenv, "ZENKLAV_EMBEDDED_KAFKA_PORT", &c.EmbeddedKafkaPort),
		intEnv(getenv, "ZENKLAV_HTTP_MAX_INFLIGHT_BYTES", &c.HTTPMaxInflightBytes),
		intEnv(getenv, "ZENKLAV_SINK_BATCH_SIZE", &c.SinkBatchSize),
		intEnv(getenv, "ZENKLAV_TOPIC_PARTITIONS", &c.TopicPartitions),
		intEnv(getenv, "ZENKLAV_KAFKA_REPLICATION_FACTOR", &c.ReplicationFactor),
		intEnv(getenv, "ZENKLAV_KAFKA_MIN_INSYNC_REPLICAS", &c.MinInsyncReplicas),
		durationEnv(getenv, "ZENKLAV_SINK_BATCH_WAIT", &c.SinkBatchWait),
		durationEnv(getenv, "ZENKLAV_EMITTER_RETRY_FOR", &c.EmitterRetryFor),
		durationEnv(getenv, "ZENKLAV_EMITTER_BACKFILL_AFTER", &c.EmitterBackfillAfter),
	)
	if err != nil {
		return c, err
	}
	return c, errors.Join(c.Server.Validate(), c.Kafka.Validate(), c.APIs.Validate(), c.Sink.Validate(), c.Emitter.Validate(), c.Setup.check())
}

// durationEnv sets *d from the environment variable name when it is set.
func durationEnv(getenv func(string) string, name string, d *time.Duration) error {
	v := getenv(name)
	if v == "" {
		return nil
	}
	parsed, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%s=%q is not a duration such as 500ms or 15m", name, v)
	}
	*d = parsed
	return nil
}

func intEnv(getenv func(string) string, name string, dst *int) error {
	v := getenv(name)
	if v == "" {
		return nil
	}
	var n int
	if _, err := fmt.Sscanf(v, "%d", &n); err != nil || fmt.Sprint(n) != v {
		return fmt.Errorf("%s=%q is not a whole number", name, v)
	}
	*dst = n
	return nil
}
