// Package testenv finds the real Kafka and ClickHouse servers that `make test` starts.
// Locally a test may skip when they are absent; with CI set, absence fails the test, so an
// integration test can never pass by not running.
package testenv

import (
	"os"
	"testing"
)

// Environment variables that `make test` sets.
const (
	KafkaEnv      = "ZENKLAV_TEST_KAFKA_BROKERS"
	ClickHouseEnv = "ZENKLAV_TEST_CLICKHOUSE_ADDR"
)

// Kafka returns the broker list of the test Kafka.
func Kafka(t testing.TB) string { return need(t, KafkaEnv, "Kafka") }

// ClickHouse returns the native-protocol address of the test ClickHouse.
func ClickHouse(t testing.TB) string { return need(t, ClickHouseEnv, "ClickHouse") }

func need(t testing.TB, env, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v != "" {
		return v
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required in CI but %s is not set: run the tests through `make test`", what, env)
	}
	t.Skipf("%s not set: run through `make test` for the %s integration tests", env, what)
	return ""
}
