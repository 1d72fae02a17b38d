"""Processes the end-to-end tests drive: the simulator and the operator as it ships.

Both run as real subprocesses through their console commands; the tests talk to
the simulator over HTTP and read the cluster with the real kubectl.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from localkube import ControlPlane

REPO = Path(__file__).resolve().parents[2]
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
    """Poll `probe` until it returns something truthy: the tests wait for an
    observable outcome, never for a fixed time."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@dataclass
class Simulator:
    """A `stemedb-sim serve` process and its control API."""

    url: str
    proc: subprocess.Popen[str]
    log: Path

    @classmethod
    @contextlib.contextmanager
    def running(cls, workdir: Path, *args: str) -> Iterator[Simulator]:
        log = workdir / "simulator.log"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [_bin("stemedb-sim"), "serve", "--host", "127.0.0.1", "--port", "0", *args],
                stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
            )
        assert proc.stdout is not None
        url = ""
        try:
            for line in proc.stdout:
                if line.startswith("READY "):
                    url = line.split()[1].rstrip("/")
                    break
            if not url:
                raise RuntimeError(f"simulator did not start:\n{log.read_text()}")
            yield cls(url=url, proc=proc, log=log)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

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


@dataclass
class Operator:
    """`stemedb-operator run` under a given kubeconfig, logging to a file."""

    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, kubeconfig: Path, namespace: str, log: Path, *extra: str) -> Operator:
        out = open(log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [_bin("stemedb-operator"), "run", "--namespace", namespace,
             "--metrics-port", "0", "--health-port", "0", "--log-format", "json", *extra],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )
        return cls(proc=proc, log=log)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


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
