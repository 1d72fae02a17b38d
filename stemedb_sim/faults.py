"""Fault kinds, their parameters (with defaults and validation) and fault records.

A fault is data; its physics live in model.py (replication faults) and
server.py (API faults). docs/simulator.md lists every kind and parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any


class FaultKind(StrEnum):
    NETWORK_LATENCY = "network_latency"
    DISK_SATURATION = "disk_saturation"
    BREAKER_TRIP = "breaker_trip"
    SYNC_FAILURE = "sync_failure"
    SYNC_STALL = "sync_stall"
    CORRUPTION = "corruption"
    CRASH_LOOP = "crash_loop"
    PRIMARY_OVERLOAD = "primary_overload"
    FLAPPING = "flapping"
    TRANSIENT_SPIKE = "transient_spike"
    # faults of the HTTP API itself
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    SLOW_RESPONSE = "slow_response"
    GARBLED_METRICS = "garbled_metrics"
    TRUNCATED_METRICS = "truncated_metrics"
    CONNECTION_REFUSED = "connection_refused"


class Target(Enum):
    REPLICA = "replica"  # "replica" required
    ANY_REPLICA = "any_replica"  # "replica" optional, None = every replica
    CLUSTER = "cluster"  # no replica
    NODE = "node"  # "node" optional (None = every node), "endpoint" selects paths


API_KINDS = frozenset(
    {
        FaultKind.HTTP_ERROR,
        FaultKind.TIMEOUT,
        FaultKind.SLOW_RESPONSE,
        FaultKind.GARBLED_METRICS,
        FaultKind.TRUNCATED_METRICS,
        FaultKind.CONNECTION_REFUSED,
    }
)

# kind -> (target, {param: (type, default)}); types: float, float?, int?, bool, str, unit, status
_F = "float"
SPECS: dict[FaultKind, tuple[Target, dict[str, tuple[str, Any]]]] = {
    FaultKind.NETWORK_LATENCY: (
        Target.REPLICA,
        {"delay_seconds": (_F, 2.0), "max_stream_rate": ("float?", None)},
    ),
    FaultKind.DISK_SATURATION: (Target.REPLICA, {"capacity_factor": ("unit", 0.4)}),
    FaultKind.BREAKER_TRIP: (
        Target.REPLICA,
        {"reason": ("str", "replication stream errors"), "retrip_after_seconds": ("float?", None)},
    ),
    FaultKind.SYNC_FAILURE: (Target.REPLICA, {"times": ("int?", 1), "at_progress": ("frac", 0.5)}),
    FaultKind.SYNC_STALL: (Target.REPLICA, {"at_progress": ("frac", 0.3)}),
    FaultKind.CORRUPTION: (Target.REPLICA, {"at_progress": ("frac", 0.6)}),
    FaultKind.CRASH_LOOP: (
        Target.REPLICA,
        {"during_sync": ("bool", True), "up_seconds": (_F, 5.0), "down_seconds": (_F, 10.0)},
    ),
    FaultKind.PRIMARY_OVERLOAD: (
        Target.CLUSTER,
        {"send_capacity_factor": ("unit", 0.1), "extra_load": (_F, 0.0)},
    ),
    FaultKind.FLAPPING: (
        Target.REPLICA,
        {"threshold_seconds": (_F, 10.0), "amplitude_seconds": (_F, 3.0),
         "period_seconds": (_F, 60.0)},
    ),
    FaultKind.TRANSIENT_SPIKE: (Target.ANY_REPLICA, {"stall_seconds": (_F, 15.0)}),
    FaultKind.HTTP_ERROR: (Target.NODE, {"status": ("status", 500), "probability": ("unit", 1.0)}),
    FaultKind.TIMEOUT: (Target.NODE, {"hang_seconds": (_F, 30.0)}),
    FaultKind.SLOW_RESPONSE: (Target.NODE, {"delay_seconds": (_F, 2.0)}),
    FaultKind.GARBLED_METRICS: (Target.NODE, {}),
    FaultKind.TRUNCATED_METRICS: (Target.NODE, {"fraction": ("unit", 0.5)}),
    FaultKind.CONNECTION_REFUSED: (Target.NODE, {}),
}

ENDPOINTS = ("all", "metrics", "admin")


class FaultError(ValueError):
    """Invalid fault request; `code` is the JSON error code, `status` the HTTP status."""

    def __init__(self, message: str, code: str = "invalid_body", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass
class Fault:
    id: str
    kind: FaultKind
    replica: str | None
    node: str | None
    endpoint: str
    params: dict[str, Any]
    started_at: float
    ends_at: float | None
    state: str = "active"  # active | stopped | expired | exhausted
    stopped_at: float | None = None
    # mutable bookkeeping used by the model (e.g. remaining failures, crash schedule)
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.state == "active"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "replica": self.replica,
            "node": self.node,
            "endpoint": self.endpoint,
            "params": dict(self.params),
            "started_at": self.started_at,
            "ends_at": self.ends_at,
            "state": self.state,
            "stopped_at": self.stopped_at,
        }


def _check(name: str, typ: str, value: Any) -> Any:
    def num() -> float:
        bad = isinstance(value, bool) or not isinstance(value, int | float)
        if bad or not math.isfinite(value):
            raise FaultError(f"{name} must be a finite number")
        if value < 0:
            raise FaultError(f"{name} must be >= 0")
        return float(value)

    if typ == "float":
        return num()
    if typ == "float?":
        return None if value is None else num()
    if typ in ("unit", "frac"):
        v = num()
        if v > 1 or (typ == "frac" and v >= 1):
            raise FaultError(f"{name} must be in [0, 1{']' if typ == 'unit' else ')'}")
        return v
    if typ == "int?":
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FaultError(f"{name} must be a positive integer or null")
        return value
    if typ == "bool":
        if not isinstance(value, bool):
            raise FaultError(f"{name} must be a boolean")
        return value
    if typ == "str":
        if not isinstance(value, str):
            raise FaultError(f"{name} must be a string")
        return value
    if typ == "status":
        if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
            raise FaultError(f"{name} must be an HTTP status 400..599")
        return value
    raise AssertionError(typ)


def parse_fault(
    body: Any, *, fault_id: str, now: float, replicas: list[str], nodes: list[str]
) -> Fault:
    """Validate a POST /sim/v1/clusters/{c}/faults body into a Fault (raises FaultError)."""
    if not isinstance(body, dict):
        raise FaultError("body must be a JSON object", code="invalid_json")
    try:
        kind = FaultKind(str(body.get("kind")))
    except ValueError:
        kinds = ", ".join(k.value for k in FaultKind)
        raise FaultError(f"kind must be one of: {kinds}") from None
    target, spec = SPECS[kind]
    allowed = {"kind", "duration_seconds", *spec}
    replica = node = None
    endpoint = "all"
    if target in (Target.REPLICA, Target.ANY_REPLICA):
        allowed.add("replica")
        replica = body.get("replica")
        if replica is None and target is Target.REPLICA:
            raise FaultError(f"{kind.value} needs 'replica'")
        if replica is not None and replica not in replicas:
            raise FaultError(f"unknown replica {replica!r}", code="unknown_replica", status=404)
    if target is Target.NODE:
        allowed |= {"node", "endpoint"}
        node = body.get("node")
        if node is not None and node not in nodes:
            raise FaultError(f"unknown node {node!r}", code="unknown_node", status=404)
        endpoint = body.get("endpoint", "all")
        if endpoint not in ENDPOINTS:
            raise FaultError(f"endpoint must be one of {', '.join(ENDPOINTS)}")
    unknown = set(body) - allowed
    if unknown:
        raise FaultError(f"unknown field(s) for {kind.value}: {', '.join(sorted(unknown))}")
    params = {k: _check(k, typ, body.get(k, default)) for k, (typ, default) in spec.items()}
    duration = body.get("duration_seconds")
    if kind is FaultKind.TRANSIENT_SPIKE and duration is None:
        duration = params["stall_seconds"]
    duration = _check("duration_seconds", "float?", duration)
    return Fault(
        id=fault_id,
        kind=kind,
        replica=replica,
        node=node,
        endpoint=endpoint,
        params=params,
        started_at=now,
        ends_at=None if duration is None else now + duration,
    )
