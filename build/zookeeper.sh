#!/usr/bin/env bash
# Fetches and runs a standalone Apache ZooKeeper on loopback for the ClickHouse cluster test
# (internal/testenv.StartClickHouseCluster): ClickHouse 18.16 keeps its replication log and
# its ON CLUSTER queue in ZooKeeper.
#
#   build/zookeeper.sh jars              fetch the jars of build/zookeeper/pom.xml (cached)
#   build/zookeeper.sh start DIR PORT    start a server with its data and logs under DIR
#   build/zookeeper.sh stop DIR          stop the server started in DIR
#   build/zookeeper.sh status DIR        exit 0 when the server in DIR is running
#
# The jars come from Maven Central through Maven and land in .cache/zookeeper/lib; a stamp
# holding the pom's checksum makes a second `jars` a no-op. The server listens on 127.0.0.1
# only, without its admin server.
#
# Environment: ZOOKEEPER_LIB (default .cache/zookeeper/lib), ZOOKEEPER_START_TIMEOUT (seconds,
# default 60), ZOOKEEPER_STOP_TIMEOUT (seconds, default 30).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
POM="$ROOT/build/zookeeper/pom.xml"
LIB=${ZOOKEEPER_LIB:-"$ROOT/.cache/zookeeper/lib"}
STAMP="$LIB.pom.sha256"

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$ROOT/build/lib.sh"
SERVICE=zookeeper
LOGS=(zookeeper.out)
STOP_TIMEOUT=${ZOOKEEPER_STOP_TIMEOUT:-30}

# cmdline_mark DIR: to guard against a recycled pid, the process must be our server.
cmdline_mark() { printf '%s' "-Dzenklav.dir=$1 "; }

cmd_jars() { maven_jars "$POM" "$LIB" "$STAMP" "zookeeper-3*.jar"; }

# ready PORT: the server serves requests (its srvr command names its mode; it listens, and
# answers ruok, before it does).
ready() {
	local answer
	{ exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
	printf 'srvr' >&3
	answer=$(timeout 2 cat <&3 2>/dev/null || true)
	exec 3>&-
	[[ $answer == *"Mode: "* ]]
}

cmd_start() {
	[ $# -eq 2 ] || die "usage: $0 start DIR PORT"
	local dir port=$2 pid start timeout=${ZOOKEEPER_START_TIMEOUT:-60}
	check_ports "$port"
	mkdir -p "$1/data"
	dir=$(cd "$1" && pwd -P)
	compgen -G "$LIB/zookeeper-3*.jar" >/dev/null || die "no ZooKeeper jars in $LIB: run '$0 jars' first"

	already_running "$dir" "$port" server "does not answer on port $port" ready "$port" && return 0
	ports_free "$port"
	start=$(now_ms)
	: >"$dir/zookeeper.out"
	cat >"$dir/zoo.cfg" <<CFG
# Written by build/zookeeper.sh: a standalone server on loopback, for tests.
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
tickTime=2000
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok
CFG
	spawn "$dir" "$dir/zookeeper.out" java -Xms64m -Xmx256m -XX:+ExitOnOutOfMemoryError "-Dzenklav.dir=$dir" \
		-Dzookeeper.admin.enableServer=false -cp "$LIB/*" org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg"
	pid=$(read_pid "$dir")
	wait_ready "$dir" "$pid" "$start" "$timeout" "zookeeper exited during start-up" \
		"zookeeper did not answer on 127.0.0.1:$port within ${timeout}s" ready "$port"
	log "started in $(elapsed "$start"): 127.0.0.1:$port, pid $pid, data $dir"
}

case "${1:-}" in
jars) shift; cmd_jars "$@" ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
status) shift; cmd_status "$@" ;;
*) die "usage: $0 jars | start DIR PORT | stop DIR | status DIR" ;;
esac
