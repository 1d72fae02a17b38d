"""What the node API (server.py) and the control API (simapi.py) share: the app key
that holds the Simulation, and the JSON error body both answer with."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stemedb_sim.simulation import Simulation

SIM_KEY = web.AppKey("sim", Simulation)


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    headers = {}
    allow = extra.pop("allow", None)
    if allow:
        headers["Allow"] = allow
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="stemedb"'
    return web.json_response(
        {"error": {"code": code, "message": message, **extra}}, status=status, headers=headers
    )
