"""`stemedb-sim serve ...`: run the simulator; prints `READY <url>` first for scripts/tests."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from aiohttp import web

from stemedb_sim.auth import TokenSource
from stemedb_sim.clock import WallClock
from stemedb_sim.model import ClusterConfig
from stemedb_sim.server import build_app
from stemedb_sim.simulation import Simulation
from stemedb_sim.tls import ensure_certs, server_context

# The first line `serve` prints, then its base URL (`READY http://127.0.0.1:PORT`).
READY_PREFIX = "READY "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="stemedb-sim", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve simulated StemeDB clusters over HTTP")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=18180, help="0 = pick a free port")
    s.add_argument("--speed", type=float, default=1.0, help="sim seconds per wall second")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--clusters", default="demo", help="comma-separated cluster names")
    s.add_argument("--cluster-count", type=int, default=0,
                   help="also create N clusters named c0001..cN")
    s.add_argument("--replicas", type=int, default=2, help="replicas per cluster (besides node1)")
    s.add_argument("--load", type=float, default=2000.0, help="offered assertions/s")
    s.add_argument("--load-jitter", type=float, default=0.02)
    s.add_argument("--apply-capacity", type=float, default=3000.0)
    s.add_argument("--network-delay", type=float, default=0.05)
    s.add_argument("--token", help="require this bearer token on node endpoints")
    s.add_argument("--token-file", help="require the token in this file (re-read on change)")
    s.add_argument("--tls", metavar="DIR", help="serve HTTPS with a CA + cert generated in DIR")
    return p.parse_args(argv)


def cluster_names(args: argparse.Namespace) -> list[str]:
    names = [n.strip() for n in args.clusters.split(",") if n.strip()]
    width = max(4, len(str(args.cluster_count)))
    names += [f"c{i:0{width}d}" for i in range(1, args.cluster_count + 1)]
    return names


async def serve(args: argparse.Namespace) -> None:
    cfg = ClusterConfig(replicas=args.replicas, load=args.load, load_jitter=args.load_jitter,
                        apply_capacity=args.apply_capacity, network_delay=args.network_delay)
    sim = Simulation(WallClock(args.speed), seed=args.seed, default_config=cfg)
    names = cluster_names(args)
    for name in names:
        sim.create_cluster(name, initial=True)
    ssl_ctx = None
    scheme = "http"
    if args.tls:
        files = ensure_certs(args.tls)
        ssl_ctx = server_context(files)
        scheme = "https"
    token = TokenSource(args.token, args.token_file)
    app = build_app(sim, token, seed=args.seed)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, ssl_context=ssl_ctx)
    await site.start()
    port = runner.addresses[0][1]
    host = args.host if ":" not in args.host else f"[{args.host}]"
    base = f"{scheme}://{host}:{port}"
    print(f"{READY_PREFIX}{base}", flush=True)
    if args.tls:
        print(f"CA {Path(args.tls, 'ca.pem').resolve()}", flush=True)
    shown = names[:5]
    for name in shown:
        print(f"cluster {name}: primary {base}/c/{name}/node1  replicas "
              + " ".join(f"{base}/c/{name}/node{k}" for k in range(2, args.replicas + 2)),
              flush=True)
    if len(names) > len(shown):
        print(f"... and {len(names) - len(shown)} more clusters ({base}/sim/v1/clusters)",
              flush=True)
    print(f"sim API {base}/sim/v1/  speed x{args.speed} seed {args.seed}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("stopping", file=sys.stderr, flush=True)
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "serve":
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
