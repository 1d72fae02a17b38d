#!/usr/bin/env bash
# Build promtool from the Go module proxy into the cache the control plane
# uses (hack/build-control-plane.sh: STEMEDB_CACHE, default
# ~/.cache/stemedb-operator), keyed by version. No root, nothing installed on
# the machine; skipped when cached (a cold build takes a few minutes). Prints
# the path of promtool, which hack/check-chart.sh and the tests run.
#
# PROMTOOL=/path/to/promtool: use that one instead (checked, not built).
# Prometheus 3.X.Y is published to the module proxy as v0.3XX.Y (the module
# path has no /v3), so 3.16.0 is built from v0.316.0. Built with the tag
# remove_all_sd: no service-discovery plugins (cloud SDKs), which `check rules`
# and `test rules` do not use; `promtool check config` on a configuration with
# such discovery would refuse it.
set -euo pipefail
unset CDPATH

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-3.16.0}"
log() { echo "[promtool] $*" >&2; }
# shellcheck source-path=SCRIPTDIR source=lib/go-tool.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"
BIN="$CACHE_ROOT/bin/promtool-v$PROMETHEUS_VERSION"

if [ -n "${PROMTOOL:-}" ]; then
  use_given PROMTOOL "$PROMTOOL"
  check_version promtool "$PROMTOOL"
  echo "$PROMTOOL"
  exit 0
fi

if [ ! -x "$BIN/promtool" ]; then
  IFS=. read -r major minor patch <<<"$PROMETHEUS_VERSION"
  module_version="v0.${major}$(printf '%02d' "$minor").${patch}"
  log "building promtool $PROMETHEUS_VERSION (github.com/prometheus/prometheus@$module_version)"
  v=github.com/prometheus/common/version
  go_install_into "$BIN" promtool -tags remove_all_sd -ldflags="-s -w \
    -X $v.Version=$PROMETHEUS_VERSION -X $v.Revision=$module_version -X $v.Branch=module-proxy" \
    "github.com/prometheus/prometheus/cmd/promtool@$module_version"
fi
check_version promtool "$BIN/promtool" "$PROMETHEUS_VERSION"
echo "$BIN/promtool"
