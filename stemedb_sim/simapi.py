"""Fault injection and truth API under /sim/v1 (tests, benches, demo; never the operator)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from aiohttp import web

from stemedb_sim.faults import FaultError
from stemedb_sim.model import ClusterConfig, ClusterModel
from stemedb_sim.simulation import Simulation
from stemedb_sim.webapp import SIM_KEY, error_response

CONFIG_FIELDS = {f.name: f.type for f in dataclasses.fields(ClusterConfig)}


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise FaultError("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise FaultError("request body must be a JSON object", code="invalid_json")
    return body


def _number(body: dict[str, Any], key: str, *, required: bool = True) -> float | None:
    if key not in body:
        if required:
            raise FaultError(f"missing field {key!r}")
        return None
    v = body[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise FaultError(f"{key} must be a non-negative number")
    return float(v)


def _cluster(sim: Simulation, request: web.Request) -> ClusterModel:
    model = sim.get(request.match_info["cluster"])
    if model is None:
        raise FaultError(f"no cluster {request.match_info['cluster']!r}",
                         code="unknown_cluster", status=404)
    return model


def _config(sim: Simulation, body: dict[str, Any]) -> ClusterConfig:
    cfg = dataclasses.replace(sim.default_config)
    for key, value in body.items():
        if key == "name":
            continue
        if key not in CONFIG_FIELDS:
            raise FaultError(f"unknown field {key!r}; config fields: {', '.join(CONFIG_FIELDS)}")
        if key == "replicas":
            if isinstance(value, bool) or not isinstance(value, int):
                raise FaultError("replicas must be an integer")
            cfg.replicas = value
        else:
            setattr(cfg, key, _number(body, key))
    try:
        cfg.validate()
    except ValueError as e:
        raise FaultError(str(e)) from None
    return cfg


def _handler(fn: Any) -> Any:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            result: web.StreamResponse = await fn(request, request.app[SIM_KEY])
            return result
        except FaultError as e:
            return error_response(e.status, e.code, str(e))

    return wrapped


@_handler
async def health(request: web.Request, sim: Simulation) -> web.Response:
    return web.json_response({"ok": True, "sim_time": sim.now(), "clusters": len(sim.clusters)})


@_handler
async def clock(request: web.Request, sim: Simulation) -> web.Response:
    return web.json_response({"sim_time": sim.now(), "speed": getattr(sim.clock, "speed", None)})


@_handler
async def advance(request: web.Request, sim: Simulation) -> web.Response:
    seconds = _number(await _body(request), "seconds")
    assert seconds is not None
    return web.json_response({"sim_time": sim.advance(seconds)})


@_handler
async def reset(request: web.Request, sim: Simulation) -> web.Response:
    sim.reset()
    return web.json_response({"sim_time": sim.now(), "clusters": sorted(sim.clusters)})


@_handler
async def list_clusters(request: web.Request, sim: Simulation) -> web.Response:
    return web.json_response({"clusters": sorted(sim.clusters)})


@_handler
async def create_cluster(request: web.Request, sim: Simulation) -> web.Response:
    body = await _body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise FaultError("name must be a non-empty string without '/'")
    cfg = _config(sim, body)
    if name in sim.clusters:
        raise FaultError(f"cluster {name!r} exists", code="cluster_exists", status=409)
    model = sim.create_cluster(name, cfg)
    return web.json_response(model.state_json(), status=201)


@_handler
async def delete_cluster(request: web.Request, sim: Simulation) -> web.Response:
    model = _cluster(sim, request)
    sim.delete_cluster(model.name)
    return web.json_response({"deleted": model.name})


@_handler
async def state(request: web.Request, sim: Simulation) -> web.Response:
    return web.json_response(_cluster(sim, request).state_json())


@_handler
async def set_load(request: web.Request, sim: Simulation) -> web.Response:
    model = _cluster(sim, request)
    body = await _body(request)
    load = _number(body, "assertions_per_sec")
    jitter = _number(body, "jitter", required=False)
    assert load is not None
    model.set_load(load, jitter)
    return web.json_response({"offered_load": model.load, "jitter": model.config.load_jitter})


@_handler
async def add_fault(request: web.Request, sim: Simulation) -> web.Response:
    model = _cluster(sim, request)
    fault = model.add_fault(await _body(request))
    return web.json_response(fault.to_json(), status=201)


@_handler
async def list_faults(request: web.Request, sim: Simulation) -> web.Response:
    return web.json_response({"faults": [f.to_json() for f in _cluster(sim, request).faults]})


@_handler
async def stop_fault(request: web.Request, sim: Simulation) -> web.Response:
    model = _cluster(sim, request)
    return web.json_response(model.stop_fault(request.match_info["fault_id"]).to_json())


@_handler
async def admin_log(request: web.Request, sim: Simulation) -> web.Response:
    model = _cluster(sim, request)
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        raise FaultError("since must be an integer") from None
    entries = [e for e in model.admin_log if e["seq"] > since]
    return web.json_response({"entries": entries, "dropped": model.admin_log_dropped})


@_handler
async def clear_admin_log(request: web.Request, sim: Simulation) -> web.Response:
    model = _cluster(sim, request)
    model.admin_log_dropped += len(model.admin_log)
    model.admin_log.clear()
    return web.json_response({"cleared": True})


def add_sim_routes(app: web.Application) -> None:
    r = app.router
    p = "/sim/v1"
    r.add_get(f"{p}/health", health)
    r.add_get(f"{p}/clock", clock)
    r.add_post(f"{p}/advance", advance)
    r.add_post(f"{p}/reset", reset)
    r.add_get(f"{p}/clusters", list_clusters)
    r.add_post(f"{p}/clusters", create_cluster)
    r.add_delete(f"{p}/clusters/{{cluster}}", delete_cluster)
    r.add_get(f"{p}/clusters/{{cluster}}/state", state)
    r.add_post(f"{p}/clusters/{{cluster}}/load", set_load)
    r.add_post(f"{p}/clusters/{{cluster}}/faults", add_fault)
    r.add_get(f"{p}/clusters/{{cluster}}/faults", list_faults)
    r.add_delete(f"{p}/clusters/{{cluster}}/faults/{{fault_id}}", stop_fault)
    r.add_get(f"{p}/clusters/{{cluster}}/admin-log", admin_log)
    r.add_delete(f"{p}/clusters/{{cluster}}/admin-log", clear_admin_log)
