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

log() { printf 'clickhouse: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# server_cmd prints the command that runs the server: Debian's package ships
# /usr/sbin/clickhouse-server (18.16); ClickHouse's own packages ship one `clickhouse` binary.
server_cmd() {
	if command -v clickhouse-server >/dev/null 2>&1; then
		command -v clickhouse-server
	elif command -v clickhouse >/dev/null 2>&1; then
		printf '%s server\n' "$(command -v clickhouse)"
	else
		return 1
	fi
}

client_cmd() {
	if command -v clickhouse-client >/dev/null 2>&1; then
		command -v clickhouse-client
	elif command -v clickhouse >/dev/null 2>&1; then
		printf '%s client\n' "$(command -v clickhouse)"
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
	if server_cmd >/dev/null; then
		return 0
	fi
	command -v apt-get >/dev/null 2>&1 || not_installable
	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || die "installing clickhouse-server needs root: run 'apt-get install clickhouse-server clickhouse-client' as root, or set ZENKLAV_CLICKHOUSE_ADDR=host:9000"
		sudo=(sudo)
	fi
	log "installing Debian's clickhouse-server and clickhouse-client"
	"${sudo[@]}" apt-get update -q
	# zenklav never uses the package's system service (port 9000): it runs its own server
	# per data folder, on its own ports.
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server clickhouse-client
	server_cmd >/dev/null || die "apt-get installed clickhouse-server but no clickhouse-server binary was found"
}

# port_open HOST PORT succeeds when something accepts TCP connections there.
port_open() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# elapsed START_MS prints the seconds since START_MS, e.g. 0.43s.
elapsed() {
	local ms=$(($(now_ms) - $1))
	printf '%d.%02ds' $((ms / 1000)) $((ms % 1000 / 10))
}

pid_alive() {
	local pid=$1 cmdline
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid: the process must be a ClickHouse server using our config.
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmdline == *"--config-file=$2/etc/config.xml"* ]]
}

read_pid() {
	if [ -f "$1/clickhouse.pid" ]; then cat "$1/clickhouse.pid"; fi
}

# ping asks the server for SELECT 1 over the native protocol (what zenklav uses), or HTTP.
ping() {
	local tcp=$1 http=$2 client
	if client=$(client_cmd); then
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

log_tail() {
	local dir=$1 f
	for f in "$dir/log/stdout.log" "$dir/log/clickhouse-server.err.log"; do
		[ -s "$f" ] || continue
		log "--- last lines of $f"
		tail -n 40 "$f" >&2
	done
}

cmd_start() {
	[ $# -eq 3 ] || die "usage: $0 start DIR TCP_PORT HTTP_PORT"
	local dir tcp=$2 http=$3 server pid p
	for p in "$tcp" "$http"; do
		if ! [[ $p =~ ^[0-9]+$ ]] || [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then die "bad port: $p"; fi
	done
	mkdir -p "$1"
	dir=$(cd "$1" && pwd -P)
	server=$(server_cmd) || die "clickhouse-server is not installed: run '$0 install' (or make run / make test)"

	pid=$(read_pid "$dir")
	if pid_alive "$pid" "$dir"; then
		if ping "$tcp" "$http"; then
			log "already running in $dir (pid $pid) on 127.0.0.1:$tcp"
			return 0
		fi
		die "a server from $dir is running (pid $pid) but does not answer on port $tcp: run '$0 stop $dir' first"
	fi
	rm -f "$dir/clickhouse.pid"
	for p in "$tcp" "$http"; do
		port_open 127.0.0.1 "$p" && die "port $p on 127.0.0.1 is already in use; choose other ports"
	done

	write_config "$dir" "$tcp" "$http"
	: >"$dir/log/stdout.log"
	: >"$dir/log/clickhouse-server.err.log" # so a failure shows this start's errors only
	local start timeout=${CLICKHOUSE_START_TIMEOUT:-60}
	start=$(now_ms)
	# setsid: the server gets its own session, so a Ctrl-C meant for `make` reaches the
	# caller's trap, which then stops the server cleanly.
	# shellcheck disable=SC2086 # $server may be "clickhouse server"
	setsid $server --config-file="$dir/etc/config.xml" </dev/null >>"$dir/log/stdout.log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/clickhouse.pid"

	until ping "$tcp" "$http"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "clickhouse-server exited during start-up"
			log_tail "$dir"
			rm -f "$dir/clickhouse.pid"
			exit 1
		fi
		if [ $(($(now_ms) - start)) -ge $((timeout * 1000)) ]; then
			log "clickhouse-server did not answer on 127.0.0.1:$tcp within ${timeout}s"
			log_tail "$dir"
			cmd_stop "$dir" || true
			exit 1
		fi
		sleep 0.2
	done
	log "started in $(elapsed "$start"): native 127.0.0.1:$tcp, http 127.0.0.1:$http, pid $pid, data $dir"
}

cmd_stop() {
	[ $# -eq 1 ] || die "usage: $0 stop DIR"
	[ -d "$1" ] || return 0
	local dir pid i start timeout=${CLICKHOUSE_STOP_TIMEOUT:-30}
	dir=$(cd "$1" && pwd -P)
	pid=$(read_pid "$dir")
	if ! pid_alive "$pid" "$dir"; then
		rm -f "$dir/clickhouse.pid"
		return 0
	fi
	start=$(now_ms)
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < timeout * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid still running after ${timeout}s: killing it"
		kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	fi
	rm -f "$dir/clickhouse.pid"
	log "stopped in $(elapsed "$start") (pid $pid, data $dir)"
}

cmd_status() {
	[ $# -eq 1 ] || die "usage: $0 status DIR"
	[ -d "$1" ] || return 1
	local dir
	dir=$(cd "$1" && pwd -P)
	pid_alive "$(read_pid "$dir")" "$dir"
}

case "${1:-}" in
install) shift; cmd_install "$@" ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
status) shift; cmd_status "$@" ;;
*) die "usage: $0 install | start DIR TCP_PORT HTTP_PORT | stop DIR | status DIR" ;;
esac
