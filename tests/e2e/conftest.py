"""End-to-end fixtures: the CRD installed, one simulator, and per test a namespace,
a simulated StemeDB cluster and the operator running under the chart's own
ServiceAccount token (the RBAC the chart renders, applied as it ships)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import CRD, OPERATOR_NS, RELEASE, Env, Simulator, chart_rbac

from localkube import ControlPlane


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "--server-side", "-f", str(CRD))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                          "crd/stemedbclusters.stemedb.io")


@pytest.fixture(scope="session")
def operator_identity(control_plane: ControlPlane, bin_dir: Path) -> str:
    """The chart's own ServiceAccount, ClusterRole and binding, rendered by helm and
    applied as they ship: the operator in these tests holds exactly the chart's rights."""
    docs = chart_rbac(bin_dir / "helm", RELEASE, OPERATOR_NS)
    control_plane.kubectl("create", "namespace", OPERATOR_NS, check=False)
    control_plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1",
                          "kind": "List", "items": docs}))
    return next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount")


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with Simulator.running(tmp_path_factory.mktemp("sim"), "--clusters", "unused",
                           "--seed", "7") as sim:
        yield sim


@pytest.fixture
def env(
    control_plane: ControlPlane,
    crd: None,
    operator_identity: str,
    simulator: Simulator,
    namespace: str,
    tmp_path: Path,
) -> Iterator[Env]:
    kc = control_plane.kubectl
    token = kc("-n", OPERATOR_NS, "create", "token", operator_identity,
               "--duration=2h").stdout.strip()
    kubeconfig = tmp_path / "operator.kubeconfig"
    kubeconfig.write_text(control_plane.kubeconfig_text(user=operator_identity, token=token))
    simulator.sim("POST", "/clusters", {"name": namespace, "replicas": 2, "load": 2000})
    e = Env(control_plane, simulator, namespace, namespace, kubeconfig, tmp_path)
    try:
        yield e
    finally:
        for op in e.operators:
            op.stop()
        simulator.sim("DELETE", f"/clusters/{namespace}")

