"""Helpers for the chart tests: render the chart with the real helm binary."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stemedb-operator"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CRD_SOURCE = ROOT / "crds" / "stemedbclusters.stemedb.io.yaml"
CRD_CHART_COPY = CHART / "crds" / "stemedbclusters.stemedb.io.yaml"
# Values files the chart is checked with: the defaults plus every ci/ file.
VALUES_FILES: list[Path | None] = [None, *sorted((CHART / "ci").glob("*.yaml"))]


def values_id(path: Path | None) -> str:
    return "defaults" if path is None else path.stem


Docs = list[dict[str, Any]]
Render = Callable[..., Docs]


def helm_cmd(helm: Path, action: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), action, *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="session")
def helm(bin_dir: Path) -> Path:
    path = bin_dir / "helm"
    if not path.exists():
        pytest.skip(f"helm not found in {bin_dir}; run hack/build-control-plane.sh")
    return path


def _template_args(
    namespace: str, values: Path | None, sets: Sequence[str], release: str
) -> list[str]:
    args = [release, str(CHART), "--namespace", namespace]
    if values is not None:
        args += ["-f", str(values)]
    for s in sets:
        args += ["--set", s]
    return args


@pytest.fixture(scope="session")
def template_text(helm: Path) -> Callable[..., str]:
    def run(
        values: Path | None = None,
        sets: Sequence[str] = (),
        namespace: str = "stemedb-system",
        release: str = "stemedb",
    ) -> str:
        result = helm_cmd(helm, "template", *_template_args(namespace, values, sets, release))
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


@pytest.fixture(scope="session")
def render(template_text: Callable[..., str]) -> Render:
    """Render the chart and return its documents (without the CRDs in crds/)."""

    def run(**kwargs: Any) -> Docs:
        return [d for d in yaml.safe_load_all(template_text(**kwargs)) if d]

    return run


def by_kind(docs: Docs, kind: str) -> Docs:
    return [d for d in docs if d["kind"] == kind]


def one(docs: Docs, kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def rbac_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((CHART / "files" / "rbac-rules.yaml").read_text())
    assert isinstance(rules, list) and rules
    return rules


@pytest.fixture(scope="session")
def cluster_crds(control_plane: Any) -> str:
    """Install the StemeDBCluster CRD (the chart's copy, else crds/, else a test-only
    placeholder) and test-only monitoring.coreos.com stubs. Returns which CRD was used."""
    kc = control_plane.kubectl
    used = "placeholder"
    if CRD_CHART_COPY.exists() or CRD_SOURCE.exists():
        crd = CRD_CHART_COPY if CRD_CHART_COPY.exists() else CRD_SOURCE
        applied = kc("apply", "--server-side", "--force-conflicts", "-f", str(crd), check=False)
        if applied.returncode == 0:
            used = str(crd.relative_to(ROOT))
        else:
            # test_the_chart_crd_is_accepted_by_the_api_server reports this failure;
            # the other chart tests go on with the placeholder.
            used = f"placeholder (the API server refused {crd.name})"
    if used.startswith("placeholder"):
        exists = kc("get", "crd", "stemedbclusters.stemedb.io", check=False)
        if exists.returncode != 0:
            kc("create", "-f", str(FIXTURES / "placeholder-stemedbcluster-crd.yaml"))
    kc("apply", "--server-side", "-f", str(FIXTURES / "monitoring-coreos-crd-stubs.yaml"))
    kc("wait", "--for=condition=Established", "--timeout=60s",
       "crd/stemedbclusters.stemedb.io", "crd/servicemonitors.monitoring.coreos.com",
       "crd/prometheusrules.monitoring.coreos.com")
    return used
