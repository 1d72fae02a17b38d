"""The runbook's admin endpoints as pure request -> (status, JSON) functions on a model.

Validation happens before any change, so a rejected request changes nothing.
"""

from __future__ import annotations

import json
import math
from typing import Any

from stemedb_sim.model import AdminError, ClusterModel

# node-relative admin paths and their allowed methods
ADMIN_ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/admin/rate-limit": ("GET", "POST"),
    "/v1/admin/cluster/sync": ("POST",),
    "/v1/admin/circuit-breakers/tripped": ("GET",),
    "/v1/admin/circuit-breaker/reset": ("POST",),
}
SYNC_PREFIX = "/v1/admin/cluster/sync/"


def is_admin_path(path: str) -> bool:
    return path in ADMIN_ROUTES or path.startswith(SYNC_PREFIX) or path.startswith("/v1/admin/")


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
        raise AdminError(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise AdminError(400, "invalid_json", "request body must be a JSON object")
    return body


def _require_str(body: dict[str, Any], key: str) -> str:
    if key not in body:
        raise AdminError(400, "invalid_body", f"missing field {key!r}")
    v = body[key]
    if not isinstance(v, str) or not v:
        raise AdminError(400, "invalid_body", f"{key} must be a non-empty string")
    return v


def handle_admin(model: ClusterModel, method: str, path: str, raw: bytes) -> tuple[int, Any]:
    """Dispatch one admin call on the primary; raises AdminError for every rejection."""
    if path.startswith(SYNC_PREFIX):
        if method != "GET":
            raise AdminError(405, "method_not_allowed", f"{method} not allowed", allow="GET")
        job = model.syncs.get(path[len(SYNC_PREFIX):])
        if job is None:
            raise AdminError(404, "unknown_sync", "no such sync id")
        return 200, job.to_json(model.iso)
    allowed = ADMIN_ROUTES.get(path)
    if allowed is None:
        raise AdminError(404, "not_found", f"no admin endpoint {path}")
    if method not in allowed:
        raise AdminError(405, "method_not_allowed", f"{method} not allowed on {path}",
                         allow=", ".join(allowed))
    if path == "/v1/admin/rate-limit":
        if method == "GET":
            return 200, {"max_assertions_per_sec": model.rate_limit}
        body = parse_json(raw)
        if "max_assertions_per_sec" not in body:
            raise AdminError(400, "invalid_body", "missing field 'max_assertions_per_sec'")
        v = body["max_assertions_per_sec"]
        if v is not None and (
            isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0
        ):
            raise AdminError(400, "invalid_body",
                             "max_assertions_per_sec must be a non-negative number or null")
        value = None if v is None else (int(v) if float(v).is_integer() else float(v))
        previous = model.set_rate_limit(value)
        return 200, {"max_assertions_per_sec": value, "previous_max_assertions_per_sec": previous}
    if path == "/v1/admin/cluster/sync":
        body = parse_json(raw)
        replica_id = _require_str(body, "replica_id")
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise AdminError(400, "invalid_body", "force must be a boolean")
        job = model.start_sync(replica_id, force)
        return 202, {"sync_id": job.sync_id, "replica_id": job.replica_id,
                     "state": job.state.value, "started_at": model.iso(job.started_at)}
    if path == "/v1/admin/circuit-breakers/tripped":
        return 200, model.tripped_breakers()
    # /v1/admin/circuit-breaker/reset
    body = parse_json(raw)
    agent_id = _require_str(body, "agent_id")
    replica, was = model.reset_breaker(agent_id)
    return 200, {"agent_id": agent_id, "replica_id": replica.node_id, "was_tripped": was}
