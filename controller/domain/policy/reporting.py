"""Reporting: conditions, the Remediating summary, the Plan and the next poll."""

from __future__ import annotations

from dataclasses import replace

from controller.domain.conditions import (
    Condition,
    ConditionType,
    Reason,
)
from controller.domain.memory import (
    Memory,
    Severity,
    Step,
)
from controller.domain.observation import (
    APPROVE_REBUILD_ANNOTATION,
)
from controller.domain.policy.escalation import _blind_limit, _escalation
from controller.domain.policy.ladder import _rebuild_request
from controller.domain.policy.plan import Escalation, Plan
from controller.domain.policy.text import _f, _rate_str
from controller.domain.policy.work import MIN_REQUEUE, _Work
from controller.domain.spec import Mode, RebuildPolicy


def _conditions(
    w: _Work, metrics: tuple[Reason, str] | None, esc: Escalation
) -> tuple[Condition, ...]:
    spec = w.spec
    reps = w.reps
    n = len(spec.replicas)
    lagging = [rid for rid, rm in reps.items() if rm.severity is not Severity.NONE]
    critical = [rid for rid, rm in reps.items() if rm.severity is Severity.CRITICAL]
    ok = metrics is None
    ma = Condition(ConditionType.METRICS_AVAILABLE, ok,
                   Reason.METRICS_SCRAPED if ok else metrics[0],  # type: ignore[index]
                   f"Lag read for {n} of {n} replicas" if ok else metrics[1])  # type: ignore[index]

    def lagdesc(ids: list[str]) -> str:
        return ", ".join(f"{i} {_f(reps[i].shown_lag)} s" for i in ids)

    if critical:
        deg = Condition(ConditionType.DEGRADED, True, Reason.LAG_CRITICAL,
                        f"{len(critical)} of {n} replicas past critical "
                        f"{_f(spec.detection.critical.lag_seconds)} s: {lagdesc(critical)}")
    elif lagging:
        deg = Condition(ConditionType.DEGRADED, True, Reason.LAG_WARNING,
                        f"{len(lagging)} of {n} replicas past warning "
                        f"{_f(spec.detection.warning.lag_seconds)} s: {lagdesc(lagging)}")
    else:
        deg = Condition(ConditionType.DEGRADED, False, Reason.NO_LAG,
                        f"0 of {n} replicas past warning "
                        f"{_f(spec.detection.warning.lag_seconds)} s")

    rem_reason, rem_msg = _remediating(w)
    rem = Condition(ConditionType.REMEDIATING, rem_reason is not Reason.IDLE, rem_reason, rem_msg)

    rm_ = spec.remediation
    left = rm_.max_actions_per_hour - len(w.action_times)
    if spec.remediation.paused:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False, Reason.PAUSED,
                            "spec.remediation.paused is true; no admin calls are made")
    elif rm_.mode is Mode.OBSERVE:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False, Reason.OBSERVE_MODE,
                            "Mode Observe: lag is reported, nothing is acted on")
    elif rm_.mode is Mode.DRY_RUN:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False, Reason.DRY_RUN_MODE,
                            "Mode DryRun: decisions are reported as 'would do', no admin calls")
    elif not ok:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False, Reason.METRICS_UNAVAILABLE,
                            "No action while metrics are missing or stale")
    elif left <= 0:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False,
                            Reason.CLUSTER_BUDGET_EXHAUSTED,
                            f"{len(w.action_times)} actions in the last hour "
                            f"(maxActionsPerHour {rm_.max_actions_per_hour})")
    elif w.budget_block is Reason.OPERATOR_BUDGET_EXHAUSTED:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False,
                            Reason.OPERATOR_BUDGET_EXHAUSTED,
                            "The operator-wide action budget is used up")
    else:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, True, Reason.ALLOWED,
                            f"Mode Auto; {left} of {rm_.max_actions_per_hour} actions left "
                            "this hour")
    escalated = Condition(ConditionType.ESCALATED, esc.level > 0, esc.reason, esc.message)
    if not ok:
        ready = Condition(ConditionType.READY, False, Reason.METRICS_UNAVAILABLE,
                          "Metrics are missing or stale")
    elif esc.level > 0:
        ready = Condition(ConditionType.READY, False, Reason.NOT_READY_ESCALATED,
                          f"Escalated to level {esc.level} ({esc.contact})")
    elif lagging:
        ready = Condition(ConditionType.READY, False, Reason.REPLICAS_LAGGING,
                          f"{n - len(lagging)} of {n} replicas in sync")
    else:
        ready = Condition(ConditionType.READY, True, Reason.ALL_REPLICAS_IN_SYNC,
                          f"{n} of {n} replicas in sync")
    return (ready, ma, deg, rem, allowed, escalated)


_STEP_REASON = {
    Step.RESET_BREAKER: Reason.RESETTING_BREAKER,
    Step.THROTTLE: Reason.THROTTLING,
    Step.FORCE_SYNC: Reason.FORCING_SYNC,
    Step.REBUILD: Reason.AWAITING_REBUILD_APPROVAL,
    Step.EXHAUSTED: Reason.LADDER_EXHAUSTED,
}


_STEP_RANK = [Step.RESET_BREAKER, Step.THROTTLE, Step.FORCE_SYNC, Step.REBUILD, Step.EXHAUSTED]


def current_step(memory: Memory) -> tuple[str, Step]:
    """(replica id, step) of the replica furthest up the ladder; ('', NONE) if none."""
    best: tuple[str, Step] = ("", Step.NONE)
    for rm in memory.replicas:
        if rm.step is Step.NONE:
            continue
        if best[1] is Step.NONE or _STEP_RANK.index(rm.step) > _STEP_RANK.index(best[1]):
            best = (rm.replica_id, rm.step)
    return best


def _remediating(w: _Work) -> tuple[Reason, str]:
    rid, step = current_step(Memory(replicas=tuple(w.reps.values())))
    if step is not Step.NONE:
        rm = w.reps[rid]
        if rm.rebuild_marked:
            return Reason.REBUILD_MARKED, f"{rid} marked for rebuild"
        request = _rebuild_request(w, rid)
        if step is Step.REBUILD and (w.spec.remediation.rebuild.policy is RebuildPolicy.AUTOMATIC
                                     or request in w.obs.approved_rebuilds):
            return Reason.LADDER_EXHAUSTED, (f"{rid} needs a rebuild that safety limits hold "
                                             "back")
        detail = {
            Step.RESET_BREAKER: f"attempt {rm.step_attempts}/"
                                f"{w.spec.remediation.breaker_reset.max_attempts}",
            Step.THROTTLE: f"limit {_rate_str(w.throttle.current_rate)}",
            Step.FORCE_SYNC: f"attempt {rm.sync_attempts}/"
                             f"{w.spec.remediation.merkle_sync.max_attempts}",
            Step.REBUILD: f"after {rm.sync_attempts} failed syncs; approve with "
                          f"{APPROVE_REBUILD_ANNOTATION}={request}",
            Step.EXHAUSTED: "no automated step left",
        }[step]
        return _STEP_REASON[step], f"{rid}: {step.value}, {detail}"
    if w.throttle.active:
        if not any(rm.severity is not Severity.NONE for rm in w.reps.values()):
            return Reason.RESTORING_RATE, (f"Limit {_rate_str(w.throttle.current_rate)}, "
                                           f"restoring to {_rate_str(w.throttle.rate_to_restore)}")
        return Reason.THROTTLING, f"Limit {_rate_str(w.throttle.current_rate)}"
    if any(rm.severity is Severity.CRITICAL for rm in w.reps.values()):
        return Reason.HOLDING, "Replicas are critical but no step is running"
    return Reason.IDLE, "No runbook step is running"


def _finish(w: _Work, *, metrics: tuple[Reason, str] | None,
            blind_for: float | None = None) -> Plan:
    if metrics is None:
        esc = _escalation(w)
    elif blind_for is not None and blind_for >= _blind_limit(w.spec):
        esc = _escalation(w, blind=(blind_for, metrics[0]))
    else:  # briefly blind: the escalation stands as last seen
        esc = Escalation(
            w.mem.escalation_level,
            Reason(w.mem.escalation_reason) if w.mem.escalation_reason
            else Reason.NOT_ESCALATED,
            w.spec.escalation.contact(w.mem.escalation_level) if w.mem.escalation_level
            else "",
            w.mem.escalation_message or "Nothing needs a human",
        )
    conditions = _conditions(w, metrics, esc)
    mem = replace(
        w.mem,
        replicas=tuple(w.reps[r.id] for r in w.spec.replicas),
        throttle=w.throttle,
        pending=tuple(w.pending),
        action_times=tuple(w.action_times),
        seq=w.seq,
        last_notice=w.cluster_notice,
    ).with_history(*w.history)
    return Plan(
        actions=tuple(w.actions),
        memory=mem,
        conditions=conditions,
        events=tuple(w.events),
        requeue_after=_requeue(w),
        escalation=esc,
        metrics_available=metrics is None,
        suppressed=tuple(w.suppressed),
    )


def _requeue(w: _Work) -> float:
    d = w.spec.detection
    poll = d.poll_interval_seconds
    deadlines: list[float] = [i.deadline for i in w.pending]
    for rm in w.reps.values():
        if rm.above_warning_since is not None and rm.severity is Severity.NONE:
            deadlines.append(rm.above_warning_since + d.warning.for_seconds)
        if rm.above_critical_since is not None and rm.severity is not Severity.CRITICAL:
            deadlines.append(rm.above_critical_since + d.critical.for_seconds)
        if rm.below_recovery_since is not None and rm.severity is not Severity.NONE:
            deadlines.append(rm.below_recovery_since + d.recovery.for_seconds)
    future = [t - w.now for t in deadlines if t > w.now]
    nxt = min([poll, *future])
    return max(MIN_REQUEUE, min(poll, nxt))
