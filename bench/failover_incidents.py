"""Failovers in the middle of remediations: is any non-idempotent action repeated,
is any throttle left behind, is every incident still resolved?

Two replicas of the operator as the chart runs them (`--leader-election`, one
Lease; each talks to the API server through its own `localkube.relay`) remediate
incidents the simulator injects into N clusters, each cluster cycling through one
scenario (its spec and faults; the runbook's ladder takes several steps):

    breaker           breaker_trip on node2: one reset
    throttle          disk_saturation 0.4 on node2 (1200/s < 2000/s offered):
                      throttle steps; the disk recovers once a limit under 1200/s
                      is set; then the restore ramp back to unlimited
    sync              throttle disabled, disk_saturation 0.3: breaker check, one
                      forced sync; the disk recovers once the sync is requested
    breaker+throttle  both faults of `breaker` and `throttle`
    breaker+sync      both faults of `breaker` and `sync`: a reset, the reset
                      judged not to drain the lag, then a sync

First a calm phase (`--calm` incidents per cluster, no failover) gives the time to
resolve without failovers. Then `--failovers` rounds take the leader away (SIGTERM,
SIGKILL, or its API server connection cut, as `bench/failover.py` does), each timed
to land right after an admin call (a random 0-1.5 s after the bench sees a POST
in the simulator's admin log, read every 0.25 s): an intent written, the call
made, its outcome perhaps not yet recorded. A cut
leader is reconnected after the takeover and stays up as the next standby (the
partition ends), so replicas also come back to leading with what they remembered.

An incident runs from the injection of its faults to its resolution: once its
status has shown it (not Ready, or a lagging replica), the cluster's status says
Ready again, no lagging replica, no throttle (`status.throttle.phase` None)
and the simulator's rate limit is back to unlimited (where every incident starts).
Its admin calls are those the simulator logged for the cluster in that span.

A *duplicate non-idempotent admin action* is, within one incident, a
`POST /v1/admin/circuit-breaker/reset` for an `agent_id`, or a
`POST /v1/admin/cluster/sync` for a `replica_id`, after the first one (whatever
its answer, a 409 for a sync still running included). The rate-limit POST sets
a value (idempotent) and is not counted; a rebuild mark is a Pod annotation. The
definition is exact for these incidents because none needs a second one: a
breaker_trip trips the breaker once (no re-trip), no sync is made to fail, and
the disk recovers once the sync is requested. The calm phase checks that: it
must count 0.

A *throttle left behind* is a cluster whose simulator rate limit is not unlimited
once its incident is over (unresolved within `--resolve-timeout`) or at the end.

    .venv/bin/python bench/failover_incidents.py [--clusters 10] [--failovers 20]
        [--modes term,kill,cut] [--calm 1] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from _stack import (
    GROUP,
    PLURAL,
    VERSION,
    Stack,
    install_sigterm,
    machine,
    stack,
    table,
    wait,
    write_result,
)
from failover import Replica, Replicas, holder, one_round

from localkube.simulator import FAST_DETECTION, FAST_REMEDIATION, cluster_spec

NO_THROTTLE = {"throttle": {"enabled": False}}
BREAKER = {"kind": "breaker_trip", "replica": "node2"}
DISK_THROTTLE = {"kind": "disk_saturation", "replica": "node2", "capacity_factor": 0.4}
DISK_SYNC = {"kind": "disk_saturation", "replica": "node2", "capacity_factor": 0.3}
RESET = "/v1/admin/circuit-breaker/reset"
SYNC = "/v1/admin/cluster/sync"
# The disk's capacity under DISK_THROTTLE: a limit below it drains the lag.
THROTTLE_DRAINS_BELOW = 1200
COOLDOWN_SECONDS = FAST_REMEDIATION["cooldownSeconds"] + 3  # between a cluster's incidents
TICK_SECONDS = 0.25


@dataclass(frozen=True)
class Scenario:
    """A kind of incident: the spec's remediation section, the faults, and when the
    cause goes away (`lift`: after a throttle that drains, after the sync request,
    or never needed: the breaker fault trips once)."""

    name: str
    remediation: dict[str, Any]
    faults: tuple[dict[str, Any], ...]
    lift: str | None  # "throttle" | "sync" | None


SCENARIOS = (
    Scenario("breaker", {}, (BREAKER,), None),
    Scenario("throttle", {}, (DISK_THROTTLE,), "throttle"),
    Scenario("sync", NO_THROTTLE, (DISK_SYNC,), "sync"),
    Scenario("breaker+throttle", {}, (BREAKER, DISK_THROTTLE), "throttle"),
    Scenario("breaker+sync", NO_THROTTLE, (BREAKER, DISK_SYNC), "sync"),
)


@dataclass
class Incident:
    cluster: str
    scenario: str
    phase: str  # calm | failovers
    started: float  # monotonic
    fault_ids: list[str] = field(default_factory=list)
    lifted: float | None = None
    detected: bool = False  # the status has shown it (not Ready, or a lagging replica)
    resolved: float | None = None
    posts: list[dict[str, Any]] = field(default_factory=list)

    def duplicates(self) -> list[dict[str, Any]]:
        """The POSTs this incident made once too often (the module's definition)."""
        seen: set[tuple[str, str]] = set()
        out = []
        for e in self.posts:
            endpoint = e["endpoint"]
            if not endpoint.endswith((RESET, SYNC)):
                continue
            body = e.get("body") if isinstance(e.get("body"), dict) else {}
            target = str(body.get("agent_id") or body.get("replica_id"))
            key = (endpoint.rsplit("/v1/", 1)[-1], target)
            if key in seen:
                out.append(e)
            seen.add(key)
        return out

    def to_json(self, t0: float) -> dict[str, Any]:
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - t0, 2)

        return {"cluster": self.cluster, "scenario": self.scenario, "phase": self.phase,
                "started_s": rel(self.started), "lifted_s": rel(self.lifted),
                "resolved_s": rel(self.resolved),
                "resolve_s": None if self.resolved is None
                else round(self.resolved - self.started, 2),
                "posts": [{"seq": e["seq"], "endpoint": e["endpoint"].rsplit("/v1/", 1)[-1],
                           "body": e.get("body"), "status": e.get("status")}
                          for e in self.posts],
                "duplicates": len(self.duplicates())}


class Driver:
    """Runs the incidents in a thread: injects, lifts, watches for resolution, and
    notes every admin POST (the failover rounds wait on those)."""

    def __init__(self, st: Stack, clusters: dict[str, Scenario], calm: int,
                 resolve_timeout: float) -> None:
        self.st, self.clusters, self.calm = st, clusters, calm
        self.resolve_timeout = resolve_timeout
        self.sim = httpx.Client(base_url=f"{st.sim_url}/sim/v1", timeout=30)
        self.api = httpx.Client(base_url=st.cp.server, verify=str(st.cp.ca_file),
                                headers={"Authorization": f"Bearer {st.cp.admin_token}"},
                                timeout=30)
        self.phase = "calm"
        self.injecting = True
        self.incidents: list[Incident] = []
        self.open: dict[str, Incident] = {}
        self.next_at = dict.fromkeys(clusters, 0.0)
        self.seq = dict.fromkeys(clusters, 0)  # the last admin-log seq read
        self.last_post = 0.0  # monotonic time the last admin POST was seen
        self.rate_limits: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="incidents", daemon=True)

    # -- the thread ---------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                self.tick()
                self.stop.wait(TICK_SECONDS)
        except BaseException as err:  # reported by the main thread
            self.error = err

    def tick(self) -> None:
        now = time.monotonic()
        statuses = self._statuses()
        for name, scenario in self.clusters.items():
            state = self.sim.get(f"/clusters/{name}/state").json()
            self.rate_limits[name] = state["rate_limit"]
            posts = self._new_posts(name)
            if posts:
                self.last_post = now
            incident = self.open.get(name)
            if incident is None:
                if self.injecting and now >= self.next_at[name] and self._may_start(name):
                    self._inject(name, scenario)
                continue
            incident.posts += posts
            incident.detected = incident.detected or detected(statuses.get(name))
            if incident.lifted is None and self._lift_due(incident, scenario, state):
                self._lift(incident)
            if incident.lifted is not None and incident.detected and resolved(
                    statuses.get(name), state["rate_limit"]):
                incident.resolved = now
                self._close(name)
            elif now - incident.started > self.resolve_timeout:
                self._lift(incident)
                self._close(name)

    def _may_start(self, name: str) -> bool:
        if self.phase == "calm":
            done = sum(1 for i in self.incidents if i.cluster == name)
            return done < self.calm
        return True

    def _statuses(self) -> dict[str, dict[str, Any]]:
        r = self.api.get(f"/apis/{GROUP}/{VERSION}/namespaces/{self.st.namespace}/{PLURAL}")
        r.raise_for_status()
        return {o["metadata"]["name"]: o.get("status") or {} for o in r.json()["items"]}

    def _new_posts(self, name: str) -> list[dict[str, Any]]:
        data = self.sim.get(f"/clusters/{name}/admin-log",
                            params={"since": self.seq[name]}).json()
        entries = [e for e in data["entries"] if e["seq"] > self.seq[name]]
        if entries:
            self.seq[name] = max(e["seq"] for e in entries)
        return [e for e in entries if e["method"] == "POST"]

    def _inject(self, name: str, scenario: Scenario) -> None:
        incident = Incident(name, scenario.name, self.phase, time.monotonic())
        for fault in scenario.faults:
            r = self.sim.post(f"/clusters/{name}/faults", json=fault)
            r.raise_for_status()
            incident.fault_ids.append(r.json()["id"])
        self.open[name] = incident
        self.incidents.append(incident)

    def _lift_due(self, incident: Incident, scenario: Scenario, state: dict[str, Any]) -> bool:
        if scenario.lift is None:
            return True  # the breaker trips once; nothing to lift but the record
        if scenario.lift == "sync":
            return any(e["endpoint"].endswith(SYNC) for e in incident.posts)
        rate = state["rate_limit"]
        return rate is not None and rate < THROTTLE_DRAINS_BELOW

    def _lift(self, incident: Incident) -> None:
        if incident.lifted is not None:
            return
        for fid in incident.fault_ids:
            self.sim.delete(f"/clusters/{incident.cluster}/faults/{fid}")
        incident.lifted = time.monotonic()

    def _close(self, name: str) -> None:
        del self.open[name]
        self.next_at[name] = time.monotonic() + COOLDOWN_SECONDS

    # -- the main thread's side ---------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError("the incident driver failed") from self.error

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.sim.close()
        self.api.close()


def ready(status: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


def detected(status: dict[str, Any] | None) -> bool:
    """The operator has noticed the incident (so its resolution means something)."""
    return bool(status) and (not ready(status) or bool(status.get("laggingReplicas")))


def resolved(status: dict[str, Any] | None, rate_limit: Any) -> bool:
    """Recovered as a user sees it, and the rate back where the incident found it."""
    if not status:
        return False
    throttle = (status.get("throttle") or {}).get("phase")
    return (ready(status) and status.get("laggingReplicas") == 0 and throttle in (None, "None")
            and rate_limit is None)


def wait_until(what: str, probe: Any, driver: Driver, timeout: float) -> None:
    """`wait`, failing early if the incident thread died."""
    def checked() -> Any:
        driver.check()
        return probe()
    wait(what, checked, timeout)


def run(clusters: int, failovers: int, modes: list[str], calm: int, seed: int,
        resolve_timeout: float, name: str) -> dict[str, Any]:
    rng = random.Random(seed)
    width = max(4, len(str(clusters)))
    names = [f"c{i:0{width}d}" for i in range(1, clusters + 1)]
    plan = {n: SCENARIOS[i % len(SCENARIOS)] for i, n in enumerate(names)}
    rounds = [modes[i % len(modes)] for i in range(failovers)]
    results: list[dict[str, Any]] = []
    with stack() as st:
        sim_url = st.start_simulator("--cluster-count", str(clusters), "--replicas", "2",
                                     "--seed", str(seed), "--load-jitter", "0")
        st.create_clusters({n: cluster_spec(sim_url, n, 2, detection=FAST_DETECTION,
                                            remediation={**FAST_REMEDIATION, **s.remediation})
                            for n, s in plan.items()})
        reps = Replicas(st)
        leader = reps.start(via_relay=True)
        wait("the first leader", lambda: holder(st) == leader.name, 60)
        wait("every cluster polled", lambda: (leader.polls() or 0) >= clusters, 120)
        driver = Driver(st, plan, calm, resolve_timeout)
        st.exits.callback(driver.close)
        t0 = time.monotonic()
        driver.start()
        wait_until("the calm incidents", lambda: len(driver.incidents) >= calm * clusters
                   and not driver.open, driver, resolve_timeout * (calm + 1) + 60)
        driver.phase = "failovers"
        standby: Replica | None = None
        for i, mode in enumerate(rounds):
            if standby is None:
                standby = reps.start(via_relay=True)
            wait_until(f"{standby.name} ready", standby.healthy, driver, 120)
            wait_until(f"{standby.name} watching", lambda s=standby: s.polls() is not None,
                       driver, 30)
            ready = time.monotonic()
            # Mid-remediation: right after an admin call, at a random point of its window.
            wait_until("an admin call", lambda t=ready: driver.last_post > t, driver, 300)
            time.sleep(rng.uniform(0.0, 1.5))
            at = time.monotonic()
            r = one_round(st, leader, standby, mode, heal=True)
            r.update(round=i + 1, at_s=round(at - t0, 2), load_1m=os.getloadavg()[0],
                     open_incidents=len(driver.open))
            print(f"[failover-incidents] {i + 1}/{len(rounds)} {mode}: takeover "
                  f"{r['takeover_s']:.2f}s, {r['open_incidents']} incidents open",
                  file=sys.stderr)
            results.append(r)
            leader, standby = standby, (leader if mode == "cut" else None)
        driver.injecting = False
        wait_until("the last incidents resolved", lambda: not driver.open, driver,
                   resolve_timeout + 60)
        end_rates = dict(driver.rate_limits)
        driver.close()
    return summarize(name, clusters, plan, driver, results, end_rates, t0)


def summarize(name: str, clusters: int, plan: dict[str, Scenario], driver: Driver,
              results: list[dict[str, Any]], end_rates: dict[str, Any],
              t0: float) -> dict[str, Any]:
    incidents = driver.incidents
    events = [t0 + r["at_s"] for r in results]

    def hit(i: Incident) -> int:
        end = i.resolved if i.resolved is not None else float("inf")
        return sum(1 for t in events if i.started <= t <= end)

    def resolve_times(phase: str, hit_only: bool = False) -> list[float]:
        return [round(i.resolved - i.started, 2) for i in incidents
                if i.phase == phase and i.resolved is not None and (not hit_only or hit(i))]

    dups = [{"cluster": i.cluster, "scenario": i.scenario, "phase": i.phase,
             "seq": e["seq"], "endpoint": e["endpoint"].rsplit("/v1/", 1)[-1],
             "body": e.get("body"), "status": e.get("status")}
            for i in incidents for e in i.duplicates()]
    left = {c: r for c, r in end_rates.items() if r is not None}
    unresolved = [i.to_json(t0) for i in incidents if i.resolved is None]
    return {
        "name": name, "machine": machine(), "clusters": clusters,
        "scenarios": {c: s.name for c, s in plan.items()},
        "failovers": results,
        "failovers_by_mode": dict(Counter(r["mode"] for r in results)),
        "incidents": [i.to_json(t0) for i in incidents],
        "incidents_by_phase": dict(Counter(i.phase for i in incidents)),
        "incidents_hit": sum(1 for i in incidents if hit(i)),
        "resolved": sum(1 for i in incidents if i.resolved is not None),
        "unresolved": unresolved,
        "duplicates": dups,
        "throttles_left_behind": left,
        "non_idempotent_posts": sum(1 for i in incidents for e in i.posts
                                    if e["endpoint"].endswith((RESET, SYNC))),
        "resolve_s": {
            "calm": resolve_times("calm"),
            "failovers": resolve_times("failovers"),
            "failovers_hit": resolve_times("failovers", hit_only=True),
        },
    }


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    def med(xs: list[float]) -> str:
        return (f"median {statistics.median(xs):.1f} s, max {max(xs):.1f} s (n={len(xs)})"
                if xs else "-")

    by_mode = result["failovers_by_mode"]
    rows = [
        ("failovers done", f"{len(result['failovers'])} ("
         + ", ".join(f"{m} {n}" for m, n in by_mode.items()) + ")"),
        *((f"{mode}: event -> new leader's first request",
           med([r["takeover_s"] for r in result["failovers"] if r["mode"] == mode]))
          for mode in by_mode),
        ("incidents (calm / with failovers running)",
         f"{result['incidents_by_phase'].get('calm', 0)} / "
         f"{result['incidents_by_phase'].get('failovers', 0)}; "
         f"{result['incidents_hit']} had a failover during them"),
        ("non-idempotent admin POSTs (resets, syncs)", str(result["non_idempotent_posts"])),
        ("duplicate non-idempotent admin actions", str(len(result["duplicates"]))),
        ("throttles left behind", str(len(result["throttles_left_behind"]))),
        ("incidents resolved / total",
         f"{result['resolved']} / {len(result['incidents'])}"),
        ("time to resolve, calm", med(result["resolve_s"]["calm"])),
        ("time to resolve, a failover during it", med(result["resolve_s"]["failovers_hit"])),
        ("load average (1 min), median of rounds",
         f"{statistics.median(r['load_1m'] for r in result['failovers']):.1f}"
         if result["failovers"] else "-"),
    ]
    for d in result["duplicates"]:
        rows.append((f"  duplicate in {d['cluster']} ({d['scenario']})",
                     f"seq {d['seq']} {d['endpoint']} {d['body']} -> {d['status']}"))
    for c, r in result["throttles_left_behind"].items():
        rows.append((f"  throttle left in {c}", f"{r}/s"))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--failovers", type=int, default=20)
    ap.add_argument("--modes", default="term,kill,cut", help="cycled in this order")
    ap.add_argument("--calm", type=int, default=1, help="incidents per cluster before the "
                                                          "failovers (the baseline)")
    ap.add_argument("--resolve-timeout", type=float, default=240.0,
                    help="seconds an incident may take before it counts as unresolved")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--name", default=None, help="result file name")
    args = ap.parse_args()
    install_sigterm()
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in ("term", "kill", "cut") for m in modes):
        ap.error("--modes: a comma-separated list of term, kill, cut")
    name = args.name or f"failover-incidents-{args.clusters}"
    with contextlib.suppress(KeyboardInterrupt):
        result = run(args.clusters, args.failovers, modes, args.calm, args.seed,
                     args.resolve_timeout, name)
        print(table(summary_rows(result), f"bench/failover_incidents.py --clusters "
                                          f"{args.clusters} --failovers {args.failovers}"))
        print(f"\nJSON: {write_result(name, result)}")
        return 0 if not result["duplicates"] and not result["throttles_left_behind"] \
            and not result["unresolved"] else 1
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
