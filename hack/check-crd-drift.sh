#!/usr/bin/env bash
# Fail (exit 1) when the chart's copy of the CRD differs from crds/, the one
# source. Fix with hack/sync-crd.sh. Byte-for-byte: the copy is never edited.
# It also covers the templated CRD (crds.install), rendered from this copy.
# Env: CRD_SRC / CRD_DST override the paths (used by the tests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${CRD_SRC:-$ROOT/crds/stemedbclusters.stemedb.io.yaml}"
DST="${CRD_DST:-$ROOT/charts/stemedb-operator/crds/stemedbclusters.stemedb.io.yaml}"

[ -f "$SRC" ] || { echo "crd-drift: source CRD not found: $SRC" >&2; exit 1; }
if [ ! -f "$DST" ]; then
  echo "crd-drift: the chart has no copy of the CRD ($DST); run hack/sync-crd.sh" >&2
  exit 1
fi
if ! diff -u --label "crds/ (source)" --label "chart copy" "$SRC" "$DST" >&2; then
  echo "crd-drift: the chart's CRD differs from crds/; run hack/sync-crd.sh and commit" >&2
  exit 1
fi
# Also catch a stray extra CRD in the chart that crds/ does not have.
extra=$(comm -13 <(find "$(dirname "$SRC")" -maxdepth 1 -name '*.yaml' -printf '%f\n' | sort) \
                 <(find "$(dirname "$DST")" -maxdepth 1 -name '*.yaml' -printf '%f\n' | sort) || true)
if [ -z "${CRD_SRC:-}" ] && [ -n "$extra" ]; then
  echo "crd-drift: the chart carries CRDs that crds/ does not: $extra" >&2
  exit 1
fi
echo "crd-drift: chart CRD matches crds/"
