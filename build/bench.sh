#!/usr/bin/env bash
# `make bench`: the measurements of docs/benchmarks.md, against the real Kafka and ClickHouse
# that `make bench` starts (ZENKLAV_TEST_KAFKA_BROKERS, ZENKLAV_TEST_CLICKHOUSE_ADDR exported).
# Loopback only. Prints Markdown table rows.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${ZENKLAV_TEST_KAFKA_BROKERS:?run through make bench}" "${ZENKLAV_TEST_CLICKHOUSE_ADDR:?run through make bench}"
BENCH_WEBHOOKS=${BENCH_WEBHOOKS:-100000}
BENCH_SENDERS=${BENCH_SENDERS:-32}
BENCH_SINK_EVENTS=${BENCH_SINK_EVENTS:-1000000}
BENCH_HTTP=${BENCH_HTTP:-127.0.0.1:18090}
BENCH_LATENCY_RATE=${BENCH_LATENCY_RATE:-150}
BENCH_DRAIN_EVENTS=${BENCH_DRAIN_EVENTS:-100000}
BENCH_DRAIN_ACCOUNTS=${BENCH_DRAIN_ACCOUNTS:-10}
# Per account in the run with BENCH_DRAIN_ACCOUNTS: 10 × 50,000 takes about a minute here,
# where the machine, not Klaviyo's limit, sets the pace.
BENCH_DRAIN_EVENTS_PER_ACCOUNT=${BENCH_DRAIN_EVENTS_PER_ACCOUNT:-50000}
# Cold sidebar cards, paced under each Klaviyo account's segments limit (about 20 s).
BENCH_SIDEBAR_CARDS=${BENCH_SIDEBAR_CARDS:-200}
# Hostile clients (issue 13): connections posting 1 MiB bodies with wrong signatures, beside
# valid webhooks at BENCH_HOSTILE_RATE a second for BENCH_HOSTILE_DURATION.
BENCH_HOSTILE_CONNS=${BENCH_HOSTILE_CONNS:-1000}
BENCH_HOSTILE_RATE=${BENCH_HOSTILE_RATE:-50}
BENCH_HOSTILE_DURATION=${BENCH_HOSTILE_DURATION:-30s}
# SMS conversations (issue 14): texts at BENCH_SMS_TEXT_RATE a second, replies at 0.5/s, then
# BENCH_SMS_BURST customers texting at once and BENCH_SMS_REPLY_BURST replies at once. About
# 4 minutes: the burst waits for Zendesk's 700 requests a minute, the replies for Klaviyo's 60.
BENCH_SMS_TEXTS=${BENCH_SMS_TEXTS:-200}
BENCH_SMS_TEXT_RATE=${BENCH_SMS_TEXT_RATE:-5}
BENCH_SMS_REPLIES=${BENCH_SMS_REPLIES:-20}
BENCH_SMS_BURST=${BENCH_SMS_BURST:-500}
BENCH_SMS_REPLY_BURST=${BENCH_SMS_REPLY_BURST:-60}
# Connections at run time (issue 15): BENCH_CONNECTIONS stored connections.
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-1000}

# bench_sms: SMS conversations through `zenklav api` and `zenklav sms`, two processes that
# loadgen starts against the real Kafka and the Zendesk and Klaviyo simulators it serves.
# `BENCH_ONLY=sms build/bench.sh` runs this section alone.
bench_sms() {
	bin/loadgen sms -brokers "$ZENKLAV_TEST_KAFKA_BROKERS" -clickhouse "$ZENKLAV_TEST_CLICKHOUSE_ADDR" -http "$BENCH_HTTP" \
		-texts "$BENCH_SMS_TEXTS" -customers 50 -text-rate "$BENCH_SMS_TEXT_RATE" -replies "$BENCH_SMS_REPLIES" -reply-rate 0.5 \
		-burst "$BENCH_SMS_BURST" -reply-burst "$BENCH_SMS_REPLY_BURST"
}
# bench_connections: a fresh connections store filled by `zenklav connections apply`, the
# start-up time and memory of `zenklav all` with 1 and with BENCH_CONNECTIONS stored
# connections, and from applying a new one to its first webhook accepted by that `zenklav all`
# and a `zenklav api` beside it (issue 15's target: ≤ 5 s). `BENCH_ONLY=connections
# build/bench.sh` runs this section alone.
bench_connections() {
	bin/loadgen connections -brokers "$ZENKLAV_TEST_KAFKA_BROKERS" -clickhouse "$ZENKLAV_TEST_CLICKHOUSE_ADDR" -http "$BENCH_HTTP" \
		-n "$BENCH_CONNECTIONS" -starts 3 -repeats 3
}
# bench_cluster: issue 16's cluster figures. loadgen starts a Kafka cluster of its own (3 KRaft
# brokers on loopback, internal/testenv's StartKafkaCluster) and runs 1, then 2, replicas of
# `zenklav api`, `zenklav sink` and `zenklav emitter` (10 Klaviyo accounts) against it and a
# ClickHouse database of its own, then kills the broker leading partition 0 of ticket-events.v1
# while webhooks flow. About 5 minutes. `BENCH_ONLY=cluster build/bench.sh` runs it alone.
BENCH_CLUSTER_WEBHOOKS=${BENCH_CLUSTER_WEBHOOKS:-40000}
BENCH_CLUSTER_SINK_EVENTS=${BENCH_CLUSTER_SINK_EVENTS:-500000}
BENCH_CLUSTER_EVENTS_PER_ACCOUNT=${BENCH_CLUSTER_EVENTS_PER_ACCOUNT:-20000}
bench_cluster() {
	bin/loadgen cluster -clickhouse "$ZENKLAV_TEST_CLICKHOUSE_ADDR" -nodes 3 \
		-webhooks "$BENCH_CLUSTER_WEBHOOKS" -warmup 20000 -c "$BENCH_SENDERS" -sink-events "$BENCH_CLUSTER_SINK_EVENTS" \
		-accounts "$BENCH_DRAIN_ACCOUNTS" -n "$BENCH_CLUSTER_EVENTS_PER_ACCOUNT" -kill-rate 100 -kill-for 40s
	# A ClickHouse replica killed while the fold writes, and restarted: analytics' TestCluster on
	# ZooKeeper and 2 shards × 2 replicas of its own (about a minute), its row only.
	bash build/zookeeper.sh jars >/dev/null
	ZENKLAV_TEST_CLICKHOUSE_CLUSTER=1 go test -count=1 -run 'TestCluster$' -v ./analytics | grep -o '| ClickHouse replica killed.*'
}
header() {
	echo "== Measurements on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "| measurement | load | rate | latency / notes |"
	echo "|---|---|---|---|"
}
case "${BENCH_ONLY:-}" in
sms | connections | cluster)
	go build -o bin/zenklav ./cmd/zenklav
	go build -o bin/loadgen ./build/loadgen
	header
	"bench_$BENCH_ONLY"
	exit
	;;
esac

echo "== Go micro-benchmarks"
go test -run='^$' -bench=. -benchmem -count=1 ./...

go build -o bin/zenklav ./cmd/zenklav
go build -o bin/loadgen ./build/loadgen
work=$(mktemp -d)
secret="bench-webhook-signing-secret"
cat > "$work/connections.json" <<JSON
{"connections":[{"id":"bench","zendesk":{"subdomain":"bench","webhook_secrets":["$secret"],"brands":"all"}}]}
JSON

# start ROLE: runs bin/zenklav ROLE against the test servers; sets pid.
start() {
	ZENKLAV_HTTP_ADDR=$BENCH_HTTP \
	ZENKLAV_KAFKA_BROKERS=$ZENKLAV_TEST_KAFKA_BROKERS \
	ZENKLAV_CLICKHOUSE_ADDR=$ZENKLAV_TEST_CLICKHOUSE_ADDR \
	ZENKLAV_CLICKHOUSE_DATABASE=bench_all \
	ZENKLAV_CONNECTIONS_FILE=$work/connections.json \
	ZENKLAV_DATA_DIR=$work \
	ZENKLAV_LOG_LEVEL=warn \
		bin/zenklav "$1" > "$work/zenklav.log" 2>&1 &
	pid=$!
	for _ in $(seq 1 300); do
		curl -fsS "http://$BENCH_HTTP/readyz" > /dev/null 2>&1 && return 0
		kill -0 $pid 2>/dev/null || { cat "$work/zenklav.log"; exit 1; }
		sleep 0.2
	done
	echo "bench: zenklav $1 did not become ready" >&2
	exit 1
}
stop() {
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	pid=
}
pid=
trap 'stop; rm -rf "$work"' EXIT

echo
header
# `zenklav all` first, on an empty topic, so its peak memory is that of the ingest load and
# not of its sink catching up a backlog; then the ingest path alone, as it runs in production.
start all
bin/loadgen ingest -url "http://$BENCH_HTTP/webhooks/zendesk/bench" -secret "$secret" \
	-n "$BENCH_WEBHOOKS" -c "$BENCH_SENDERS" -label ", zenklav all" -pid "$pid"
stop
start api
bin/loadgen ingest -url "http://$BENCH_HTTP/webhooks/zendesk/bench" -secret "$secret" \
	-n "$BENCH_WEBHOOKS" -c "$BENCH_SENDERS" -label ", zenklav api" -pid "$pid"
stop
# Hostile clients against `zenklav api`, a fresh one each time so its peak memory is the
# run's: well-formed wrong signatures whose bodies hold back their last byte for 2 s, as slow
# senders' do (what costs memory: every body is read before its HMAC can fail); the same
# sent as fast as they go (what costs CPU); and the signature `x`, refused from its headers.
for variant in "wellformed 2s" "wellformed 0s" "x 0s"; do
	read -r sig hold <<< "$variant"
	start api
	bin/loadgen hostile -url "http://$BENCH_HTTP/webhooks/zendesk/bench" -secret "$secret" -sig "$sig" -hold "$hold" \
		-conns "$BENCH_HOSTILE_CONNS" -rate "$BENCH_HOSTILE_RATE" -duration "$BENCH_HOSTILE_DURATION" -label ", zenklav api" -pid "$pid"
	stop
done
bin/loadgen sink -brokers "$ZENKLAV_TEST_KAFKA_BROKERS" -clickhouse "$ZENKLAV_TEST_CLICKHOUSE_ADDR" -n "$BENCH_SINK_EVENTS"
# The emitter, against the Klaviyo and Zendesk simulators that loadgen serves itself; loadgen
# starts and stops bin/zenklav. Latency first: `zenklav all` waits for its sink to catch up
# with the topic, which is shortest before the drains fill it.
bin/loadgen latency -brokers "$ZENKLAV_TEST_KAFKA_BROKERS" -clickhouse "$ZENKLAV_TEST_CLICKHOUSE_ADDR" \
	-http "$BENCH_HTTP" -rate "$BENCH_LATENCY_RATE" -duration 30s
bin/loadgen emitter -brokers "$ZENKLAV_TEST_KAFKA_BROKERS" -clickhouse "$ZENKLAV_TEST_CLICKHOUSE_ADDR" \
	-http "$BENCH_HTTP" -n "$BENCH_DRAIN_EVENTS"
bin/loadgen emitter -brokers "$ZENKLAV_TEST_KAFKA_BROKERS" -clickhouse "$ZENKLAV_TEST_CLICKHOUSE_ADDR" \
	-http "$BENCH_HTTP" -accounts "$BENCH_DRAIN_ACCOUNTS" -n "$BENCH_DRAIN_EVENTS_PER_ACCOUNT"
# The sidebar's profile card through `zenklav api`, the Klaviyo simulator answering in 50 ms.
bin/loadgen sidebar -brokers "$ZENKLAV_TEST_KAFKA_BROKERS" -clickhouse "$ZENKLAV_TEST_CLICKHOUSE_ADDR" \
	-http "$BENCH_HTTP" -cards "$BENCH_SIDEBAR_CARDS" -latency 50ms
# The sidebar's first render in headless Chromium: the browser test, loading the ticket view
# 20 more times and timing each until the card shows.
ZENKLAV_BENCH_RENDERS=20 go test -count=1 -run 'TestSidebarInBrowser$' -v ./cmd/zenklav | grep '^| '
# Backfill at Zendesk's export limit (10 pages of 1,000 tickets a minute) against the simulator.
bin/loadgen backfill -brokers "$ZENKLAV_TEST_KAFKA_BROKERS" -tickets 20000 -duration 65s
# The reports over a year of one tenant's tickets (issue 6's target: p95 ≤ 300 ms each), with
# ticket_facts merged as a year-old store has it; -loaded times them before the merge too.
# About 60 s to load 10 million events here, then 6 runs of each report.
bin/loadgen reports -clickhouse "$ZENKLAV_TEST_CLICKHOUSE_ADDR" -events "${BENCH_REPORT_EVENTS:-10000000}" -runs "${BENCH_REPORT_RUNS:-5}"
# Freshness: from an accepted webhook to the trends report (issue 6's target: p95 ≤ 5 s).
bin/loadgen freshness -brokers "$ZENKLAV_TEST_KAFKA_BROKERS" -clickhouse "$ZENKLAV_TEST_CLICKHOUSE_ADDR" \
	-http "$BENCH_HTTP" -rate 20 -duration 30s
# SMS conversations (issue 14's targets: p95 ≤ 2 s from a text to Zendesk and from a reply to
# Klaviyo; no 429 from Klaviyo in a burst of replies).
bench_sms
# Connections at run time (issue 15's target: a new connection in force in every running
# process within 5 s), and start-up with 1,000 stored connections.
bench_connections
# Kafka as a cluster and two replicas of each role (issue 16): against 3 brokers of its own.
bench_cluster
