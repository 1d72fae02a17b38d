"""Escalation: which level, why and who."""

from __future__ import annotations

from dataclasses import replace

from controller.domain.conditions import (
    EventReason,
    EventType,
    Reason,
)
from controller.domain.memory import (
    Severity,
    Step,
)
from controller.domain.policy.plan import Escalation
from controller.domain.policy.text import _f
from controller.domain.policy.work import HOUR, _Work
from controller.domain.spec import Spec


def _escalation(w: _Work, blind: tuple[float, Reason] | None = None) -> Escalation:
    """The level, why and who, from the replicas' state; `blind` is (seconds, why)
    while the lag cannot be read."""
    es = w.spec.escalation
    level, reason, parts = 0, Reason.NOT_ESCALATED, []
    for rid, rm in w.reps.items():
        if rm.corrupted_at is not None:
            parts.append(f"{rid} Merkle corruption")
            if level < 3:
                level, reason = 3, Reason.MERKLE_CORRUPTION
        exhausted = rm.step is Step.EXHAUSTED or rm.rebuild_marked or (
            rm.step is Step.REBUILD)
        if exhausted and rm.severity is not Severity.NONE:
            parts.append(f"{rid} ladder exhausted after {rm.sync_attempts} syncs"
                         + (", marked for rebuild" if rm.rebuild_marked else ""))
            if level < 2:
                level, reason = 2, Reason.LADDER_EXHAUSTED
        if rm.crash_loop and rm.severity is not Severity.NONE:
            parts.append(f"{rid} crash loop during sync")
            if level < 1:
                level, reason = 1, Reason.CRASH_LOOP_DURING_SYNC
        if rm.lag_escalated and rm.severity is not Severity.NONE:
            shown = rm.shown_lag
            parts.append(f"{rid} lag {_f(shown)} s over "
                         f"{_f(w.spec.detection.escalation_lag_seconds)} s")
            if level < 1:
                level, reason = 1, Reason.LAG_ABOVE_ESCALATION_THRESHOLD
    if w.mem.storm:
        n = sum(1 for rm in w.reps.values() if rm.severity is Severity.CRITICAL)
        parts.insert(0, f"{n} replicas lagging at once")
        if level < 1:
            level, reason = 1, Reason.REPLICA_STORM
    if blind is not None:
        parts.append(f"lag unreadable for {_f(blind[0])} s ({blind[1].value}); a critical "
                     "replica would go unnoticed")
        if level < 1:
            level, reason = 1, Reason.BLIND_TOO_LONG
    critical = sorted(rid for rid, rm in w.reps.items() if rm.severity is Severity.CRITICAL)
    if w.budget_block is not None and critical:
        frees = _budget_frees_in(w)
        parts.append(f"{', '.join(critical)} critical with every step held by the "
                     + ("cluster's maxActionsPerHour"
                        if w.budget_block is Reason.CLUSTER_BUDGET_EXHAUSTED
                        else "operator-wide action budget")
                     + (f" (frees in {_f(frees)} s)" if frees is not None else ""))
        if level < 1:
            level, reason = 1, Reason.HELD_BY_BUDGET
    since = w.mem.escalated_since
    if level == 0:
        since = None
    elif since is None:
        since = w.now
    if 0 < level < 2 and since is not None and w.now - since >= es.promote_after_seconds:
        parts.append(f"unresolved for {_f(w.now - since)} s")
        level, reason = 2, Reason.ESCALATION_UNRESOLVED
    contact = es.contact(level) if level else ""
    message = (f"Level {level} ({contact}): " + "; ".join(parts)) if level else \
        "Nothing needs a human"
    old_level = w.mem.escalation_level
    if level > old_level or (level and reason.value != w.mem.escalation_reason):
        w.note(EventType.WARNING, EventReason.ESCALATED, message, None)
    elif level == 0 and old_level > 0:
        w.note(EventType.NORMAL, EventReason.ESCALATION_CLEARED,
               f"Escalation level {old_level} cleared", None)
    w.mem = replace(w.mem, escalation_level=level,
                    escalation_reason=reason.value if level else None,
                    escalation_message=message if level else None, escalated_since=since)
    return Escalation(level, reason, contact, message)


def _budget_frees_in(w: _Work) -> float | None:
    """Seconds until the cluster's budget has room again (None: not known here)."""
    if w.budget_block is not Reason.CLUSTER_BUDGET_EXHAUSTED or not w.action_times:
        return None
    return max(0.0, min(w.action_times) + HOUR - w.now)


def _blind_limit(spec: Spec) -> float:
    """How long the lag may be unreadable before a human is called: the time in which
    a critical replica would otherwise have been acted on (issue 14, item 7)."""
    d = spec.detection
    return max(d.critical.for_seconds, 3 * d.poll_interval_seconds)
