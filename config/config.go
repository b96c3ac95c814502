// Package config reads zenklav's configuration: settings from the environment and the
// connections file that joins Zendesk accounts to Klaviyo accounts.
package config

import (
	"cmp"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/zenklav/zenklav"
	"github.com/zenklav/zenklav/auth"
)

// Config is what the environment says. Each role reads the part it needs.
type Config struct {
	HTTPAddr           string         // ZENKLAV_HTTP_ADDR
	KafkaBrokers       []string       // ZENKLAV_KAFKA_BROKERS, comma separated; empty = embedded broker
	ClickHouseAddr     string         // ZENKLAV_CLICKHOUSE_ADDR, host:port of the native protocol
	ClickHouseDatabase string         // ZENKLAV_CLICKHOUSE_DATABASE
	ClickHouseUser     string         // ZENKLAV_CLICKHOUSE_USER
	ClickHousePassword zenklav.Secret // ZENKLAV_CLICKHOUSE_PASSWORD
	KlaviyoBaseURL     string         // ZENKLAV_KLAVIYO_BASE_URL
	ZendeskBaseURL     string         // ZENKLAV_ZENDESK_BASE_URL, may contain {subdomain}
	ConnectionsFile    string         // ZENKLAV_CONNECTIONS_FILE; empty = sandbox mode
	JWTSigningKey      zenklav.Secret // ZENKLAV_JWT_SIGNING_KEY: the current key's secret (JWTKeys[0])
	SinkBatchSize      int            // ZENKLAV_SINK_BATCH_SIZE
	SinkBatchWait      time.Duration  // ZENKLAV_SINK_BATCH_WAIT
	// JWTKeys are the keys of ZENKLAV_JWT_SIGNING_KEY, current first: tokens are signed with
	// the first and verified with any listed, so keys rotate without downtime.
	JWTKeys []auth.SigningKey
	// EmitterRetryFor (ZENKLAV_EMITTER_RETRY_FOR) is how long the emitter retries a Klaviyo
	// or Zendesk failure that may pass (5xx, timeouts, 429, a key being fixed) before the
	// event goes to the dead-letter topic for `zenklav replay`.
	EmitterRetryFor time.Duration
	// EmitterBackfillAfter (ZENKLAV_EMITTER_BACKFILL_AFTER) is the age past which the emitter
	// sends a metric as a Klaviyo backfill: recorded, but triggering no flows.
	EmitterBackfillAfter time.Duration
	// TopicPartitions (ZENKLAV_TOPIC_PARTITIONS) is used when zenklav creates its topics. It
	// caps how many members of a consumer group share the work, but every partition also
	// costs the producer one Kafka request per batch window: with kafka-go's per-partition
	// batches, 12 partitions ingested about 3,000 webhooks/s on 2 cores where 4 did 4,000.
	TopicPartitions   int
	DataDir           string     // ZENKLAV_DATA_DIR, where the embedded broker keeps its log
	EmbeddedKafkaPort int        // ZENKLAV_EMBEDDED_KAFKA_PORT; 0 = any free port
	LogLevel          slog.Level // ZENKLAV_LOG_LEVEL
	PprofAddr         string     // ZENKLAV_PPROF_ADDR; empty = no profiler
}

// FromEnv reads the configuration through getenv, with defaults for what is unset.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		HTTPAddr:             cmp.Or(getenv("ZENKLAV_HTTP_ADDR"), "127.0.0.1:8080"),
		ClickHouseAddr:       getenv("ZENKLAV_CLICKHOUSE_ADDR"),
		ClickHouseDatabase:   cmp.Or(getenv("ZENKLAV_CLICKHOUSE_DATABASE"), "zenklav"),
		ClickHouseUser:       cmp.Or(getenv("ZENKLAV_CLICKHOUSE_USER"), "default"),
		ClickHousePassword:   zenklav.Secret(getenv("ZENKLAV_CLICKHOUSE_PASSWORD")),
		KlaviyoBaseURL:       cmp.Or(getenv("ZENKLAV_KLAVIYO_BASE_URL"), "https://a.klaviyo.com"),
		ZendeskBaseURL:       cmp.Or(getenv("ZENKLAV_ZENDESK_BASE_URL"), "https://{subdomain}.zendesk.com"),
		ConnectionsFile:      getenv("ZENKLAV_CONNECTIONS_FILE"),
		SinkBatchSize:        50_000,
		SinkBatchWait:        time.Second,
		EmitterRetryFor:      15 * time.Minute,
		EmitterBackfillAfter: time.Hour,
		TopicPartitions:      4,
		DataDir:              cmp.Or(getenv("ZENKLAV_DATA_DIR"), ".data/run"),
		PprofAddr:            getenv("ZENKLAV_PPROF_ADDR"),
	}
	if err := c.LogLevel.UnmarshalText([]byte(cmp.Or(getenv("ZENKLAV_LOG_LEVEL"), "info"))); err != nil {
		return c, fmt.Errorf("ZENKLAV_LOG_LEVEL: %w", err)
	}
	keys, err := ParseSigningKeys(getenv("ZENKLAV_JWT_SIGNING_KEY"))
	if err != nil {
		return c, err
	}
	c.SetSigningKeys(keys)
	if err := intEnv(getenv, "ZENKLAV_EMBEDDED_KAFKA_PORT", &c.EmbeddedKafkaPort); err != nil {
		return c, err
	}
	for _, b := range strings.Split(getenv("ZENKLAV_KAFKA_BROKERS"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.KafkaBrokers = append(c.KafkaBrokers, b)
		}
	}
	if err := intEnv(getenv, "ZENKLAV_SINK_BATCH_SIZE", &c.SinkBatchSize); err != nil {
		return c, err
	}
	if err := intEnv(getenv, "ZENKLAV_TOPIC_PARTITIONS", &c.TopicPartitions); err != nil {
		return c, err
	}
	if err := durationEnv(getenv, "ZENKLAV_SINK_BATCH_WAIT", &c.SinkBatchWait); err != nil {
		return c, err
	}
	if err := durationEnv(getenv, "ZENKLAV_EMITTER_RETRY_FOR", &c.EmitterRetryFor); err != nil {
		return c, err
	}
	if err := durationEnv(getenv, "ZENKLAV_EMITTER_BACKFILL_AFTER", &c.EmitterBackfillAfter); err != nil {
		return c, err
	}
	return c, c.Validate()
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

// Validate fails fast, with a message that names the setting, on a value that cannot work.
func (c Config) Validate() error {
	switch {
	case c.HTTPAddr == "":
		return fmt.Errorf("ZENKLAV_HTTP_ADDR is empty")
	case c.SinkBatchSize < 1 || c.SinkBatchSize > 1_000_000:
		return fmt.Errorf("ZENKLAV_SINK_BATCH_SIZE=%d is outside 1..1000000", c.SinkBatchSize)
	case c.SinkBatchWait <= 0:
		return fmt.Errorf("ZENKLAV_SINK_BATCH_WAIT must be positive")
	case c.EmitterRetryFor <= 0:
		return fmt.Errorf("ZENKLAV_EMITTER_RETRY_FOR must be positive")
	case c.EmitterBackfillAfter <= 0:
		return fmt.Errorf("ZENKLAV_EMITTER_BACKFILL_AFTER must be positive")
	case c.EmbeddedKafkaPort < 0 || c.EmbeddedKafkaPort > 65535:
		return fmt.Errorf("ZENKLAV_EMBEDDED_KAFKA_PORT=%d is not a port", c.EmbeddedKafkaPort)
	case c.TopicPartitions < 1 || c.TopicPartitions > 1000:
		return fmt.Errorf("ZENKLAV_TOPIC_PARTITIONS=%d is outside 1..1000", c.TopicPartitions)
	case !strings.HasPrefix(c.KlaviyoBaseURL, "http://") && !strings.HasPrefix(c.KlaviyoBaseURL, "https://"):
		return fmt.Errorf("ZENKLAV_KLAVIYO_BASE_URL=%q is not an http(s) URL", c.KlaviyoBaseURL)
	case !strings.HasPrefix(c.ZendeskBaseURL, "http://") && !strings.HasPrefix(c.ZendeskBaseURL, "https://"):
		return fmt.Errorf("ZENKLAV_ZENDESK_BASE_URL=%q is not an http(s) URL", c.ZendeskBaseURL)
	}
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
