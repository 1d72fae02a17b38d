"""Sharding: N clusters over 2, then 3 operator processes (`--sharding`), against
one process doing the same work.

Phases, on one control plane and one simulator, each a steady window of
`--window` seconds after every cluster has been polled:

1. `single`: one process as it runs without the chart's election (no
   `--sharding`): its CPU seconds and polls are the baseline.
2. `2 shards`: two processes with `--sharding` (their own Leases, one ring).
3. a third shard joins: how many clusters change the shard that acts on them (the
   one whose polls they get) against the minimum (the clusters the ring gives the
   newcomer; ideally N/3), and that every move is to the newcomer; the seconds
   until every moved cluster has been polled by its new owner (settled), until
   the shards' own counts of the clusters they act on
   (`stemedb_operator_shard_clusters`) match the ring (decided), and until
   `status.shard` names the new owner (information only, written after that
   shard's first poll); then the `3 shards` window.
4. one shard is SIGKILLed: the seconds until the survivors poll the first, half,
   90 % and all of its clusters again (and when its Lease expired, the floor);
   then a window of the two survivors.
5. `single again`: one process once more, now that every status is written (the
   first window also carries its start-up); the baseline of the comparisons.

Per window: polls per shard against an even split, total operator CPU against
the single process, and double polls: for every cluster, scrapes of its primary
(`/metrics` requests the simulator counts) beyond what one poller can make in
the window (floor(window / interval) + 1). Across the rebalance a moved cluster
is allowed one more (the old owner's last poll and the new owner's first may
fall in one interval without overlapping).

Which shard acts on a cluster is read from the shards' own polls, not from
`status.shard`: every process runs with its `stemedb.handlers` logger at DEBUG
while the bench needs it (one "polled" line per poll: shard, cluster, started,
ended; `controller/handlers.py`, `_poll_shard`), switched on (SIGUSR1) around the
start-up, the scale-up and the takeover and off (SIGUSR2) for the steady windows,
whose CPU the line would add to (~0.05 ms a poll, ~3 % of a shard's). The logged
polls also give a direct check of the rule itself: polls of one cluster by two
shards that overlap in time (`overlapping_polls`; a SIGKILLed shard's last poll
in flight is never logged, so it is not covered).

    .venv/bin/python bench/sharding.py [--clusters 3000] [--poll 10] [--window 60]

`--pin CPU` runs every operator process on that CPU and the simulator and the
control plane on the others: on a 2-core machine the operators then share a core
with each other only, as Pods on their own nodes would, and not with the rig
(bench/split.py found the unpinned windows' extra CPU in that sharing).

`--takeovers ROUNDS [--shards 3]` measures only step 4, ROUNDS times in one stack
(a fresh shard joins after each kill, polls logged throughout), with each
process's CPU and the API server's requests from the kill until every lost
cluster is polled again, and the `status.shard` writes (information, after the
polls) until they all name a survivor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from _stack import (
    BIN,
    OPERATOR_RESOURCES,
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

from controller.domain.sharding import SHARD_FIELD, SHARD_SINCE_FIELD, lease_name, owner
from localkube.processes import Process, free_port

RING = "bench"
# `--pin CPU`: every operator process on that CPU, the simulator and the control
# plane on the others (`_stack.pin_rig`); None: wherever the kernel puts them.
PIN: int | None = None
POLLS = "stemedb_operator_poll_duration_seconds_count"
ACTING = "stemedb_operator_shard_clusters"  # the clusters a shard's daemons act on
# The polls of one interval plus this much show who acts on every cluster.
SLACK = 2.0
# `stemedb-operator run` as the console script runs it (controller.cli.main), plus
# two signals for the bench: SIGUSR1 puts the `stemedb.handlers` logger at DEBUG
# (a sharded daemon's "polled" line per poll), SIGUSR2 back to the process's level;
# BENCH_POLL_LOG=1 starts with it at DEBUG.
BOOTSTRAP = """\
import logging, os, signal, sys
def level(value):
    return lambda *_: logging.getLogger("stemedb.handlers").setLevel(value)
signal.signal(signal.SIGUSR1, level(logging.DEBUG))
signal.signal(signal.SIGUSR2, level(logging.NOTSET))
if os.environ.get("BENCH_POLL_LOG") == "1":
    level(logging.DEBUG)()
sys.argv[0] = "stemedb-operator"
from controller.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass(frozen=True)
class Poll:
    """One poll a shard logged (wall clock)."""

    name: str
    shard: str
    started: float
    ended: float
    cancelled: bool


class PollLog:
    """The "polled" lines of one process's log, read as they are written, and its
    warnings and errors."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.rest = path, 0, b""
        self.polls: list[Poll] = []
        self.warnings: list[str] = []

    def read(self) -> list[Poll]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.polls
        self.offset += len(data)
        *lines, self.rest = (self.rest + data).split(b"\n")
        for line in lines:
            if b'"polled"' not in line and b'"warning"' not in line \
                    and b'"error"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "polled":
                self.polls.append(Poll(str(rec["name"]), str(rec["shard"]),
                                       float(rec["started"]), float(rec["ended"]),
                                       bool(rec.get("cancelled"))))
            elif rec.get("level") in ("warning", "error", "critical"):
                self.warnings.append(line.decode(errors="replace")[:400])
        return self.polls


@dataclass
class Proc:
    name: str
    proc: Process
    metrics_port: int
    log: PollLog
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5))

    def metrics(self) -> dict[str, float]:
        try:
            # Only these two (prometheus_client's `name[]` filter): the whole page at
            # 1,000 clusters costs the process ~25 ms.
            text = self.http.get(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                 params={"name[]": [POLLS, ACTING]}).text
        except httpx.HTTPError:
            return {}
        out: dict[str, float] = {}
        for n, _, v in parse_prom(text, (POLLS, ACTING)):
            out[n] = out.get(n, 0.0) + v
        return out

    def polls(self) -> float:
        return self.metrics().get(POLLS, 0.0)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)


def start(st: Stack, name: str, *extra: str, poll_log: bool = False) -> Proc:
    port = free_port()
    path = st.workdir / f"{name}.log"
    proc = Process.spawn(
        [*on_cpu(PIN), str(BIN / "python"), "-c", BOOTSTRAP, "run", "--namespace", st.namespace,
         "--metrics-port", str(port), "--health-port", "0", "--log-format", "json",
         "--log-level", "warning", *extra],
        path,
        env={**os.environ, "KUBECONFIG": str(st.cp.kubeconfig), "POD_NAME": name,
             "BENCH_POLL_LOG": "1" if poll_log else "0"})
    st.exits.callback(proc.stop)
    p = Proc(name, proc, port, PollLog(path))
    st.exits.callback(p.http.close)
    return p


def shard(st: Stack, name: str) -> Proc:
    """A shard, its polls logged from the start."""
    return start(st, name, "--sharding", "--leader-election-namespace", st.namespace,
                 "--shard-ring", RING, poll_log=True)


def log_polls(procs: Iterable[Proc], on: bool) -> None:
    for p in procs:
        os.kill(p.proc.pid, signal.SIGUSR1 if on else signal.SIGUSR2)


def polls_since(procs: Iterable[Proc], since: float, until: float = math.inf) -> list[Poll]:
    return [p for proc in procs for p in proc.log.read() if since <= p.started < until]


def pollers(polls: Iterable[Poll]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for p in polls:
        out[p.name].add(p.shard)
    return out


def last_poller(polls: Iterable[Poll]) -> dict[str, str]:
    """The shard of each cluster's latest poll."""
    latest: dict[str, Poll] = {}
    for p in polls:
        if p.name not in latest or p.started > latest[p.name].started:
            latest[p.name] = p
    return {n: p.shard for n, p in latest.items()}


def overlapping(polls: Iterable[Poll]) -> tuple[int, list[str]]:
    """Pairs of polls of one cluster by two shards whose [started, ended] overlap
    (one shard's polls of a cluster never overlap each other), and a few of them."""
    by_name: dict[str, list[Poll]] = defaultdict(list)
    for p in polls:
        by_name[p.name].append(p)
    count, examples = 0, list[str]()
    for name, ps in by_name.items():
        ended: dict[str, Poll] = {}  # each shard's poll that ended last so far
        for p in sorted(ps, key=lambda q: q.started):
            for other in ended.values():
                if other.shard != p.shard and other.ended > p.started:
                    count += 1
                    if len(examples) < 5:
                        examples.append(f"{name}: {other.shard} {other.started:.3f}-"
                                        f"{other.ended:.3f}, {p.shard} {p.started:.3f}-"
                                        f"{p.ended:.3f}")
            if p.shard not in ended or ended[p.shard].ended < p.ended:
                ended[p.shard] = p
    return count, examples


def cluster_items(st: Stack) -> list[dict[str, Any]]:
    r = st.api.get(f"/apis/stemedb.io/v1alpha1/namespaces/{st.namespace}/stemedbclusters")
    r.raise_for_status()
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def ring(uids: dict[str, str], members: list[str]) -> dict[str, str | None]:
    """Each cluster's owner in the ring of `members`."""
    return {n: owner(uid, members) for n, uid in uids.items()}


def acting_settled(procs: list[Proc], uids: dict[str, str], poll: float,
                   since: float, seen: dict[str, Any]) -> float | None:
    """Now (wall clock), if the polls of the last interval (and SLACK), all after
    `since`, show every cluster polled by its owner in the ring of `procs` and by
    no other shard; else None, the clusters that do not (yet) in `seen`."""
    now = time.time()
    if now - since < poll + SLACK:
        return None
    got = pollers(polls_since(procs, now - poll - SLACK))
    wrong = {n: (o, sorted(got.get(n, ()))) for n, o in ring(uids, [p.name for p in procs])
             .items() if got.get(n) != {o}}
    seen.clear()
    seen.update(wrong)
    return None if wrong else now


def wait_settled(what: str, procs: list[Proc], uids: dict[str, str], poll: float,
                 since: float, timeout: float, probe: Any = None) -> float:
    """`acting_settled`, waited for (`probe()` called on each look); on timeout the
    error names clusters not polled by their owner alone, and who polled them."""
    seen: dict[str, Any] = {}

    def look() -> float | None:
        if probe is not None:
            probe()
        return acting_settled(procs, uids, poll, since, seen)

    try:
        settled: float = wait(what, look, timeout, 1.0)
    except RuntimeError as err:
        sample = dict(list(seen.items())[:10])
        raise RuntimeError(f"{err}; {len(seen)} clusters not polled by the ring's owner "
                           f"alone, (owner, pollers) of some: {sample}") from err
    return settled


def decided(procs: list[Proc], owners: dict[str, str | None]) -> bool:
    """Every shard's count of the clusters it acts on is what the ring gives it."""
    want = Counter(owners.values())
    return all(p.metrics().get(ACTING, -1) == want.get(p.name, 0) for p in procs)


def wall(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def recorded(st: Stack, expected: dict[str, str], timeout: float) -> dict[str, float]:
    """When `status.shard` came to name the expected shard (its `shardClaimedAt`,
    wall clock), per cluster of `expected`; listed every 3 s until all do or
    `timeout` passes. Information only: written after the shard's first poll."""
    deadline = time.monotonic() + timeout
    while True:
        got = {}
        for i in cluster_items(st):
            n, status = i["metadata"]["name"], i.get("status") or {}
            at = wall(status.get(SHARD_SINCE_FIELD))
            if n in expected and status.get(SHARD_FIELD) == expected[n] and at is not None:
                got[n] = at
        if len(got) == len(expected) or time.monotonic() > deadline:
            return got
        time.sleep(3.0)


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


def steady(st: Stack, procs: list[Proc], names: list[str], seconds: float, poll: float,
           sim: httpx.Client, owners: dict[str, str | None],
           moved: set[str] | None = None) -> dict[str, Any]:
    """`window` with the shards' poll lines off (their CPU is not the operator's),
    once `status.shard` names every cluster's owner: those writes (one per cluster
    and change of owner, paced per shard) are the shards' counterpart of the single
    process's first status writes, which the `single again` baseline leaves out."""
    began = time.monotonic()
    got = recorded(st, {n: str(s) for n, s in owners.items()}, len(owners) / 10 + 120)
    waited = round(time.monotonic() - began, 1)
    log_polls(procs, False)
    try:
        out = window(st, procs, names, seconds, poll, sim, moved)
    finally:
        log_polls(procs, True)
    out["status_shard_wait_s"] = waited
    out["status_shard_missing"] = len(owners) - len(got)
    return out


def run(clusters: int, poll: float, seconds: float, name: str) -> dict[str, Any]:
    width = max(4, len(str(clusters)))
    names = [f"c{i:0{width}d}" for i in range(1, clusters + 1)]
    out: dict[str, Any] = {"name": name, "machine": machine(), "clusters": clusters,
                           "poll_seconds": poll, "window_seconds": seconds, "pinned_cpu": PIN}
    with stack() as st, httpx.Client(timeout=30) as sim:
        sim_url = st.start_simulator("--cluster-count", str(clusters), "--replicas", "2",
                                     "--seed", "1")
        if PIN is not None:
            pin_rig(st, PIN)
        st.create_clusters({n: cluster_spec(sim_url, n, poll) for n in names})
        uids = {i["metadata"]["name"]: i["metadata"]["uid"] for i in cluster_items(st)}

        single = start(st, "single")
        wait("the single process polling every cluster", lambda: single.polls() >= clusters,
             poll * 3 + 180)
        out["single"] = window(st, [single], names, seconds, poll, sim)
        log("single", out["single"])
        single.proc.stop()

        began = time.time()
        a, b = shard(st, "shard-a"), shard(st, "shard-b")
        wait("two shards acting on every cluster", lambda: sum(
            p.metrics().get(ACTING, 0) for p in (a, b)) == clusters, poll * 3 + 180)
        wait_settled("every cluster polled by its owner in the ring of 2", [a, b], uids,
                     poll, began, poll * 3 + 180)
        wait("a steady state", lambda: min(a.polls(), b.polls()) >= clusters / 2, poll * 3 + 60)
        out["two"] = steady(st, [a, b], names, seconds, poll, sim,
                            ring(uids, ["shard-a", "shard-b"]))
        log("2 shards", out["two"])

        # Who acts on each cluster before the join: the shard of its last poll.
        on = time.time()
        time.sleep(poll + SLACK)
        c = shard(st, "shard-c")
        joined = time.time()
        before = last_poller(polls_since([a, b], on, joined))
        ring2 = ring(uids, ["shard-a", "shard-b"])
        after = ring(uids, ["shard-a", "shard-b", "shard-c"])
        decided_at: list[float] = []

        def decide() -> None:
            if not decided_at and decided([a, b, c], after):
                decided_at.append(time.time())

        wait_settled("every cluster polled by its owner in the ring of 3", [a, b, c], uids,
                     poll, joined, 300, decide)
        decide()
        moved = {n for n in names if after[n] != before.get(n)}
        since_join: dict[str, list[Poll]] = defaultdict(list)
        for p in polls_since([a, b, c], joined):
            since_join[p.name].append(p)
        first_new = {n: min(p.started for p in since_join[n] if p.shard == after[n])
                     for n in moved}
        # A moved cluster's time without a poll: from its old owner's last poll (ended)
        # to its new owner's first (started).
        last_old = {p.name: p.ended for p in sorted(polls_since([a, b], on), key=lambda q: q.ended)
                    if p.name in moved and p.shard == before.get(p.name)
                    and p.started < first_new[p.name]}
        gaps = sorted(first_new[n] - last_old[n] for n in moved if n in last_old)
        written = recorded(st, {n: str(after[n]) for n in names}, 60)
        out["rebalance"] = {
            "moved": len(moved),
            "moved_to_the_new_shard": sum(1 for n in moved if after[n] == "shard-c"),
            "minimum_ring": sum(1 for n in names if after[n] == "shard-c"),
            "minimum_even": round(clusters / 3),
            # every moved cluster polled by its new owner (from its polls)
            "settled_s": round(max(first_new.values(), default=joined) - joined, 1),
            "moved_unpolled_s": {"50%": round(gaps[len(gaps) // 2], 1),
                                 "max": round(gaps[-1], 1)} if gaps else {},
            # the shards' gauges of the clusters they act on match the ring
            "decided_s": round(decided_at[0] - joined, 1) if decided_at else None,
            # `status.shard` names the new owner (information, after its first poll)
            "status_shard_s": round(max((written[n] for n in moved if n in written),
                                        default=joined) - joined, 1),
            "status_shard_missing": sum(1 for n in names if n not in written),
            "not_polled_before": sum(1 for n in names if n not in before),
            "before_not_ring": sum(1 for n in names if n in before and before[n] != ring2[n]),
            "old_owner_polled_after_new": sum(
                1 for n in moved if any(p.shard == before.get(n) and p.started > first_new[n]
                                        for p in since_join[n])),
        }
        log("rebalance", out["rebalance"])
        out["three"] = steady(st, [a, b, c], names, seconds, poll, sim, after, moved=moved)
        log("3 shards", out["three"])

        # Who acts on each cluster before the kill: the shard of its last poll.
        time.sleep(poll + SLACK)
        polls_b, polls_c = b.polls(), c.polls()
        lost = {n for n, s in last_poller(polls_since([a, b, c], time.time() - poll - SLACK))
                .items() if s == "shard-a"}
        out["takeover"] = kill(st, a, [b, c], lost)
        log("takeover", out["takeover"])
        wait_settled("every cluster polled by its owner in the ring of 2 survivors", [b, c],
                     uids, poll, out["takeover"]["killed_at"], 120)
        out["two_after_kill"] = steady(st, [b, c], names, seconds, poll, sim,
                                       ring(uids, ["shard-b", "shard-c"]))
        out["two_after_kill"]["polls_since_kill"] = {
            "shard-b": b.polls() - polls_b, "shard-c": c.polls() - polls_c}
        log("2 shards after the kill", out["two_after_kill"])
        out["overlapping_polls"], out["overlapping_examples"] = overlapping(
            polls_since([a, b, c], 0))
        out["warnings"] = {p.name: len(p.log.warnings) for p in (a, b, c)}
        log("overlapping polls and warnings", {k: out[k] for k in (
            "overlapping_polls", "overlapping_examples", "warnings")})
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


def api_requests(st: Stack) -> dict[tuple[str, ...], float]:
    """`apiserver_request_total` by (verb, resource, subresource, code) for the
    resources the operator uses, its Leases included (`Stack.apiserver_requests`
    leaves them out). The API server's own identity Lease renews every 10 s."""
    out: dict[tuple[str, ...], float] = {}
    for _, labels, value in parse_prom(st.api.get("/metrics").text,
                                       ("apiserver_request_total{",)):
        res = labels.get("resource", "")
        if res in OPERATOR_RESOURCES or res == "leases":
            key = (labels.get("verb", ""), res, labels.get("subresource", ""),
                   labels.get("code", ""))
            out[key] = out.get(key, 0.0) + value
    return out


def kill(st: Stack, victim: Proc, survivors: list[Proc], lost: set[str],
         others: dict[str, int] | None = None, requests: bool = False) -> dict[str, Any]:
    """SIGKILL `victim`; the seconds until the survivors poll (from their "polled"
    lines, each poll's start) the first, half, 90 % and all of its `lost` clusters
    again, watched every 0.2 s; when its Lease expired (its last renewal plus its
    duration); the CPU each process (survivors and `others` by pid) spent from the
    kill until all are polled; with `requests` the API server's requests in that time
    and the `status.shard` writes (information, after the polls) until every lost
    cluster's names its new owner."""
    pids = {**{p.name: p.proc.pid for p in survivors}, **(others or {})}
    cpu0 = {n: cpu_seconds(pid) for n, pid in pids.items()}
    requests0 = api_requests(st) if requests else {}
    marks = {p.name: len(p.log.read()) for p in survivors}
    killed = time.time()
    t0 = time.monotonic()
    os.killpg(victim.proc.pid, signal.SIGKILL)
    first: dict[str, Poll] = {}  # each lost cluster's first poll by a survivor
    cancelled = 0
    while time.monotonic() - t0 < 300 and len(first) < len(lost):
        for p in survivors:
            polls = p.log.read()
            for q in polls[marks[p.name]:]:
                if q.name in lost and q.started >= killed:
                    cancelled += q.cancelled
                    if q.name not in first or q.started < first[q.name].started:
                        first[q.name] = q
            marks[p.name] = len(polls)
        time.sleep(0.2)
    spent = time.monotonic() - t0
    cpu = {n: round(100 * (cpu_seconds(pid) - cpu0[n]) / spent) for n, pid in pids.items()}
    requests1 = api_requests(st) if requests else {}
    times = sorted(q.started - killed for q in first.values())
    reached = {}
    for key, share in (("first", 0.0), ("50%", 0.5), ("90%", 0.9), ("100%", 1.0)):
        k = max(1, math.ceil(share * len(lost)))
        if len(times) >= k:
            reached[key] = round(times[k - 1], 1)
    out: dict[str, Any] = {"clusters_lost": len(lost), "polled_s": reached,
                           "killed_at": killed}
    r = st.api.get(f"/apis/coordination.k8s.io/v1/namespaces/{st.namespace}/leases/"
                   f"{lease_name(RING, victim.name)}")
    spec = (r.json().get("spec") or {}) if r.status_code == 200 else {}
    renewed = wall(spec.get("renewTime"))
    if renewed is not None and spec.get("leaseDurationSeconds"):
        expired = renewed + spec["leaseDurationSeconds"] - killed
        out["lease_expired_s"] = round(expired, 1)
        # Rule 3: a stopped shard's clusters wait for its Lease's expiry.
        out["polled_before_lease_expired"] = sum(1 for t in times if t < expired)
    out["by_survivor"] = dict(Counter(q.shard for q in first.values()))
    out["cancelled_polls"] = cancelled
    if len(first) < len(lost):
        out["never_polled"] = sorted(set(lost) - set(first))[:20]
    out["cpu_pct_since_kill"] = cpu
    if requests:
        out["requests_since_kill"] = {
            " ".join(filter(None, k)): round(v - requests0.get(k, 0))
            for k, v in requests1.items() if v - requests0.get(k, 0) >= 1}
        # On the path: each taken-over cluster's first poll reads its status afresh.
        out["cluster_reads_since_kill"] = round(sum(
            v - requests0.get(k, 0) for k, v in requests1.items()
            if k[:3] == ("GET", "stemedbclusters", "")))
    written = recorded(st, {n: q.shard for n, q in first.items()}, 60)
    status_s = sorted(t - killed for t in written.values())
    out["status_shard_s"] = {k: round(status_s[max(1, math.ceil(s * len(status_s))) - 1], 1)
                             for k, s in (("50%", 0.5), ("100%", 1.0)) if status_s}
    out["status_shard_missing"] = len(first) - len(written)
    if requests:
        # Information writes: `status.shard` (merge patches, no resourceVersion) and
        # any status the reconciler wrote meanwhile; none is on the path to a poll.
        now = api_requests(st)
        out["status_writes_since_kill"] = round(sum(
            v - requests0.get(k, 0) for k, v in now.items()
            if k[:3] == ("PATCH", "stemedbclusters", "status")))
    out["load_1m"] = os.getloadavg()[0]
    return out


def run_takeovers(clusters: int, poll: float, shards: int, rounds: int,
                  name: str) -> dict[str, Any]:
    """Only the takeover, `rounds` times in one stack: `shards` shards act on every
    cluster, one is SIGKILLed, the survivors take its clusters over, and a fresh
    shard joins (every cluster polled by its owner again) before the next kill."""
    width = max(4, len(str(clusters)))
    names = [f"c{i:0{width}d}" for i in range(1, clusters + 1)]
    out: dict[str, Any] = {"name": name, "machine": machine(), "clusters": clusters,
                           "poll_seconds": poll, "shards": shards, "takeovers": [],
                           "pinned_cpu": PIN}
    with stack() as st:
        sim_url = st.start_simulator("--cluster-count", str(clusters), "--replicas", "2",
                                     "--seed", "1")
        if PIN is not None:
            pin_rig(st, PIN)
        st.create_clusters({n: cluster_spec(sim_url, n, poll) for n in names})
        uids = {i["metadata"]["name"]: i["metadata"]["uid"] for i in cluster_items(st)}
        since = time.time()
        procs = [shard(st, f"shard-{i}") for i in range(shards)]
        every = list(procs)
        joined = shards
        for _ in range(rounds):
            wait_settled(f"every cluster polled by its owner in the ring of {len(procs)}",
                         procs, uids, poll, since, poll * 3 + 300)
            wait("a steady state", lambda ps=procs: min(p.polls() for p in ps) >= clusters / shards,
                 poll * 3 + 60)
            victim, survivors = procs[0], procs[1:]
            lost = {n for n, s in last_poller(polls_since(procs, time.time() - poll - SLACK))
                    .items() if s == victim.name}
            result = kill(st, victim, survivors, lost, st.pids(), requests=True)
            out["takeovers"].append(result)
            log("takeover", result)
            victim.proc.stop()
            procs = [*survivors, shard(st, f"shard-{joined}")]
            every.append(procs[-1])
            since = time.time()
            joined += 1
        out["overlapping_polls"], out["overlapping_examples"] = overlapping(
            polls_since(every, 0))
        out["warnings"] = {p.name: len(p.log.warnings) for p in every}
        log("overlapping polls and warnings", {k: out[k] for k in (
            "overlapping_polls", "overlapping_examples", "warnings")})
    return out


def log(what: str, data: dict[str, Any]) -> None:
    print(f"[sharding] {what}: {data}", file=sys.stderr)


def per_poll_ms(w: dict[str, Any]) -> float:
    """Operator CPU per poll: comparable when a loaded machine keeps a process from
    making every poll it should."""
    polls = sum(w["polls"].values())
    return 1000 * sum(w["cpu_s"].values()) / polls if polls else float("nan")


def takeover_row(t: dict[str, Any]) -> str:
    """The seconds until the lost clusters are polled again (results from before the
    redesign have `claimed_s`: a confirmed claim, which preceded the first poll)."""
    reached = t.get("polled_s", t.get("claimed_s", {}))
    text = ", ".join(f"{k} {reached[k]}" for k in ("first", "50%", "90%", "100%")
                     if k in reached) + f" of {t['clusters_lost']}"
    if "claimed_s" in t:
        return text + " (claimed: a result from before the redesign)"
    extra = [f"Lease expired {t['lease_expired_s']}"] if "lease_expired_s" in t else []
    if t.get("status_shard_s"):
        extra.append(f"status.shard all {t['status_shard_s'].get('100%')}")
    if t.get("polled_before_lease_expired"):
        extra.append(f"{t['polled_before_lease_expired']} polled BEFORE it expired")
    if t.get("never_polled"):
        extra.append(f"NEVER polled: {len(t['never_polled'])}+")
    return text + (f" ({'; '.join(extra)})" if extra else "")


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
                     f"({ms_vs:+.0f} %); {sum(w['polls'].values()):.0f} polls"
                     + (f"; after {w['status_shard_wait_s']} s for status.shard"
                        + (f" ({w['status_shard_missing']} still missing)"
                           if w.get("status_shard_missing") else "")
                        if "status_shard_wait_s" in w else "")))
        rows.append((f"{label}: double polls (clusters)",
                     f"{w['double_polls']} ({w['clusters_double_polled']})"))
        rows.append((f"{label}: RSS MiB", ", ".join(f"{v}" for v in w["rss_mib"].values())))
    rb = r["rebalance"]
    if "decided_s" in rb:
        rows.append(("scale-up 2->3: clusters moved (acting shard) / ring minimum / N/3",
                     f"{rb['moved']} / {rb['minimum_ring']} / {rb['minimum_even']} "
                     f"(all to the new shard: {rb['moved_to_the_new_shard'] == rb['moved']})"))
        rows.append(("scale-up 2->3: settled (s): polled by the new owner, decided, "
                     "status.shard",
                     f"{rb['settled_s']}, {rb['decided_s']}, {rb['status_shard_s']}"
                     + (f" ({rb['status_shard_missing']} never written)"
                        if rb["status_shard_missing"] else "")))
        if rb.get("moved_unpolled_s"):
            rows.append(("scale-up 2->3: a moved cluster unpolled (s), median / max",
                         f"{rb['moved_unpolled_s']['50%']} / {rb['moved_unpolled_s']['max']} "
                         f"(poll interval {r['poll_seconds']:g})"))
    else:  # a result from before the redesign
        rows.append(("scale-up 2->3: claims moved / ring minimum / N/3",
                     f"{rb['moved']} / {rb['minimum_ring']} / {rb['minimum_even']} "
                     f"(all to the new shard: {rb['moved_to_the_new_shard'] == rb['moved']}); "
                     f"settled in {rb['settled_s']} s"))
    rows.append((f"SIGKILL of a shard: its clusters "
                 f"{'claimed' if 'claimed_s' in r['takeover'] else 'polled'} again after (s)",
                 takeover_row(r["takeover"])))
    if "overlapping_polls" in r:
        rows.append(("overlapping polls of one cluster by two shards (logged)",
                     f"{r['overlapping_polls']}"))
    rows.append(("load average (1 min) per window", ", ".join(
        f"{r[k]['load_1m']:.1f}" for k in ("single", "two", "three", "two_after_kill",
                                          "single_again") if k in r)))
    return rows


def takeover_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for i, t in enumerate(r["takeovers"]):
        rows.append((f"round {i + 1}: {'claimed' if 'claimed_s' in t else 'polled'} again "
                     f"after (s); load",
                     f"{takeover_row(t)}; {t['load_1m']:.1f}"))
        if "status_writes_since_kill" in t:
            rows.append((f"round {i + 1}: cluster GETs (first polls); status PATCHes "
                         f"(information)",
                         f"{t.get('cluster_reads_since_kill', '?')}; "
                         f"{t['status_writes_since_kill']}"))
    if "overlapping_polls" in r:
        rows.append(("overlapping polls of one cluster by two shards (logged)",
                     f"{r['overlapping_polls']}"))
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
    ap.add_argument("--pin", type=int, default=None, metavar="CPU",
                    help="run every operator process on this CPU, the simulator and the "
                         "control plane on the others")
    args = ap.parse_args()
    global PIN
    PIN = args.pin
    if args.summary:
        result = json.loads(Path(args.summary).read_text())
        rows = takeover_rows(result) if "takeovers" in result else summary_rows(result)
        print(table(rows, f"{args.summary}"))
        return 0
    install_sigterm()
    if args.takeovers:
        name = args.name or f"takeover-{args.clusters}-{args.shards}"
        result = run_takeovers(args.clusters, args.poll, args.shards, args.takeovers, name)
        print(table(takeover_rows(result),
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
