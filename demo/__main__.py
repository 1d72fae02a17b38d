"""The demo: local control plane, simulator, operator, a fault, and the escalation
and recovery as a human sees them with kubectl.

    python -m demo [--keep]

Story: a backup job saturates the disk of replica node2. The operator sees the
lag cross the critical threshold, checks node2's circuit breaker (not tripped),
throttles ingestion step by step until the lag drains, and, once the backup is
over and the replica has recovered, ramps the rate back to what it was.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from localkube import ControlPlane, ensure_binaries
from localkube.processes import Process
from localkube.simulator import cluster_object, cluster_spec, start_simulator

REPO = Path(__file__).resolve().parent.parent
CRD = REPO / "crds" / "stemedbclusters.stemedb.io.yaml"
NS = "stemedb-demo"
BIN = Path(sys.executable).parent


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


class Demo:
    def __init__(self, cp: ControlPlane, sim_url: str, workdir: Path) -> None:
        self.cp, self.sim_url, self.workdir = cp, sim_url, workdir
        self.last_row = ""

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.cp.kubectl(*args, input=input).stdout

    def show(self, *args: str) -> None:
        print(f"$ kubectl {' '.join(args)}")
        print(self.kubectl(*args).rstrip())

    def sim(self, method: str, path: str, body: Any = None) -> Any:
        r = httpx.request(method, f"{self.sim_url}/sim/v1{path}", json=body, timeout=10)
        r.raise_for_status()
        return r.json() if r.content else None

    def status(self) -> dict[str, Any]:
        out = self.kubectl("-n", NS, "get", "sdb", "demo", "-o", "json")
        return dict(json.loads(out).get("status") or {})

    def watch_until(self, what: str, done: Any, timeout: float = 180) -> dict[str, Any]:
        """Print the printer-column row whenever it changes, until `done(status)`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.kubectl("-n", NS, "get", "sdb", "demo", "--no-headers").rstrip()
            stable = " ".join(row.split()[:-1])  # without the AGE column
            if stable != self.last_row:
                lag = self.sim("GET", "/clusters/demo/state")["replicas"]["node2"]["lag_seconds"]
                print(f"  {time.strftime('%H:%M:%S')}  {row}   (true lag of node2: {lag:.1f}s)")
                self.last_row = stable
            status = self.status()
            if done(status):
                return status
            time.sleep(1)
        raise SystemExit(f"demo: timed out waiting for {what}")


def cluster_manifest(sim_url: str) -> dict[str, Any]:
    return cluster_object("demo", NS, cluster_spec(
        sim_url, "demo",
        # The runbook's thresholds scaled down from minutes to seconds for the demo.
        detection={
            "pollIntervalSeconds": 2,
            "warning": {"lagSeconds": 5, "forSeconds": 4},
            "critical": {"lagSeconds": 10, "forSeconds": 4},
            "escalation": {"lagSeconds": 60},
            "recovery": {"lagSeconds": 3, "forSeconds": 6},
        },
        remediation={
            "cooldownSeconds": 10,
            "throttle": {"stepIntervalSeconds": 8, "restoreStepSeconds": 6},
        },
    ))


def run(keep: bool) -> int:
    say("Building or reusing the local control plane (etcd + kube-apiserver)")
    bin_dir = ensure_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="stemedb-demo-"))
    procs: list[Process] = []
    try:
        with ControlPlane.running(bin_dir, workdir=workdir / "kube") as cp:
            print(f"kube-apiserver ready at {cp.server}")
            say("Starting the StemeDB simulator (primary node1, replicas node2 and node3)")
            sim, sim_url = start_simulator(workdir / "sim.log", "--clusters", "demo",
                                           "--replicas", "2", "--seed", "1")
            procs.append(sim)
            print(f"simulator at {sim_url}; primary /metrics: {sim_url}/c/demo/node1/metrics")

            say("Installing the CRD and starting the operator")
            cp.kubectl("apply", "--server-side", "-f", str(CRD))
            cp.kubectl("wait", "--for=condition=Established", "crd/stemedbclusters.stemedb.io")
            cp.kubectl("create", "namespace", NS)
            log = workdir / "operator.log"
            op = Process.spawn([str(BIN / "stemedb-operator"), "run", "--namespace", NS,
                                "--metrics-port", "0", "--health-port", "0",
                                "--log-format", "console"], log, env=cp.env())
            procs.append(op)
            print(f"operator running (log: {log})")

            demo = Demo(cp, sim_url, workdir)
            say("Applying a StemeDBCluster")
            demo.kubectl("apply", "-f", "-", input=json.dumps(cluster_manifest(sim_url)))
            demo.watch_until("a first healthy look", lambda s: s.get("laggingReplicas") == 0
                             and s.get("summary", "").startswith("2 of 2"), timeout=60)
            demo.show("get", "stemedbclusters", "-n", NS)

            say("Fault: a backup job saturates node2's disk (apply capacity 3000/s -> 1200/s, "
                "offered load 2000/s)")
            fault = demo.sim("POST", "/clusters/demo/faults",
                             {"kind": "disk_saturation", "replica": "node2",
                              "capacity_factor": 0.4})
            say("Watching: detection, the breaker check, throttle steps (kubectl get, on change)")
            demo.watch_until("a throttle below node2's capacity", lambda s:
                             (s.get("throttle") or {}).get("currentRate") is not None
                             and s["throttle"]["currentRate"] < 1200)
            demo.show("describe", "stemedbcluster", "demo", "-n", NS)

            say("The backup finishes: node2's disk is back to full speed")
            demo.sim("DELETE", f"/clusters/demo/faults/{fault['id']}")
            demo.watch_until("recovery and the restored rate", lambda s:
                             s.get("laggingReplicas") == 0
                             and (s.get("throttle") or {}).get("phase") == "None"
                             and s.get("lastEpisode") is not None)
            say("Recovered: conditions, history and Events as kubectl describe shows them")
            demo.show("describe", "stemedbcluster", "demo", "-n", NS)
            calls = [f"{e['method']} {e['endpoint']} {json.dumps(e['body'])}"
                     for e in demo.sim("GET", "/clusters/demo/admin-log")["entries"]]
            say("Every admin call the simulator received from the operator")
            print("\n".join(f"  {c}" for c in calls))
            if keep:
                say("Left running. In another shell:")
                print(f"  export KUBECONFIG={cp.kubeconfig}\n"
                      f"  {bin_dir}/kubectl get sdb -n {NS}\nPress Ctrl-C to stop.")
                with contextlib.suppress(KeyboardInterrupt):
                    signal.pause()
    finally:
        say("Cleaning up")
        for p in reversed(procs):
            p.stop(timeout=15)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true",
                        help="leave everything running at the end, until Ctrl-C")
    return run(parser.parse_args().keep)


if __name__ == "__main__":
    raise SystemExit(main())
