"""What every benchmark starts: a local control plane, the CRD, one simulator, the
operator as it ships (`stemedb-operator run`), and the probes that read them.

Everything is started under one `contextlib.ExitStack`, so a failure, Ctrl-C or
SIGTERM stops every process this module started (each in its own session,
stopped by its own process-group id).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from localkube import ControlPlane, ensure_binaries  # noqa: E402
from localkube.processes import Process, free_port, wait_until  # noqa: E402
from localkube.simulator import cluster_object, start_simulator  # noqa: E402
from localkube.simulator import cluster_spec as _cluster_spec  # noqa: E402

CRD = REPO / "crds" / "stemedbclusters.stemedb.io.yaml"
RESULTS = REPO / "bench" / "results"
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
GROUP, VERSION, PLURAL = "stemedb.io", "v1alpha1", "stemedbclusters"
# The resources the operator reads or writes; the API server's own loops touch others.
OPERATOR_RESOURCES = {"stemedbclusters", "events", "secrets", "pods"}


def machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lscpu
                  if line.startswith("Model name")), "?")
    return {"nproc": os.cpu_count(), "cpu": model, "python": sys.version.split()[0]}


# ------------------------------------------------------------------ /proc probes
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mem_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS", "Threads")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


# ------------------------------------------------------------- Prometheus text
_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prom(text: str, prefixes: tuple[str, ...]) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if not line.startswith(prefixes):
            continue
        m = _LINE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


@dataclass
class Histogram:
    buckets: list[tuple[float, float]]  # (le, cumulative count), ascending, +Inf last
    count: float
    total: float

    def minus(self, other: Histogram) -> Histogram:
        return Histogram([(le, c - o) for (le, c), (_, o) in zip(self.buckets, other.buckets,
                                                               strict=True)],
                         self.count - other.count, self.total - other.total)

    def quantile(self, q: float) -> float:
        """Linear interpolation inside the bucket (as PromQL's histogram_quantile)."""
        if self.count <= 0:
            return float("nan")
        rank = q * self.count
        prev_le, prev_c = 0.0, 0.0
        for le, c in self.buckets:
            if c >= rank:
                if le == float("inf"):
                    return prev_le
                return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)
            prev_le, prev_c = le, c
        return prev_le


def histogram(samples: list[tuple[str, dict[str, str], float]], name: str,
              **match: str) -> Histogram:
    buckets: dict[float, float] = {}
    count = total = 0.0
    for metric, labels, value in samples:
        if any(labels.get(k) != v for k, v in match.items()):
            continue
        if metric == f"{name}_bucket":
            le = float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + value
        elif metric == f"{name}_count":
            count += value
        elif metric == f"{name}_sum":
            total += value
    return Histogram(sorted(buckets.items()), count, total)


@dataclass
class Stack:
    cp: ControlPlane
    workdir: Path
    namespace: str
    exits: contextlib.ExitStack
    sim_url: str = ""
    sim: Process | None = None
    operator: Process | None = None
    operator_metrics_port: int = 0
    api: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.api = httpx.Client(base_url=self.cp.server, verify=str(self.cp.ca_file),
                                headers={"Authorization": f"Bearer {self.cp.admin_token}"},
                                timeout=60)
        self.exits.callback(self.api.close)

    # -- the simulator ---------------------------------------------------
    def start_simulator(self, *args: str) -> str:
        self.sim, self.sim_url = start_simulator(self.workdir / "simulator.log", *args)
        self.exits.callback(self.sim.stop)
        return self.sim_url

    def sim_api(self, method: str, path: str, body: Any = None) -> Any:
        r = httpx.request(method, f"{self.sim_url}/sim/v1{path}", json=body, timeout=30)
        r.raise_for_status()
        return r.json() if r.content else None

    # -- the operator ----------------------------------------------------
    def start_operator(self, *extra: str) -> Process:
        self.operator_metrics_port = free_port()
        self.operator = Process.spawn(
            [str(BIN / "stemedb-operator"), "run", "--namespace", self.namespace,
             "--metrics-port", str(self.operator_metrics_port), "--health-port", "0",
             "--log-format", "json", "--log-level", "warning", *extra],
            self.workdir / "operator.log",
            env={**os.environ, "KUBECONFIG": str(self.cp.kubeconfig)}, append=True)
        self.exits.callback(self.operator.stop)
        return self.operator

    def operator_metrics(self) -> list[tuple[str, dict[str, str], float]]:
        r = httpx.get(f"http://127.0.0.1:{self.operator_metrics_port}/metrics", timeout=30)
        r.raise_for_status()
        return parse_prom(r.text, ("stemedb_operator_poll", "stemedb_operator_actions",
                                   "stemedb_operator_stemedb_requests_total"))

    def wait_operator_metrics(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.operator is not None
            if self.operator.poll() is not None:
                raise RuntimeError("operator exited:\n" + self.operator.log.read_text()[-3000:])
            with contextlib.suppress(httpx.HTTPError):
                self.operator_metrics()
                return
            time.sleep(0.2)
        raise RuntimeError("operator metrics endpoint never came up")

    # -- the API server --------------------------------------------------
    def apiserver_requests(self, codes: bool = False) -> dict[tuple[str, ...], float]:
        """apiserver_request_total summed by (verb, resource, subresource), and the
        response code with `codes`, for the resources the operator uses. The metric
        has no user label, so benches read it while nothing but the operator talks
        to those resources."""
        text = self.api.get("/metrics").text
        out: dict[tuple[str, ...], float] = {}
        for _, labels, value in parse_prom(text, ("apiserver_request_total{",)):
            res = labels.get("resource", "")
            if res not in OPERATOR_RESOURCES:
                continue
            key: tuple[str, ...] = (labels.get("verb", ""), res, labels.get("subresource", ""))
            if codes:
                key = (*key, labels.get("code", ""))
            out[key] = out.get(key, 0.0) + value
        return out

    def create_clusters(self, specs: dict[str, dict[str, Any]],
                        namespace: str | None = None) -> float:
        """POST one StemeDBCluster per spec (in `namespace`, else the stack's);
        returns the seconds it took."""
        t0 = time.monotonic()
        namespace = namespace or self.namespace
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        for name, spec in specs.items():
            r = self.api.post(path, json=cluster_object(name, namespace, spec))
            if r.status_code != 201:
                raise RuntimeError(f"creating {name}: {r.status_code} {r.text[:500]}")
        return time.monotonic() - t0

    def pids(self) -> dict[str, int]:
        out = {p.program: p.pid for p in self.cp._procs}
        if self.sim:
            out["simulator"] = self.sim.pid
        if self.operator:
            out["operator"] = self.operator.pid
        return out


@contextlib.contextmanager
def stack(namespace: str = "bench") -> Iterator[Stack]:
    """Control plane + CRD + namespace; the caller starts the simulator and operator."""
    import tempfile

    with contextlib.ExitStack() as exits:
        workdir = Path(tempfile.mkdtemp(prefix="stemedb-bench-"))
        cp = exits.enter_context(ControlPlane.running(ensure_binaries()))
        cp.kubectl("apply", "--server-side", "-f", str(CRD))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                   f"crd/{PLURAL}.{GROUP}")
        cp.kubectl("create", "namespace", namespace)
        print(f"[bench] control plane at {cp.server}, workdir {workdir}", file=sys.stderr)
        yield Stack(cp=cp, workdir=workdir, namespace=namespace, exits=exits)


def cluster_spec(sim_url: str, name: str, poll: float = 10.0,
                 **detection: Any) -> dict[str, Any]:
    """Primary + 2 replicas at the simulator, the given poll interval."""
    return _cluster_spec(sim_url, name, detection={"pollIntervalSeconds": poll, **detection})


def pin_rig(st: Stack, cpu: int) -> None:
    """Move every thread of the simulator and the control plane off `cpu`, which
    the operators get to themselves (`on_cpu`): on a 2-core machine the operators
    then compete with each other only, as Pods of their own would, and not with
    the rig's processes (Go starts new threads from old ones, which inherit the
    mask)."""
    others = set(range(os.cpu_count() or 1)) - {cpu}
    if not others:
        raise RuntimeError("--pin needs at least 2 CPUs")
    for pid in st.pids().values():
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), others)


def on_cpu(cpu: int | None) -> list[str]:
    """The prefix that starts a command on `cpu` only (None: anywhere)."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def table(rows: list[tuple[str, str]], title: str) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)


def wait(what: str, probe: Any, timeout: float, interval: float = 0.2) -> Any:
    """Poll `probe` until it returns something true (returned), or fail the run."""
    return wait_until(what, probe, timeout, interval, RuntimeError)


def install_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every ExitStack callback runs."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, handler)
