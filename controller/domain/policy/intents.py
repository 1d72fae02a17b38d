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


def resolve_intents(work: Work) -> None:
    """Drop the pending intents this poll's metrics confirm or whose deadline passed."""
    keep: list[Intent] = []
    for intent in work.pending:
        rules = rules_for(intent.kind)
        remembered = work.replicas.get(intent.replica_id) if intent.replica_id else None
        if rules.confirmed(intent, work.observation):
            if remembered is not None and intent.replica_id is not None:
                work.replicas[intent.replica_id] = rules.on_confirmed(remembered)
            work.history.append(HistoryEntry(work.now, intent.kind.value, intent.replica_id,
                                             EventReason.ACTION_CONFIRMED.value,
                                             f"{intent.kind.value} confirmed from metrics",
                                             Outcome.OK.value, intent.key))
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
    failing together); a success ends the kind's backoff."""
    intent = next((i for i in memory.pending if i.key == idempotency_key), None)
    if intent is None:
        return memory
    pending = tuple(i for i in memory.pending if i.key != idempotency_key)
    updated = replace(memory, pending=pending, backoffs=backoffs_after(
        memory.backoffs, intent.kind.value, outcome.ok, now, cluster))
    if not outcome.ok:
        remembered = updated.replica(intent.replica_id) if intent.replica_id else None
        throttle, remembered = rules_for(intent.kind).on_failed(updated.throttle, remembered,
                                                                timed_out=False)
        updated = replace(updated, throttle=throttle, replicas=tuple(
            remembered if remembered is not None and r.replica_id == remembered.replica_id else r
            for r in updated.replicas))
    detail = outcome.detail[:200]
    text = (f"{_on(intent)} " + ("succeeded" if outcome.ok else "failed")
            + (f": {detail}" if detail else ""))
    return updated.with_history(HistoryEntry(
        now, intent.kind.value, intent.replica_id,
        (EventReason.ACTION_CONFIRMED if outcome.ok else EventReason.ACTION_FAILED).value,
        text, (Outcome.OK if outcome.ok else Outcome.FAILED).value, intent.key))
