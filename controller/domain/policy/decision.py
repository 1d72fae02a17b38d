"""decide(): one poll's decision from observation, spec and memory."""

from __future__ import annotations

from dataclasses import replace

from controller.domain.conditions import (
    EventReason,
    EventType,
    Reason,
)
from controller.domain.memory import (
    Memory,
    Severity,
)
from controller.domain.observation import (
    Observation,
)
from controller.domain.policy.detection import _detect, _metrics_problem, _storm, _storm_now
from controller.domain.policy.intents import _resolve_intents
from controller.domain.policy.ladder import _ladder
from controller.domain.policy.plan import Outcome, Plan
from controller.domain.policy.reporting import _finish
from controller.domain.policy.text import _f
from controller.domain.policy.throttle import _restore, _storm_throttle
from controller.domain.policy.work import _Work
from controller.domain.spec import Spec


def decide(
    observation: Observation,
    spec: Spec,
    memory: Memory,
    now: float,
    *,
    operator_budget_remaining: int,
) -> Plan:
    w = _Work(observation, spec, memory, now, operator_budget_remaining)
    problem = _metrics_problem(observation, spec, now)
    if problem is not None:
        reason, message = problem
        if w.cluster_notice != f"metrics:{reason.value}":
            w.cluster_notice = f"metrics:{reason.value}"
            w.note(EventType.WARNING, EventReason.METRICS_UNAVAILABLE, message, None,
                   Outcome.SKIPPED)
        since = w.mem.blind_since if w.mem.blind_since is not None else now
        w.mem = replace(w.mem, blind_since=since)
        return _finish(w, metrics=(reason, message), blind_for=now - since)
    if w.cluster_notice is not None and w.cluster_notice.startswith("metrics:"):
        w.cluster_notice = None
    if w.mem.blind_since is not None:
        w.mem = replace(w.mem, blind_since=None)

    lags: dict[str, float] = {}
    for r in spec.replicas:
        ro = observation.replica(r.id)
        assert ro is not None and ro.lag_seconds is not None
        lags[r.id] = ro.lag_seconds

    _resolve_intents(w)
    for r in spec.replicas:
        ro = observation.replica(r.id)
        assert ro is not None
        _detect(w, r, ro, lags[r.id])
    _storm(w)
    if w.acting or w.dry_run:
        if w.mem.storm or _storm_now(w):
            _storm_throttle(w, lags)
        else:
            for r in spec.replicas:
                _ladder(w, r, observation.replica(r.id), lags)
        _restore(w)
    elif any(rm.severity is not Severity.NONE for rm in w.reps.values()):
        for r in spec.replicas:
            if w.reps[r.id].severity is Severity.CRITICAL:
                key = "paused" if w.paused else "observe"
                w.suppressed.append(
                    (None, Reason.PAUSED if w.paused else Reason.OBSERVE_MODE))
                text = (f"{r.id} lag {_f(lags[r.id])} s: no action because "
                        + ("spec.remediation.paused is true" if w.paused
                           else "spec.remediation.mode is Observe"))
                w.notice(r.id, key, EventReason.ACTION_SKIPPED, text)
    return _finish(w, metrics=None)
