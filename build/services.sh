#!/usr/bin/env bash
# Starts and stops the real servers the integration tests need: Apache Kafka (single KRaft
# node) and ClickHouse, both on 127.0.0.1, with their data under .data/test.
#
#   build/services.sh start         install what is missing, start both (fresh data), print the env
#   build/services.sh stop          stop both
#   build/services.sh run CMD ...   start both, run CMD with the env exported, stop both
#                                   whatever happened; exit with CMD's status
#   build/services.sh env           print the env vars the tests read
#
# Ports (environment, with defaults): TEST_KAFKA_PORT=19092, TEST_KAFKA_CONTROLLER_PORT=19093,
# TEST_CLICKHOUSE_PORT=19000, TEST_CLICKHOUSE_HTTP_PORT=18123. TEST_DATA (default .data/test).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BUILD="$ROOT/build"
DATA=${TEST_DATA:-"$ROOT/.data/test"}
KAFKA_PORT=${TEST_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${TEST_KAFKA_CONTROLLER_PORT:-19093}
CH_PORT=${TEST_CLICKHOUSE_PORT:-19000}
CH_HTTP_PORT=${TEST_CLICKHOUSE_HTTP_PORT:-18123}

log() { printf 'services: %s\n' "$*" >&2; }

print_env() {
	cat <<EOF
export ZENKLAV_TEST_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export ZENKLAV_TEST_CLICKHOUSE_ADDR=127.0.0.1:$CH_PORT
EOF
}

export_env() {
	export ZENKLAV_TEST_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
	export ZENKLAV_TEST_CLICKHOUSE_ADDR="127.0.0.1:$CH_PORT"
}

cmd_stop() {
	local rc=0
	# Both in parallel: Kafka takes a couple of seconds to shut down cleanly.
	bash "$BUILD/kafka.sh" stop "$DATA/kafka" & local k=$!
	bash "$BUILD/clickhouse.sh" stop "$DATA/clickhouse" || rc=1
	wait "$k" || rc=1
	return "$rc"
}

cmd_start() {
	bash "$BUILD/clickhouse.sh" install
	bash "$BUILD/kafka.sh" jars
	# Each start gets fresh servers: stop leftovers from an earlier run, then wipe their data.
	cmd_stop
	rm -rf "$DATA/kafka" "$DATA/clickhouse"
	mkdir -p "$DATA"
	# ClickHouse is ready in under a second; Kafka's JVM takes a few. Start them side by side.
	bash "$BUILD/kafka.sh" start "$DATA/kafka" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" & local k=$!
	local rc=0
	bash "$BUILD/clickhouse.sh" start "$DATA/clickhouse" "$CH_PORT" "$CH_HTTP_PORT" || rc=1
	wait "$k" || rc=1
	if [ "$rc" -ne 0 ]; then
		log "could not start the test servers"
		cmd_stop || true
		return 1
	fi
}

cmd_run() {
	[ $# -gt 0 ] || { log "usage: $0 run CMD [ARG...]"; exit 2; }
	trap 'cmd_stop || true' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	cmd_start
	export_env
	print_env >&2
	local rc=0
	"$@" || rc=$?
	exit "$rc"
}

case "${1:-}" in
start)
	cmd_start
	print_env
	log "run the tests with the lines above exported; stop the servers with 'make services-stop'"
	;;
stop) cmd_stop ;;
run) shift; cmd_run "$@" ;;
env) print_env ;;
*) log "usage: $0 start | stop | run CMD [ARG...] | env"; exit 2 ;;
esac
