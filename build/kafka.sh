#!/usr/bin/env bash
# Fetches and runs a real Apache Kafka 4.x broker (single KRaft node) on loopback for the tests.
#
#   build/kafka.sh jars                              fetch the jars of build/kafka/pom.xml (cached)
#   build/kafka.sh start DIR PORT CONTROLLER_PORT    format DIR if new, start, wait until ready
#   build/kafka.sh stop DIR                          stop the broker started in DIR
#   build/kafka.sh status DIR                        exit 0 when the broker in DIR is running
#
# The jars come from Maven Central through Maven and land in .cache/kafka/lib; a stamp holding
# the pom's checksum makes a second `jars` a no-op. The broker is combined broker+controller,
# node id 1, listening on 127.0.0.1 only, with its config, data and logs under DIR.
#
# One node of a cluster instead (internal/testenv.StartKafkaCluster): KAFKA_NODE_ID, and
# KAFKA_VOTERS, the controller quorum of every node (1@127.0.0.1:PORT1,2@127.0.0.1:PORT2,…),
# and KAFKA_CLUSTER_ID, the same for every node; start them side by side, as none is ready
# before a majority of the voters runs. Kafka's internal topics (consumer offsets,
# transactions) then have min(3, nodes) replicas, as in production; the topics' own defaults
# stay Kafka's (one replica), so what zenklav asks for is what a topic gets.
#
# Environment: KAFKA_LIB (default .cache/kafka/lib), KAFKA_HEAP_OPTS (default -Xms256m -Xmx768m),
# KAFKA_START_TIMEOUT (seconds, default 120), KAFKA_STOP_TIMEOUT (seconds, default 30).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
POM="$ROOT/build/kafka/pom.xml"
LIB=${KAFKA_LIB:-"$ROOT/.cache/kafka/lib"}
STAMP="$LIB.pom.sha256"

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$ROOT/build/lib.sh"
SERVICE=kafka
LOGS=(kafka.out kafka.log)
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}

# cmdline_mark DIR: to guard against a recycled pid, the process must be our broker.
cmdline_mark() { printf '%s' "kafka.Kafka $1/server.properties"; }


cmd_jars() { maven_jars "$POM" "$LIB" "$STAMP" "kafka_2.13-*.jar"; }

# cluster_id prints a random Kafka cluster id: 16 random bytes, URL-safe base64 without padding,
# never starting with '-' (as Kafka's own Uuid.randomUuid), without starting a JVM for it.
cluster_id() {
	local id
	while :; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
		[ "${id:0:1}" != "-" ] && break
	done
	echo "$id"
}

write_config() {
	local dir=$1 port=$2 cport=$3
	local id=${KAFKA_NODE_ID:-1} voters=${KAFKA_VOTERS:-1@127.0.0.1:$3} nodes rf isr
	# The internal topics: as many replicas as nodes, up to 3; min.insync one less, at least 1.
	nodes=$(tr ',' '\n' <<<"$voters" | grep -c .)
	rf=$((nodes < 3 ? nodes : 3))
	isr=$((rf > 1 ? rf - 1 : 1))
	cat >"$dir/server.properties" <<EOF
# Written by build/kafka.sh: a KRaft broker+controller (node $id of $nodes) on loopback, for tests.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
EOF
	cat >"$dir/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by build/kafka.sh: everything to $dir/kafka.log, nothing to the console. -->
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <File name="file" fileName="$dir/kafka.log" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="org.apache.kafka.clients" level="warn"/>
  </Loggers>
</Configuration>
EOF
}

# broker_ready DIR PORT: the broker port accepts connections and the server logged that it
# started (in KRaft that comes after the broker registered with the controller and was unfenced).
broker_ready() {
	port_open 127.0.0.1 "$2" && grep -qF 'Kafka Server started' "$1/kafka.log" 2>/dev/null
}

cmd_start() {
	[ $# -eq 3 ] || die "usage: $0 start DIR PORT CONTROLLER_PORT"
	local dir port=$2 cport=$3 pid
	check_ports "$port" "$cport"
	mkdir -p "$1"
	dir=$(cd "$1" && pwd -P)
	compgen -G "$LIB/kafka_2.13-*.jar" >/dev/null || die "no Kafka jars in $LIB: run '$0 jars' first"
	need java openjdk-17-jre-headless

	already_running "$dir" "$port" broker "not on port $port" port_open 127.0.0.1 "$port" && return 0
	ports_free "$port" "$cport"

	local start timeout=${KAFKA_START_TIMEOUT:-120}
	start=$(now_ms)
	write_config "$dir" "$port" "$cport"
	# The previous log goes aside, so that readiness is read from this start's log only.
	[ -f "$dir/kafka.log" ] && mv -f "$dir/kafka.log" "$dir/kafka.log.1"
	: >"$dir/kafka.out"

	# shellcheck disable=SC2206 # KAFKA_HEAP_OPTS is a list of flags, split on spaces
	local java_opts=(
		${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
		-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
		-XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
		"-Dlog4j2.configurationFile=$dir/log4j2.xml" "-Dkafka.logs.dir=$dir"
	)
	if [ ! -f "$dir/data/meta.properties" ]; then
		java "${java_opts[@]}" -cp "$LIB/*" kafka.tools.StorageTool format \
			--cluster-id "${KAFKA_CLUSTER_ID:-$(cluster_id)}" --config "$dir/server.properties" >>"$dir/kafka.out" 2>&1 ||
			{ log "formatting the storage in $dir/data failed"; log_tail "$dir"; exit 1; }
	fi

	spawn "$dir" "$dir/kafka.out" java "${java_opts[@]}" -cp "$LIB/*" kafka.Kafka "$dir/server.properties"
	pid=$(read_pid "$dir")

	wait_ready "$dir" "$pid" "$start" "$timeout" "the broker exited during start-up" \
		"the broker was not ready on 127.0.0.1:$port within ${timeout}s" broker_ready "$dir" "$port"
	log "started in $(elapsed "$start"): broker 127.0.0.1:$port, controller 127.0.0.1:$cport, pid $pid, data $dir"
}

case "${1:-}" in
jars) shift; cmd_jars "$@" ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
status) shift; cmd_status "$@" ;;
*) die "usage: $0 jars | start DIR PORT CONTROLLER_PORT | stop DIR | status DIR" ;;
esac
