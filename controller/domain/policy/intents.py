"""Intents: confirming them from metrics, timing them out, recording outcomes."""

from __future__ import annotations

from dataclasses import replace

from controller.domain.conditions import (
    EventReason,
    EventType,
)
from controller.domain.memory import (
    ActionKind,
    HistoryEntry,
    Intent,
    Memory,
)
from controller.domain.observation import (
    UNKNOWN,
)
from controller.domain.policy.plan import ActionOutcome, Outcome
from controller.domain.policy.work import _Work


def _resolve_intents(w: _Work) -> None:
    keep: list[Intent] = []
    for i in w.pending:
        confirmed = False
        if i.kind is ActionKind.RESET_BREAKER:
            tripped = w.obs.tripped_agents
            confirmed = tripped is not None and i.agent_id not in tripped
        elif i.kind is ActionKind.SET_RATE_LIMIT:
            confirmed = w.obs.rate_limit is not UNKNOWN and w.obs.rate_limit == i.rate
        elif i.kind is ActionKind.FORCE_SYNC and i.replica_id is not None:
            ro = w.obs.replica(i.replica_id)
            confirmed = ro is not None and ro.sync_running is True
            if confirmed and i.replica_id in w.reps:
                w.upd(i.replica_id, sync_seen_running=True)
        if confirmed:
            w.history.append(HistoryEntry(w.now, i.kind.value, i.replica_id,
                                          EventReason.ACTION_CONFIRMED.value,
                                          f"{i.kind.value} confirmed from metrics",
                                          Outcome.OK.value, i.key))
            continue
        if w.now >= i.deadline:
            msg = (f"No outcome for {i.kind.value}"
                   f"{' on ' + i.replica_id if i.replica_id else ''} within its timeout; "
                   "counted as an attempt")
            w.note(EventType.WARNING, EventReason.ACTION_TIMED_OUT, msg, i.replica_id,
                   Outcome.TIMED_OUT, i.kind.value)
            if i.kind is ActionKind.SET_RATE_LIMIT:
                w.throttle = replace(w.throttle, reissue=True)
            elif i.kind is ActionKind.MARK_REBUILD and i.replica_id in w.reps:
                w.upd(i.replica_id, rebuild_marked=False)
            elif i.replica_id in w.reps:
                w.upd(i.replica_id, last_failed_kind=i.kind.value)
            continue
        keep.append(i)
    w.pending = keep


def record_outcome(
    memory: Memory, idempotency_key: str, outcome: ActionOutcome, now: float
) -> Memory:
    """Confirm or fail a pending intent; the outcome is appended to the bounded history."""
    intent = next((i for i in memory.pending if i.key == idempotency_key), None)
    if intent is None:
        return memory
    pending = tuple(i for i in memory.pending if i.key != idempotency_key)
    mem = replace(memory, pending=pending)
    if not outcome.ok:
        if intent.kind is ActionKind.SET_RATE_LIMIT:
            mem = replace(mem, throttle=replace(mem.throttle, reissue=mem.throttle.active))
        elif intent.replica_id is not None:
            reps = []
            for rm in mem.replicas:
                if rm.replica_id == intent.replica_id:
                    if intent.kind is ActionKind.MARK_REBUILD:
                        rm = replace(rm, rebuild_marked=False)
                    else:
                        rm = replace(rm, last_failed_kind=intent.kind.value)
                reps.append(rm)
            mem = replace(mem, replicas=tuple(reps))
    detail = outcome.detail[:200]
    text = (f"{intent.kind.value}{' on ' + intent.replica_id if intent.replica_id else ''} "
            + ("succeeded" if outcome.ok else "failed") + (f": {detail}" if detail else ""))
    return mem.with_history(HistoryEntry(
        now, intent.kind.value, intent.replica_id,
        (EventReason.ACTION_CONFIRMED if outcome.ok else EventReason.ACTION_FAILED).value,
        text, (Outcome.OK if outcome.ok else Outcome.FAILED).value, intent.key))
