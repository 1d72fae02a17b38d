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
CACHE_ROOT="${STEMEDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stemedb-operator}"
mkdir -p "$CACHE_ROOT"; CACHE_ROOT="$(cd "$CACHE_ROOT" && pwd)"
BIN="$CACHE_ROOT/bin/syft-v$SYFT_VERSION"
log() { echo "[syft] $*" >&2; }

if [ -n "${SYFT:-}" ]; then
  [ -x "$SYFT" ] || { log "SYFT=$SYFT is not an executable file"; exit 1; }
  log "$("$SYFT" version 2>&1 | grep -m1 '^Version')"
  echo "$SYFT"
  exit 0
fi

if [ ! -x "$BIN/syft" ]; then
  command -v go >/dev/null 2>&1 || { log "go not found: install Go >= 1.26, or set SYFT"; exit 1; }
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=""
  export GOPATH="${GOPATH:-$CACHE_ROOT/gopath}"
  export GOMODCACHE="${GOMODCACHE:-$CACHE_ROOT/gomodcache}"
  export GOCACHE="${GOCACHE:-$CACHE_ROOT/gobuildcache}"
  mkdir -p "$BIN"
  tmp=$(mktemp -d "$BIN/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "building syft $SYFT_VERSION (github.com/anchore/syft/cmd/syft@v$SYFT_VERSION)"
  GOBIN="$tmp" go install -trimpath \
    -ldflags="-s -w -X main.version=$SYFT_VERSION" \
    "github.com/anchore/syft/cmd/syft@v$SYFT_VERSION"
  mv "$tmp/syft" "$BIN/syft"
fi
echo "$BIN/syft"
