"""Client CPU per scrape: the operator's StemeDB adapter against plain httpx and aiohttp.

Starts `stemedb-sim serve` (its own process) with N clusters and, in this process,
scrapes the primaries' /metrics with each client in turn at a fixed concurrency,
reporting the client's CPU time per request (this process's rusage; the server's
CPU is not counted). The adapter's figure includes what a poll needs beyond the
GET: parsing the exposition text, retries (none here) and request metrics.

    .venv/bin/python bench/client_cpu.py [--clusters 1000] [--requests 3000] [--concurrency 4,64]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from _stack import BIN, machine, write_result

from controller.adapters.operator_metrics import OperatorMetrics
from controller.adapters.stemedb import ClientConfig, StemeDBClient


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(name: str, one: Callable[[str], Awaitable[object]], urls: list[str],
                  requests: int, concurrency: int) -> dict[str, object]:
    sem = asyncio.Semaphore(concurrency)

    async def bounded(url: str) -> None:
        async with sem:
            await one(url)

    await asyncio.gather(*(bounded(urls[i % len(urls)]) for i in range(200)))  # warm pools
    c0, t0 = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(bounded(urls[i % len(urls)]) for i in range(requests)))
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - t0
    return {"client": name, "concurrency": concurrency, "requests": requests,
            "cpu_us_per_request": round(1e6 * cpu / requests),
            "requests_per_s": round(requests / wall)}


async def run(clusters: int, requests: int, concurrencies: list[int]) -> list[dict[str, object]]:
    server = subprocess.Popen(
        [str(BIN / "stemedb-sim"), "serve", "--host", "127.0.0.1", "--port", "0",
         "--clusters", "", "--cluster-count", str(clusters)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        while not line.startswith("READY"):
            line = server.stdout.readline()
        base = line.split()[1]
        width = len(str(clusters)) if clusters > 9999 else 4
        nodes = [f"{base}/c/c{i:0{width}d}/node1" for i in range(1, clusters + 1)]
        rows: list[dict[str, object]] = []
        for conc in concurrencies:
            async with StemeDBClient(ClientConfig(), metrics=OperatorMetrics()) as adapter:
                rows.append(await measure("adapter (StemeDBClient.scrape_primary)",
                                          adapter.scrape_primary, nodes, requests, conc))
            limits = httpx.Limits(max_connections=512, max_keepalive_connections=8)
            async with httpx.AsyncClient(limits=limits) as hx:
                async def get_httpx(node: str) -> bytes:
                    return (await hx.get(f"{node}/metrics")).content
                rows.append(await measure("httpx.AsyncClient (default transport)",
                                          get_httpx, nodes, requests, conc))
            async with aiohttp.ClientSession() as session:
                async def get_aiohttp(node: str) -> bytes:
                    async with session.get(f"{node}/metrics") as resp:
                        return await resp.read()
                rows.append(await measure("aiohttp.ClientSession", get_aiohttp, nodes,
                                          requests, conc))
        return rows
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", default="4,64")
    args = p.parse_args()
    rows = asyncio.run(run(args.clusters, args.requests,
                           [int(c) for c in args.concurrency.split(",")]))
    print(f"{'client':42} {'in flight':>9} {'CPU us/req':>10} {'req/s':>7}")
    for r in rows:
        print(f"{r['client']!s:42} {r['concurrency']!s:>9} {r['cpu_us_per_request']!s:>10} "
              f"{r['requests_per_s']!s:>7}")
    path = write_result("client_cpu", {"machine": machine(), "rows": rows})
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
