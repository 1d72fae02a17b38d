"""Write amplification: status patches and Events per cluster per hour.

N healthy clusters are polled for a settle period (the first status write of each
is expected), then counted over --seconds: status patches from the API server's
own `apiserver_request_total` (PATCH stemedbclusters/status) and Events from a
watch (also by reason), cross-checked with the status changes the watch saw (and
which status fields changed). Then, unless --no-episode, one remediation episode
(breaker trip on one replica of E clusters) is counted from the trip until every
episode is over (Ready again) or --episode-seconds pass.

    .venv/bin/python bench/writes.py [--clusters 100] [--seconds 120] [--episodes 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Any

from _stack import cluster_spec, install_sigterm, machine, stack, table, write_result
from reaction import watch_clusters_and_events

STATUS_KEY = ("PATCH", "stemedbclusters", "status")


def _changed_fields(events: list[tuple[float, dict[str, Any]]], since: float,
                    until: float) -> tuple[Counter[str], dict[str, int]]:
    last: dict[str, Any] = {}
    fields: Counter[str] = Counter()
    per_cluster: dict[str, int] = {}
    for t, ev in events:
        obj = ev.get("object", {})
        name = obj.get("metadata", {}).get("name")
        status = obj.get("status") or {}
        prev = last.get(name)
        last[name] = status
        if prev is None or prev == status or not since <= t < until:
            continue
        per_cluster[name] = per_cluster.get(name, 0) + 1
        for k in set(prev) | set(status):
            if prev.get(k) != status.get(k):
                fields[k] += 1
    return fields, per_cluster


def _events(events: list[tuple[float, dict[str, Any]]], since: float, until: float,
            names: set[str] | None = None) -> Counter[str]:
    out: Counter[str] = Counter()
    for t, ev in events:
        obj = ev.get("object", {})
        if ev.get("type") != "ADDED" or not since <= t < until:
            continue
        if names is not None and obj.get("involvedObject", {}).get("name") not in names:
            continue
        out[obj.get("reason", "?")] += obj.get("count", 1) or 1
    return out


def run(clusters: int, seconds: float, settle: float, episodes: int,
        episode_seconds: float) -> dict[str, Any]:
    width = max(4, len(str(clusters)))
    names = [f"c{i:0{width}d}" for i in range(1, clusters + 1)]
    with stack() as st:
        sim_url = st.start_simulator("--cluster-count", str(clusters), "--replicas", "2",
                                     "--seed", "5")
        st.create_clusters({n: cluster_spec(sim_url, n, 10.0) for n in names})
        crs, evs = watch_clusters_and_events(st)
        st.start_operator("--max-actions-per-hour", "100000")
        st.wait_operator_metrics()
        time.sleep(settle)
        a0, w0 = st.apiserver_requests(), time.time()
        time.sleep(seconds)
        a1, w1 = st.apiserver_requests(), time.time()
        hours = (w1 - w0) / 3600
        healthy_patches = a1.get(STATUS_KEY, 0) - a0.get(STATUS_KEY, 0)
        fields, _ = _changed_fields(crs.events, w0, w1)
        healthy_events = _events(evs.events, w0, w1)
        healthy = {
            "window_s": round(w1 - w0, 1),
            "status_patches": healthy_patches,
            "status_patches_per_cluster_hour": healthy_patches / clusters / hours,
            "events": sum(healthy_events.values()),
            "events_per_cluster_hour": sum(healthy_events.values()) / clusters / hours,
            "event_reasons": dict(healthy_events),
            "status_fields_changed": dict(fields),
            "all_requests": {"/".join(k): v - a0.get(k, 0) for k, v in a1.items()
                             if v - a0.get(k, 0) > 0},
        }
        episode: dict[str, Any] = {}
        if episodes:
            chosen = names[:episodes]
            e0 = st.apiserver_requests()
            t0 = time.time()
            for n in chosen:
                st.sim_api("POST", f"/clusters/{n}/faults",
                           {"kind": "breaker_trip", "replica": "node2"})
            deadline = time.monotonic() + episode_seconds
            done_at = None
            while time.monotonic() < deadline:
                time.sleep(5)
                ready = 0
                for n in chosen:
                    st_ = st.api.get(f"/apis/stemedb.io/v1alpha1/namespaces/{st.namespace}/"
                                     f"stemedbclusters/{n}").json().get("status") or {}
                    cond = {c["type"]: c for c in st_.get("conditions") or []}
                    acted = any(e["method"] == "POST" for e in st.sim_api(
                        "GET", f"/clusters/{n}/admin-log")["entries"])
                    if acted and cond.get("Ready", {}).get("status") == "True":
                        ready += 1
                if ready == len(chosen):
                    done_at = time.time()
                    break
            t1 = time.time()
            e1 = st.apiserver_requests()
            patches = e1.get(STATUS_KEY, 0) - e0.get(STATUS_KEY, 0)
            # healthy clusters' share over the same time is ~0 (measured above)
            ev = _events(evs.events, t0, t1 + 1, set(chosen))
            fields_e, _per = _changed_fields(crs.events, t0, t1 + 1)
            episode = {
                "clusters_in_episode": len(chosen),
                "fault": "breaker_trip on node2 (lag grows 1 s/s until reset)",
                "duration_s": round(t1 - t0, 1),
                "all_recovered": done_at is not None,
                "status_patches": patches,
                "status_patches_per_episode": patches / len(chosen),
                "events": sum(ev.values()),
                "events_per_episode": sum(ev.values()) / len(chosen),
                "event_reasons": dict(ev),
                "status_fields_changed": dict(fields_e),
            }
    return {"clusters": clusters, "poll_interval_s": 10.0, "healthy": healthy,
            "episode": episode, "machine": machine()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=120.0, help="healthy window")
    ap.add_argument("--settle", type=float, default=25.0)
    ap.add_argument("--episodes", type=int, default=10, help="clusters put in an episode")
    ap.add_argument("--episode-seconds", type=float, default=300.0)
    args = ap.parse_args()
    install_sigterm()
    r = run(args.clusters, args.seconds, args.settle, args.episodes, args.episode_seconds)
    h, e = r["healthy"], r["episode"]
    rows = [
        ("healthy clusters, window", f"{r['clusters']}, {h['window_s']} s"),
        ("status patches /cluster/hour", f"{h['status_patches_per_cluster_hour']:.2f} "
                                         f"({h['status_patches']:.0f} in window; target 0)"),
        ("Events /cluster/hour", f"{h['events_per_cluster_hour']:.2f} "
                                 f"({h['events']} in window; target 0) {h['event_reasons']}"),
        ("status fields changed", str(h["status_fields_changed"])),
    ]
    if e:
        rows += [
            ("episode", f"{e['clusters_in_episode']} clusters, {e['fault']}, "
                        f"{e['duration_s']} s, all recovered: {e['all_recovered']}"),
            ("status patches per episode", f"{e['status_patches_per_episode']:.1f}"),
            ("Events per episode", f"{e['events_per_episode']:.1f} {e['event_reasons']}"),
            ("episode status fields changed", str(e["status_fields_changed"])),
        ]
    print(table(rows, f"bench/writes.py --clusters {args.clusters} --seconds {args.seconds:g}"))
    print(f"\nJSON: {write_result('writes', r)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
