"""Intents: confirmed from metrics, timed out, or settled by the call's outcome.

What each action kind's confirmation and failure mean lives in actions.py.
"""

from __future__ import annotations

from dataclasses import replace

from controller.domain.backoff import updated as backoffs_after
from controller.domain.conditions import EventReason, EventType
from controller.domain.memory import HistoryEntry, Intent, Memory
from controller.domain.policy.actions import rules_for
from controller.domain.policy.plan import ActionOutcome, Outcome
from controller.domain.policy.work import Work


def _on(intent: Intent) -> str:
    return f"{intent.kind.value}{' on ' + intent.replica_id if intent.replica_id else ''}"


def settled(history: tuple[HistoryEntry, ...], intent: Intent, now: float,
            reason: EventReason, text: str, outcome: Outcome) -> HistoryEntry:
    """The history entry of a settled action: it takes the place of the action's
    pending entry (same key, same time), its message followed by how it ended, so
    status.history shows each action once with its outcome."""
    pending = next((h for h in history if h.key == intent.key), None)
    return HistoryEntry(
        now if pending is None else pending.at, intent.kind.value, intent.replica_id,
        reason.value, text if pending is None else f"{pending.message}: {text}",
        outcome.value, intent.key)


def resolve_intents(work: Work) -> None:
    """Drop the pending intents this poll's metrics confirm or whose deadline passed."""
    keep: list[Intent] = []
    for intent in work.pending:
        rules = rules_for(intent.kind)
        remembered = work.replicas.get(intent.replica_id) if intent.replica_id else None
        if rules.confirmed(intent, work.observation):
            if remembered is not None and intent.replica_id is not None:
                work.replicas[intent.replica_id] = rules.on_confirmed(remembered)
            work.throttle = rules.settle_throttle(work.throttle, intent)
            work.history.append(settled(
                work.memory.history + tuple(work.history), intent, work.now,
                EventReason.ACTION_CONFIRMED, f"{intent.kind.value} confirmed from metrics",
                Outcome.OK))
            continue
        if work.now >= intent.deadline:
            work.note(EventType.WARNING, EventReason.ACTION_TIMED_OUT,
                      f"No outcome for {_on(intent)} within its timeout; counted as an attempt",
                      intent.replica_id, Outcome.TIMED_OUT, intent.kind.value)
            work.throttle, remembered = rules.on_failed(work.throttle, remembered, timed_out=True)
            if remembered is not None and intent.replica_id is not None:
                work.replicas[intent.replica_id] = remembered
            continue
        keep.append(intent)
    work.pending = keep


def record_outcome(
    memory: Memory, idempotency_key: str, outcome: ActionOutcome, now: float,
    *, cluster: str = "",
) -> Memory:
    """Confirm or fail a pending intent; the outcome is appended to the bounded history.
    A failure backs its action kind off (`cluster` spreads the retries of clusters
    failing together); a success ends the kind's backoff. Each request beyond the
    first that reached StemeDB for it (a retry with a rotated token) also counts
    against maxActionsPerHour, as the proposal did."""
    intent = next((i for i in memory.pending if i.key == idempotency_key), None)
    if intent is None:
        return memory
    pending = tuple(i for i in memory.pending if i.key != idempotency_key)
    extra = (now,) * max(0, outcome.attempts - 1)
    updated = replace(memory, pending=pending, backoffs=backoffs_after(
        memory.backoffs, intent.kind.value, outcome.ok, now, cluster),
        action_times=memory.action_times + extra)
    if outcome.ok:
        updated = replace(updated, throttle=rules_for(intent.kind).settle_throttle(
            updated.throttle, intent))
    else:
        remembered = updated.replica(intent.replica_id) if intent.replica_id else None
        throttle, remembered = rules_for(intent.kind).on_failed(updated.throttle, remembered,
                                                                timed_out=False)
        updated = replace(updated, throttle=throttle, replicas=tuple(
            remembered if remembered is not None and r.replica_id == remembered.replica_id else r
            for r in updated.replicas))
    detail = outcome.detail[:200]
    text = (f"{_on(intent)} " + ("succeeded" if outcome.ok else "failed")
            + (f": {detail}" if detail else ""))
    return updated.with_history(settled(
        memory.history, intent, now,
        EventReason.ACTION_CONFIRMED if outcome.ok else EventReason.ACTION_FAILED,
        text, Outcome.OK if outcome.ok else Outcome.FAILED))
