"""What two processes cost against one, with and without sharding.

The sharding target compares two or three shards with one process doing the same
work. This bench separates what that comparison mixes: the cost of running the
work in two processes at all, and the cost of the sharding (a shard watches
every cluster and holds a daemon for each, polling only its own).

One control plane and one simulator; N clusters in two namespaces, half in each.
Each round runs three set-ups in turn, each for a steady window of `--window`
seconds once every cluster has been polled and the API server has seen no write
from the operators for `QUIET` seconds:

- `single`: one process watching both namespaces;
- `split`: two processes, each watching one namespace (no sharding: two
  independent operators, each with half the clusters and only those);
- `shards`: two processes with `--sharding` over both namespaces (one ring).

Rounds interleave the set-ups, so a drift of the machine shows as a spread
between rounds rather than as a difference between set-ups.

    .venv/bin/python bench/split.py [--clusters 3000] [--window 60] [--rounds 2] [--pin CPU]

`--pin 0` runs every operator process on CPU 0 and the simulator and the control
plane on the others: the set-ups then differ only in how the operators' work is
divided, not in how they share the cores with the simulator.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
from _stack import (
    BIN,
    Stack,
    cluster_spec,
    cpu_seconds,
    install_sigterm,
    machine,
    mem_kib,
    on_cpu,
    parse_prom,
    pin_rig,
    stack,
    table,
    wait,
    write_result,
)

from localkube.processes import Process, free_port

NAMESPACES = ("split-a", "split-b")
POLLS = "stemedb_operator_poll_duration_seconds_count"
QUIET = 10.0  # seconds without an operator write to the API server before a window


@dataclass
class Proc:
    name: str
    proc: Process
    metrics_port: int

    def polls(self) -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics",
                             params={"name[]": [POLLS]}, timeout=5).text
        except httpx.HTTPError:
            return 0.0
        return sum(v for n, _, v in parse_prom(text, (POLLS,)) if n == POLLS)


# `--pin`: the operators on this CPU, everything else (simulator, API server,
# etcd) on the others; None: wherever the kernel puts them.
PIN: int | None = None


def start(st: Stack, name: str, namespaces: tuple[str, ...], *extra: str) -> Proc:
    port = free_port()
    args = [a for ns in namespaces for a in ("--namespace", ns)]
    proc = Process.spawn(
        [*on_cpu(PIN), str(BIN / "stemedb-operator"), "run", *args, "--metrics-port", str(port),
         "--health-port", "0", "--log-format", "json", "--log-level", "warning", *extra],
        st.workdir / f"{name}.log",
        env={**os.environ, "KUBECONFIG": str(st.cp.kubeconfig), "POD_NAME": name},
        append=True)
    st.exits.callback(proc.stop)
    return Proc(name, proc, port)


def setup(st: Stack, kind: str) -> list[Proc]:
    if kind == "single":
        return [start(st, "single", NAMESPACES)]
    if kind == "split":
        return [start(st, f"split-{i}", (ns,)) for i, ns in enumerate(NAMESPACES)]
    return [start(st, f"shard-{i}", NAMESPACES, "--sharding",
                  "--leader-election-namespace", st.namespace, "--shard-ring", "split")
            for i in range(2)]


def writes(st: Stack) -> float:
    return sum(v for k, v in st.apiserver_requests().items()
               if k[0] in ("PATCH", "PUT", "POST", "DELETE") and k[1] == "stemedbclusters")


def quiet(st: Stack, timeout: float) -> float:
    """Wait until the API server has seen no write to a StemeDBCluster for QUIET
    seconds (first status writes, `status.shard`); returns the seconds waited."""
    began = time.monotonic()
    last, since = writes(st), time.monotonic()
    while time.monotonic() - since < QUIET:
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"the operators still write after {timeout:.0f} s")
        time.sleep(1.0)
        now = writes(st)
        if now != last:
            last, since = now, time.monotonic()
    return round(time.monotonic() - began, 1)


def measure(st: Stack, kind: str, clusters: int, seconds: float, poll: float) -> dict[str, Any]:
    procs = setup(st, kind)
    try:
        wait(f"{kind}: every cluster polled", lambda: sum(p.polls() for p in procs) >= clusters,
             poll * 3 + 180)
        waited = quiet(st, clusters / 10 + 180)
        polls0 = {p.name: p.polls() for p in procs}
        cpu0 = {p.name: cpu_seconds(p.proc.pid) for p in procs}
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        cpu = {p.name: cpu_seconds(p.proc.pid) - cpu0[p.name] for p in procs}
        polls = {p.name: p.polls() - polls0[p.name] for p in procs}
        rss = {p.name: round(mem_kib(p.proc.pid)["VmRSS"] / 1024) for p in procs}
    finally:
        for p in procs:
            p.proc.stop()
    return {"kind": kind, "seconds": round(elapsed, 1), "quiet_wait_s": waited,
            "polls": sum(polls.values()), "polls_each": polls,
            "cpu_total_pct": round(100 * sum(cpu.values()) / elapsed, 1),
            "cpu_each_pct": {n: round(100 * c / elapsed, 1) for n, c in cpu.items()},
            "rss_mib": rss, "load_1m": os.getloadavg()[0]}


def run(clusters: int, poll: float, seconds: float, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "clusters": clusters, "poll_seconds": poll,
                           "window_seconds": seconds, "pinned_cpu": PIN, "rounds": []}
    width = max(4, len(str(clusters)))
    with stack() as st:
        sim_url = st.start_simulator("--cluster-count", str(clusters), "--replicas", "2",
                                     "--seed", "1")
        if PIN is not None:
            pin_rig(st, PIN)
        for ns in NAMESPACES:
            st.cp.kubectl("create", "namespace", ns)
        names = [f"c{i:0{width}d}" for i in range(1, clusters + 1)]
        half = clusters // 2
        for ns, part in zip(NAMESPACES, (names[:half], names[half:]), strict=True):
            st.create_clusters({n: cluster_spec(sim_url, n, poll) for n in part}, ns)
        for n in range(rounds):
            row = {}
            for kind in ("single", "split", "shards"):
                row[kind] = measure(st, kind, clusters, seconds, poll)
                w = row[kind]
                print(f"[bench] round {n + 1} {kind}: {w['cpu_total_pct']} % "
                      f"({w['cpu_each_pct']}), {w['polls']:.0f} polls, load {w['load_1m']:.2f}",
                      file=sys.stderr)
            out["rounds"].append(row)
    return out


def rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    lines = []
    for i, row in enumerate(r["rounds"], 1):
        base = row["single"]["cpu_total_pct"]
        for kind in ("single", "split", "shards"):
            w = row[kind]
            vs = "" if kind == "single" else f" ({100 * (w['cpu_total_pct'] / base - 1):+.0f} %)"
            lines.append((f"round {i} {kind}",
                          f"{w['cpu_total_pct']} %{vs}, {w['polls']:.0f} polls, "
                          f"RSS {w['rss_mib']}, load {w['load_1m']:.2f}"))
    return lines


def main() -> int:
    install_sigterm()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=3000)
    ap.add_argument("--poll", type=float, default=10.0)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pin", type=int, default=None, metavar="CPU",
                    help="run the operators on this CPU only, the rest on the others")
    a = ap.parse_args()
    global PIN
    PIN = a.pin
    result = run(a.clusters, a.poll, a.window, a.rounds)
    path = write_result(f"split-{a.clusters}{'' if PIN is None else '-pinned'}", result)
    print(table(rows(result), f"one process, two split by namespace, two shards: "
                              f"{a.clusters} clusters, {a.window:.0f} s windows"))
    print(f"(written to {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
