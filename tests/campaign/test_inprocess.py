"""The campaign's StemeDB seam answers as the simulator's HTTP server does: the same
request to `stemedb_sim.inprocess.InProcessNodes` and to `server.build_app` over a real
socket (two simulations from the same seed) gets the same status and body, so the
campaign's findings hold for the simulator the e2e tests and the demo run."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from aiohttp import web

from stemedb_sim import ClusterConfig, ManualClock, Simulation
from stemedb_sim.auth import TokenSource
from stemedb_sim.inprocess import InProcessNodes, Outcome
from stemedb_sim.server import build_app

TOKEN = "t0ken"
AUTH = f"Bearer {TOKEN}"


def _sim() -> Simulation:
    sim = Simulation(ManualClock(), seed=3, default_config=ClusterConfig(replicas=2),
                     epoch=1_767_225_600)
    sim.create_cluster("demo")
    return sim


def _normal(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode()


# (fault or None, method, node, path, body, authorization)
CASES = [
    pytest.param(None, "GET", "node1", "/metrics", None, AUTH, id="the primary's metrics"),
    pytest.param(None, "GET", "node2", "/metrics", None, AUTH, id="a replica's metrics"),
    pytest.param(None, "GET", "node1", "/metrics", None, None, id="no token: 401"),
    pytest.param(None, "GET", "node1", "/metrics", None, "Bearer old", id="a wrong token: 401"),
    pytest.param(None, "GET", "node9", "/metrics", None, AUTH, id="an unknown node: 404"),
    pytest.param(None, "POST", "node1", "/v1/admin/rate-limit",
                 {"max_assertions_per_sec": 1500}, AUTH, id="set the rate limit"),
    pytest.param(None, "POST", "node1", "/v1/admin/rate-limit",
                 {"max_assertions_per_sec": -1}, AUTH, id="a negative rate: 400"),
    pytest.param(None, "POST", "node2", "/v1/admin/rate-limit",
                 {"max_assertions_per_sec": 1}, AUTH, id="admin on a replica: 404 not_primary"),
    pytest.param({"kind": "breaker_trip", "replica": "node2"}, "GET", "node1",
                 "/v1/admin/circuit-breakers/tripped", None, AUTH, id="the tripped list"),
    pytest.param({"kind": "breaker_trip", "replica": "node2"}, "POST", "node1",
                 "/v1/admin/circuit-breaker/reset", {"agent_id": "agent-node2"}, AUTH,
                 id="a breaker reset"),
    pytest.param(None, "POST", "node1", "/v1/admin/cluster/sync",
                 {"replica_id": "node2", "force": True}, AUTH, id="a sync"),
    pytest.param({"kind": "http_error", "node": "node1", "endpoint": "admin", "status": 502},
                 "POST", "node1", "/v1/admin/cluster/sync", {"replica_id": "node2"}, AUTH,
                 id="an injected 502"),
    pytest.param({"kind": "truncated_metrics", "node": "node1", "fraction": 0.4}, "GET",
                 "node1", "/metrics", None, AUTH, id="truncated metrics"),
]


@pytest.mark.parametrize(("fault", "method", "node", "path", "body", "auth"), CASES)
async def test_in_process_answers_as_the_server(
        fault: dict[str, Any] | None, method: str, node: str, path: str,
        body: dict[str, Any] | None, auth: str | None) -> None:
    over_http, in_process = _sim(), _sim()
    for sim in (over_http, in_process):
        sim.advance_to(30.0)
        if fault is not None:
            sim.clusters["demo"].add_fault(fault)
    raw = json.dumps(body).encode() if body is not None else b""
    answer = InProcessNodes(in_process, token=TOKEN).serve(
        method, f"/c/demo/{node}{path}", auth, raw)

    runner = web.AppRunner(build_app(over_http, TokenSource(TOKEN)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with httpx.AsyncClient() as client:
            resp = await client.request(
                method, f"http://127.0.0.1:{runner.addresses[0][1]}/c/demo/{node}{path}",
                content=raw, headers={"Authorization": auth} if auth else {})
    finally:
        await runner.cleanup()

    assert answer.outcome is Outcome.ANSWER
    assert (answer.status, _normal(answer.body)) == (resp.status_code, _normal(resp.content))
    log_http = [(e["method"], e["endpoint"], e["status"])
                for e in over_http.clusters["demo"].admin_log]
    log_in_process = [(e["method"], e["endpoint"], e["status"])
                      for e in in_process.clusters["demo"].admin_log]
    assert log_in_process == log_http


@pytest.mark.parametrize(("fault", "outcome"), [
    pytest.param({"kind": "connection_refused", "node": "node1"}, Outcome.RESET,
                 id="a reset connection"),
    pytest.param({"kind": "timeout", "node": "node1"}, Outcome.HANG, id="a hung request"),
    pytest.param({"kind": "slow_response", "node": "node1", "delay_seconds": 5.0},
                 Outcome.HANG, id="an answer slower than a client waits"),
])
def test_what_a_socket_would_do_instead_of_answering(
        fault: dict[str, Any], outcome: Outcome) -> None:
    sim = _sim()
    sim.clusters["demo"].add_fault(fault)
    answer = InProcessNodes(sim, token=TOKEN).serve("GET", "/c/demo/node1/metrics", AUTH)
    assert answer.outcome is outcome
