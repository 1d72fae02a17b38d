"""Cost curve: bench/scale.py at several cluster counts; CPU and RSS per cluster.

Each count is a fresh `bench/scale.py` run (own control plane, simulator and
operator). Prints a table, writes bench/results/cost_curve.json and a plot
(bench/results/cost_curve.png; --png docs/performance-cost-curve.png for the docs).

    .venv/bin/python bench/cost_curve.py [--counts 100,300,1000] [--seconds 60] [--png P]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _stack import RESULTS, install_sigterm, machine, write_result

PNG = RESULTS / "cost_curve.png"  # docs/performance-cost-curve.png via --png


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["clusters"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(n, [r["operator_cpu_percent"] for r in rows], "o-", label="operator")
    axes[0].axhline(25, ls="--", c="grey", lw=0.8, label="target @1,000 (25 %)")
    axes[0].axhline(60, ls=":", c="grey", lw=0.8, label="target @3,000 (60 %)")
    axes[0].set(title="CPU (% of one core)", xlabel="clusters")
    axes[0].legend(fontsize=7)
    axes[1].plot(n, [r["operator_peak_rss_mib"] for r in rows], "o-", c="C1")
    axes[1].axhline(150, ls="--", c="grey", lw=0.8, label="target @1,000 (150 MiB)")
    axes[1].set(title="peak RSS (MiB)", xlabel="clusters")
    axes[1].legend(fontsize=7)
    axes[2].plot(n, [1000 * r["slip_p99_s"] for r in rows], "o-", c="C2", label="p99")
    axes[2].plot(n, [1000 * r["slip_p50_s"] for r in rows], "o-", c="C3", label="p50")
    axes[2].set(title="poll slip (ms)", xlabel="clusters", yscale="log")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    fig.suptitle(f"StemeDB operator cost curve (10 s poll, {machine()['nproc']} cores shared "
                 "with kube-apiserver, etcd, simulator)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="100,300,1000")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--png", type=Path, default=PNG, help=f"plot path (default {PNG})")
    ap.add_argument("--reuse", action="store_true",
                    help="only re-plot from existing bench/results/cost-N.json")
    args = ap.parse_args()
    install_sigterm()
    rows = []
    for n in (int(c) for c in args.counts.split(",")):
        out = RESULTS / f"cost-{n}.json"
        if not args.reuse:
            subprocess.run([sys.executable, str(Path(__file__).parent / "scale.py"),
                            "--clusters", str(n), "--seconds", str(args.seconds),
                            "--warmup", str(args.warmup), "--name", f"cost-{n}"], check=True)
        rows.append(json.loads(out.read_text()))
    print("\nclusters  CPU %core  CPU %/cluster  peak RSS MiB  KiB/cluster  "
          "slip p50 ms  slip p99 ms  API req/s")
    for r in rows:
        print(f"{r['clusters']:>8}  {r['operator_cpu_percent']:>9.1f}  "
              f"{r['operator_cpu_percent_per_cluster']:>13.4f}  "
              f"{r['operator_peak_rss_mib']:>12.0f}  "
              f"{r['operator_peak_rss_kib_per_cluster']:>11.0f}"
              f"  {1000 * r['slip_p50_s']:>11.1f}  {1000 * r['slip_p99_s']:>11.1f}"
              f"  {r['apiserver_requests_per_s']:>9.3f}")
    plot(rows, args.png)
    keys = ("clusters", "operator_cpu_percent", "operator_cpu_percent_per_cluster",
            "operator_peak_rss_mib", "operator_peak_rss_kib_per_cluster", "slip_p50_s",
            "slip_p99_s", "apiserver_requests_per_s")
    path = write_result("cost_curve", {"rows": [{k: r[k] for k in keys} for r in rows],
                                       "machine": machine()})
    print(f"\nJSON: {path}\nPNG: {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
