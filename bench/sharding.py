"""Sharding: N clusters over 2, then 3 operator processes (`--sharding`), against
one process doing the same work.

Phases, on one control plane and one simulator, each a steady window of
`--window` seconds after every cluster has been polled:

1. `single`: one process as it runs without the chart's election (no
   `--sharding`): its CPU seconds and polls are the baseline.
2. `2 shards`: two processes with `--sharding` (their own Leases, one ring).
3. a third shard joins: how many claims (`status.shard`) change against the
   minimum (the clusters the ring gives the newcomer; ideally N/3), then the
   `3 shards` window.
4. one shard is SIGKILLed: the seconds until the survivors' claims
   (`stemedb_operator_shard_clusters`, summed) cover half, 90 % and all of its
   clusters again; then a window of the two survivors.
5. `single again`: one process once more, now that every status is written (the
   first window also carries its start-up); the baseline of the comparisons.

Per window: polls per shard against an even split, total operator CPU against
the single process, and double polls: for every cluster, scrapes of its primary
(`/metrics` requests the simulator counts) beyond what one poller can make in
the window (floor(window / interval) + 1). Across the rebalance a moved cluster
is allowed one more (the old owner's last poll and the new owner's first may
fall in one interval without overlapping).

    .venv/bin/python bench/sharding.py [--clusters 3000] [--poll 10] [--window 60]

`--takeovers ROUNDS [--shards 3]` measures only step 4, ROUNDS times in one stack
(a fresh shard joins after each kill), and splits each takeover into the Lease's
expiry (the first claim) and the claims' pace.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
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
    parse_prom,
    stack,
    table,
    wait,
    write_result,
)

from controller.domain.sharding import owner
from localkube.processes import Process, free_port

RING = "bench"
POLLS = "stemedb_operator_poll_duration_seconds_count"
CLAIMED = "stemedb_operator_shard_clusters"


@dataclass
class Proc:
    name: str
    proc: Process
    metrics_port: int
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5))

    def metrics(self) -> dict[str, float]:
        try:
            # Only these two (prometheus_client's `name[]` filter): the whole page at
            # 1,000 clusters costs the process ~25 ms, and the takeover is sampled
            # every 0.2 s on every survivor.
            text = self.http.get(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                 params={"name[]": [POLLS, CLAIMED]}).text
        except httpx.HTTPError:
            return {}
        out: dict[str, float] = {}
        for n, _, v in parse_prom(text, (POLLS, CLAIMED)):
            out[n] = out.get(n, 0.0) + v
        return out

    def polls(self) -> float:
        return self.metrics().get(POLLS, 0.0)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)


def start(st: Stack, name: str, *extra: str) -> Proc:
    port = free_port()
    proc = Process.spawn(
        [str(BIN / "stemedb-operator"), "run", "--namespace", st.namespace,
         "--metrics-port", str(port), "--health-port", "0", "--log-format", "json",
         "--log-level", "warning", *extra],
        st.workdir / f"{name}.log",
        env={**os.environ, "KUBECONFIG": str(st.cp.kubeconfig), "POD_NAME": name})
    st.exits.callback(proc.stop)
    p = Proc(name, proc, port)
    st.exits.callback(p.http.close)
    return p


def shard(st: Stack, name: str) -> Proc:
    return start(st, name, "--sharding", "--leader-election-namespace", st.namespace,
                 "--shard-ring", RING)


def claims(st: Stack, members: list[str] | None = None) -> dict[str, str | None]:
    """Each cluster's claim (`status.shard`), or with `members` the ring's owner."""
    r = st.api.get(f"/apis/stemedb.io/v1alpha1/namespaces/{st.namespace}/stemedbclusters")
    r.raise_for_status()
    return {i["metadata"]["name"]: (owner(i["metadata"]["uid"], members) if members
                                    else (i.get("status") or {}).get("shard"))
            for i in r.json()["items"]}


def scrapes(st: Stack, names: list[str], sim: httpx.Client) -> dict[str, int]:
    """The primary's /metrics requests so far, per cluster (the simulator counts them)."""
    out = {}
    for n in names:
        r = sim.get(f"{st.sim_url}/sim/v1/clusters/{n}/state")
        r.raise_for_status()
        out[n] = int((r.json().get("metrics_requests") or {}).get("node1", 0))
    return out


def window(st: Stack, procs: list[Proc], names: list[str], seconds: float, poll: float,
           sim: httpx.Client, moved: set[str] | None = None) -> dict[str, Any]:
    """Polls, CPU and double polls of `procs` over `seconds`."""
    t0 = time.monotonic()
    before = scrapes(st, names, sim)
    polls0 = {p.name: p.polls() for p in procs}
    cpu0 = {p.name: p.cpu() for p in procs}
    time.sleep(seconds)
    polls1 = {p.name: p.polls() for p in procs}
    cpu1 = {p.name: p.cpu() for p in procs}
    after = scrapes(st, names, sim)
    elapsed = time.monotonic() - t0  # covers every cluster's own window
    allowed = math.floor(elapsed / poll) + 1
    excess = {n: after[n] - before[n] - allowed - (1 if moved and n in moved else 0)
              for n in names}
    polls = {n: polls1[n] - polls0[n] for n in polls1}
    total = sum(polls.values())
    even = total / len(procs)
    return {
        "seconds": round(seconds, 1),
        "polls": polls,
        "polls_vs_even_pct": {n: round(100 * (v - even) / even, 1) if even else None
                              for n, v in polls.items()},
        "cpu_s": {n: round(cpu1[n] - cpu0[n], 2) for n in cpu1},
        "cpu_total_pct": round(100 * sum(cpu1[n] - cpu0[n] for n in cpu1) / seconds, 1),
        "rss_mib": {p.name: round(mem_kib(p.proc.pid)["VmRSS"] / 1024) for p in procs},
        "double_polls": sum(max(e, 0) for e in excess.values()),
        "clusters_double_polled": sum(1 for e in excess.values() if e > 0),
        "load_1m": os.getloadavg()[0],
    }


def run(clusters: int, poll: float, seconds: float, name: str) -> dict[str, Any]:
    width = max(4, len(str(clusters)))
    names = [f"c{i:0{width}d}" for i in range(1, clusters + 1)]
    out: dict[str, Any] = {"name": name, "machine": machine(), "clusters": clusters,
                           "poll_seconds": poll, "window_seconds": seconds}
    with stack() as st, httpx.Client(timeout=30) as sim:
        sim_url = st.start_simulator("--cluster-count", str(clusters), "--replicas", "2",
                                     "--seed", "1")
        st.create_clusters({n: cluster_spec(sim_url, n, poll) for n in names})

        single = start(st, "single")
        wait("the single process polling every cluster", lambda: single.polls() >= clusters,
             poll * 3 + 180)
        out["single"] = window(st, [single], names, seconds, poll, sim)
        log("single", out["single"])
        single.proc.stop()

        a, b = shard(st, "shard-a"), shard(st, "shard-b")
        wait("two shards claiming every cluster", lambda: sum(
            p.metrics().get(CLAIMED, 0) for p in (a, b)) == clusters, poll * 3 + 180)
        wait("a steady state", lambda: min(a.polls(), b.polls()) >= clusters / 2, poll * 3 + 60)
        out["two"] = window(st, [a, b], names, seconds, poll, sim)
        log("2 shards", out["two"])

        before = claims(st)
        c = shard(st, "shard-c")
        joined = time.monotonic()
        wait("shard-c claiming its part", lambda: c.metrics().get(CLAIMED, 0) > 0, 120)
        settled = wait("the claims settling", lambda: _settled(st, [a, b, c], clusters), 300,
                       2.0)
        after = claims(st)
        moved = {n for n in names if after[n] != before[n]}
        out["rebalance"] = {
            "moved": len(moved),
            "moved_to_the_new_shard": sum(1 for n in moved if after[n] == "shard-c"),
            "minimum_ring": sum(1 for n in names if after[n] == "shard-c"),
            "minimum_even": round(clusters / 3),
            "settled_s": round(settled - joined, 1),
        }
        log("rebalance", out["rebalance"])
        out["three"] = window(st, [a, b, c], names, seconds, poll, sim, moved=moved)
        log("3 shards", out["three"])

        polls_b, polls_c = b.polls(), c.polls()
        out["takeover"] = kill(a, [b, c], sum(1 for n in names if after[n] == "shard-a"))
        log("takeover", out["takeover"])
        wait("the claims settling", lambda: _settled(st, [b, c], clusters), 120, 2.0)
        out["two_after_kill"] = window(st, [b, c], names, seconds, poll, sim)
        out["two_after_kill"]["polls_since_kill"] = {
            "shard-b": b.polls() - polls_b, "shard-c": c.polls() - polls_c}
        log("2 shards after the kill", out["two_after_kill"])
        b.proc.stop()
        c.proc.stop()

        # The single process again, now that every status is written: the first
        # window also carried its start-up (3,000 first status writes).
        again = start(st, "single-again")
        wait("the single process polling every cluster", lambda: again.polls() >= clusters,
             poll * 3 + 180)
        out["single_again"] = window(st, [again], names, seconds, poll, sim)
        out["single_again"]["polls"] = {"single": out["single_again"]["polls"]["single-again"]}
        log("single again", out["single_again"])
    return out


def kill(victim: Proc, survivors: list[Proc], lost: int,
         others: dict[str, int] | None = None, st: Stack | None = None) -> dict[str, Any]:
    """SIGKILL `victim`; the seconds until the survivors act on (a confirmed claim:
    `stemedb_operator_shard_clusters`, summed) the first, half, 90 % and all of its
    `lost` clusters again, sampled every 0.2 s; the CPU each process (survivors and
    `others` by pid) spent from the kill until all, and the API server's requests
    (claim writes, and 409s among them) in that time."""
    pids = {**{p.name: p.proc.pid for p in survivors}, **(others or {})}
    base = sum(p.metrics().get(CLAIMED, 0) for p in survivors)
    cpu0 = {n: cpu_seconds(pid) for n, pid in pids.items()}
    requests0 = st.apiserver_requests(codes=True) if st else {}
    killed = time.monotonic()
    os.killpg(victim.proc.pid, signal.SIGKILL)
    reached: dict[str, float] = {}
    while time.monotonic() - killed < 300 and "100%" not in reached:
        got = sum(p.metrics().get(CLAIMED, 0) for p in survivors) - base
        for key, share in (("first", 1 / max(lost, 1)), ("50%", 0.5), ("90%", 0.9),
                           ("100%", 1.0)):
            if key not in reached and got >= share * lost:
                reached[key] = round(time.monotonic() - killed, 1)
        time.sleep(0.2)
    spent = time.monotonic() - killed
    out: dict[str, Any] = {"clusters_lost": lost, "claimed_s": reached,
                           "cpu_pct_since_kill": {
                               n: round(100 * (cpu_seconds(pid) - cpu0[n]) / spent)
                               for n, pid in pids.items()}}
    if st is not None:
        out["requests_since_kill"] = {
            " ".join(filter(None, k)): round(v - requests0.get(k, 0))
            for k, v in st.apiserver_requests(codes=True).items()
            if v - requests0.get(k, 0) >= 1}
    out["load_1m"] = os.getloadavg()[0]
    return out


def run_takeovers(clusters: int, poll: float, shards: int, rounds: int,
                  name: str) -> dict[str, Any]:
    """Only the takeover, `rounds` times in one stack: `shards` shards claim every
    cluster, one is SIGKILLed, the survivors take its clusters over, and a fresh
    shard joins (the claims settle) before the next kill."""
    width = max(4, len(str(clusters)))
    names = [f"c{i:0{width}d}" for i in range(1, clusters + 1)]
    out: dict[str, Any] = {"name": name, "machine": machine(), "clusters": clusters,
                           "poll_seconds": poll, "shards": shards, "takeovers": []}
    with stack() as st:
        sim_url = st.start_simulator("--cluster-count", str(clusters), "--replicas", "2",
                                     "--seed", "1")
        st.create_clusters({n: cluster_spec(sim_url, n, poll) for n in names})
        procs = [shard(st, f"shard-{i}") for i in range(shards)]
        joined = shards
        for _ in range(rounds):
            wait("the claims settling", lambda ps=procs: _settled(st, ps, clusters),
                 poll * 3 + 300, 2.0)
            wait("a steady state", lambda ps=procs: min(p.polls() for p in ps) >= clusters / shards,
                 poll * 3 + 60)
            time.sleep(poll)
            victim, survivors = procs[0], procs[1:]
            lost = sum(1 for v in claims(st).values() if v == victim.name)
            result = kill(victim, survivors, lost, st.pids(), st)
            out["takeovers"].append(result)
            log("takeover", result)
            victim.proc.stop()
            procs = [*survivors, shard(st, f"shard-{joined}")]
            joined += 1
    return out


def _settled(st: Stack, procs: list[Proc], clusters: int) -> float | None:
    """When every claim names the owner the ring of `procs` gives it."""
    gauges = [p.metrics().get(CLAIMED, 0) for p in procs]
    if sum(gauges) != clusters:
        return None
    return time.monotonic() if claims(st) == claims(st, [p.name for p in procs]) else None


def log(what: str, data: dict[str, Any]) -> None:
    print(f"[sharding] {what}: {data}", file=sys.stderr)


def per_poll_ms(w: dict[str, Any]) -> float:
    """Operator CPU per poll: comparable when a loaded machine keeps a process from
    making every poll it should."""
    polls = sum(w["polls"].values())
    return 1000 * sum(w["cpu_s"].values()) / polls if polls else float("nan")


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    expected = r["clusters"] * r["window_seconds"] / r["poll_seconds"]
    rows = []
    for key in ("single", "single_again"):
        if key in r:
            w = r[key]
            rows.append((f"{key.replace('_', ' ')}: polls (of expected), CPU, CPU per poll",
                         f"{sum(w['polls'].values()):.0f} ({expected:.0f}), "
                         f"{w['cpu_total_pct']:.1f} %, {per_poll_ms(w):.2f} ms"))
    # The baseline: the later single window when there is one (no start-up in it).
    base = r.get("single_again", r["single"])
    single_cpu, single_ms = base["cpu_total_pct"], per_poll_ms(base)
    for key, label in (("two", "2 shards"), ("three", "3 shards"),
                       ("two_after_kill", "2 shards after a kill")):
        w = r[key]
        rows.append((f"{label}: polls per shard",
                     ", ".join(f"{n} {v:.0f} ({w['polls_vs_even_pct'][n]:+.1f} %)"
                               for n, v in w["polls"].items())))
        cpu_vs = 100 * w["cpu_total_pct"] / single_cpu - 100
        ms_vs = 100 * per_poll_ms(w) / single_ms - 100
        rows.append((f"{label}: total CPU (vs single), CPU per poll (vs single)",
                     f"{w['cpu_total_pct']:.1f} % ({cpu_vs:+.0f} %), {per_poll_ms(w):.2f} ms "
                     f"({ms_vs:+.0f} %); {sum(w['polls'].values()):.0f} polls"))
        rows.append((f"{label}: double polls (clusters)",
                     f"{w['double_polls']} ({w['clusters_double_polled']})"))
        rows.append((f"{label}: RSS MiB", ", ".join(f"{v}" for v in w["rss_mib"].values())))
    rb = r["rebalance"]
    rows.append(("scale-up 2->3: claims moved / ring minimum / N/3",
                 f"{rb['moved']} / {rb['minimum_ring']} / {rb['minimum_even']} "
                 f"(all to the new shard: {rb['moved_to_the_new_shard'] == rb['moved']}); "
                 f"settled in {rb['settled_s']} s"))
    rows.append(("SIGKILL of a shard: its clusters claimed again after (s)",
                 ", ".join(f"{k} {v}" for k, v in r["takeover"]["claimed_s"].items())
                 + f" of {r['takeover']['clusters_lost']}"))
    rows.append(("load average (1 min) per window", ", ".join(
        f"{r[k]['load_1m']:.1f}" for k in ("single", "two", "three", "two_after_kill",
                                          "single_again") if k in r)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=3000)
    ap.add_argument("--poll", type=float, default=10.0, help="pollIntervalSeconds")
    ap.add_argument("--window", type=float, default=60.0, help="seconds per steady window")
    ap.add_argument("--name", default=None, help="result file name (default sharding-N)")
    ap.add_argument("--summary", metavar="JSON", help="print the summary of a result file")
    ap.add_argument("--takeovers", type=int, metavar="ROUNDS",
                    help="only measure the takeover of a SIGKILLed shard, ROUNDS times")
    ap.add_argument("--shards", type=int, default=3, help="shards in --takeovers rounds")
    args = ap.parse_args()
    if args.summary:
        import json
        from pathlib import Path

        result = json.loads(Path(args.summary).read_text())
        print(table(summary_rows(result), f"{args.summary}"))
        return 0
    install_sigterm()
    if args.takeovers:
        name = args.name or f"takeover-{args.clusters}-{args.shards}"
        result = run_takeovers(args.clusters, args.poll, args.shards, args.takeovers, name)
        print(table([(f"round {i + 1}: acted on again after (s); load",
                      ", ".join(f"{k} {v}" for k, v in t["claimed_s"].items())
                      + f" of {t['clusters_lost']}; {t['load_1m']:.1f}")
                     for i, t in enumerate(result["takeovers"])],
                    f"bench/sharding.py --clusters {args.clusters} --takeovers "
                    f"{args.takeovers} --shards {args.shards}"))
        print(f"\nJSON: {write_result(name, result)}")
        return 0
    name = args.name or f"sharding-{args.clusters}"
    result = run(args.clusters, args.poll, args.window, name)
    print(table(summary_rows(result), f"bench/sharding.py --clusters {args.clusters} "
                                      f"--poll {args.poll:g} --window {args.window:g}"))
    print(f"\nJSON: {write_result(name, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
