"""StemeDBCluster objects in the shape the operator writes (docs/kubectl-plugin.md),
for the plugin's tests: a healthy cluster and one at level 2, and `edit` to vary them."""

from __future__ import annotations

import copy
from typing import Any

NOW = 1_795_987_600.0  # 2026-11-29T21:26:40Z
T = "2026-11-29T21:{}Z"


def cond(ctype: str, status: bool, reason: str, message: str, since: str = T.format("10:00"),
         ) -> dict[str, Any]:
    return {"type": ctype, "status": "True" if status else "False", "reason": reason,
            "message": message, "lastTransitionTime": since}


def replica(rid: str, lag: float | None, state: str = "InSync", step: str = "None",
            **more: Any) -> dict[str, Any]:
    return {"id": rid, "state": state, "lagSeconds": lag, "step": step, "attempts": 0,
            "syncAttempts": 0, "since": None, "lastAction": None, "rebuildMarked": False,
            **more}


def history(n: int) -> list[dict[str, Any]]:
    return [{"time": T.format(f"{i:02d}:00"), "kind": "ForceSync", "replica": "node2",
             "reason": "SyncFailed", "message": f"node2: sync attempt {i} failed",
             "outcome": "Note"} for i in range(n)]


def level2() -> dict[str, Any]:
    """Three replicas, node2's ladder at the Rebuild step waiting for approval: the
    status the operator writes at level 2 (from a run of the domain's policy)."""
    return {
        "metadata": {"name": "demo", "namespace": "stemedb", "generation": 1,
                     "resourceVersion": "42"},
        "spec": {"replicas": [{"id": "node2"}, {"id": "node3"}, {"id": "node4"}]},
        "status": {
            "observedGeneration": 1, "maxLagSeconds": 25.0, "laggingReplicas": 1,
            "currentStep": "Rebuild(node2)", "escalated": True,
            "escalation": {"level": 2, "reason": "LadderExhausted",
                           "contact": "Distributed systems engineer",
                           "message": "Level 2 (Distributed systems engineer): node2 ladder "
                                      "exhausted after 3 syncs"},
            "replicas": [
                replica("node2", 25.0, "Critical", "Rebuild", syncAttempts=3,
                        since=T.format("00:00"), lastAction="ForceSync"),
                replica("node3", 0.4), replica("node4", 0.3)],
            "throttle": {"phase": "None"},
            "history": history(14),
            "conditions": [
                cond("Ready", False, "EscalatedToHuman", "Escalated to level 2"),
                cond("MetricsAvailable", True, "MetricsScraped", "Lag read for 3 of 3"),
                cond("Degraded", True, "LagCritical", "1 of 3 replicas past critical 10 s"),
                cond("Remediating", True, "AwaitingRebuildApproval",
                     "node2: Rebuild, after 3 failed syncs; approve with "
                     "stemedb.io/approve-rebuild=node2@1795986000"),
                cond("RemediationAllowed", True, "Allowed", "Mode Auto; 17 of 20 left"),
                cond("Escalated", True, "LadderExhausted", "Level 2: node2 ladder exhausted",
                     T.format("20:00")),
            ],
        },
    }


def healthy() -> dict[str, Any]:
    obj = level2()
    obj["status"] |= {
        "maxLagSeconds": 0.4, "laggingReplicas": 0, "currentStep": "None", "escalated": False,
        "escalation": {"level": 0, "reason": "NotEscalated", "contact": None, "message": ""},
        "replicas": [replica("node2", 0.2), replica("node3", 0.4), replica("node4", 0.3)],
        "history": [],
        "conditions": [cond("Ready", True, "AllReplicasInSync", "All 3 replicas in sync"),
                       cond("MetricsAvailable", True, "MetricsScraped", "Lag read")],
    }
    return obj


def edit(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy with `a.b.c` set (a number indexes a list; None as value deletes)."""
    out = copy.deepcopy(obj)
    *parts, last = path.split(".")
    cur: Any = out
    for p in parts:
        cur = cur[int(p)] if p.isdigit() else cur.setdefault(p, {})
    key: Any = int(last) if last.isdigit() else last
    if value is None and not isinstance(cur, list):
        cur.pop(key, None)
    else:
        cur[key] = value
    return out


def conditions_with(obj: dict[str, Any], *replacing: dict[str, Any]) -> dict[str, Any]:
    kinds = {c["type"] for c in replacing}
    kept = [c for c in obj["status"]["conditions"] if c["type"] not in kinds]
    return edit(obj, "status.conditions", kept + list(replacing))


BLIND = conditions_with(healthy(), cond("MetricsAvailable", False, "PrimaryScrapeFailed",
                                        "Primary /metrics: connection refused",
                                        T.format("05:00")))
