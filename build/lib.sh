# shellcheck shell=bash
# Helpers shared by build/clickhouse.sh and build/kafka.sh, which source this file. Each runs
# one server on loopback with its pid file, config, data and logs under a folder DIR.
#
# The sourcing script sets:
#   SERVICE         the name its messages start with; its pid file is DIR/$SERVICE.pid
#   LOGS            the files under DIR whose last lines explain a failed start
#   STOP_TIMEOUT    seconds to wait after SIGTERM before SIGKILL
# and defines:
#   cmdline_mark DIR   prints what the command line of DIR's server contains
#
# It provides the subcommands `stop DIR` and `status DIR` as cmd_stop and cmd_status.

log() { printf '%s: %s\n' "$SERVICE" "$*" >&2; }
die() { log "$*"; exit 1; }

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# elapsed START_MS prints the seconds since START_MS, e.g. 0.43s.
elapsed() {
	local ms=$(($(now_ms) - $1))
	printf '%d.%02ds' $((ms / 1000)) $((ms % 1000 / 10))
}

# apt_install NO_ROOT_MSG INSTALLING_MSG PACKAGE... installs Debian packages with apt-get,
# through sudo when not root; without root or sudo it dies with NO_ROOT_MSG. The caller has
# checked that apt-get exists.
apt_install() {
	local no_root=$1 installing=$2 sudo=()
	shift 2
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || die "$no_root"
		sudo=(sudo)
	fi
	log "$installing"
	"${sudo[@]}" apt-get update -q
	# Packages such as clickhouse-server start their system service on install; we run our
	# own servers on our own ports, and on a machine without an init system that start fails
	# the install. policy-rc.d's 101 ("not allowed") is Debian's way to say: install, don't
	# start. Only added when the machine has none, and removed afterwards.
	local policy=/usr/sbin/policy-rc.d added=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		added=1
	fi
	local rc=0
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" || rc=$?
	[ -z "$added" ] || "${sudo[@]}" rm -f "$policy"
	return "$rc"
}

# port_open HOST PORT succeeds when something accepts TCP connections there.
port_open() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# check_ports PORT... dies unless each PORT is a number from 1 to 65535.
check_ports() {
	local p
	for p in "$@"; do
		if ! [[ $p =~ ^[0-9]+$ ]] || [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then die "bad port: $p"; fi
	done
}

# ports_free PORT... dies when one of the PORTs on 127.0.0.1 is taken.
ports_free() {
	local p
	for p in "$@"; do
		if port_open 127.0.0.1 "$p"; then die "port $p on 127.0.0.1 is already in use; choose other ports"; fi
	done
}

read_pid() {
	if [ -f "$1/$SERVICE.pid" ]; then cat "$1/$SERVICE.pid"; fi
}

# pid_alive PID DIR succeeds when PID runs DIR's server.
pid_alive() {
	local pid=$1 cmdline
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid: the process must be our server, with DIR's config.
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmdline == *"$(cmdline_mark "$2")"* ]]
}

# already_running DIR PORT WHAT MISSING CHECK... succeeds, saying so, when DIR's server runs and
# CHECK... succeeds; dies when it runs but CHECK... fails ("a WHAT from DIR is running (pid N)
# but MISSING"). Otherwise it removes a stale pid file and fails.
already_running() {
	local dir=$1 port=$2 what=$3 missing=$4 pid
	shift 4
	pid=$(read_pid "$dir")
	if pid_alive "$pid" "$dir"; then
		if "$@"; then
			log "already running in $dir (pid $pid) on 127.0.0.1:$port"
			return 0
		fi
		die "a $what from $dir is running (pid $pid) but $missing: run '$0 stop $dir' first"
	fi
	rm -f "$dir/$SERVICE.pid"
	return 1
}

log_tail() {
	local dir=$1 f
	for f in "${LOGS[@]}"; do
		f="$dir/$f"
		[ -s "$f" ] || continue
		log "--- last lines of $f"
		tail -n 40 "$f" >&2
	done
}

# spawn DIR OUT CMD... starts CMD in the background, output appended to OUT, and writes its pid
# to DIR's pid file.
spawn() {
	local dir=$1 out=$2
	shift 2
	# setsid: the server gets its own session, so a Ctrl-C meant for `make` reaches the
	# caller's trap, which then stops the server cleanly.
	setsid "$@" </dev/null >>"$out" 2>&1 &
	echo "$!" >"$dir/$SERVICE.pid"
}

# wait_ready DIR PID START_MS TIMEOUT EXITED_MSG LATE_MSG CHECK... retries CHECK... until it
# succeeds. When PID exits first it logs EXITED_MSG; when TIMEOUT seconds have passed since
# START_MS it logs LATE_MSG and stops the server; either way it shows the logs and exits 1.
wait_ready() {
	local dir=$1 pid=$2 start=$3 timeout=$4 exited=$5 late=$6
	shift 6
	until "$@"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$exited"
			log_tail "$dir"
			rm -f "$dir/$SERVICE.pid"
			exit 1
		fi
		if [ $(($(now_ms) - start)) -ge $((timeout * 1000)) ]; then
			log "$late"
			log_tail "$dir"
			cmd_stop "$dir" || true
			exit 1
		fi
		sleep 0.2
	done
}

cmd_stop() {
	[ $# -eq 1 ] || die "usage: $0 stop DIR"
	[ -d "$1" ] || return 0
	local dir pid i start timeout=$STOP_TIMEOUT
	dir=$(cd "$1" && pwd -P)
	pid=$(read_pid "$dir")
	if ! pid_alive "$pid" "$dir"; then
		rm -f "$dir/$SERVICE.pid"
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
	rm -f "$dir/$SERVICE.pid"
	log "stopped in $(elapsed "$start") (pid $pid, data $dir)"
}

cmd_status() {
	[ $# -eq 1 ] || die "usage: $0 status DIR"
	[ -d "$1" ] || return 1
	local dir
	dir=$(cd "$1" && pwd -P)
	pid_alive "$(read_pid "$dir")" "$dir"
}

# need CMD PACKAGE installs Debian's PACKAGE when CMD is missing and apt-get can.
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	command -v apt-get >/dev/null 2>&1 || die "$1 is missing: install $2 (Java 17 and Maven fetch and run the test servers' jars)"
	apt_install "$1 is missing and installing $2 needs root" "installing Debian's $2 for $1" "$2"
}

# maven_jars POM LIB STAMP GLOB: the runtime jars of POM in LIB, fetched from Maven Central
# unless LIB already holds this POM's jars (STAMP has its digest, and a jar matches GLOB).
maven_jars() {
	local pom=$1 lib=$2 stamp=$3 glob=$4 sum start
	sum=$(sha256sum "$pom" | cut -d' ' -f1)
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] && compgen -G "$lib/$glob" >/dev/null; then
		log "jars cached in $lib"
		return 0
	fi
	need java openjdk-17-jre-headless
	need mvn maven
	log "fetching jars into $lib"
	rm -rf "$lib" "$stamp"
	mkdir -p "$lib"
	start=$(now_ms)
	# Debian's Maven 3.8 prints stray colour codes even in batch mode: strip them.
	mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib" 2>&1 |
		sed 's/\x1b\[[0-9;]*m//g' >&2
	compgen -G "$lib/$glob" >/dev/null || die "maven ran but left no $glob in $lib"
	echo "$sum" >"$stamp"
	log "fetched $(find "$lib" -name '*.jar' | wc -l) jars in $(elapsed "$start")"
}
