#!/usr/bin/env bash
# Build hack/promql-names (a PromQL parser: Prometheus' own promql/parser package,
# from the Go module proxy, the version promtool is built from) into the cache,
# keyed by a hash of its source, and print its path. The dashboard test
# (tests/chart/test_dashboard.py) feeds it every panel query. Seconds when
# promtool's modules are already in the cache, else a minute or two.
set -euo pipefail
unset CDPATH

log() { echo "[promql-names] $*" >&2; }
# shellcheck source-path=SCRIPTDIR source=lib/go-tool.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/promql-names" && pwd)"
key=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-12)
BIN="$CACHE_ROOT/bin/promql-names-$key"

if [ ! -x "$BIN/promql-names" ]; then
  log "building $SRC"
  cd "$SRC"
  go_install_into "$BIN" promql-names .
fi
echo "$BIN/promql-names"
