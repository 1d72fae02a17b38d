"""decide(): one poll's decision from observation, spec and memory.

Order within a poll: trust the metrics? -> resolve intents -> detect -> storm? ->
(acting or DryRun) the ladder per replica or the storm throttle, then restore ->
report (reporting.finish).
"""

from __future__ import annotations

from dataclasses import replace

from controller.domain.conditions import EventReason, EventType, Reason
from controller.domain.memory import Memory, Severity
from controller.domain.observation import Observation
from controller.domain.policy.detection import detect, detect_storm, metrics_problem, storm_now
from controller.domain.policy.intents import resolve_intents
from controller.domain.policy.ladder import run_ladder
from controller.domain.policy.plan import Outcome, Plan
from controller.domain.policy.reporting import finish
from controller.domain.policy.text import number_text
from controller.domain.policy.throttle import restore, storm_throttle
from controller.domain.policy.work import Work
from controller.domain.spec import Spec


def decide(
    observation: Observation,
    spec: Spec,
    memory: Memory,
    now: float,
    *,
    operator_budget_remaining: int,
) -> Plan:
    """The Plan for this poll; pure and deterministic (time is passed in)."""
    work = Work(observation, spec, memory, now, operator_budget_remaining)
    problem = metrics_problem(observation, spec, now)
    if problem is not None:
        return _blind(work, *problem)
    if work.cluster_notice is not None and work.cluster_notice.startswith("metrics:"):
        work.cluster_notice = None
    if work.memory.blind_since is not None:
        work.memory = replace(work.memory, blind_since=None)

    lags: dict[str, float] = {}
    for replica in spec.replicas:
        seen = observation.replica(replica.id)
        assert seen is not None and seen.lag_seconds is not None
        lags[replica.id] = seen.lag_seconds

    resolve_intents(work)
    for replica in spec.replicas:
        seen = observation.replica(replica.id)
        assert seen is not None
        detect(work, replica, seen, lags[replica.id])
    detect_storm(work)
    if work.acting or work.dry_run:
        if work.memory.storm or storm_now(work):
            storm_throttle(work, lags)
            for replica in spec.replicas:  # only the steps a storm does not hold
                run_ladder(work, replica, observation.replica(replica.id), lags, storm=True)
        else:
            for replica in spec.replicas:
                run_ladder(work, replica, observation.replica(replica.id), lags)
        restore(work)
    elif work.lagging_ids():
        _explain_no_action(work, lags)
    return finish(work, metrics=None)


def _blind(work: Work, reason: Reason, message: str) -> Plan:
    """The lag cannot be trusted: report it once, remember since when, act on nothing."""
    if work.cluster_notice != f"metrics:{reason.value}":
        work.cluster_notice = f"metrics:{reason.value}"
        work.note(EventType.WARNING, EventReason.METRICS_UNAVAILABLE, message, None,
                  Outcome.SKIPPED)
    since = work.memory.blind_since if work.memory.blind_since is not None else work.now
    work.memory = replace(work.memory, blind_since=since)
    return finish(work, metrics=(reason, message), blind_for=work.now - since)


def _explain_no_action(work: Work, lags: dict[str, float]) -> None:
    """Paused or Observe: say once per critical replica why nothing is done."""
    for replica in work.spec.replicas:
        if work.replicas[replica.id].severity is not Severity.CRITICAL:
            continue
        key = "paused" if work.paused else "observe"
        work.suppressed.append((None, Reason.PAUSED if work.paused else Reason.OBSERVE_MODE))
        text = (f"{replica.id} lag {number_text(lags[replica.id])} s: no action because "
                + ("spec.remediation.paused is true" if work.paused
                   else "spec.remediation.mode is Observe"))
        work.notice(replica.id, key, EventReason.ACTION_SKIPPED, text)
