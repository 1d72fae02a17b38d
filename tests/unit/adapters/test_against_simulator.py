"""The client against the real simulator over loopback (in-process, port 0).

Covers the four admin calls and the scrape through StemeDBClient, bearer auth
(including rotation), TLS with the simulator's generated CA, and API faults
injected through the simulator's /sim/v1 API.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from controller.adapters.operator_metrics import OperatorMetrics
from controller.adapters.stemedb import (
    ClientConfig,
    Credentials,
    MetricsParseError,
    StemeDBClient,
    StemeDBHTTPError,
    StemeDBTimeout,
    StemeDBTLSError,
    StemeDBUnauthorized,
    StemeDBUnreachable,
    SyncAlreadyRunning,
    SyncStarted,
)
from stemedb_sim.auth import TokenSource
from stemedb_sim.clock import ManualClock
from stemedb_sim.server import build_app
from stemedb_sim.simulation import Simulation
from stemedb_sim.tls import ensure_certs, server_context

TOKEN = "sim-token-1"


class Sim:
    def __init__(self, root: str, token: TokenSource) -> None:
        self.root = root
        self.token = token
        self.base = f"{root}/c/demo/node1"
        self.token_file: Path | None = None

    async def sim(self, path: str, body: dict[str, object], verify: object = True) -> None:
        async with httpx.AsyncClient(verify=verify) as c:  # type: ignore[arg-type]
            r = await c.post(f"{self.root}/sim/v1{path}", json=body)
            r.raise_for_status()

    async def get(self, path: str) -> Any:
        async with httpx.AsyncClient() as c:
            r = await c.get(f"{self.root}/sim/v1{path}")
            r.raise_for_status()
            return r.json()


async def _serve(tls_dir: Path | None, token: TokenSource) -> AsyncIterator[tuple[Sim, Simulation]]:
    sim = Simulation(ManualClock(), seed=3)
    sim.create_cluster("demo", initial=True)
    app = build_app(sim, token, seed=3)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    ctx = server_context(ensure_certs(tls_dir)) if tls_dir else None
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if tls_dir else "http"
    try:
        yield Sim(f"{scheme}://127.0.0.1:{port}", token), sim
    finally:
        await runner.cleanup()


@pytest.fixture
async def plain(tmp_path: Path) -> AsyncIterator[tuple[Sim, Simulation]]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    async for s in _serve(None, TokenSource(token_file=token_file)):
        s[0].token_file = token_file
        yield s


@pytest.fixture
async def client() -> AsyncIterator[StemeDBClient]:
    async with StemeDBClient(ClientConfig(max_attempts=2)) as c:
        yield c


async def test_scrape_and_the_four_admin_calls(
    plain: tuple[Sim, Simulation], client: StemeDBClient
) -> None:
    s, _ = plain
    creds = Credentials(token=TOKEN)
    scrape = await client.scrape_primary(s.base, creds)
    assert set(scrape.replicas) == {"node2", "node3"}
    assert all(r.lag_seconds is not None and r.up is not None for r in scrape.replicas.values())
    assert scrape.assertions_indexed_total is not None and scrape.rate_limit_reported

    node = await client.scrape_node(f"{s.root}/c/demo/node2", creds)
    assert node.role == "replica" and node.assertions_indexed_total is not None

    assert (await client.get_rate_limit(s.base, creds)).max_assertions_per_sec is None
    assert (await client.set_rate_limit(s.base, 1000, creds)).max_assertions_per_sec == 1000
    assert (await client.get_rate_limit(s.base, creds)).max_assertions_per_sec == 1000
    assert (await client.scrape_primary(s.base, creds)).rate_limit == 1000
    assert (
        await client.set_rate_limit(s.base, None, creds)
    ).previous_max_assertions_per_sec == 1000

    started = await client.force_sync(s.base, "node2", creds)
    assert isinstance(started, SyncStarted)
    again = await client.force_sync(s.base, "node2", creds)
    assert again == SyncAlreadyRunning("node2", started.sync_id)

    assert await client.tripped_breakers(s.base, creds) == []
    await s.sim("/clusters/demo/faults", {"kind": "breaker_trip", "replica": "node3"})
    await s.sim("/advance", {"seconds": 2})
    tripped = await client.tripped_breakers(s.base, creds)
    assert [(b.agent_id, b.replica_id) for b in tripped] == [("agent-node3", "node3")]
    reset = await client.reset_breaker(s.base, "agent-node3", creds)
    assert reset.was_tripped is True and reset.replica_id == "node3"

    with pytest.raises(StemeDBHTTPError) as info:
        await client.reset_breaker(s.base, "agent-node9", creds)
    assert (info.value.status, info.value.code) == (404, "unknown_agent")


async def test_bearer_auth_and_rotation(
    plain: tuple[Sim, Simulation], client: StemeDBClient
) -> None:
    s, _ = plain
    with pytest.raises(StemeDBUnauthorized):
        await client.scrape_primary(s.base, Credentials())
    with pytest.raises(StemeDBUnauthorized) as info:
        await client.get_rate_limit(s.base, Credentials(token="wrong"))
    assert "wrong" not in str(info.value)
    assert s.token_file is not None
    s.token_file.write_text("rotated-token")  # the server re-reads its token file
    with pytest.raises(StemeDBUnauthorized):
        await client.scrape_primary(s.base, Credentials(token=TOKEN))
    await client.scrape_primary(s.base, Credentials(token="rotated-token"))


async def test_garbled_metrics_from_the_simulator_are_a_parse_error(
    plain: tuple[Sim, Simulation], client: StemeDBClient
) -> None:
    s, _ = plain
    await s.sim("/clusters/demo/faults", {"kind": "garbled_metrics", "node": "node1"})
    with pytest.raises(MetricsParseError):
        await client.scrape_primary(s.base, Credentials(token=TOKEN))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
async def test_tls_with_the_simulators_ca(tmp_path: Path, client: StemeDBClient) -> None:
    async for s, _ in _serve(tmp_path, TokenSource(TOKEN)):
        ca = (tmp_path / "ca.pem").read_bytes()
        scrape = await client.scrape_primary(s.base, Credentials(token=TOKEN, ca_pem=ca))
        assert "node2" in scrape.replicas
        with pytest.raises(StemeDBTLSError):
            await client.scrape_primary(s.base, Credentials(token=TOKEN))  # system CAs only


# ------------------------------------------------------------------ the wire, for real
# Each case is a failure on a real socket. "may have applied" decides whether a
# POST that changes StemeDB may be repeated: only what cannot have reached the
# server is retried for force_sync.
def _requests(metrics: OperatorMetrics, endpoint: str, code: str) -> float:
    value = metrics.registry.get_sample_value(
        "stemedb_operator_stemedb_requests_total", {"endpoint": endpoint, "code": code})
    return value or 0.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_nothing_listening_is_unreachable_not_applied_and_a_sync_is_retried() -> None:
    metrics = OperatorMetrics()
    base = f"http://127.0.0.1:{_closed_port()}/c/demo/node1"
    async with StemeDBClient(ClientConfig(max_attempts=3), metrics=metrics) as client:
        with pytest.raises(StemeDBUnreachable) as info:
            await client.force_sync(base, "node2", Credentials(token=TOKEN))
    assert info.value.may_have_applied is False
    assert _requests(metrics, "POST /v1/admin/cluster/sync", "unreachable") == 3


async def test_a_connection_reset_after_sending_may_have_applied_so_a_sync_is_not_repeated(
    plain: tuple[Sim, Simulation],
) -> None:
    s, _ = plain
    await s.sim("/clusters/demo/faults",
                {"kind": "connection_refused", "node": "node1", "endpoint": "admin"})
    async with StemeDBClient(ClientConfig(max_attempts=3)) as client:
        with pytest.raises(StemeDBUnreachable) as info:
            await client.force_sync(s.base, "node2", Credentials(token=TOKEN))
    assert info.value.may_have_applied is True
    log = await s.get("/clusters/demo/admin-log")
    syncs = [e for e in log["entries"] if e["endpoint"].endswith("/sync")]
    assert [e["status"] for e in syncs] == [None]  # sent once, reset, not repeated


async def test_a_reset_scrape_is_retried_and_then_unreachable(
    plain: tuple[Sim, Simulation],
) -> None:
    s, _ = plain
    await s.sim("/clusters/demo/faults",
                {"kind": "connection_refused", "node": "node1", "endpoint": "metrics"})
    metrics = OperatorMetrics()
    async with StemeDBClient(ClientConfig(max_attempts=3), metrics=metrics) as client:
        with pytest.raises(StemeDBUnreachable):
            await client.scrape_primary(s.base, Credentials(token=TOKEN))
    assert _requests(metrics, "GET /metrics", "unreachable") == 3


async def test_a_server_that_holds_the_request_is_a_read_timeout(
    plain: tuple[Sim, Simulation],
) -> None:
    s, _ = plain
    await s.sim("/clusters/demo/faults",
                {"kind": "timeout", "node": "node1", "hang_seconds": 2.0})
    cfg = ClientConfig(poll_interval=2.0, connect_timeout=0.2, read_timeout=0.5,
                       write_timeout=0.2, pool_timeout=0.2, request_timeout=0.6,
                       retry_budget=0.8, max_attempts=1)
    async with StemeDBClient(cfg) as client:
        with pytest.raises(StemeDBTimeout) as info:
            await client.force_sync(s.base, "node2", Credentials(token=TOKEN))
    assert info.value.phase in ("read", "deadline") and info.value.may_have_applied is True


async def test_a_truncated_metrics_body_is_a_parse_error_not_a_lag(
    plain: tuple[Sim, Simulation], client: StemeDBClient
) -> None:
    s, _ = plain
    await s.sim("/clusters/demo/faults", {"kind": "truncated_metrics", "node": "node1"})
    with pytest.raises(MetricsParseError):
        await client.scrape_primary(s.base, Credentials(token=TOKEN))
