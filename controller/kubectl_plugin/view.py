"""What `kubectl stemedb status` says about one StemeDBCluster, as a plain document.

Pure: the object as the API server returns it, and `now`, in; a JSON-ready dict
out (`-o json` prints it, `render` lays it out for a terminal). Everything in the
object is read defensively: the spec is a tenant's, and the status may come from
an older or newer operator, or from none yet.

A value the status cannot vouch for is None here and `Unknown` on screen: while
the MetricsAvailable condition is False the last lags written are stale, so none
is shown, only since when the lag is unknown.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Mapping
from typing import Any

from controller.domain import observation
from controller.domain.observation import APPROVE_REBUILD_ANNOTATION, parse_approvals
from controller.domain.spec import EscalationSpec

DOCUMENT_VERSION = "stemedb.io/kubectl-stemedb/v1"
# `node2@1795981285` after the annotation's name, in the Remediating message.
_REQUEST_IN_MESSAGE = re.compile(
    re.escape(APPROVE_REBUILD_ANNOTATION) + r"=([A-Za-z0-9][A-Za-z0-9._-]{0,62})@([0-9]{1,12})")
_REPLICA_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_DEFAULTS = EscalationSpec()
DEFAULT_CONTACTS = {1: _DEFAULTS.cluster_sre, 2: _DEFAULTS.distributed_systems_engineer,
                    3: _DEFAULTS.principal_engineer}
_CONTACT_KEYS = {1: "clusterSre", 2: "distributedSystemsEngineer", 3: "principalEngineer"}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an RFC 3339 time as the operator writes it, else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def conditions(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The status conditions by type: status (True/False/None), reason, message, since."""
    found: dict[str, dict[str, Any]] = {}
    for c in _list(status.get("conditions")):
        c = _map(c)
        kind = _str(c.get("type"))
        if kind is None:
            continue
        state = c.get("status")
        found[kind] = {
            "status": True if state == "True" else False if state == "False" else None,
            "reason": _str(c.get("reason")),
            "message": _str(c.get("message")),
            "since": _str(c.get("lastTransitionTime")),
        }
    return found


def _is(conds: Mapping[str, Mapping[str, Any]], kind: str) -> bool | None:
    return _map(conds.get(kind)).get("status")


def phase(status: Mapping[str, Any], conds: Mapping[str, Mapping[str, Any]]) -> str:
    """One word for where the cluster stands, the most urgent first."""
    if not status or not conds:
        return "Pending"
    if _is(conds, "Escalated"):
        return "Escalated"
    if _is(conds, "MetricsAvailable") is False:
        return "Blind"
    if _is(conds, "Remediating"):
        return "Remediating"
    if _is(conds, "Degraded"):
        return "Degraded"
    if _is(conds, "Ready"):
        return "Healthy"
    return "Unknown"


def contacts(spec: Mapping[str, Any]) -> dict[str, str]:
    """Who each escalation level calls: the spec's names, else the CRD's defaults."""
    esc = _map(spec.get("escalation"))
    return {str(level): _str(esc.get(key)) or DEFAULT_CONTACTS[level]
            for level, key in _CONTACT_KEYS.items()}


def rebuild_request(status: Mapping[str, Any], replica_id: str) -> str | None:
    """The rebuild request (`<replica>@<episode start>`) waiting for approval for this
    replica, as the operator shows it; None when no rebuild of it waits.

    The operator names the request in `status.manualAction` (when it writes one) and
    in the Remediating condition for the replica furthest up the ladder; any other
    replica waiting at the Rebuild step is named by the start of its episode
    (`since`), the anchor the operator uses (`domain.observation.rebuild_request`).
    """
    row = next((r for r in _list(status.get("replicas"))
                if _map(r).get("id") == replica_id), None)
    if row is None or row.get("step") != "Rebuild" or row.get("rebuildMarked") is True:
        return None
    texts = [_map(status.get("manualAction")).get("command"),
             _map(status.get("manualAction")).get("request"),
             _map(conditions(status).get("Remediating")).get("message")]
    for text in texts:
        for rid, number in _REQUEST_IN_MESSAGE.findall(text if isinstance(text, str) else ""):
            if rid == replica_id:
                return f"{rid}@{number}"
        if isinstance(text, str) and re.fullmatch(re.escape(replica_id) + r"@[0-9]{1,12}", text):
            return text
    since = parse_time(row.get("since"))
    return None if since is None else observation.rebuild_request(replica_id, since)


def _step(value: Any) -> dict[str, Any] | None:
    """A next step as the operator writes it: {what, at, why} (or only a string)."""
    if isinstance(value, str) and value:
        return {"what": value, "at": None, "why": None}
    v = _map(value)
    if not _str(v.get("what")):
        return None
    return {"what": v["what"], "at": _str(v.get("at")), "why": _str(v.get("why"))}


def approve_command(name: str, namespace: str, replica_id: str) -> str:
    return shlex.join(["kubectl", "stemedb", "approve-rebuild", name, replica_id,
                       "-n", namespace])


def _manual_actions(obj: Mapping[str, Any], status: Mapping[str, Any], name: str,
                    namespace: str, paused: bool, degraded: bool) -> list[dict[str, Any]]:
    """What a human should do by hand now: the operator's `manualAction` if it writes
    one, and what the status implies (a rebuild to approve or to carry out)."""
    actions: list[dict[str, Any]] = []
    given = status.get("manualAction")
    shape = _map(given)
    if isinstance(given, str) and given:
        actions.append({"what": given, "command": None})
    elif _str(shape.get("what")) or _str(shape.get("command")):
        actions.append({"what": _str(shape.get("what")) or "",
                        "command": _str(shape.get("command"))})
    said = " ".join(f"{a['what']} {a['command'] or ''}" for a in actions)
    annotations = _map(_map(obj.get("metadata")).get("annotations"))
    approved = parse_approvals(annotations)
    for row in _list(status.get("replicas")):
        rid = _str(_map(row).get("id"))
        if rid is None or not _REPLICA_ID.fullmatch(rid):
            continue
        request = rebuild_request(status, rid)
        if request is not None and request not in said:
            if request in approved:
                actions.append({"what": f"Nothing: the rebuild of {rid} is approved "
                                        f"({request}); the operator marks it at its next "
                                        f"poll if the safety limits allow", "command": None})
            else:
                actions.append({"what": f"Approve the rebuild of {rid} (request {request}):",
                                "command": approve_command(name, namespace, rid)})
        if row.get("rebuildMarked") is True and rid not in said:
            actions.append({"what": f"Rebuild {rid}: the operator marked it for rebuild "
                                    f"and does not rebuild replicas itself "
                                    f"(runbook: rebuild-replica.md)", "command": None})
    if paused and degraded:
        actions.append({"what": "Remediation is paused and replicas lag: act by hand, "
                                "or resume the operator",
                        "command": shlex.join(["kubectl", "stemedb", "resume", name,
                                               "-n", namespace])})
    return actions


def _history(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The status history, oldest first; a `Pending` entry whose outcome was written
    later (same key) is left out, so each action appears once with its outcome."""
    entries = [_map(h) for h in _list(status.get("history"))]
    settled = {h.get("key") for h in entries if h.get("key") and h.get("outcome") != "Pending"}
    return [
        {"time": _str(h.get("time")), "replica": _str(h.get("replica")),
         "kind": _str(h.get("kind")), "reason": _str(h.get("reason")),
         "message": _str(h.get("message")), "outcome": _str(h.get("outcome"))}
        for h in entries
        if not (h.get("outcome") == "Pending" and h.get("key") in settled)
    ]


def status_document(obj: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The stable document `-o json` prints (DOCUMENT_VERSION names its shape)."""
    meta, spec, status = (_map(obj.get(k)) for k in ("metadata", "spec", "status"))
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
    conds = conditions(status)
    metrics = _map(conds.get("MetricsAvailable"))
    lag_known = metrics.get("status") is True
    remediation = _map(spec.get("remediation"))
    paused = remediation.get("paused") is True
    esc = _map(status.get("escalation"))
    level = _int(esc.get("level")) or 0
    names = contacts(spec)
    escalated_since = _map(conds.get("Escalated")).get("since") if level else None
    replicas: list[dict[str, Any]] = []
    rows = _list(status.get("replicas")) or [
        {"id": r.get("id")} for r in map(_map, _list(spec.get("replicas")))]
    for row in map(_map, rows):
        rid = _str(row.get("id"))
        if rid is None:
            continue
        replicas.append({
            "id": rid,
            "lagSeconds": _num(row.get("lagSeconds")) if lag_known else None,
            "state": _str(row.get("state")) if status else None,
            "step": _str(row.get("step")),
            "attempts": _int(row.get("attempts")),
            "syncAttempts": _int(row.get("syncAttempts")),
            "lastAction": _str(row.get("lastAction")),
            "since": _str(row.get("since")),
            "rebuildMarked": row.get("rebuildMarked") is True,
            "rebuildRequest": rebuild_request(status, rid),
            "nextStep": _step(row.get("nextStep")),
            "deadline": _str(row.get("deadline")),
        })
    lags = [r["lagSeconds"] for r in replicas if r["lagSeconds"] is not None]
    throttle = _map(status.get("throttle"))
    generation, observed = _int(meta.get("generation")), _int(status.get("observedGeneration"))
    return {
        "apiVersion": DOCUMENT_VERSION,
        "kind": "StemeDBClusterStatus",
        "namespace": namespace,
        "name": name,
        "generation": generation,
        "observedGeneration": observed,
        "phase": phase(status, conds),
        "mode": _str(remediation.get("mode")) or "Auto",
        "paused": paused,
        "metricsAvailable": metrics.get("status"),
        "lagUnknownSince": None if lag_known or metrics.get("status") is None
        else metrics.get("since"),
        "maxLagSeconds": max(lags) if lag_known and lags else None,
        "laggingReplicas": _int(status.get("laggingReplicas")) if lag_known else None,
        "currentStep": _str(status.get("currentStep")),
        "throttle": {
            "phase": _str(throttle.get("phase")),
            "currentRate": _num(throttle.get("currentRate")),
            "rateToRestore": _num(throttle.get("rateToRestore")),
        },
        "escalation": {
            "level": level,
            "reason": _str(esc.get("reason")) if level else None,
            "message": _str(esc.get("message")) if level else None,
            "contact": (_str(esc.get("contact")) or names.get(str(min(level, 3))))
            if level else None,
            "since": escalated_since,
            "contacts": names,
        },
        "replicas": replicas,
        "nextStep": _step(status.get("nextStep")),
        "manualActions": _manual_actions(obj, status, name, namespace, paused,
                                         _is(conds, "Degraded") is True),
        "conditions": conds,
        "history": _history(status),
        "observedAt": dt.datetime.fromtimestamp(int(now), tz=dt.UTC)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def fleet_row(obj: Mapping[str, Any], now: float) -> dict[str, Any]:
    """One line of the fleet overview (`-A`), from the same document."""
    doc = status_document(obj, now)
    return {k: doc[k] for k in ("namespace", "name", "phase", "paused", "maxLagSeconds",
                                "lagUnknownSince", "laggingReplicas", "currentStep")} | {
        "level": doc["escalation"]["level"], "contact": doc["escalation"]["contact"],
        "replicas": len(doc["replicas"]), "manualActions": len(doc["manualActions"])}
