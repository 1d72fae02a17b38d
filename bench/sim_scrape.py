"""Scrape throughput of the simulator: 1,000 clusters x (primary + 2 replicas), loopback only.

Starts `stemedb-sim serve` as a subprocess (its own core), hammers the primaries'
/metrics round-robin from an aiohttp client with a bounded count and time, and
reports scrapes/s plus the server's CPU seconds (so scrapes per server core-second
can be read independently of the client). Writes bench/results/sim_scrape.json.

    .venv/bin/python bench/sim_scrape.py [--clusters 1000] [--count 20000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

RESULTS = Path(__file__).parent / "results" / "sim_scrape.json"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def hammer(base: str, clusters: int, count: int, seconds: float, concurrency: int,
                 name_width: int) -> dict[str, float]:
    urls = [f"{base}/c/c{i:0{name_width}d}/node1/metrics" for i in range(1, clusters + 1)]
    done = errors = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def worker(k: int) -> None:
            nonlocal done, errors
            i = k
            while done + errors < count and time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with s.get(urls[i % clusters]) as r:
                    body = await r.read()
                    if r.status != 200 or b"stemedb_replication_lag_seconds" not in body:
                        errors += 1
                    else:
                        done += 1
                latencies.append(time.perf_counter() - t0)
                i += concurrency

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "scrapes": done,
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "scrapes_per_s": round(done / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--speed", type=float, default=1.0)
    args = p.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "stemedb_sim.cli", "serve", "--host", "127.0.0.1", "--port", "0",
         "--clusters", "", "--cluster-count", str(args.clusters), "--replicas",
         str(args.replicas), "--speed", str(args.speed), "--seed", "1"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise SystemExit(f"simulator did not start: {ready}")
        base = ready[1]
        cpu0 = cpu_seconds(server.pid)
        width = max(4, len(str(args.clusters)))
        res = asyncio.run(hammer(base, args.clusters, args.count, args.seconds,
                                 args.concurrency, width))
        server_cpu = cpu_seconds(server.pid) - cpu0
    finally:
        server.terminate()
        server.wait(timeout=10)
    res |= {
        "server_cpu_s": round(server_cpu, 2),
        "scrapes_per_server_core_s": round(res["scrapes"] / server_cpu, 1) if server_cpu else None,
        "clusters": args.clusters,
        "replicas_per_cluster": args.replicas,
        "concurrency": args.concurrency,
        "speed": args.speed,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "processor": platform.processor()},
    }
    print(f"{'metric':<28}{'value':>14}")
    for key in ("clusters", "scrapes", "errors", "elapsed_s", "scrapes_per_s", "p50_ms",
                "p99_ms", "server_cpu_s", "scrapes_per_server_core_s"):
        print(f"{key:<28}{res[key]!s:>14}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
