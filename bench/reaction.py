"""Reaction time: critical lag held for the window -> the operator's first action.

K clusters run one trial each, in parallel (polls are randomly phased, trips are
spread uniformly over one poll interval). A trial trips one replica's breaker in
the simulator; from then on its lag grows 1 s/s (deterministic model). Right after
the trip the bench reads the simulator's state once to place the crossing on the
simulator's timeline:

    crossing = sim_now + (critical.lagSeconds - lag_now)
    trigger  = crossing + critical.forSeconds      (the condition is satisfied)

Reaction = sim_time of the first mutating admin call (POST) the simulator logged
for that cluster - trigger. (The operator also GETs the tripped-breakers list as
evidence while lag is above critical, before the window ends; those GETs are not
the reaction.) The physical limit with sampling every T seconds: T/2 on average,
T at worst, plus one round trip.

Status patch and Event latency after the action: two watches (StemeDBClusters and
Events in the namespace) stamp every notification with the wall clock on receipt;
the first status change and the first Event received after the action's wall time
(from the simulator's admin log) give the delays, free of the 1 s resolution of
Event and condition timestamps.

    .venv/bin/python bench/reaction.py [--clusters 200] [--poll 10]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from datetime import datetime
from typing import Any

import httpx
from _stack import Stack, cluster_spec, install_sigterm, machine, stack, table, write_result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q * (len(s) - 1))))
    return s[k]


def wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Watch(threading.Thread):
    """A watch stream whose notifications are stamped with the wall clock on receipt."""

    def __init__(self, st: Stack, path: str) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=st.cp.server, verify=str(st.cp.ca_file),
                                   headers={"Authorization": f"Bearer {st.cp.admin_token}"},
                                   timeout=httpx.Timeout(10, read=None))
        self.path = path
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            with self.client.stream("GET", self.path,
                                    params={"watch": "1", "timeoutSeconds": "900"}) as r:
                self.ready.set()
                for line in r.iter_lines():
                    if line:
                        self.events.append((time.time(), json.loads(line)))
        except Exception:
            self.ready.set()


def watch_clusters_and_events(st: Stack) -> tuple[Watch, Watch]:
    """Start watches on the bench namespace's StemeDBClusters and Events."""
    ns = st.namespace
    crs = Watch(st, f"/apis/stemedb.io/v1alpha1/namespaces/{ns}/stemedbclusters")
    evs = Watch(st, f"/api/v1/namespaces/{ns}/events")
    for w in (crs, evs):
        w.start()
        w.ready.wait(10)
    return crs, evs


def run(clusters: int, poll: float, crit: float, window: float) -> dict[str, Any]:
    width = max(4, len(str(clusters)))
    names = [f"c{i:0{width}d}" for i in range(1, clusters + 1)]
    detection = {
        "warning": {"lagSeconds": crit / 2, "forSeconds": window},
        "critical": {"lagSeconds": crit, "forSeconds": window},
        "escalation": {"lagSeconds": 10 * crit},
    }
    with stack() as st:
        sim_url = st.start_simulator("--cluster-count", str(clusters), "--replicas", "2",
                                     "--seed", "3", "--load-jitter", "0")
        st.create_clusters({n: cluster_spec(sim_url, n, poll, **detection) for n in names})
        crs, evs = watch_clusters_and_events(st)
        st.start_operator("--max-actions-per-hour", "100000")
        st.wait_operator_metrics()
        time.sleep(poll + 3)  # every cluster polled at least once
        trials: dict[str, dict[str, Any]] = {}
        t0 = time.monotonic()
        order = random.Random(7).sample(names, len(names))
        for i, name in enumerate(order):
            # spread the trips uniformly over one poll interval
            target = t0 + poll * i / len(order)
            time.sleep(max(0.0, target - time.monotonic()))
            fault = st.sim_api("POST", f"/clusters/{name}/faults",
                               {"kind": "breaker_trip", "replica": "node2"})
            state = st.sim_api("GET", f"/clusters/{name}/state")
            lag_now = next(r["lag_seconds"] for r in _replicas(state) if r["id"] == "node2")
            crossing = state["sim_time"] + (crit - lag_now)
            trials[name] = {"fault": fault["id"], "started_at": fault["started_at"],
                            "crossing": crossing, "trigger": crossing + window}
        # the last trip's trigger plus one interval plus slack for the report
        time.sleep(crit + window + poll + 6)
        for name, trial in trials.items():
            entries = st.sim_api("GET", f"/clusters/{name}/admin-log")["entries"]
            posts = [e for e in entries if e["method"] == "POST"]
            if posts:
                trial["action"] = posts[0]["endpoint"]
                trial["action_sim"] = posts[0]["sim_time"]
                trial["action_wall"] = wall(posts[0]["wall_time"])
                trial["reaction"] = posts[0]["sim_time"] - trial["trigger"]
        _match_reports(trials, crs.events, evs.events)
        opm = st.operator_metrics()
        budget_suppressed = [s for s in opm if s[0].startswith("stemedb_operator_actions")]
    reactions = [t["reaction"] for t in trials.values() if "reaction" in t]
    status_d = [t["status_delay"] for t in trials.values() if "status_delay" in t]
    event_d = [t["event_delay"] for t in trials.values() if "event_delay" in t]
    return {
        "trials": len(trials),
        "reacted": len(reactions),
        "poll_interval_s": poll,
        "critical": {"lagSeconds": crit, "forSeconds": window},
        "reaction_p50_s": percentile(reactions, 0.5),
        "reaction_p99_s": percentile(reactions, 0.99),
        "reaction_max_s": max(reactions) if reactions else None,
        "reaction_min_s": min(reactions) if reactions else None,
        "reaction_mean_s": sum(reactions) / len(reactions) if reactions else None,
        "limit": {"mean_s": poll / 2, "max_s": poll,
                  "targets": {"p50_s": poll / 2 + 0.5, "p99_s": poll + 1}},
        "status_after_action_p50_s": percentile(status_d, 0.5),
        "status_after_action_max_s": max(status_d) if status_d else None,
        "event_after_action_p50_s": percentile(event_d, 0.5),
        "event_after_action_max_s": max(event_d) if event_d else None,
        "status_within_1s": sum(d <= 1 for d in status_d),
        "event_within_1s": sum(d <= 1 for d in event_d),
        "event_reasons": sorted({t.get("event_reason", "") for t in trials.values()}),
        "actions": sorted({t.get("action", "") for t in trials.values()}),
        "resolution_note": "sim grid 0.25 s; lag read once right after the trip",
        "operator_action_counters": [(s[0], s[1], s[2]) for s in budget_suppressed],
        "per_trial": trials,
        "machine": machine(),
    }


def _replicas(state: dict[str, Any]) -> list[dict[str, Any]]:
    reps = state["replicas"]
    if isinstance(reps, dict):
        return [{"id": k, **v} for k, v in reps.items()]
    return list(reps)


def _match_reports(trials: dict[str, dict[str, Any]],
                   cr_events: list[tuple[float, dict[str, Any]]],
                   ev_events: list[tuple[float, dict[str, Any]]]) -> None:
    last_status: dict[str, Any] = {}
    for t_recv, ev in cr_events:
        obj = ev.get("object", {})
        name = obj.get("metadata", {}).get("name")
        status = obj.get("status")
        prev = last_status.get(name)
        changed = status != prev
        last_status[name] = status
        trial = trials.get(name)
        if trial and changed and "action_wall" in trial:
            trial.setdefault("status_changes_rel_s", []).append(
                (round(t_recv - trial["action_wall"], 3), ev.get("type"),
                 sorted(k for k in (status or {})
                        if (status or {}).get(k) != (prev or {}).get(k))))
        if (trial and changed and "action_wall" in trial and "status_delay" not in trial
                and t_recv >= trial["action_wall"]):
            trial["status_delay"] = t_recv - trial["action_wall"]
    for t_recv, ev in ev_events:
        obj = ev.get("object", {})
        name = obj.get("involvedObject", {}).get("name")
        trial = trials.get(name)
        if (trial and ev.get("type") == "ADDED" and "action_wall" in trial
                and "event_delay" not in trial and t_recv >= trial["action_wall"]):
            trial["event_delay"] = t_recv - trial["action_wall"]
            trial["event_reason"] = obj.get("reason")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=200, help="parallel trials")
    ap.add_argument("--poll", type=float, default=10.0, help="pollIntervalSeconds T")
    ap.add_argument("--critical", type=float, default=20.0, help="critical.lagSeconds")
    ap.add_argument("--window", type=float, default=10.0, help="critical.forSeconds")
    args = ap.parse_args()
    install_sigterm()
    r = run(args.clusters, args.poll, args.critical, args.window)
    s = lambda v: "n/a" if v is None else f"{v:.2f} s"  # noqa: E731
    T = args.poll
    rows = [
        ("trials (parallel clusters)", f"{r['trials']}, reacted {r['reacted']}"),
        ("trigger", f"lag > {args.critical:g} s for {args.window:g} s, poll T = {T:g} s"),
        ("reaction p50", f"{s(r['reaction_p50_s'])}  (target <= {T / 2 + 0.5:g} s, "
                         f"limit ~{T / 2:g} s)"),
        ("reaction p99", f"{s(r['reaction_p99_s'])}  (target <= {T + 1:g} s, limit ~{T:g} s)"),
        ("reaction max / min", f"{s(r['reaction_max_s'])} / {s(r['reaction_min_s'])}"),
        ("status change after action p50/max", f"{s(r['status_after_action_p50_s'])} / "
                                               f"{s(r['status_after_action_max_s'])}"),
        ("Event after action p50/max", f"{s(r['event_after_action_p50_s'])} / "
                                       f"{s(r['event_after_action_max_s'])}"),
        ("within 1 s: status / Event", f"{r['status_within_1s']} / {r['event_within_1s']}"),
        ("actions, first Event reasons", f"{r['actions']}, {r['event_reasons']}"),
    ]
    print(table(rows, f"bench/reaction.py --clusters {args.clusters} --poll {T:g}"))
    print(f"\nJSON: {write_result('reaction', r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
