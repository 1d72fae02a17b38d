"""In-process simulator servers on port 0, driven by a manual clock (no sleeping)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from aiohttp import web

from stemedb_sim import ClusterConfig, ManualClock, Simulation
from stemedb_sim.auth import TokenSource
from stemedb_sim.server import build_app


@dataclass
class RunningSim:
    base: str
    sim: Simulation
    client: httpx.AsyncClient

    def node(self, node: str, cluster: str = "demo") -> str:
        return f"{self.base}/c/{cluster}/{node}"

    async def advance(self, seconds: float) -> None:
        r = await self.client.post(f"{self.base}/sim/v1/advance", json={"seconds": seconds})
        assert r.status_code == 200


def exact_config(**kw: float) -> ClusterConfig:
    """Defaults without jitter, so numbers can be checked against the formulas."""
    return ClusterConfig(load_jitter=0.0, **kw)  # type: ignore[arg-type]


async def start_sim(
    token: TokenSource | None = None, ssl_ctx: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, str, Simulation]:
    sim = Simulation(ManualClock(), seed=7, default_config=exact_config(), epoch=1_767_225_600)
    sim.create_cluster("demo", initial=True)
    runner = web.AppRunner(build_app(sim, token, seed=7), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_ctx)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_ctx else "http"
    return runner, f"{scheme}://127.0.0.1:{port}", sim


@pytest.fixture
async def running() -> AsyncIterator[RunningSim]:
    runner, base, sim = await start_sim()
    async with httpx.AsyncClient(timeout=5, headers={"User-Agent": "sim-tests/1"}) as client:
        yield RunningSim(base, sim, client)
    await runner.cleanup()
