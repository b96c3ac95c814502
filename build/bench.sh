#!/usr/bin/env bash
# `make bench`: the benchmarks, run against the real Kafka and ClickHouse that `make bench`
# starts (ZENKLAV_TEST_KAFKA_BROKERS, ZENKLAV_TEST_CLICKHOUSE_ADDR are exported).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

go test -run='^$' -bench=. -benchmem -count=1 ./...
