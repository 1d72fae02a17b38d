"""Reference vs fast /metrics parsing on a realistic primary body.

    .venv/bin/python bench/parse_metrics.py [--replicas 3] [--repeat 7]

The body is the simulator's primary exposition (every runbook and assumed family,
histograms included) followed by the process/platform/GC families a real server
exports too. Prints a table and writes bench/results/parse_metrics.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from controller.adapters.metrics_text import parse_samples
from controller.adapters.stemedb import PRIMARY_METRICS, primary_from_samples
from stemedb_sim.clock import ManualClock
from stemedb_sim.exposition import render_primary
from stemedb_sim.model import ClusterConfig
from stemedb_sim.simulation import Simulation


def primary_body(replicas: int) -> str:
    sim = Simulation(ManualClock(), seed=1)
    model = sim.create_cluster("bench", ClusterConfig(replicas=replicas))
    sim.advance(30)
    reg = CollectorRegistry()
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    return render_primary(model) + generate_latest(reg).decode()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--out", default="bench/results/parse_metrics.json")
    args = p.parse_args()

    body = primary_body(args.replicas)
    lines = body.count("\n")
    ref_n = sum(len(f.samples) for f in text_string_to_metric_families(body))
    runs = {
        "reference (prometheus_client, all series)": lambda: list(
            text_string_to_metric_families(body)
        ),
        "fast reader, all series": lambda: parse_samples(body),
        "fast reader, runbook series only": lambda: parse_samples(body, PRIMARY_METRICS),
        "fast reader + PrimaryScrape mapping": lambda: primary_from_samples(
            parse_samples(body, PRIMARY_METRICS)
        ),
    }
    results = {}
    for name, fn in runs.items():
        timer = timeit.Timer(fn)
        number, _ = timer.autorange()
        best = min(timer.repeat(repeat=args.repeat, number=number)) / number
        results[name] = best
    ref = results["reference (prometheus_client, all series)"]
    print(f"body: {len(body)} bytes, {lines} lines, {ref_n} samples, {args.replicas} replicas")
    print(f"{'parser':<45} {'per parse':>12} {'speed-up':>9}")
    for name, t in results.items():
        print(f"{name:<45} {t * 1e6:>9.1f} us {ref / t:>8.1f}x")
    out = {
        "body_bytes": len(body),
        "body_lines": lines,
        "samples": ref_n,
        "replicas": args.replicas,
        "seconds_per_parse": results,
        "speedup_vs_reference": {k: ref / v for k, v in results.items()},
        "python": sys.version.split()[0],
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
