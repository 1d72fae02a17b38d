"""Failover: how long no cluster is polled when the leader replica goes.

Two replicas of the operator as the chart runs them (`stemedb-operator run
--leader-election`, one Lease) poll N clusters in the simulator. Each round takes
the acting replica away in one of three ways, then starts it again as the new
standby and waits until it is ready (`/readyz`: warm, every cluster with a daemon)
before the next round:

- `term`: SIGTERM, as a rolling update or a node drain does: the leader stops
  acting, releases the Lease and exits; the standby takes it on its next attempt.
- `kill`: SIGKILL, as a crash or a lost node: the Lease stays held until the
  standby has seen it unrenewed for its duration (15 s).
- `cut`: the leader's connection to the API server goes silent (it talks through
  `localkube.relay`), StemeDB stays reachable: it must stop acting at its renew
  deadline (10 s after its last renewal), before the standby may take over.

Both replicas' metrics are sampled every 50 ms; a replica is seen acting when its
`stemedb_operator_stemedb_requests_total` grows (a request to StemeDB answered or
failed: a poll's scrape or an admin call). A whole poll is not the signal: a poll
of a cut-off leader never ends (its status write hangs) until it is fenced.
Per round:

    gap       last StemeDB request of the old leader -> first of the new one
              (no cluster polled in between; +- one sample)
    takeover  the signal or cut -> first StemeDB request of the new leader
    fenced    (cut) the cut -> the old leader's last StemeDB request; < takeover

    .venv/bin/python bench/failover.py [--clusters 1000] [--poll 10]
        [--rounds term,kill,cut] [--repeat 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from _stack import (
    BIN,
    Stack,
    cluster_spec,
    install_sigterm,
    machine,
    parse_prom,
    stack,
    table,
    wait,
    write_result,
)

from localkube.processes import Process, free_port
from localkube.relay import Relay

LEASE = "stemedb-operator-leader"
POLLS = "stemedb_operator_stemedb_requests_total"
SAMPLE_SECONDS = 0.05


@dataclass
class Replica:
    name: str
    proc: Process
    metrics_port: int
    health_port: int
    relay: Relay | None = None
    # One client for the 50 ms samples: a new one per request costs an SSL context.
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=2))

    def polls(self) -> float | None:
        """StemeDB requests so far; None if the metrics endpoint does not answer."""
        try:
            text = self.http.get(f"http://127.0.0.1:{self.metrics_port}/metrics").text
        except httpx.HTTPError:
            return None
        return sum(v for n, _, v in parse_prom(text, (POLLS,)) if n == POLLS)

    def ready(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return self.http.get(f"http://127.0.0.1:{self.health_port}/readyz"
                                 ).status_code == 200
        return False


class Replicas:
    def __init__(self, st: Stack) -> None:
        self.st = st
        self.count = 0

    def start(self, via_relay: bool = False) -> Replica:
        self.count += 1
        name = f"replica-{self.count}"
        kubeconfig = self.st.cp.kubeconfig
        relay = None
        if via_relay:
            server = urlparse(self.st.cp.server)
            relay = Relay((server.hostname or "127.0.0.1", server.port or 443))
            self.st.exits.callback(relay.close)
            kubeconfig = self.st.workdir / f"{name}.kubeconfig"
            kubeconfig.write_text(Path(self.st.cp.kubeconfig).read_text().replace(
                self.st.cp.server, f"https://127.0.0.1:{relay.port}"))
        metrics, health = free_port(), free_port()
        proc = Process.spawn(
            [str(BIN / "stemedb-operator"), "run", "--namespace", self.st.namespace,
             "--metrics-port", str(metrics), "--health-port", str(health),
             "--log-format", "json", "--log-level", "info", "--leader-election",
             "--leader-election-namespace", self.st.namespace, "--leader-election-id", LEASE],
            self.st.workdir / f"{name}.log",
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAME": name})
        self.st.exits.callback(proc.stop)
        replica = Replica(name, proc, metrics, health, relay)
        self.st.exits.callback(replica.http.close)
        return replica


def holder(st: Stack) -> str | None:
    r = st.api.get(f"/apis/coordination.k8s.io/v1/namespaces/{st.namespace}/leases/{LEASE}")
    return (r.json().get("spec") or {}).get("holderIdentity") if r.status_code == 200 else None


def one_round(st: Stack, leader: Replica, standby: Replica, mode: str,
              heal: bool = False) -> dict[str, Any]:
    """Take `leader` away by `mode`; measure until `standby` polls. With `heal`, a
    cut leader is reconnected afterwards and stays up (the next standby) instead of
    being stopped."""
    old_before = leader.polls() or 0.0
    new_before = standby.polls() or 0.0
    assert heal or new_before == 0.0, f"the standby {standby.name} polled before taking over"
    # Wait for a poll on the old leader so "last poll" is fresh at the event.
    wait("a poll on the leader", lambda: (leader.polls() or 0.0) > old_before, 30,
         SAMPLE_SECONDS)
    old_count = leader.polls() or 0.0
    last_old = time.monotonic()
    if mode == "cut":
        assert leader.relay is not None
        leader.relay.cut()
    else:
        os.killpg(leader.proc.pid, signal.SIGTERM if mode == "term" else signal.SIGKILL)
    t_event = time.monotonic()
    first_new = None
    while time.monotonic() - t_event < 60:
        now = time.monotonic()
        old = leader.polls()
        if old is not None and old > old_count:
            old_count, last_old = old, now
        new = standby.polls()
        if new and new > new_before:
            first_new = now
            break
        time.sleep(SAMPLE_SECONDS)
    if first_new is None:
        raise RuntimeError(f"{mode}: the standby never polled; logs in {st.workdir}")
    # After the new leader's first poll, the old one must not poll again (cut: it
    # is still running, fenced).
    late = None
    if mode == "cut":
        time.sleep(3.0)
        old = leader.polls()
        late = (old or 0.0) - old_count
    result = {
        "mode": mode,
        "from": leader.name, "to": standby.name,
        "gap_s": round(first_new - last_old, 2),
        "takeover_s": round(first_new - t_event, 2),
        "fenced_s": round(last_old - t_event, 2) if mode == "cut" else None,
        "old_leader_polls_after_takeover": late,
        "old_exit_code": None,
    }
    if mode == "term":
        result["old_exit_code"] = leader.proc.proc.wait(timeout=30)
    elif mode == "cut" and heal:
        assert leader.relay is not None
        leader.relay.heal()
    else:
        leader.proc.stop()
    return result


def run(clusters: int, poll: float, rounds: list[str], name: str) -> dict[str, Any]:
    width = max(4, len(str(clusters)))
    names = [f"c{i:0{width}d}" for i in range(1, clusters + 1)]
    results: list[dict[str, Any]] = []
    with stack() as st:
        sim_url = st.start_simulator("--cluster-count", str(clusters), "--replicas", "2",
                                     "--seed", "1")
        st.create_clusters({n: cluster_spec(sim_url, n, poll) for n in names})
        reps = Replicas(st)
        first = reps.start(via_relay=rounds[0] == "cut")
        wait("the first leader", lambda: holder(st) == first.name, 60)
        wait("every cluster polled once", lambda: (first.polls() or 0) >= clusters,
             poll * 3 + 120)
        leader = first
        for i, mode in enumerate(rounds):
            next_mode = rounds[i + 1] if i + 1 < len(rounds) else None
            standby = reps.start(via_relay=next_mode == "cut")
            wait(f"{standby.name} ready", standby.ready, 120)
            wait(f"{standby.name} watching", lambda s=standby: s.polls() is not None, 30)
            # Ready means its watch and daemons are up: a warm standby.
            time.sleep(2.0)
            r = one_round(st, leader, standby, mode)
            r["load_1m"] = os.getloadavg()[0]
            print(f"[failover] {mode}: gap {r['gap_s']:.2f}s takeover {r['takeover_s']:.2f}s"
                  + (f" fenced {r['fenced_s']:.2f}s" if r["fenced_s"] is not None else ""),
                  file=sys.stderr)
            results.append(r)
            leader = standby
    by_mode: dict[str, dict[str, Any]] = {}
    for mode in dict.fromkeys(rounds):
        rs = [r for r in results if r["mode"] == mode]
        by_mode[mode] = {
            "rounds": len(rs),
            "gap_s": [r["gap_s"] for r in rs],
            "takeover_s": [r["takeover_s"] for r in rs],
            "takeover_max_s": max(r["takeover_s"] for r in rs),
            "gap_median_s": statistics.median(r["gap_s"] for r in rs),
            "fenced_s": [r["fenced_s"] for r in rs if r["fenced_s"] is not None],
        }
    return {"name": name, "machine": machine(), "clusters": clusters, "poll_seconds": poll,
            "rounds": results, "by_mode": by_mode}


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for mode, m in result["by_mode"].items():
        rows.append((f"{mode}: gap without a poll (s)", ", ".join(f"{g:.2f}" for g in m["gap_s"])))
        rows.append((f"{mode}: event -> new leader polls (s)",
                     ", ".join(f"{t:.2f}" for t in m["takeover_s"])))
        if m["fenced_s"]:
            rows.append((f"{mode}: cut -> old leader's last poll (s)",
                         ", ".join(f"{t:.2f}" for t in m["fenced_s"])))
    late = [r["old_leader_polls_after_takeover"] for r in result["rounds"]
            if r["old_leader_polls_after_takeover"] is not None]
    if late:
        rows.append(("cut: old leader's polls after takeover", ", ".join(f"{x:g}" for x in late)))
    rows.append(("load average (1 min) per round",
                 ", ".join(f"{r['load_1m']:.1f}" for r in result["rounds"])))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--poll", type=float, default=10.0, help="pollIntervalSeconds")
    ap.add_argument("--rounds", default="term,kill,cut", help="modes, in order")
    ap.add_argument("--repeat", type=int, default=2, help="repeat the list of modes")
    ap.add_argument("--name", default=None, help="result file name (default failover-N)")
    args = ap.parse_args()
    install_sigterm()
    rounds = [m for m in args.rounds.split(",") if m] * args.repeat
    if not rounds or any(m not in ("term", "kill", "cut") for m in rounds):
        ap.error("--rounds: a comma-separated list of term, kill, cut")
    name = args.name or f"failover-{args.clusters}"
    result = run(args.clusters, args.poll, rounds, name)
    print(table(summary_rows(result), f"bench/failover.py --clusters {args.clusters} "
                                      f"--rounds {','.join(rounds)}"))
    print(f"\nJSON: {write_result(name, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
