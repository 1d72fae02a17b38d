#!/usr/bin/env bash
# Copy the one source of the CRD, crds/stemedbclusters.stemedb.io.yaml, into
# the chart (charts/stemedb-operator/crds/). `make crd` runs it after
# hack/gen-crd.py (which writes crds/ from the spec dataclasses); commit both.
# hack/check-crd-drift.sh fails CI when they differ. templates/crds.yaml
# (crds.install=true) renders this same copy, so it has none of its own.
# Env: CRD_SRC / CRD_DST override the paths (used by the tests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${CRD_SRC:-$ROOT/crds/stemedbclusters.stemedb.io.yaml}"
DST="${CRD_DST:-$ROOT/charts/stemedb-operator/crds/stemedbclusters.stemedb.io.yaml}"

[ -f "$SRC" ] || { echo "sync-crd: source CRD not found: $SRC" >&2; exit 1; }
mkdir -p "$(dirname "$DST")"
if [ -f "$DST" ] && cmp -s "$SRC" "$DST"; then
  echo "sync-crd: $DST is up to date"
  exit 0
fi
cp "$SRC" "$DST.tmp"
mv "$DST.tmp" "$DST"
echo "sync-crd: copied $SRC -> $DST"
