"""Processes the end-to-end tests drive: the simulator and the operator as it ships.

Both run as real subprocesses through their console commands; the tests talk to
the simulator over HTTP and read the cluster with the real kubectl.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from localkube import ControlPlane
from localkube.processes import Process, wait_until
from localkube.simulator import (
    FAST_DETECTION,
    FAST_REMEDIATION,
    cluster_object,
    cluster_spec,
    start_simulator,
    with_sections,
)

REPO = Path(__file__).resolve().parents[2]
# The namespace and Helm release the e2e operator's RBAC is rendered for (conftest).
OPERATOR_NS = "stemedb-e2e-system"
RELEASE = "e2e"
CRD = REPO / "crds" / "stemedbclusters.stemedb.io.yaml"


def chart_rbac(helm: Path, release: str, namespace: str) -> list[dict[str, Any]]:
    """The chart's ServiceAccount, ClusterRole and binding (ClusterRole mode), rendered
    by helm as they ship: the operator in the e2e tests holds exactly these rights."""
    rendered = subprocess.run(
        [str(helm), "template", release, str(REPO / "charts" / "stemedb-operator"),
         "--namespace", namespace, "--set", "watch.allNamespaces=true"],
        check=True, capture_output=True, text=True,
    ).stdout
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    docs = [d for d in yaml.safe_load_all(rendered) if d and d.get("kind") in wanted]
    assert {d["kind"] for d in docs} == wanted, "the chart renders its RBAC"
    return docs


def wait_for(
    what: str, probe: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25
) -> Any:
    """Poll `probe` until it returns something truthy; a timeout fails the test."""
    return wait_until(what, probe, timeout, interval, AssertionError)


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@dataclass
class Simulator:
    """A `stemedb-sim serve` process and its control API."""

    url: str
    proc: Process
    log: Path

    @classmethod
    @contextlib.contextmanager
    def running(cls, workdir: Path, *args: str) -> Iterator[Simulator]:
        proc, url = start_simulator(workdir / "simulator.log", *args)
        try:
            yield cls(url=url, proc=proc, log=proc.log)
        finally:
            proc.stop(timeout=10)

    def node_url(self, cluster: str, node: str) -> str:
        return f"{self.url}/c/{cluster}/{node}"

    def sim(self, method: str, path: str, body: Any = None) -> Any:
        resp = httpx.request(method, f"{self.url}/sim/v1{path}", json=body, timeout=10)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def admin_log(self, cluster: str) -> list[dict[str, Any]]:
        data = self.sim("GET", f"/clusters/{cluster}/admin-log")
        return list(data["entries"] if isinstance(data, dict) else data)

    def state(self, cluster: str) -> dict[str, Any]:
        return dict(self.sim("GET", f"/clusters/{cluster}/state"))


class Operator(Process):
    """`stemedb-operator run` under a given kubeconfig, logging to a file."""

    @classmethod
    def start(cls, kubeconfig: Path, namespace: str, log: Path, *extra: str) -> Operator:
        return cls.spawn(
            [_bin("stemedb-operator"), "run", "--namespace", namespace,
             "--metrics-port", "0", "--health-port", "0", "--log-format", "json", *extra],
            log, env={**os.environ, "KUBECONFIG": str(kubeconfig)}, append=True,
        )


def get_cluster(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    out = cp.kubectl("-n", namespace, "get", "stemedbcluster", name, "-o", "json").stdout
    return dict(json.loads(out))


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def events(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cp.kubectl(
        "-n", namespace, "get", "events", "-o", "json",
        f"--field-selector=involvedObject.name={name}",
    ).stdout
    return list(json.loads(out)["items"])


def fast_spec(sim: Simulator, cluster: str, replicas: int = 2, **sections: Any) -> dict[str, Any]:
    """A spec with second-scale windows so a whole episode fits in a test; each section
    given merges into (one level deep) or replaces the fast one."""
    spec = cluster_spec(sim.url, cluster, replicas, detection=FAST_DETECTION,
                        remediation=FAST_REMEDIATION)
    return with_sections(spec, sections)


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
        body = cluster_object(name, self.namespace, spec, annotations or {})
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
