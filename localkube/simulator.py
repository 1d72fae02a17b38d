"""The simulator as the demo, the benchmarks and the e2e tests start it, and the
StemeDBCluster they point at it."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

from localkube.processes import Process
from stemedb_sim.cli import READY_PREFIX

BIN = Path(sys.executable).parent
API_VERSION = "stemedb.io/v1alpha1"


def start_simulator(log: Path, *args: str, timeout: float = 120.0) -> tuple[Process, str]:
    """`stemedb-sim serve` on a free loopback port, output to `log`; returns the process
    and its base URL once it has printed its READY line (stopped if it never does)."""
    sim = Process.spawn([str(BIN / "stemedb-sim"), "serve", "--host", "127.0.0.1",
                         "--port", "0", *args], log)
    try:
        url = sim.wait_for_line(READY_PREFIX, timeout).split()[0].rstrip("/")
    except BaseException:
        sim.stop()
        raise
    return sim, url


def with_sections(spec: dict[str, Any], sections: dict[str, Any]) -> dict[str, Any]:
    """`spec` with each section merged into the same-named one (one level deep) when
    both are mappings, else set to it."""
    out = dict(spec)
    for key, value in sections.items():
        value = copy.deepcopy(value)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def cluster_spec(sim_url: str, cluster: str, replicas: int = 2,
                 **sections: Any) -> dict[str, Any]:
    """A spec for the simulator's cluster `cluster`: primary node1, replicas node2 ..
    node{replicas+1}, and the given sections (detection, remediation, ...)."""
    node = f"{sim_url}/c/{cluster}"
    spec: dict[str, Any] = {
        "primary": {"adminUrl": f"{node}/node1"},
        "replicas": [{"id": f"node{i}", "agentId": f"agent-node{i}",
                      "metricsUrl": f"{node}/node{i}"} for i in range(2, replicas + 2)],
    }
    return with_sections(spec, sections)


def cluster_object(name: str, namespace: str, spec: dict[str, Any],
                   annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The StemeDBCluster object with that spec, as kubectl applies or the API takes it."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"apiVersion": API_VERSION, "kind": "StemeDBCluster", "metadata": metadata,
            "spec": spec}


# Second-scale windows, so a whole episode fits in a test.
FAST_DETECTION = {
    "pollIntervalSeconds": 1,
    "warning": {"lagSeconds": 2, "forSeconds": 1},
    "critical": {"lagSeconds": 4, "forSeconds": 2},
    "escalation": {"lagSeconds": 60},
    "recovery": {"lagSeconds": 1, "forSeconds": 3},
    "staleAfterSeconds": 10,
}
FAST_REMEDIATION = {
    "cooldownSeconds": 5,
    "maxActionsPerHour": 50,
    "breakerReset": {"timeoutSeconds": 10},
    "throttle": {"stepIntervalSeconds": 4, "restoreStepSeconds": 2},
    "merkleSync": {"timeoutSeconds": 30, "stallTimeoutSeconds": 8, "maxAttempts": 2},
}
