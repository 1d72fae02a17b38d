"""The JSON body of `.status` (all but `conditions`, which the handler merges with
`merge_conditions`). Pure and free of per-poll timestamps: an unchanged healthy
cluster yields an identical dict, so the handler can skip the write."""

from __future__ import annotations

from typing import Any

from controller.domain.conditions import Condition, ConditionType, _rfc3339
from controller.domain.memory import Memory, ReplicaMemory, Severity, Step, history_to_json
from controller.domain.policy import current_step
from controller.domain.policy.guidance import ManualAction, NextStep, manual_action, next_step
from controller.domain.spec import Spec


def replica_state(rm: ReplicaMemory) -> str:
    """InSync | Warning | Critical | Recovering | RebuildMarked."""
    if rm.rebuild_marked:
        return "RebuildMarked"
    if rm.severity is Severity.NONE:
        return "InSync"
    if rm.below_recovery_since is not None:
        return "Recovering"
    return rm.severity.value


def _ts(t: float | None) -> str | None:
    return None if t is None else _rfc3339(t)


def _next_step_json(step: NextStep | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {"what": step.what, "at": _ts(step.at), "why": step.why}


def _manual_json(action: ManualAction | None) -> dict[str, Any] | None:
    if action is None:
        return None
    return {"what": action.what, "command": action.command, "request": action.request}


def _lag(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def build_status(
    spec: Spec,
    memory: Memory,
    conditions: tuple[Condition, ...] | list[Condition],
    generation: int,
    *,
    name: str = "CLUSTER",
    namespace: str = "NAMESPACE",
) -> dict[str, Any]:
    """Built from the spec, memory and conditions only: the shown lag is memory's
    quantized one, so an unchanged situation yields an identical dict."""
    replicas = []
    rid_by = {rm.replica_id: rm for rm in memory.replicas}
    # While the lag cannot be read, the last known lag is not shown as current.
    blind = memory.blind_since is not None
    for r in spec.replicas:
        rm = rid_by.get(r.id) or ReplicaMemory(r.id)
        replicas.append({
            "id": r.id,
            "state": "Unknown" if blind else replica_state(rm),
            "lagSeconds": None if blind else _lag(rm.shown_lag),
            "step": rm.step.value,
            "attempts": rm.sync_attempts if rm.step is Step.FORCE_SYNC else rm.step_attempts,
            "syncAttempts": rm.sync_attempts,
            "since": _ts(rm.episode_started_at),
            "lastAction": rm.last_action,
            "rebuildMarked": rm.rebuild_marked,
        })
    lagging = [x for x in replicas if x["state"] not in ("InSync",)]
    shown = [x["lagSeconds"] for x in replicas if x["lagSeconds"] is not None]
    rid, step = current_step(memory)
    cur = "None" if step is Step.NONE else f"{step.value}({rid})"
    t = memory.throttle
    if t.active:
        phase = "Restoring" if t.restoring or not any(
            rm.severity is not Severity.NONE for rm in memory.replicas) else "Throttling"
    else:
        phase = "None"
    throttle = {
        "phase": phase,
        "currentRate": t.current_rate if t.active else None,
        "rateToRestore": t.rate_to_restore if t.active else None,
        "rateToRestoreSource": (
            None if not t.active else "ReadBack" if t.rate_to_restore is not None
            else "Unlimited" if t.rate_to_restore_known else "UnknownRestoreByRemovingLimit"
        ),
    }
    level = memory.escalation_level
    contact = spec.escalation.contact(level) if level else ""
    esc = {
        "level": level,
        "reason": memory.escalation_reason,
        "contact": contact or None,
        "message": memory.escalation_message,
    }
    cond = {c.type: c for c in conditions}
    ready = cond.get(ConditionType.READY)
    parts = []
    if ready is not None:
        parts.append(ready.message)
    if step is not Step.NONE:
        parts.append(f"step {cur}")
    if t.active:
        parts.append(f"ingestion limited to {t.current_rate}/s ({phase.lower()})")
    if level:
        parts.append(f"escalated to level {level}: call {contact}")
    history = history_to_json(memory.history)
    last_episode = None
    if memory.last_recovery_seconds is not None:
        last_episode = {
            "replica": memory.last_recovery_replica,
            "timeToRecoverSeconds": round(memory.last_recovery_seconds),
        }
    max_lag = max(shown) if shown else None
    return {
        "observedGeneration": generation,
        "summary": "; ".join(parts) if parts else "No data yet",
        "maxLagSeconds": max_lag,
        "maxLag": "Unknown" if blind else None if max_lag is None else f"{max_lag:g}s",
        "lagUnknownSince": _ts(memory.blind_since),
        "laggingReplicas": None if blind else len(lagging),
        "currentStep": cur,
        "escalated": level > 0,
        "escalation": esc,
        "replicas": replicas,
        "throttle": throttle,
        "lastEpisode": last_episode,
        "history": history,
        "nextStep": _next_step_json(next_step(spec, memory)),
        "manualAction": _manual_json(manual_action(spec, memory, name, namespace)),
        "memory": memory.to_text(),
    }
