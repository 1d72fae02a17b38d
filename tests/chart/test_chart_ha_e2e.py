"""The chart with 2 replicas, a PDB and leader election, and as a subchart of an
umbrella chart with `global:` values, against a real kube-apiserver."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART

pytestmark = pytest.mark.e2e


def _dry_run(control_plane: Any, namespace: str, manifest: str) -> set[str]:
    result = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                                   input=manifest, check=False)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    return {d["kind"] for d in yaml.safe_load_all(manifest) if d}


@pytest.mark.parametrize("sets", [
    ["replicaCount=2"],  # the default: leader election
    ["sharding.enabled=true", "replicaCount=3"],
], ids=["leader-election", "sharding"])
def test_replicas_with_a_pdb_pass_a_server_side_dry_run(
    control_plane: Any, cluster_crds: str, template_text: Any, namespace: str,
    sets: list[str]
) -> None:
    manifest = template_text(namespace=namespace, release=f"ha-{namespace}", sets=sets)
    kinds = _dry_run(control_plane, namespace, manifest)
    assert {"Deployment", "PodDisruptionBudget", "Role", "RoleBinding"} <= kinds


def test_the_chart_works_as_a_subchart_of_an_umbrella_chart_with_global_values(
    control_plane: Any, cluster_crds: str, helm: Path, namespace: str, tmp_path: Path
) -> None:
    umbrella = tmp_path / "platform"
    (umbrella / "charts").mkdir(parents=True)
    (umbrella / "templates").mkdir()
    (umbrella / "templates" / "settings.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: platform-settings\n"
        "data:\n  registry: {{ .Values.global.imageRegistry | quote }}\n")
    shutil.copytree(CHART, umbrella / "charts" / "stemedb-operator")
    (umbrella / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "description": "An umbrella chart", "icon": "https://example.com/icon.png",
        "dependencies": [{"name": "stemedb-operator", "version": ">=0.0.0"}]}))
    (umbrella / "values.yaml").write_text(yaml.safe_dump({
        # What an umbrella chart typically shares: Helm hands `global` to every subchart.
        "global": {"imageRegistry": "registry.example.com", "storageClass": "fast"},
        "stemedb-operator": {"replicaCount": 2, "commonLabels": {"team": "platform"}},
    }))
    lint = subprocess.run([str(helm), "lint", "--strict", str(umbrella)],
                          capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = subprocess.run(
        [str(helm), "template", "platform", str(umbrella), "--namespace", namespace,
         "--skip-crds"], capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    kinds = _dry_run(control_plane, namespace, rendered.stdout)
    assert {"Deployment", "PodDisruptionBudget"} <= kinds
