"""Scale: N StemeDBClusters (primary + 2 replicas each) in one namespace, one operator.

Starts a local control plane, one simulator hosting all N clusters, creates the N
resources, then starts the operator as it ships and measures:
- start-up: seconds from the operator's spawn to its first poll and to every cluster
  polled once (this includes the random first delay of up to one poll interval);
- over a steady-state window of --seconds: poll slip p50/p99/max-bucket (from the
  operator's `stemedb_operator_poll_slip_seconds`), poll duration p50/p99, operator
  CPU (% of one core, from /proc/PID/stat), peak RSS (VmHWM), API requests/s to the
  kube-apiserver (its own `apiserver_request_total`, by verb/resource, for the
  resources the operator uses; nothing else talks to them during the window), and
  the CPU of the simulator, kube-apiserver and etcd sharing the machine;
- with --profile S: a py-spy profile of the running operator for S seconds
  (speedscope JSON + top functions) inside the window.

    .venv/bin/python bench/scale.py --clusters 1000 --seconds 120 [--profile 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _stack import (
    BIN,
    cluster_spec,
    cpu_seconds,
    histogram,
    install_sigterm,
    machine,
    mem_kib,
    stack,
    table,
    write_result,
)

SLIP = "stemedb_operator_poll_slip_seconds"
DURATION = "stemedb_operator_poll_duration_seconds"


def run(clusters: int, seconds: float, poll: float, warmup: float, profile: float,
        name: str, operator_args: tuple[str, ...] = ()) -> dict[str, Any]:
    width = max(4, len(str(clusters)))
    names = [f"c{i:0{width}d}" for i in range(1, clusters + 1)]
    with stack() as st:
        sim_url = st.start_simulator("--cluster-count", str(clusters), "--replicas", "2",
                                     "--seed", "1")
        created = st.create_clusters({n: cluster_spec(sim_url, n, poll) for n in names})
        print(f"[scale] {clusters} resources created in {created:.1f}s", file=sys.stderr)
        api0 = st.apiserver_requests()
        t_spawn = time.monotonic()
        op = st.start_operator(*operator_args)
        st.wait_operator_metrics()
        t_first = t_all = None
        deadline = t_spawn + poll * 3 + 120
        while time.monotonic() < deadline:
            count = histogram(st.operator_metrics(), SLIP).count
            now = time.monotonic()
            if count > 0 and t_first is None:
                t_first = round(now - t_spawn, 2)
            if count >= clusters:
                t_all = round(now - t_spawn, 2)
                break
            time.sleep(0.25)
        # Steady state: every first status write done (no status PATCH for 5 s).
        t_steady = None
        key = ("PATCH", "stemedbclusters", "status")
        last, last_change = st.apiserver_requests().get(key, 0), time.monotonic()
        while time.monotonic() < deadline + 120:
            time.sleep(1)
            now_v = st.apiserver_requests().get(key, 0)
            if now_v != last:
                last, last_change = now_v, time.monotonic()
            elif time.monotonic() - last_change >= 5:
                t_steady = round(last_change - t_spawn, 2)
                break
        api_start = st.apiserver_requests()
        startup_requests = {"/".join(k): v - api0.get(k, 0) for k, v in api_start.items()
                            if v - api0.get(k, 0) > 0}
        print(f"[scale] first poll {t_first}s, all polled {t_all}s, steady {t_steady}s; "
              f"warming up {warmup}s",
              file=sys.stderr)
        time.sleep(warmup)

        pids = st.pids()
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        m0 = st.operator_metrics()
        a0 = st.apiserver_requests()
        w0 = time.monotonic()
        prof: dict[str, Any] = {}
        if profile > 0:
            prof = py_spy(op.pid, profile, st.workdir, name)
        remaining = seconds - (time.monotonic() - w0)
        if remaining > 0:
            time.sleep(remaining)
        m1 = st.operator_metrics()
        a1 = st.apiserver_requests()
        cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
        window = time.monotonic() - w0
        mem = mem_kib(op.pid)
        slip = histogram(m1, SLIP).minus(histogram(m0, SLIP))
        dur = histogram(m1, DURATION).minus(histogram(m0, DURATION))
        requests = {"/".join(k): v - a0.get(k, 0) for k, v in a1.items()
                    if v - a0.get(k, 0) > 0}
        total_requests = sum(requests.values())
        cpu = {k: 100.0 * (cpu1[k] - cpu0[k]) / window for k in pids}
        over = [le for le, c in slip.buckets if c < slip.count]
        return {
            "clusters": clusters,
            "poll_interval_s": poll,
            "window_s": round(window, 1),
            "create_resources_s": round(created, 2),
            "startup": {"first_poll_s": t_first, "all_polled_once_s": t_all,
                        "first_status_writes_done_s": t_steady,
                        "note": "includes the random first delay (uniform 0..poll interval)",
                        "apiserver_requests": startup_requests},
            "polls": slip.count,
            "polls_per_s": slip.count / window,
            "expected_polls_per_s": clusters / poll,
            "slip_p50_s": slip.quantile(0.5),
            "slip_p99_s": slip.quantile(0.99),
            "slip_max_bucket_s": (max(over) if over else 0.0) if slip.count else None,
            "slip_mean_s": slip.total / slip.count if slip.count else None,
            "poll_duration_p50_s": dur.quantile(0.5),
            "poll_duration_p99_s": dur.quantile(0.99),
            "cpu_percent_of_core": cpu,
            "operator_cpu_percent": cpu["operator"],
            "operator_cpu_percent_per_cluster": cpu["operator"] / clusters,
            "operator_rss_mib": mem.get("VmRSS", 0) / 1024,
            "operator_peak_rss_mib": mem.get("VmHWM", 0) / 1024,
            "operator_peak_rss_kib_per_cluster": mem.get("VmHWM", 0) / clusters,
            "operator_threads": mem.get("Threads"),
            "apiserver_requests_per_s": total_requests / window,
            "apiserver_requests": requests,
            "profile": prof,
            "machine": machine(),
        }


def py_spy(pid: int, seconds: float, workdir: Path, name: str) -> dict[str, Any]:
    """Sample the running operator with py-spy (if installed): top self-time functions."""
    exe = BIN / "py-spy"
    if not exe.exists():
        return {"error": "py-spy not installed (pip install py-spy)"}
    raw = workdir / "profile.txt"
    out = Path(__file__).parent / "results" / f"{name}-profile.speedscope.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(exe), "record", "--pid", str(pid), "--duration", str(int(seconds)),
                    "--rate", "100", "--format", "raw", "--output", str(raw), "--nonblocking"],
                   capture_output=True, check=False)
    if not raw.exists():
        return {"error": "py-spy produced nothing"}
    self_time: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack_s, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack_s.split(";")
        leaf = frames[-1] if frames else "?"
        self_time[leaf] = self_time.get(leaf, 0) + count
        for f in set(frames):
            key = _short(f)
            inclusive[key] = inclusive.get(key, 0) + count
    out.write_text(raw.read_text())

    def top(d: dict[str, int], k: int) -> list[tuple[str, float]]:
        return [(_short(f), round(100.0 * c / total, 1))
                for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:k]]

    return {"samples": total, "raw_collapsed_stacks": str(out),
            "top_self_percent": top(self_time, 20),
            "top_inclusive_percent": [(f, round(100.0 * c / total, 1)) for f, c in
                                      sorted(inclusive.items(), key=lambda kv: -kv[1])[:40]]}


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"
    func, _, where = frame.partition(" (")
    path = where.rstrip(")").split(":")[0]
    return f"{func} ({'/'.join(path.split('/')[-2:])})"


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    ms = lambda v: "n/a" if v is None else f"{1000 * v:.1f} ms"  # noqa: E731
    return [
        ("clusters x nodes", f"{r['clusters']} x 3, poll {r['poll_interval_s']:g} s"),
        ("window", f"{r['window_s']} s, {r['polls']:.0f} polls "
                   f"({r['polls_per_s']:.1f}/s of {r['expected_polls_per_s']:.1f}/s expected)"),
        ("start: first poll / all polled", f"{r['startup']['first_poll_s']} s / "
                                           f"{r['startup']['all_polled_once_s']} s"),
        ("start: all first status writes done", f"{r['startup']['first_status_writes_done_s']} s"),
        ("poll slip p50 / p99", f"{ms(r['slip_p50_s'])} / {ms(r['slip_p99_s'])}"),
        ("poll slip max (bucket bound)", ms(r["slip_max_bucket_s"])),
        ("poll duration p50 / p99", f"{ms(r['poll_duration_p50_s'])} / "
                                    f"{ms(r['poll_duration_p99_s'])}"),
        ("operator CPU (% of one core)", f"{r['operator_cpu_percent']:.1f} %"),
        ("operator RSS / peak", f"{r['operator_rss_mib']:.0f} / "
                                f"{r['operator_peak_rss_mib']:.0f} MiB"),
        ("API requests/s (operator)", f"{r['apiserver_requests_per_s']:.3f} "
                                      f"{json.dumps(r['apiserver_requests'])}"),
        ("others' CPU (% of one core)", ", ".join(
            f"{k} {v:.0f}" for k, v in r["cpu_percent_of_core"].items() if k != "operator")),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=120.0, help="steady-state window")
    ap.add_argument("--poll", type=float, default=10.0, help="pollIntervalSeconds")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--profile", type=float, default=0.0,
                    help="py-spy the operator for this many seconds inside the window")
    ap.add_argument("--name", default=None, help="result file name (default scale-N)")
    ap.add_argument("--leader-election", action="store_true",
                    help="run the operator with --leader-election (a Lease in the bench "
                         "namespace), as the chart does")
    args = ap.parse_args()
    install_sigterm()
    name = args.name or f"scale-{args.clusters}"
    extra = (("--leader-election", "--leader-election-namespace", "bench")
             if args.leader_election else ())
    result = run(args.clusters, args.seconds, args.poll, args.warmup, args.profile, name,
                 extra)
    print(table(summary_rows(result), f"bench/scale.py --clusters {args.clusters} "
                                      f"--seconds {args.seconds:g}"))
    if result["profile"].get("top_self_percent"):
        print("\npy-spy, top self time (% of samples):")
        for f, pct in result["profile"]["top_self_percent"][:15]:
            print(f"  {pct:5.1f}  {f}")
    print(f"\nJSON: {write_result(name, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
