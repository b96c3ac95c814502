#!/usr/bin/env bash
# `make run`: runs `bin/zenklav all`. When ZENKLAV_CLICKHOUSE_ADDR is empty it installs Debian's
# ClickHouse if missing, starts a private server on loopback with its data under .data/run, points
# zenklav at it, and stops it when zenklav exits (Ctrl-C included). Every other ZENKLAV_* variable
# passes through to zenklav unchanged.
#
# Environment: RUN_CLICKHOUSE_PORT (default 29000), RUN_CLICKHOUSE_HTTP_PORT (default 28123),
# RUN_DATA (default .data/run).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
BUILD="$ROOT/build"
BIN="$ROOT/bin/zenklav"
DATA=${RUN_DATA:-"$ROOT/.data/run"}
CH_PORT=${RUN_CLICKHOUSE_PORT:-29000}
CH_HTTP_PORT=${RUN_CLICKHOUSE_HTTP_PORT:-28123}

[ -x "$BIN" ] || { echo "run: $BIN is missing: run 'make build'" >&2; exit 1; }

if [ -n "${ZENKLAV_CLICKHOUSE_ADDR:-}" ]; then
	echo "run: using the ClickHouse at $ZENKLAV_CLICKHOUSE_ADDR" >&2
	exec "$BIN" all "$@"
fi

# install prints how to point zenklav at an existing ClickHouse when it cannot install one.
bash "$BUILD/clickhouse.sh" install

trap 'bash "$BUILD/clickhouse.sh" stop "$DATA/clickhouse" || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
bash "$BUILD/clickhouse.sh" start "$DATA/clickhouse" "$CH_PORT" "$CH_HTTP_PORT"
export ZENKLAV_CLICKHOUSE_ADDR="127.0.0.1:$CH_PORT"
echo "run: ClickHouse for zenklav at $ZENKLAV_CLICKHOUSE_ADDR (data in $DATA/clickhouse; stopped when zenklav exits)" >&2

rc=0
"$BIN" all "$@" || rc=$?
exit "$rc"
