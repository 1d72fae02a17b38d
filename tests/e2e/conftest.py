"""End-to-end fixtures: the CRD installed, one simulator, and per test a namespace,
a simulated StemeDB cluster and the operator running under the chart's own
ServiceAccount token (the RBAC the chart renders, applied as it ships)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from harness import (
    CRD,
    Operator,
    Simulator,
    get_cluster,
    wait_for,
)

from localkube import ControlPlane

OPERATOR_NS = "stemedb-e2e-system"
RELEASE = "e2e"
CHART = Path(__file__).resolve().parents[2] / "charts" / "stemedb-operator"


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "--server-side", "-f", str(CRD))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                          "crd/stemedbclusters.stemedb.io")


@pytest.fixture(scope="session")
def operator_identity(control_plane: ControlPlane, bin_dir: Path) -> str:
    """The chart's own ServiceAccount, ClusterRole and binding, rendered by helm and
    applied as they ship: the operator in these tests holds exactly the chart's rights."""
    rendered = subprocess.run(
        [str(bin_dir / "helm"), "template", RELEASE, str(CHART), "--namespace", OPERATOR_NS,
         "--set", "watch.allNamespaces=true"],
        check=True, capture_output=True, text=True,
    ).stdout
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    docs = [d for d in yaml.safe_load_all(rendered) if d and d.get("kind") in wanted]
    assert {d["kind"] for d in docs} == wanted, "the chart renders its RBAC"
    control_plane.kubectl("create", "namespace", OPERATOR_NS, check=False)
    control_plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1",
                          "kind": "List", "items": docs}))
    return next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount")


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with Simulator.running(tmp_path_factory.mktemp("sim"), "--clusters", "unused",
                           "--seed", "7") as sim:
        yield sim


def fast_spec(sim: Simulator, cluster: str, replicas: int = 2, **sections: Any) -> dict[str, Any]:
    """A spec with second-scale windows so a whole episode fits in a test."""
    spec: dict[str, Any] = {
        "primary": {"adminUrl": sim.node_url(cluster, "node1")},
        "replicas": [
            {"id": f"node{i}", "agentId": f"agent-node{i}",
             "metricsUrl": sim.node_url(cluster, f"node{i}")}
            for i in range(2, replicas + 2)
        ],
        "detection": {
            "pollIntervalSeconds": 1,
            "warning": {"lagSeconds": 2, "forSeconds": 1},
            "critical": {"lagSeconds": 4, "forSeconds": 2},
            "escalation": {"lagSeconds": 60},
            "recovery": {"lagSeconds": 1, "forSeconds": 3},
            "staleAfterSeconds": 10,
        },
        "remediation": {
            "cooldownSeconds": 5,
            "maxActionsPerHour": 50,
            "breakerReset": {"timeoutSeconds": 10},
            "throttle": {"stepIntervalSeconds": 4, "restoreStepSeconds": 2},
            "merkleSync": {"timeoutSeconds": 30, "stallTimeoutSeconds": 8, "maxAttempts": 2},
        },
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


@dataclass
class Env:
    """One test's world: its namespace, its simulated cluster, its operator."""

    cp: ControlPlane
    sim: Simulator
    namespace: str
    cluster: str
    kubeconfig: Path
    workdir: Path
    operators: list[Operator] = field(default_factory=list)

    def start_operator(self) -> Operator:
        op = Operator.start(self.kubeconfig, self.namespace, self.workdir / "operator.log")
        self.operators.append(op)
        return op

    def apply(self, spec: dict[str, Any], name: str = "db",
              annotations: dict[str, str] | None = None) -> None:
        body = {
            "apiVersion": "stemedb.io/v1alpha1",
            "kind": "StemeDBCluster",
            "metadata": {"name": name, "namespace": self.namespace,
                         "annotations": annotations or {}},
            "spec": spec,
        }
        self.cp.kubectl("apply", "-f", "-", input=json.dumps(body))

    def get(self, name: str = "db") -> dict[str, Any]:
        return get_cluster(self.cp, self.namespace, name)

    def fault(self, kind: str, **params: Any) -> str:
        return str(self.sim.sim("POST", f"/clusters/{self.cluster}/faults",
                                {"kind": kind, **params})["id"])

    def clear_fault(self, fault_id: str) -> None:
        self.sim.sim("DELETE", f"/clusters/{self.cluster}/faults/{fault_id}")

    def admin_calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """Admin calls the simulator received (scrapes of /metrics excluded)."""
        return [e for e in self.sim.admin_log(self.cluster)
                if "/metrics" not in e["endpoint"] and (method is None or e["method"] == method)]

    def writes(self) -> list[dict[str, Any]]:
        return self.admin_calls("POST")

    def wait_status(self, what: str, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.get()
            return obj if predicate(obj) else None

        try:
            return dict(wait_for(what, probe, timeout=timeout))
        except AssertionError:
            print(self.operator_logs()[-6000:])
            raise

    def operator_logs(self) -> str:
        return "\n".join(op.logs() for op in self.operators[-1:])


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


__all__ = ["Env", "fast_spec", "wait_for"]
