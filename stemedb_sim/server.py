"""aiohttp app: per-node runbook API under /c/{cluster}/{node}, fault behaviour, admin log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from stemedb_sim.admin import handle_admin
from stemedb_sim.auth import TokenSource
from stemedb_sim.exposition import CONTENT_TYPE, render_primary, render_replica
from stemedb_sim.faults import Fault, FaultKind
from stemedb_sim.model import AdminError, ClusterModel
from stemedb_sim.simapi import add_sim_routes
from stemedb_sim.simulation import Simulation
from stemedb_sim.webapp import SIM_KEY, error_response

TOKEN_KEY = web.AppKey("token", TokenSource)
STATE_KEY = web.AppKey("state", dict)
MAX_LOG = 10_000
MAX_LOGGED_BODY = 4096


def _iso_wall() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _log_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:MAX_LOGGED_BODY].decode("utf-8", "replace")


def _abort(request: web.Request) -> None:
    """Reset the TCP connection without a response (RST via SO_LINGER 0)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _garble(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    junk = ["stemedb_replication_lag_seconds{replica=\"node2\" 12.5\n", "\x00\x17garbage{{{\n",
            "# TYPE stemedb_replication_lag_seconds counter histogram\n", "lag=NaN;;\n"]
    for _ in range(max(3, len(lines) // 10)):
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(junk))
    return "".join(lines)


class NodeHandler:
    """Handles every request under /c/{cluster}/{node}/..."""

    def __init__(self, sim: Simulation, token: TokenSource, seed: int) -> None:
        self.sim = sim
        self.token = token
        self.rng = random.Random(f"api:{seed}")  # separate from the models' RNGs
        self._cache: dict[tuple[str, str], tuple[float, int, bytes]] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        model = self.sim.get(info["cluster"])
        if model is None:
            return error_response(404, "unknown_cluster", f"no cluster {info['cluster']!r}")
        node = info["node"]
        if node != "node1" and node not in model.replicas:
            return error_response(404, "unknown_node", f"no node {node!r} in {model.name}")
        path = "/" + info["tail"]
        kind = "metrics" if path == "/metrics" else (
            "admin" if path.startswith("/v1/admin/") else "other")
        raw = await request.read() if kind == "admin" else b""
        if kind == "metrics" and request.method == "GET":
            model.metrics_requests[node] = model.metrics_requests.get(node, 0) + 1
        resp: web.Response | None = None
        fault_id: str | None = None
        try:
            resp, fault_id = await self._serve(request, model, node, path, kind, raw)
        finally:
            if kind == "admin":
                status = None if resp is None else resp.status
                self._log(model, request, node, path, raw, status, fault_id)
        # None: the connection was reset by a fault; this response never reaches anyone
        return resp if resp is not None else web.Response(status=500)

    async def _serve(self, request: web.Request, model: ClusterModel, node: str, path: str,
                     kind: str, raw: bytes) -> tuple[web.Response | None, str | None]:
        faults = model.api_faults(node, kind) if model.faults else []
        fault_id = None
        for f in faults:
            if f.kind is FaultKind.CONNECTION_REFUSED:
                _abort(request)
                return None, f.id
        for f in faults:
            if f.kind is FaultKind.TIMEOUT:
                await asyncio.sleep(f.params["hang_seconds"])
                return error_response(504, "timeout", "request timed out (injected)"), f.id
            if f.kind is FaultKind.SLOW_RESPONSE:
                await asyncio.sleep(f.params["delay_seconds"])
                fault_id = f.id
        if not self.token.check(request.headers.get("Authorization")):
            model.unauthorized_requests[node] = model.unauthorized_requests.get(node, 0) + 1
            return error_response(401, "unauthorized", "missing or invalid bearer token"), None
        for f in faults:
            if f.kind is FaultKind.HTTP_ERROR and self.rng.random() < f.params["probability"]:
                return error_response(f.params["status"], "internal",
                                      "internal server error (injected)"), f.id
        if node != "node1" and not model.replicas[node].up:
            return error_response(503, "node_unavailable", f"{node} is restarting"), fault_id
        if kind == "metrics":
            if request.method not in ("GET", "HEAD"):
                return error_response(405, "method_not_allowed", "use GET", allow="GET"), None
            return self._metrics(model, node, faults), fault_id
        if kind == "admin":
            if node != "node1":
                return error_response(404, "not_primary",
                                      f"{node} is a replica; admin endpoints live on the primary "
                                      "(node1)"), fault_id
            try:
                status, payload = handle_admin(model, request.method, path, raw)
            except AdminError as e:
                return error_response(e.status, e.code, e.message, **e.extra), fault_id
            return web.json_response(payload, status=status), fault_id
        return error_response(404, "not_found", f"no endpoint {path}"), fault_id

    def _metrics(self, model: ClusterModel, node: str, faults: list[Fault]) -> web.Response:
        key = (model.name, node)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == model.t and hit[1] == model.version:
            body = hit[2]
        else:
            text = render_primary(model) if node == "node1" else render_replica(model, node)
            body = text.encode()
            self._cache[key] = (model.t, model.version, body)
        for f in faults:
            if f.kind is FaultKind.GARBLED_METRICS:
                body = _garble(body.decode(), self.rng).encode()
            elif f.kind is FaultKind.TRUNCATED_METRICS:
                body = body[: int(len(body) * f.params["fraction"])]
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    def _log(self, model: ClusterModel, request: web.Request, node: str, path: str, raw: bytes,
             status: int | None, fault_id: str | None) -> None:
        entry = {
            "seq": len(model.admin_log) + model.admin_log_dropped + 1,
            "sim_time": model.t,
            "wall_time": _iso_wall(),
            "method": request.method,
            "node": node,
            "endpoint": path,
            "body": _log_body(raw),
            "caller": {"remote": request.remote, "user_agent": request.headers.get("User-Agent")},
            "authorization_present": "Authorization" in request.headers,
            "status": status,
            "fault": fault_id,
        }
        model.admin_log.append(entry)
        if len(model.admin_log) > MAX_LOG:
            del model.admin_log[0]
            model.admin_log_dropped += 1


def build_app(
    sim: Simulation, token: TokenSource | None = None, *, seed: int = 1
) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SIM_KEY] = sim
    app[TOKEN_KEY] = token or TokenSource()
    app[STATE_KEY] = {"started_wall": time.time()}
    handler = NodeHandler(sim, app[TOKEN_KEY], seed)
    app.router.add_route("*", "/c/{cluster}/{node}/{tail:.*}", handler.handle)
    add_sim_routes(app)
    return app
