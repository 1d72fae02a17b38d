# shellcheck shell=bash
# Sourced by the scripts that build a Go tool into the project's cache
# (install-promtool.sh, install-alertmanager.sh, install-promql-names.sh,
# install-syft.sh): one cache layout, one way to build, one version check.
# The caller sets `set -euo pipefail` and a `log` function first.

# The cache root, absolute (a relative STEMEDB_CACHE must survive a `cd`).
CACHE_ROOT="${STEMEDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stemedb-operator}"
mkdir -p "$CACHE_ROOT"; CACHE_ROOT="$(cd "$CACHE_ROOT" && pwd)"

# The toolchain and caches every Go command here runs with: `env "${GO_ENV[@]}" go ...`.
GO_ENV=(GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=
        "GOPATH=${GOPATH:-$CACHE_ROOT/gopath}"
        "GOMODCACHE=${GOMODCACHE:-$CACHE_ROOT/gomodcache}"
        "GOCACHE=${GOCACHE:-$CACHE_ROOT/gobuildcache}")

need_go() {
  command -v go >/dev/null 2>&1 || { log "go not found: install Go >= 1.26"; exit 1; }
}

# go_install_into DIR NAME GO_INSTALL_ARGS...: `go install` one command into
# DIR/NAME through a temporary directory (an interrupted build leaves nothing
# behind that looks finished), with the toolchain and module caches in the cache.
go_install_into() {
  local dir=$1 name=$2 tmp
  shift 2
  need_go
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  env "${GO_ENV[@]}" GOBIN="$tmp" go install -trimpath "$@" || { rm -rf "$tmp"; exit 1; }
  mv "$tmp/$name" "$dir/$name"
  rm -rf "$tmp"
}

# check_version NAME BINARY [WANT]: the first line of `BINARY --version` must read
# "NAME, version WANT..." (any version without WANT); else say what it said, exit 1.
check_version() {
  local name=$1 binary=$2 want=${3:-} got
  got=$("$binary" --version 2>&1 | head -1)
  case "$got" in
    "$name, version $want"*) log "$got: $binary" ;;
    *) log "$binary --version says '$got'${want:+, want $want}"; exit 1 ;;
  esac
}

# use_given NAME PATH: a tool named by the user's environment variable (PROMTOOL=,
# ALERTMANAGER=) must be an executable file; the caller checks its version and
# prints it instead of building one.
use_given() {
  local name=$1 given=$2
  [ -x "$given" ] || { log "$name=$given is not an executable file"; exit 1; }
}
