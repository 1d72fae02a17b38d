#!/usr/bin/env bash
# Build Alertmanager from the Go module proxy into the cache the control plane
# uses (hack/build-control-plane.sh: STEMEDB_CACHE, default
# ~/.cache/stemedb-operator), keyed by version. No root, nothing installed on
# the machine; skipped when cached (a cold build takes a few minutes on 2
# cores). Prints the path of alertmanager, which the notification e2e test runs
# (tests/e2e/test_alertmanager.py).
#
# ALERTMANAGER=/path/to/alertmanager: use that one instead (checked, not built).
#
# The module as published has no web UI: ui/web.go embeds `app/dist`, which the
# release process builds with npm and the module zip leaves out, so `go install
# ...@version` fails ("pattern app/dist: no matching files found"). The source is
# therefore copied out of the module cache, given an empty `ui/app/dist` (the UI
# then answers 404; the v2 API the operator and the tests use is unaffected) and
# built there with its own go.mod and go.sum.
set -euo pipefail
unset CDPATH

ALERTMANAGER_VERSION="${ALERTMANAGER_VERSION:-0.35.0}"
log() { echo "[alertmanager] $*" >&2; }
# shellcheck source-path=SCRIPTDIR source=lib/go-tool.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"
BIN="$CACHE_ROOT/bin/alertmanager-v$ALERTMANAGER_VERSION"

if [ -n "${ALERTMANAGER:-}" ]; then
  use_given ALERTMANAGER "$ALERTMANAGER"
  check_version alertmanager "$ALERTMANAGER"
  echo "$ALERTMANAGER"
  exit 0
fi

if [ ! -x "$BIN/alertmanager" ]; then
  module=github.com/prometheus/alertmanager
  log "building alertmanager $ALERTMANAGER_VERSION ($module@v$ALERTMANAGER_VERSION)"
  need_go
  mkdir -p "$BIN"
  src=$(mktemp -d "$BIN/.src.XXXXXX")
  trap 'chmod -R u+w "$src" 2>/dev/null; rm -rf "$src"' EXIT
  dir=$(cd "$src" && env "${GO_ENV[@]}" go mod download -json "$module@v$ALERTMANAGER_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { log "go mod download gave no directory"; exit 1; }
  cp -R "$dir/." "$src/am"
  chmod -R u+w "$src/am"
  for ui in elm mantine; do
    mkdir -p "$src/am/ui/app/dist/$ui"
    echo "built without the web UI (hack/install-alertmanager.sh)" \
      > "$src/am/ui/app/dist/$ui/README.txt"
  done
  v=github.com/prometheus/common/version
  (cd "$src/am" && env "${GO_ENV[@]}" go build -trimpath -o "$src/alertmanager" -ldflags="-s -w \
    -X $v.Version=$ALERTMANAGER_VERSION -X $v.Revision=v$ALERTMANAGER_VERSION \
    -X $v.Branch=module-proxy" ./cmd/alertmanager)
  mv "$src/alertmanager" "$BIN/alertmanager"
fi
check_version alertmanager "$BIN/alertmanager" "$ALERTMANAGER_VERSION"
echo "$BIN/alertmanager"
