"""Reporting: the conditions a human reads, the Remediating summary, the Plan, and
when to look again."""

from __future__ import annotations

from dataclasses import replace

from controller.domain.conditions import Condition, ConditionType, Reason
from controller.domain.memory import Memory, Severity, Step
from controller.domain.policy.escalation import blind_limit, escalate, standing_escalation
from controller.domain.policy.guidance import NextStep, next_step
from controller.domain.policy.ladder import current_step, ladder_step
from controller.domain.policy.plan import Escalation, Plan
from controller.domain.policy.text import clock_text, number_text, rate_text
from controller.domain.policy.work import MIN_REQUEUE, Work
from controller.domain.spec import Mode

_GATES = {
    Reason.CLUSTER_BUDGET_EXHAUSTED: "the cluster's maxActionsPerHour",
    Reason.OPERATOR_BUDGET_EXHAUSTED: "the operator-wide action budget",
    Reason.ADMIN_API_BACKING_OFF: "the backoff from a failing admin API",
}


def _remediating(work: Work, metrics_ok: bool = True) -> tuple[Reason, str]:
    """The Remediating condition: the furthest step, else the throttle, else idle. A
    step that cannot act now says what holds it (corruption, unknown lag, a budget or
    a backoff), never "attempt 1/2" as if it were running."""
    replica_id, step = current_step(Memory(replicas=tuple(work.replicas.values())))
    if step is not Step.NONE:
        if work.replicas[replica_id].rebuild_marked:
            return Reason.REBUILD_MARKED, f"{replica_id} marked for rebuild"
        declared = ladder_step(step)
        if declared is None:  # past the last step
            return Reason.LADDER_EXHAUSTED, f"{replica_id}: {step.value}, no automated step left"
        reason, message = declared.remediating(work, replica_id)
        if work.replicas[replica_id].corrupted_at is not None:
            return Reason.HOLDING, f"{message}; held: Merkle sync reported corruption"
        if not metrics_ok:
            return Reason.HOLDING, f"{message}; held while the lag cannot be read"
        if not (work.acting or work.dry_run):
            return Reason.HOLDING, (f"{message}; held: " + (
                "spec.remediation.paused is true" if work.paused
                else "spec.remediation.mode is Observe"))
        gate = next((g for kind, g in work.suppressed
                     if kind is declared.action and g in _GATES), None)
        if gate is not None:
            return Reason.HOLDING, f"{message}; next attempt held by {_GATES[gate]}"
        return reason, message
    throttle = work.throttle
    if throttle.active:
        if not work.lagging_ids():
            return Reason.RESTORING_RATE, (f"Limit {rate_text(throttle.current_rate)}, "
                                           f"restoring to {rate_text(throttle.rate_to_restore)}")
        return Reason.THROTTLING, f"Limit {rate_text(throttle.current_rate)}"
    if work.critical_ids():
        return Reason.HOLDING, "Replicas are critical but no step is running"
    return Reason.IDLE, "No runbook step is running"


def _degraded(work: Work, metrics: tuple[Reason, str] | None) -> Condition:
    """Which replicas are past a threshold; Unknown (since when) while the lag cannot
    be read: last known values are not shown as current."""
    if metrics is not None:
        since = work.memory.blind_since if work.memory.blind_since is not None else work.now
        return Condition(ConditionType.DEGRADED, None, Reason.METRICS_UNAVAILABLE,
                         f"Lag unknown since {clock_text(since)} ({metrics[0].value})")
    spec, replicas = work.spec, work.replicas
    count = len(spec.replicas)
    lagging = work.lagging_ids()
    critical = work.critical_ids()

    def lags_of(ids: list[str]) -> str:
        return ", ".join(f"{rid} {number_text(replicas[rid].shown_lag)} s" for rid in ids)

    # An episode ends below the recovery threshold, not below the one that began it
    # (hysteresis): a replica may be critical with its lag now under `critical`, so
    # the message says "critical" and the thresholds, never "past X s" of a lower lag.
    recovery = number_text(spec.detection.recovery.lag_seconds)
    if critical:
        return Condition(ConditionType.DEGRADED, True, Reason.LAG_CRITICAL,
                         f"{len(critical)} of {count} replicas critical (above "
                         f"{number_text(spec.detection.critical.lag_seconds)} s for its "
                         f"window, until below {recovery} s): {lags_of(critical)}")
    if lagging:
        return Condition(ConditionType.DEGRADED, True, Reason.LAG_WARNING,
                         f"{len(lagging)} of {count} replicas lagging (above warning "
                         f"{number_text(spec.detection.warning.lag_seconds)} s for its "
                         f"window, until below {recovery} s): {lags_of(lagging)}")
    return Condition(ConditionType.DEGRADED, False, Reason.NO_LAG,
                     f"0 of {count} replicas past warning "
                     f"{number_text(spec.detection.warning.lag_seconds)} s")


def _remediation_allowed(work: Work, metrics_ok: bool) -> Condition:
    settings = work.spec.remediation
    left = settings.max_actions_per_hour - len(work.action_times)
    allowed = ConditionType.REMEDIATION_ALLOWED
    if settings.paused:
        return Condition(allowed, False, Reason.PAUSED,
                         "spec.remediation.paused is true; no admin calls are made")
    if settings.mode is Mode.OBSERVE:
        return Condition(allowed, False, Reason.OBSERVE_MODE,
                         "Mode Observe: lag is reported, nothing is acted on")
    if settings.mode is Mode.DRY_RUN:
        return Condition(allowed, False, Reason.DRY_RUN_MODE,
                         "Mode DryRun: decisions are reported as 'would do', no admin calls")
    if not metrics_ok:
        return Condition(allowed, False, Reason.METRICS_UNAVAILABLE,
                         "No action while metrics are missing or stale")
    reserve = work.restore_reserve()
    if left <= 0 or work.budget_block is Reason.CLUSTER_BUDGET_EXHAUSTED:
        return Condition(allowed, False, Reason.CLUSTER_BUDGET_EXHAUSTED,
                         f"{len(work.action_times)} actions in the last hour"
                         + (f" and {reserve} kept for lifting the throttle" if reserve else "")
                         + f" (maxActionsPerHour {settings.max_actions_per_hour})")
    if work.backoff_block is not None:
        kind, backoff = work.backoff_block
        assert backoff.retry_at is not None
        return Condition(allowed, False, Reason.ADMIN_API_BACKING_OFF,
                         f"{kind} failed {backoff.failures} time"
                         f"{'s' if backoff.failures != 1 else ''} in a row; next attempt at "
                         f"{clock_text(backoff.retry_at)}")
    if work.budget_block is Reason.OPERATOR_BUDGET_EXHAUSTED:
        return Condition(allowed, False, Reason.OPERATOR_BUDGET_EXHAUSTED,
                         "The operator-wide action budget is used up")
    return Condition(allowed, True, Reason.ALLOWED,
                     f"Mode Auto; {left} of {settings.max_actions_per_hour} actions left "
                     "this hour")


def _ready(work: Work, metrics_ok: bool, escalation: Escalation) -> Condition:
    count = len(work.spec.replicas)
    lagging = len(work.lagging_ids())
    if not metrics_ok:
        return Condition(ConditionType.READY, False, Reason.METRICS_UNAVAILABLE,
                         "Metrics are missing or stale")
    if escalation.level > 0:
        return Condition(ConditionType.READY, False, Reason.NOT_READY_ESCALATED,
                         f"Escalated to level {escalation.level} ({escalation.contact})")
    if lagging:
        return Condition(ConditionType.READY, False, Reason.REPLICAS_LAGGING,
                         f"{count - lagging} of {count} replicas in sync")
    return Condition(ConditionType.READY, True, Reason.ALL_REPLICAS_IN_SYNC,
                     f"{count} of {count} replicas in sync")


def _conditions(
    work: Work, metrics: tuple[Reason, str] | None, escalation: Escalation
) -> tuple[Condition, ...]:
    count = len(work.spec.replicas)
    if metrics is None:
        available = Condition(ConditionType.METRICS_AVAILABLE, True, Reason.METRICS_SCRAPED,
                              f"Lag read for {count} of {count} replicas")
    else:
        available = Condition(ConditionType.METRICS_AVAILABLE, False, metrics[0], metrics[1])
    reason, message = _remediating(work, metrics is None)
    remediating = Condition(ConditionType.REMEDIATING, reason is not Reason.IDLE, reason,
                            message)
    escalated = Condition(ConditionType.ESCALATED, escalation.level > 0, escalation.reason,
                          escalation.message)
    metrics_ok = metrics is None
    return (_ready(work, metrics_ok, escalation), available, _degraded(work, metrics), remediating,
            _remediation_allowed(work, metrics_ok), escalated)


def _with_next_step(conditions: tuple[Condition, ...],
                    upcoming: NextStep | None) -> tuple[Condition, ...]:
    """The Remediating and Escalated messages end with what happens next and when."""
    if upcoming is None or upcoming.at is None:
        return conditions
    text = f"; next: {upcoming.what} at {clock_text(upcoming.at)}"
    return tuple(
        replace(c, message=c.message + text)
        if c.status and c.type in (ConditionType.REMEDIATING, ConditionType.ESCALATED) else c
        for c in conditions)


def finish(work: Work, *, metrics: tuple[Reason, str] | None,
           blind_for: float | None = None) -> Plan:
    """The Plan: escalation, conditions and the memory to write before acting."""
    if metrics is None:
        escalation = escalate(work)
    elif blind_for is not None and blind_for >= blind_limit(work.spec):
        escalation = escalate(work, blind=(blind_for, metrics[0]))
    else:
        escalation = standing_escalation(work)
    memory = replace(
        work.memory,
        replicas=tuple(work.replicas[r.id] for r in work.spec.replicas),
        throttle=work.throttle,
        pending=tuple(work.pending),
        action_times=tuple(work.action_times),
        seq=work.seq,
        last_notice=work.cluster_notice,
    ).with_history(*work.history)
    conditions = _with_next_step(_conditions(work, metrics, escalation),
                                 next_step(work.spec, memory))
    return Plan(
        actions=tuple(work.actions),
        memory=memory,
        conditions=conditions,
        events=tuple(work.events),
        requeue_after=_requeue(work),
        escalation=escalation,
        metrics_available=metrics is None,
        suppressed=tuple(work.suppressed),
        wants_tripped_breakers=work.wants_tripped_breakers,
    )


def _requeue(work: Work) -> float:
    """Seconds to the next poll: the poll interval, or sooner when a deadline or a
    `for` window ends first."""
    windows = work.spec.detection
    poll = windows.poll_interval_seconds
    deadlines: list[float] = [intent.deadline for intent in work.pending]
    for remembered in work.replicas.values():
        if remembered.above_warning_since is not None and remembered.severity is Severity.NONE:
            deadlines.append(remembered.above_warning_since + windows.warning.for_seconds)
        if (remembered.above_critical_since is not None
                and remembered.severity is not Severity.CRITICAL):
            deadlines.append(remembered.above_critical_since + windows.critical.for_seconds)
        if remembered.below_recovery_since is not None and remembered.severity is not Severity.NONE:
            deadlines.append(remembered.below_recovery_since + windows.recovery.for_seconds)
    future = [t - work.now for t in deadlines if t > work.now]
    return max(MIN_REQUEUE, min([poll, *future]))
