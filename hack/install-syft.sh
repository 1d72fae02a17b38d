#!/usr/bin/env bash
# Build syft (the SBOM generator `make release` runs on the image) from the Go
# module proxy into the cache the control plane uses (STEMEDB_CACHE, default
# ~/.cache/stemedb-operator), keyed by version. No root, nothing installed on
# the machine; skipped when cached (a cold build takes several minutes on 2
# cores). Prints the path of syft.
#
# SYFT=/path/to/syft: use that one instead (checked, not built).
set -euo pipefail
unset CDPATH

SYFT_VERSION="${SYFT_VERSION:-1.57.1}"
log() { echo "[syft] $*" >&2; }
# shellcheck source-path=SCRIPTDIR source=lib/go-tool.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"
BIN="$CACHE_ROOT/bin/syft-v$SYFT_VERSION"

if [ -n "${SYFT:-}" ]; then
  [ -x "$SYFT" ] || { log "SYFT=$SYFT is not an executable file"; exit 1; }
  log "$("$SYFT" version 2>&1 | grep -m1 '^Version')"
  echo "$SYFT"
  exit 0
fi

if [ ! -x "$BIN/syft" ]; then
  log "building syft $SYFT_VERSION (github.com/anchore/syft/cmd/syft@v$SYFT_VERSION)"
  go_install_into "$BIN" syft -ldflags="-s -w -X main.version=$SYFT_VERSION" \
    "github.com/anchore/syft/cmd/syft@v$SYFT_VERSION"
fi
echo "$BIN/syft"
