# shellcheck shell=bash
# Sourced by the scripts that build a Go tool into the project's cache
# (install-promtool.sh, install-syft.sh): one cache layout, one way to build.
# The caller sets `set -euo pipefail` and a `log` function first.

# The cache root, absolute (a relative STEMEDB_CACHE must survive a `cd`).
CACHE_ROOT="${STEMEDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stemedb-operator}"
mkdir -p "$CACHE_ROOT"; CACHE_ROOT="$(cd "$CACHE_ROOT" && pwd)"

# go_install_into DIR NAME GO_INSTALL_ARGS...: `go install` one command into
# DIR/NAME through a temporary directory (an interrupted build leaves nothing
# behind that looks finished), with the toolchain and module caches in the cache.
go_install_into() {
  local dir=$1 name=$2 tmp
  shift 2
  command -v go >/dev/null 2>&1 || { log "go not found: install Go >= 1.26"; exit 1; }
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  (
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=""
    export GOPATH="${GOPATH:-$CACHE_ROOT/gopath}"
    export GOMODCACHE="${GOMODCACHE:-$CACHE_ROOT/gomodcache}"
    export GOCACHE="${GOCACHE:-$CACHE_ROOT/gobuildcache}"
    GOBIN="$tmp" go install -trimpath "$@"
  ) || { rm -rf "$tmp"; exit 1; }
  mv "$tmp/$name" "$dir/$name"
  rm -rf "$tmp"
}
