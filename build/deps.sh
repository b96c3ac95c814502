#!/usr/bin/env bash
# Installs what the Zendesk app's tests need, for `make test`, `make bench` and `make deps`:
#
#   build/deps.sh            both of the below
#   build/deps.sh npm        npm ci in zendesk-app/ and reportsui/ when node_modules is missing
#                            or older than package-lock.json (the ZAF SDK, ECharts, esbuild,
#                            zcli, playwright-core)
#   build/deps.sh chromium   Debian's chromium when no `chromium` is on PATH (for the browser
#                            test, through playwright-core; no browser is downloaded)
#
#   build/deps.sh chdb       a Python virtual environment in .data/chdb with PyPI's chdb-core
#                            (current ClickHouse in process) when missing or of another version,
#                            for analytics' TestCurrentClickHouse (needs python3 with venv)
#
# The chromium step prints the browser's path on standard output, the one line the script
# prints there; `make` exports it as ZENKLAV_CHROMIUM. A ZENKLAV_CHROMIUM already set to an
# executable is kept (another Chromium or Chrome), and nothing is installed. The chdb step
# prints its Python's path the same way, for ZENKLAV_TEST_CHDB_PYTHON, and keeps one already
# set to an executable. (`all` is npm and chromium.)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
APP="$ROOT/zendesk-app"

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$ROOT/build/lib.sh"
SERVICE=deps

cmd_npm() {
	command -v npm >/dev/null 2>&1 || die "npm is not installed: install Node.js 20.17 or newer (zcli needs it), then run 'make deps'"
	local dir lock modules
	for dir in "$APP" "$ROOT/reportsui"; do
		lock="$dir/package-lock.json" modules="$dir/node_modules"
		# npm ci writes node_modules/.package-lock.json last: it is the mark of a finished install.
		if [ -f "$modules/.package-lock.json" ] && [ ! "$lock" -nt "$modules/.package-lock.json" ]; then
			continue
		fi
		log "installing $(basename "$dir")'s npm packages (npm ci)"
		(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
	done
}

cmd_chromium() {
	local path
	if [ -n "${ZENKLAV_CHROMIUM:-}" ]; then
		[ -x "$ZENKLAV_CHROMIUM" ] || die "ZENKLAV_CHROMIUM=$ZENKLAV_CHROMIUM is not an executable"
		printf '%s\n' "$ZENKLAV_CHROMIUM"
		return 0
	fi
	if ! path=$(command -v chromium); then
		command -v apt-get >/dev/null 2>&1 ||
			die "chromium is not installed and this machine has no Debian packages (no apt-get): install Chromium and put 'chromium' on PATH"
		apt_install "installing chromium needs root: run 'apt-get install chromium' as root" \
			"installing Debian's chromium" chromium >&2
		path=$(command -v chromium) || die "apt-get installed chromium but no 'chromium' was found on PATH"
	fi
	printf '%s\n' "$path"
}

# The chdb-core release, and so the ClickHouse release (26.9), that the tests run on.
CHDB_VERSION=26.9.0

cmd_chdb() {
	if [ -n "${ZENKLAV_TEST_CHDB_PYTHON:-}" ]; then
		[ -x "$ZENKLAV_TEST_CHDB_PYTHON" ] || die "ZENKLAV_TEST_CHDB_PYTHON=$ZENKLAV_TEST_CHDB_PYTHON is not an executable"
		printf '%s\n' "$ZENKLAV_TEST_CHDB_PYTHON"
		return 0
	fi
	local venv="$ROOT/.data/chdb"
	# Written last: the mark of a finished install of this version.
	local mark="$venv/.chdb-core-$CHDB_VERSION"
	if [ ! -f "$mark" ]; then
		command -v python3 >/dev/null 2>&1 ||
			die "python3 is not installed: install Python 3.9 or newer with its venv module (Debian: python3-venv)"
		log "installing PyPI's chdb-core $CHDB_VERSION into $venv"
		rm -rf "$venv"
		python3 -m venv "$venv" >&2 ||
			die "python3 -m venv failed: install Python's venv module (Debian: apt-get install python3-venv)"
		"$venv/bin/pip" install --quiet --disable-pip-version-check "chdb-core==$CHDB_VERSION" >&2 ||
			die "pip could not install chdb-core $CHDB_VERSION from PyPI"
		"$venv/bin/python" -c 'import chdb' >&2 || die "chdb-core $CHDB_VERSION is installed in $venv but does not import"
		touch "$mark"
	fi
	printf '%s\n' "$venv/bin/python"
}

case "${1:-all}" in
npm) cmd_npm ;;
chromium) cmd_chromium ;;
chdb) cmd_chdb ;;
all)
	cmd_npm
	cmd_chromium
	;;
*) die "usage: $0 [npm|chromium|chdb]" ;;
esac
