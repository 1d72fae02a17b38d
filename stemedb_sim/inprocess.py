"""The node API without a socket: one request in, one answer out, on the sim's clock.

For deterministic simulation tests (tests/campaign, bench/campaign.py) that run the
operator's real HTTP client against the model in one process: thousands of incidents
cannot afford a TCP round trip per request, nor the wall-clock sleeps of the
`timeout` and `slow_response` faults. The answers, the fault order and the admin log
are those of `server.NodeHandler`; what a socket would do instead of answering is
returned as an `Outcome` for the caller's transport to turn into its own error:
`RESET` (the connection is dropped) or `HANG` (no answer before any sane client
timeout). A `slow_response` delay above `hang_after` seconds is a `HANG` too; below it
the answer is given at once (the sim's time does not pass during a request).
"""

from __future__ import annotations

import enum
import json
import random
from dataclasses import dataclass, field
from typing import Any

from stemedb_sim.admin import handle_admin
from stemedb_sim.exposition import CONTENT_TYPE, render_primary, render_replica
from stemedb_sim.faults import FaultKind
from stemedb_sim.model import AdminError, ClusterModel
from stemedb_sim.server import MAX_LOG, _garble, _log_body
from stemedb_sim.simulation import Simulation


class Outcome(enum.Enum):
    ANSWER = "answer"
    RESET = "reset"
    HANG = "hang"


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, code: str, message: str, **extra: Any) -> Answer:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    allow = extra.pop("allow", None)
    if allow:
        headers["Allow"] = allow
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="stemedb"'
    body = json.dumps({"error": {"code": code, "message": message, **extra}}).encode()
    return Answer(Outcome.ANSWER, status, body, headers)


class InProcessNodes:
    """Serves `/c/{cluster}/{node}/...` paths of a Simulation; `token` (None: no auth)
    may be changed at any time, as a rotation in StemeDB."""

    def __init__(self, sim: Simulation, *, token: str | None = None, seed: int = 1,
                 hang_after: float = 2.5) -> None:
        self.sim = sim
        self.token = token
        self.rng = random.Random(f"api:{seed}")
        self.hang_after = hang_after

    def serve(self, method: str, path: str, authorization: str | None = None,
              raw: bytes = b"", user_agent: str | None = None) -> Answer:
        parts = path.split("/", 4)  # "", "c", cluster, node, tail
        if len(parts) < 5 or parts[1] != "c":
            return _error(404, "not_found", f"no endpoint {path}")
        _, _, cluster, node, tail = parts
        model = self.sim.get(cluster)
        if model is None:
            return _error(404, "unknown_cluster", f"no cluster {cluster!r}")
        if node != "node1" and node not in model.replicas:
            return _error(404, "unknown_node", f"no node {node!r} in {model.name}")
        path = "/" + tail
        kind = "metrics" if path == "/metrics" else (
            "admin" if path.startswith("/v1/admin/") else "other")
        if kind == "metrics" and method == "GET":
            model.metrics_requests[node] = model.metrics_requests.get(node, 0) + 1
        answer, fault_id = self._serve(model, node, method, path, kind, raw, authorization)
        if kind == "admin":
            status = answer.status if answer.outcome is Outcome.ANSWER else (
                504 if answer.outcome is Outcome.HANG else None)
            self._log(model, method, node, path, raw, status, fault_id, authorization,
                      user_agent)
        return answer

    def _serve(self, model: ClusterModel, node: str, method: str, path: str, kind: str,
               raw: bytes, authorization: str | None) -> tuple[Answer, str | None]:
        faults = model.api_faults(node, kind) if model.faults else []
        fault_id = None
        for f in faults:
            if f.kind is FaultKind.CONNECTION_REFUSED:
                return Answer(Outcome.RESET), f.id
        for f in faults:
            if f.kind is FaultKind.TIMEOUT:
                return Answer(Outcome.HANG), f.id
            if f.kind is FaultKind.SLOW_RESPONSE:
                if f.params["delay_seconds"] > self.hang_after:
                    return Answer(Outcome.HANG), f.id
                fault_id = f.id
        if self.token is not None and authorization != f"Bearer {self.token}":
            return _error(401, "unauthorized", "missing or invalid bearer token"), None
        for f in faults:
            if f.kind is FaultKind.HTTP_ERROR and self.rng.random() < f.params["probability"]:
                return _error(f.params["status"], "internal",
                              "internal server error (injected)"), f.id
        if node != "node1" and not model.replicas[node].up:
            return _error(503, "node_unavailable", f"{node} is restarting"), fault_id
        if kind == "metrics":
            if method not in ("GET", "HEAD"):
                return _error(405, "method_not_allowed", "use GET", allow="GET"), None
            text = render_primary(model) if node == "node1" else render_replica(model, node)
            body = text.encode()
            for f in faults:
                if f.kind is FaultKind.GARBLED_METRICS:
                    body = _garble(body.decode(), self.rng).encode()
                elif f.kind is FaultKind.TRUNCATED_METRICS:
                    body = body[: int(len(body) * f.params["fraction"])]
            return Answer(Outcome.ANSWER, 200, body, {"Content-Type": CONTENT_TYPE}), fault_id
        if kind == "admin":
            if node != "node1":
                return _error(404, "not_primary", f"{node} is a replica; admin endpoints live "
                              "on the primary (node1)"), fault_id
            try:
                status, payload = handle_admin(model, method, path, raw)
            except AdminError as e:
                return _error(e.status, e.code, e.message, **e.extra), fault_id
            return Answer(Outcome.ANSWER, status, json.dumps(payload).encode(),
                          {"Content-Type": "application/json; charset=utf-8"}), fault_id
        return _error(404, "not_found", f"no endpoint {path}"), fault_id

    @staticmethod
    def _log(model: ClusterModel, method: str, node: str, path: str, raw: bytes,
             status: int | None, fault_id: str | None, authorization: str | None,
             user_agent: str | None) -> None:
        model.admin_log.append({
            "seq": len(model.admin_log) + model.admin_log_dropped + 1,
            "sim_time": model.t,
            "method": method,
            "node": node,
            "endpoint": path,
            "body": _log_body(raw),
            "caller": {"remote": "in-process", "user_agent": user_agent},
            "authorization_present": authorization is not None,
            "status": status,
            "fault": fault_id,
        })
        if len(model.admin_log) > MAX_LOG:
            del model.admin_log[0]
            model.admin_log_dropped += 1
