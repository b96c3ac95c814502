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
# The chromium step prints the browser's path on standard output, the one line the script
# prints there; `make` exports it as ZENKLAV_CHROMIUM. A ZENKLAV_CHROMIUM already set to an
# executable is kept (another Chromium or Chrome), and nothing is installed.
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

case "${1:-all}" in
npm) cmd_npm ;;
chromium) cmd_chromium ;;
all)
	cmd_npm
	cmd_chromium
	;;
*) die "usage: $0 [npm|chromium]" ;;
esac
