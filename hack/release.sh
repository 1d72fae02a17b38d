#!/usr/bin/env bash
# `make release`: every release artifact of HEAD, from one command, into
# dist/release/ (RELEASE_DIR), with SHA256SUMS; prints the list and the image
# digest. Built from an export of the HEAD commit, never the work tree, so
# uncommitted edits are not released. Needs no root and no container engine.
#
#   stemedb_operator-<v>-py3-none-any.whl, stemedb_operator-<v>.tar.gz
#                                     wheel and sdist (PyPA build, from PyPI)
#   stemedb-operator-<v>.oci.tar      the image, an oci-archive tagged <v>
#                                     (hack/build-image.sh), and .oci.digest
#   stemedb-operator-<v>.image.txt    the Debian packages and wheels in it
#   stemedb-operator-<chart v>.tgz    `helm package`, appVersion = <v>
#   stemedbclusters.stemedb.io.yaml   the CRD
#   stemedb-operator-<v>.sbom.spdx.json, .sbom.cdx.json
#                                     syft's SBOM of the image: its Debian
#                                     packages (dpkg status.d) and its Python
#                                     packages (dist-info)
#
# <v> is pyproject.toml's version. PYTHON: a Python 3.11 with pip (default
# .venv/bin/python). SOURCE_DATE_EPOCH defaults to HEAD's commit time. HELM,
# SYFT: use those binaries instead of the cached ones.
set -euo pipefail
unset CDPATH
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
log() { echo "[release] $*" >&2; }

PYTHON="${PYTHON:-.venv/bin/python}"
case "$PYTHON" in */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;; esac
OUT="${RELEASE_DIR:-$ROOT/dist/release}"
CACHE_ROOT="${STEMEDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stemedb-operator}"
BUILD_VERSION="${BUILD_VERSION:-1.3.0}"   # PyPA build
started=$(date +%s)

REV="$(git rev-parse HEAD)"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  log "the work tree has uncommitted changes: they are not in this release (built from HEAD ${REV:0:12})"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/src"
git archive --format=tar HEAD | tar -x -C "$tmp/src"
VERSION="$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$tmp/src/pyproject.toml")"
rm -rf "$OUT"
mkdir -p "$OUT"
log "stemedb-operator $VERSION from ${REV:0:12} (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH) into $OUT"

# 1. Wheel and sdist, with PyPA build in a venv of its own in the cache.
tools="$CACHE_ROOT/release-tools/build-$BUILD_VERSION"
if [ ! -x "$tools/bin/pyproject-build" ]; then
  log "installing build==$BUILD_VERSION into $tools"
  "$PYTHON" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "build==$BUILD_VERSION"
fi
log "wheel and sdist"
"$tools/bin/python" -m build --outdir "$OUT" "$tmp/src" >"$tmp/build.log" 2>&1 \
  || { cat "$tmp/build.log" >&2; exit 1; }

# 2. The OCI image (the export's own build script, so the image is HEAD's too).
log "image"
digest="$(STEMEDB_REVISION="$REV" PYTHON="$PYTHON" bash "$tmp/src/hack/build-image.sh" --out "$OUT")"

# 3. The chart, appVersion = the package version.
if [ -z "${HELM:-}" ]; then
  HELM="$(PYTHON="$PYTHON" bash hack/build-control-plane.sh)/helm"
fi
chart_app="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$tmp/src/charts/stemedb-operator/Chart.yaml")"
if [ "$chart_app" != "$VERSION" ]; then
  log "note: Chart.yaml says appVersion $chart_app; packaged with $VERSION (pyproject.toml)"
fi
log "helm package"
"$HELM" package "$tmp/src/charts/stemedb-operator" --app-version "$VERSION" --destination "$OUT" >/dev/null

# 4. The CRD (the one source; the chart's crds/ holds a copy).
cp "$tmp/src/crds/stemedbclusters.stemedb.io.yaml" "$OUT/"

# 5. SBOM of the image: Debian and Python packages.
if [ -z "${SYFT:-}" ]; then
  SYFT="$(bash hack/install-syft.sh)"
fi
log "SBOM ($("$SYFT" version 2>/dev/null | sed -n 's/^Version: *//p' | head -1))"
SYFT_CHECK_FOR_APP_UPDATE=false "$SYFT" scan --quiet \
  --source-name stemedb-operator --source-version "$VERSION" \
  "oci-archive:$OUT/stemedb-operator-$VERSION.oci.tar" \
  -o "spdx-json=$OUT/stemedb-operator-$VERSION.sbom.spdx.json" \
  -o "cyclonedx-json=$OUT/stemedb-operator-$VERSION.sbom.cdx.json"

# 6. Checksums, and the list.
(cd "$OUT" && find . -maxdepth 1 -type f -printf '%f\n' | LC_ALL=C sort | xargs sha256sum --) \
  > "$tmp/SHA256SUMS"
mv "$tmp/SHA256SUMS" "$OUT/SHA256SUMS"
echo "release stemedb-operator $VERSION (${REV:0:12}) in $OUT:"
(cd "$OUT" && find . -maxdepth 1 -type f -printf '%f\n' | LC_ALL=C sort | while read -r f; do
  printf '  %-42s %10s bytes\n' "$f" "$(stat -c %s "$f")"
done)
echo "image digest: $digest"
echo "image packages: $(grep -c '^deb ' "$OUT/stemedb-operator-$VERSION.image.txt") Debian, $(grep -c '^wheel ' "$OUT/stemedb-operator-$VERSION.image.txt") Python"
log "done in $(( $(date +%s) - started ))s"
