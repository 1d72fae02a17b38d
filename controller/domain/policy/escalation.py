"""Escalation: which level, why and whom to call, from the replicas' state.

Level 0 none, 1 cluster SRE, 2 distributed-systems engineer, 3 principal engineer.
Each finding raises the level to at least its own; level 1 or 2 findings left
unresolved for promoteAfterSeconds become level 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from controller.domain.conditions import EventReason, EventType, Reason
from controller.domain.memory import Severity, Step
from controller.domain.policy.plan import Escalation
from controller.domain.policy.text import clock_text, number_text
from controller.domain.policy.work import HOUR, Work
from controller.domain.spec import Spec

NOTHING_NEEDS_A_HUMAN = "Nothing needs a human"


@dataclass
class _Findings:
    """The highest level found so far, its reason, and every finding's text."""

    level: int = 0
    reason: Reason = Reason.NOT_ESCALATED
    parts: list[str] = field(default_factory=list)

    def add(self, level: int, reason: Reason, text: str, *, first: bool = False) -> None:
        if first:
            self.parts.insert(0, text)
        else:
            self.parts.append(text)
        if self.level < level:
            self.level, self.reason = level, reason


def blind_limit(spec: Spec) -> float:
    """How long the lag may be unreadable before a human is called: the time in which
    a critical replica would otherwise have been acted on (issue 14, item 7)."""
    windows = spec.detection
    return max(windows.critical.for_seconds, 3 * windows.poll_interval_seconds)


# Failed attempts in a row (with the backoff, at least ~17 s) before a human is called.
FAILURES_TO_ESCALATE = 3


def budget_frees_in(work: Work) -> float | None:
    """Seconds until the cluster's budget has room again (None: not known here)."""
    if work.budget_block is not Reason.CLUSTER_BUDGET_EXHAUSTED or not work.action_times:
        return None
    return max(0.0, min(work.action_times) + HOUR - work.now)


def _replica_findings(work: Work, findings: _Findings) -> None:
    """Corruption (3), an exhausted ladder (2), a crash loop or a lag over the escalation
    threshold (1)."""
    for rid, remembered in work.replicas.items():
        lagging = remembered.severity is not Severity.NONE
        if remembered.corrupted_at is not None:
            findings.add(3, Reason.MERKLE_CORRUPTION, f"{rid} Merkle corruption")
        exhausted = remembered.step in (Step.EXHAUSTED, Step.REBUILD) or remembered.rebuild_marked
        if exhausted and lagging:
            findings.add(2, Reason.LADDER_EXHAUSTED,
                         f"{rid} ladder exhausted after {remembered.sync_attempts} syncs"
                         + (", marked for rebuild" if remembered.rebuild_marked else ""))
        if remembered.crash_loop and lagging:
            findings.add(1, Reason.CRASH_LOOP_DURING_SYNC, f"{rid} crash loop during sync")
        if remembered.lag_escalated and lagging:
            limit = work.spec.detection.escalation_lag_seconds
            shown = remembered.shown_lag
            findings.add(1, Reason.LAG_ABOVE_ESCALATION_THRESHOLD,
                         f"{rid} lag {number_text(shown)} s over {number_text(limit)} s"
                         if shown is not None and shown > limit else
                         f"{rid} lag went over {number_text(limit)} s (now "
                         f"{number_text(shown)} s)")


def _cluster_findings(work: Work, findings: _Findings,
                      blind: tuple[float, Reason] | None) -> None:
    """A storm, a lag unreadable for too long, or critical replicas held by a budget (1)."""
    critical = sorted(work.critical_ids())
    if work.memory.storm:
        findings.add(1, Reason.REPLICA_STORM, f"{len(critical)} replicas lagging at once",
                     first=True)
    if blind is not None:
        findings.add(1, Reason.BLIND_TOO_LONG,
                     f"lag unreadable for {number_text(blind[0])} s ({blind[1].value}); a "
                     "critical replica would go unnoticed")
    if work.backoff_block is not None and critical \
            and work.backoff_block[1].failures >= FAILURES_TO_ESCALATE:
        kind, backoff = work.backoff_block
        findings.add(1, Reason.ADMIN_API_FAILING,
                     f"the admin API failed {kind} {backoff.failures} times in a row over "
                     f"{number_text(backoff.failing_for(work.now))} s while "
                     f"{', '.join(critical)} {'is' if len(critical) == 1 else 'are'} critical")
    if work.budget_block is not None and critical:
        frees = budget_frees_in(work)
        findings.add(1, Reason.HELD_BY_BUDGET,
                     f"{', '.join(critical)} critical with every step held by the "
                     + ("cluster's maxActionsPerHour"
                        if work.budget_block is Reason.CLUSTER_BUDGET_EXHAUSTED
                        else "operator-wide action budget")
                     + (f" (frees at {clock_text(work.now + frees)})" if frees is not None
                        else ""))


def escalate(work: Work, blind: tuple[float, Reason] | None = None) -> Escalation:
    """The level, why and who, from the replicas' state; `blind` is (seconds, why)
    while the lag cannot be read. A rise or a new reason is an Event."""
    findings = _Findings()
    _replica_findings(work, findings)
    _cluster_findings(work, findings, blind)
    since = work.memory.escalated_since
    if findings.level == 0:
        since = None
    elif since is None:
        since = work.now
    if (0 < findings.level < 2 and since is not None
            and work.now - since >= work.spec.escalation.promote_after_seconds):
        findings.parts.append(f"unresolved for {number_text(work.now - since)} s")
        findings.level, findings.reason = 2, Reason.ESCALATION_UNRESOLVED
    level, reason = findings.level, findings.reason
    contact = work.spec.escalation.contact(level) if level else ""
    message = (f"Level {level} ({contact}): " + "; ".join(findings.parts)) if level else \
        NOTHING_NEEDS_A_HUMAN
    old_level = work.memory.escalation_level
    if level > old_level or (level and reason.value != work.memory.escalation_reason):
        work.note(EventType.WARNING, EventReason.ESCALATED, message, None)
    elif level == 0 and old_level > 0:
        work.note(EventType.NORMAL, EventReason.ESCALATION_CLEARED,
                  f"Escalation level {old_level} cleared", None)
    work.memory = replace(work.memory, escalation_level=level,
                          escalation_reason=reason.value if level else None,
                          escalation_message=message if level else None,
                          escalated_since=since)
    return Escalation(level, reason, contact, message)


def standing_escalation(work: Work) -> Escalation:
    """Briefly blind: the escalation stands as last seen."""
    level = work.memory.escalation_level
    return Escalation(
        level,
        Reason(work.memory.escalation_reason) if work.memory.escalation_reason
        else Reason.NOT_ESCALATED,
        work.spec.escalation.contact(level) if level else "",
        work.memory.escalation_message or NOTHING_NEEDS_A_HUMAN,
    )
