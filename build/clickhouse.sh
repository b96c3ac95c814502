#!/usr/bin/env bash
# Installs and runs a private ClickHouse server on loopback for `make run` and `make test`.
#
#   build/clickhouse.sh install                        install Debian's clickhouse-server if missing
#   build/clickhouse.sh start DIR TCP_PORT HTTP_PORT   start a server with everything under DIR
#   build/clickhouse.sh stop DIR                       stop the server started in DIR
#   build/clickhouse.sh status DIR                     exit 0 when the server in DIR is running
#
# The server listens on 127.0.0.1 only; its config, data, tmp, logs, user_files and
# format_schemas all live under DIR, so it never touches /var/lib/clickhouse or a system
# service. The `default` user has no password and is restricted to loopback.
#
# Environment: CLICKHOUSE_START_TIMEOUT (seconds, default 60), CLICKHOUSE_STOP_TIMEOUT
# (seconds, default 30), CLICKHOUSE_LOG_LEVEL (default warning; information logs every query).
set -euo pipefail

PATH="$PATH:/usr/sbin:/sbin"

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SERVICE=clickhouse
LOGS=(log/stdout.log log/clickhouse-server.err.log)
STOP_TIMEOUT=${CLICKHOUSE_STOP_TIMEOUT:-30}

# cmdline_mark DIR: to guard against a recycled pid, the process must be a ClickHouse server
# using our config.
cmdline_mark() { printf '%s' "--config-file=$1/etc/config.xml"; }

# ch_cmd server|client prints the command that runs the server or the client: Debian's packages
# ship /usr/sbin/clickhouse-server and /usr/bin/clickhouse-client (18.16); ClickHouse's own
# packages ship one `clickhouse` binary.
ch_cmd() {
	if command -v "clickhouse-$1" >/dev/null 2>&1; then
		command -v "clickhouse-$1"
	elif command -v clickhouse >/dev/null 2>&1; then
		printf '%s %s\n' "$(command -v clickhouse)" "$1"
	else
		return 1
	fi
}

not_installable() {
	cat >&2 <<'EOF'
ClickHouse is not installed and this machine has no Debian packages (no apt-get).
Install ClickHouse yourself (https://clickhouse.com/docs/install), or set
ZENKLAV_CLICKHOUSE_ADDR=host:9000 to point zenklav at an existing server.
EOF
	exit 1
}

cmd_install() {
	if ch_cmd server >/dev/null; then
		return 0
	fi
	command -v apt-get >/dev/null 2>&1 || not_installable
	# zenklav never uses the package's system service (port 9000): it runs its own server
	# per data folder, on its own ports.
	apt_install "installing clickhouse-server needs root: run 'apt-get install clickhouse-server clickhouse-client' as root, or set ZENKLAV_CLICKHOUSE_ADDR=host:9000" \
		"installing Debian's clickhouse-server and clickhouse-client" clickhouse-server clickhouse-client
	ch_cmd server >/dev/null || die "apt-get installed clickhouse-server but no clickhouse-server binary was found"
}

# ping asks the server for SELECT 1 over the native protocol (what zenklav uses), or HTTP.
ping() {
	local tcp=$1 http=$2 client
	if client=$(ch_cmd client); then
		[ "$($client --host 127.0.0.1 --port "$tcp" --query 'SELECT 1' 2>/dev/null)" = "1" ]
	elif command -v curl >/dev/null 2>&1; then
		[ "$(curl -fsS --max-time 2 "http://127.0.0.1:$http/ping" 2>/dev/null)" = "Ok." ]
	else
		port_open 127.0.0.1 "$tcp"
	fi
}

write_config() {
	local dir=$1 tcp=$2 http=$3
	mkdir -p "$dir/etc" "$dir/data" "$dir/tmp" "$dir/log" "$dir/user_files" "$dir/format_schemas"
	cat >"$dir/etc/config.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by build/clickhouse.sh: a private test server on loopback. -->
<yandex>
    <logger>
        <level>${CLICKHOUSE_LOG_LEVEL:-warning}</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$tcp</tcp_port>
    <http_port>$http</http_port>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/etc/users.xml</users_config>
    <include_from>$dir/etc/metrika.xml</include_from>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <umask>022</umask>
    <mlock_executable>false</mlock_executable>
    <max_connections>4096</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
EOF
	cat >"$dir/etc/users.xml" <<'EOF'
<?xml version="1.0"?>
<!-- Written by build/clickhouse.sh: user `default`, no password, loopback only. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>10000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
	printf '<?xml version="1.0"?>\n<yandex></yandex>\n' >"$dir/etc/metrika.xml"
}

cmd_start() {
	[ $# -eq 3 ] || die "usage: $0 start DIR TCP_PORT HTTP_PORT"
	local dir tcp=$2 http=$3 server pid
	check_ports "$tcp" "$http"
	mkdir -p "$1"
	dir=$(cd "$1" && pwd -P)
	server=$(ch_cmd server) || die "clickhouse-server is not installed: run '$0 install' (or make run / make test)"

	already_running "$dir" "$tcp" server "does not answer on port $tcp" ping "$tcp" "$http" && return 0
	ports_free "$tcp" "$http"

	write_config "$dir" "$tcp" "$http"
	: >"$dir/log/stdout.log"
	: >"$dir/log/clickhouse-server.err.log" # so a failure shows this start's errors only
	local start timeout=${CLICKHOUSE_START_TIMEOUT:-60}
	start=$(now_ms)
	# shellcheck disable=SC2086 # $server may be "clickhouse server"
	spawn "$dir" "$dir/log/stdout.log" $server --config-file="$dir/etc/config.xml"
	pid=$(read_pid "$dir")

	wait_ready "$dir" "$pid" "$start" "$timeout" "clickhouse-server exited during start-up" \
		"clickhouse-server did not answer on 127.0.0.1:$tcp within ${timeout}s" ping "$tcp" "$http"
	log "started in $(elapsed "$start"): native 127.0.0.1:$tcp, http 127.0.0.1:$http, pid $pid, data $dir"
}

case "${1:-}" in
install) shift; cmd_install "$@" ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
status) shift; cmd_status "$@" ;;
*) die "usage: $0 install | start DIR TCP_PORT HTTP_PORT | stop DIR | status DIR" ;;
esac
