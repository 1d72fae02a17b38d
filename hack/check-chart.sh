#!/usr/bin/env bash
# All chart checks in one place (CI and people):
#   1. the chart's CRD copy matches crds/            (hack/check-crd-drift.sh)
#   2. promtool check rules + promtool test rules     (promtool: hack/install-promtool.sh)
#   3. helm lint --strict, schema refusals, rendering (tests/chart, no cluster)
#   4. kubectl apply --dry-run=server, Pod Security, helm install/upgrade and the
#      RBAC proof against the local control plane    (tests/chart -m e2e)
# Needs: .venv (make), the control plane and helm/kubectl from
# hack/build-control-plane.sh, and Go (promtool is built into the cache when missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"

bash hack/check-crd-drift.sh || [ ! -f crds/stemedbclusters.stemedb.io.yaml ]
PROMTOOL="$(bash hack/install-promtool.sh)"
"$PROMTOOL" check rules charts/stemedb-operator/files/prometheus-rules.yaml
"$PROMTOOL" test rules tests/promtool/*.yaml
"$PY" -m pytest -q tests/chart "$@"
