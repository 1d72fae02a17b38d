"""The rendered chart against a real kube-apiserver: server-side dry-run, Pod Security
"restricted", and helm install/upgrade/uninstall with the schema enforced."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, CRD_CHART_COPY, VALUES_FILES, one, values_id

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("values", VALUES_FILES, ids=values_id)
def test_the_rendered_chart_is_accepted_by_the_api_server(
    control_plane: Any, cluster_crds: str, template_text: Any, namespace: str,
    values: Path | None,
) -> None:
    manifest = template_text(values=values, namespace=namespace, release=f"dry-{namespace}")
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=manifest, check=False
    )
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(manifest) if d}
    created = result.stdout
    assert all(f"{k.lower()}" in created.lower() for k in kinds), created
    assert "Warning" not in result.stderr, result.stderr


def test_the_chart_crd_is_accepted_by_the_api_server(control_plane: Any, helm: Path) -> None:
    if not CRD_CHART_COPY.exists():
        pytest.skip("the StemeDBCluster CRD has not been synced into the chart yet")
    out = subprocess.run(
        [str(helm), "template", "x", str(CHART), "--include-crds"],
        capture_output=True, text=True, check=True,
    ).stdout
    crds = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "CustomResourceDefinition"]
    assert [c["metadata"]["name"] for c in crds] == ["stemedbclusters.stemedb.io"]
    result = control_plane.kubectl("apply", "--server-side", "--dry-run=server",
                                   "--force-conflicts", "-f", "-",
                                   input=yaml.safe_dump(crds[0]), check=False)
    assert result.returncode == 0, result.stderr


def _restricted_namespace(control_plane: Any, namespace: str) -> None:
    control_plane.kubectl(
        "label", "namespace", namespace, "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/warn-version=latest",
    )


def test_a_restricted_namespace_accepts_the_deployment_and_its_pod(
    control_plane: Any, render: Any, namespace: str
) -> None:
    _restricted_namespace(control_plane, namespace)
    deploy = one(render(namespace=namespace), "Deployment")
    result = control_plane.kubectl("apply", "--dry-run=server", "-f", "-",
                                   input=json.dumps(deploy), check=False)
    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr, result.stderr  # no "would violate" warning

    # Pod Security is enforced on Pods, so also submit the Deployment's Pod as is.
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "operator-pod", "namespace": namespace},
           "spec": deploy["spec"]["template"]["spec"]}
    result = control_plane.kubectl("create", "--dry-run=server", "-f", "-",
                                   input=json.dumps(pod), check=False)
    assert result.returncode == 0, result.stderr


def test_a_restricted_namespace_refuses_the_pod_without_its_security_context(
    control_plane: Any, render: Any, namespace: str
) -> None:
    """Control: the admission check is live, so the acceptance above means something."""
    _restricted_namespace(control_plane, namespace)
    spec = one(render(namespace=namespace), "Deployment")["spec"]["template"]["spec"]
    spec.pop("securityContext")
    spec["containers"][0].pop("securityContext")
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "loose-pod", "namespace": namespace}, "spec": spec}
    result = control_plane.kubectl("create", "--dry-run=server", "-f", "-",
                                   input=json.dumps(pod), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr, result.stderr


def _helm(control_plane: Any, helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True,
                          env=control_plane.env(), timeout=180)


def test_helm_install_upgrade_and_uninstall_with_the_schema_enforced(
    control_plane: Any, cluster_crds: str, helm: Path, namespace: str
) -> None:
    release = f"op-{uuid.uuid4().hex[:6]}"
    common = ["--namespace", namespace, "--set", "watch.allNamespaces=false",
              "--skip-crds"]
    bad = _helm(control_plane, helm, "install", release, str(CHART), *common,
                "--set", "operator.logFormat=yaml")
    assert bad.returncode != 0
    assert "at '/operator/logFormat'" in bad.stderr, bad.stderr

    ok = _helm(control_plane, helm, "install", release, str(CHART), *common)
    assert ok.returncode == 0, ok.stderr
    role = json.loads(control_plane.kubectl(
        "-n", namespace, "get", "role", f"{release}-stemedb-operator", "-o", "json").stdout)
    assert role["rules"]

    bad_upgrade = _helm(control_plane, helm, "upgrade", release, str(CHART), *common,
                        "--set", "serviceMonitor.enable=true")
    assert bad_upgrade.returncode != 0
    assert "additional properties 'enable' not allowed" in bad_upgrade.stderr

    good_upgrade = _helm(control_plane, helm, "upgrade", release, str(CHART), *common,
                         "--set", "operator.logLevel=debug")
    assert good_upgrade.returncode == 0, good_upgrade.stderr
    deploy = json.loads(control_plane.kubectl(
        "-n", namespace, "get", "deploy", f"{release}-stemedb-operator", "-o", "json").stdout)
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--log-level") + 1] == "debug"

    gone = _helm(control_plane, helm, "uninstall", release, "--namespace", namespace)
    assert gone.returncode == 0, gone.stderr


def test_an_upgrade_that_changes_the_ha_mode_stops_the_old_replicas_first(
    control_plane: Any, cluster_crds: str, helm: Path, namespace: str
) -> None:
    """Replicas of two modes (or Leases, or rings) do not see each other: a rolling
    update between them would run an old leader next to new shards, both acting.
    The upgrade that changes the mode recreates; the next one rolls again."""
    release = f"ha-{uuid.uuid4().hex[:6]}"
    common = ["--namespace", namespace, "--set", "watch.allNamespaces=false", "--skip-crds"]
    name = f"{release}-stemedb-operator"

    def deployed(*sets: str) -> tuple[str, str]:
        done = _helm(control_plane, helm, "upgrade", "--install", release, str(CHART),
                     *common, *[a for s in sets for a in ("--set", s)])
        assert done.returncode == 0, done.stderr
        deploy = json.loads(control_plane.kubectl(
            "-n", namespace, "get", "deploy", name, "-o", "json").stdout)
        return (deploy["metadata"]["annotations"]["stemedb.io/ha-mode"],
                deploy["spec"]["strategy"]["type"])

    steps: list[tuple[list[str], tuple[str, str]]] = [
        ([], (f"leader/{name}-leader", "RollingUpdate")),  # a fresh install
        (["operator.logLevel=debug"], (f"leader/{name}-leader", "RollingUpdate")),
        (["sharding.enabled=true"], (f"shard/{name}", "Recreate")),
        (["sharding.enabled=true", "operator.logLevel=debug"], (f"shard/{name}",
                                                                "RollingUpdate")),
        (["sharding.enabled=true", "sharding.ring=other"], ("shard/other", "Recreate")),
        (["leaderElection.enabled=false", "replicaCount=1"], ("single", "Recreate")),
        ([], (f"leader/{name}-leader", "Recreate")),
        (["leaderElection.leaseName=renamed"], ("leader/renamed", "Recreate")),
    ]
    for sets, expected in steps:
        assert deployed(*sets) == expected, sets

    # A Deployment from a chart before the annotation counts as a single operator.
    control_plane.kubectl("-n", namespace, "annotate", "deploy", name,
                          "stemedb.io/ha-mode-")
    assert deployed("leaderElection.leaseName=renamed") == ("leader/renamed", "Recreate")
    assert _helm(control_plane, helm, "uninstall", release, "--namespace",
                 namespace).returncode == 0
