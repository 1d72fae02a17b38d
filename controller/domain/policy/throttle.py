"""Throttle and restore: the cluster-wide ingestion rate limit.

The throttle ladder step (steps/throttle.py) and a storm lower the limit one ladder
rate at a time; once every replica has recovered, `restore` raises it through the
restore ramp back to the rate in force before the episode.
"""

from __future__ import annotations

import enum
import math
from dataclasses import replace

from controller.domain.conditions import EventReason, EventType
from controller.domain.memory import ActionKind, ThrottleMemory
from controller.domain.observation import UNKNOWN
from controller.domain.policy.detection import is_draining
from controller.domain.policy.plan import Outcome
from controller.domain.policy.text import number_text, rate_text
from controller.domain.policy.work import Work
from controller.domain.spec import Spec


class Lowered(enum.Enum):
    """What one attempt to lower the limit did."""

    LOWERED = "lowered"  # a lower limit was proposed (or, in DryRun, would be)
    AT_FLOOR = "at floor"  # no lower ladder rate is left
    HELD = "held"  # a call awaits its outcome, or a safety gate held the call


def ladder_rate(spec: Spec, base: int, index: int) -> int:
    """The throttle ladder's rate at `index`: a fraction of `base`, never below the floor."""
    throttle = spec.remediation.throttle
    return max(throttle.floor_assertions_per_sec, math.floor(base * throttle.ladder[index]))


def backpressure(work: Work, lag: float) -> bool:
    """Lag above backpressure.lagSeconds throttles straight to the floor."""
    settings = work.spec.remediation.backpressure
    return settings.enabled and lag > settings.lag_seconds


def _start_throttle(work: Work) -> None:
    """Remember the limit in force before the first step (or that it is unknown)."""
    if work.throttle.active:
        if work.throttle.restoring:
            work.throttle = replace(work.throttle, restoring=False, restore_index=-1,
                                    final_restore=False)
        return
    limit = work.observation.rate_limit
    settings = work.spec.remediation.throttle
    if limit is UNKNOWN:
        work.throttle = ThrottleMemory(active=True, rate_to_restore=None,
                                       rate_to_restore_known=False,
                                       base_rate=settings.unlimited_baseline_assertions_per_sec)
    elif limit is None:
        work.throttle = ThrottleMemory(active=True, rate_to_restore=None,
                                       base_rate=settings.unlimited_baseline_assertions_per_sec)
    else:
        assert isinstance(limit, int)
        work.throttle = ThrottleMemory(active=True, rate_to_restore=limit, base_rate=limit,
                                       current_rate=limit)


def _next_rate(work: Work, to_floor: bool) -> int | None:
    """The next lower ladder rate below the current limit, or None when at the floor."""
    settings = work.spec.remediation.throttle
    current = work.throttle.current_rate
    candidates = [ladder_rate(work.spec, work.throttle.base_rate, i)
                  for i in range(len(settings.ladder))]
    if to_floor:
        candidates = [settings.floor_assertions_per_sec]
    for candidate in candidates:
        if current is None or candidate < current:
            return candidate
    return None


def lower_once(work: Work, why: str, lag_for_baseline: float, to_floor: bool = False) -> Lowered:
    """Lower the limit one ladder rate (or straight to the floor)."""
    if work.pending_intent(ActionKind.SET_RATE_LIMIT, None) is not None:
        return Lowered.HELD
    was_active = work.throttle.active
    saved = work.throttle
    _start_throttle(work)
    rate = _next_rate(work, to_floor)
    if rate is None:
        return Lowered.AT_FLOOR
    previous = work.throttle.current_rate
    message = (f"Set ingestion limit to {rate}/s (was {rate_text(previous)}"
               f"{'' if work.throttle.rate_to_restore_known else ', read-back unknown'}; "
               f"floor {work.spec.remediation.throttle.floor_assertions_per_sec}/s): {why}")
    if work.propose(ActionKind.SET_RATE_LIMIT, EventReason.THROTTLE_STEP, message, rate=rate):
        work.throttle = replace(work.throttle, current_rate=rate, step_at=work.now,
                                baseline_lag=lag_for_baseline, reissue=False)
        return Lowered.LOWERED
    if not was_active:
        work.throttle = saved
    return Lowered.HELD


def reissue_rate(work: Work) -> None:
    """Issue the current limit again after a call that failed or was not confirmed."""
    throttle = work.throttle
    if (not throttle.active or not throttle.reissue
            or work.pending_intent(ActionKind.SET_RATE_LIMIT, None)):
        return
    limit = work.observation.rate_limit
    if limit is not UNKNOWN and limit == throttle.current_rate:
        work.throttle = replace(throttle, reissue=False)
        return
    message = (f"Re-issue ingestion limit {rate_text(throttle.current_rate)} "
               "(last call unconfirmed)")
    if work.propose(ActionKind.SET_RATE_LIMIT, EventReason.THROTTLE_STEP, message,
                    rate=throttle.current_rate):
        work.throttle = replace(work.throttle, reissue=False)


def storm_throttle(work: Work, lags: dict[str, float]) -> None:
    """In a storm: lower the limit while the worst lag does not drain."""
    reissue_rate(work)
    critical = {rid: lags[rid] for rid in work.critical_ids()}
    for rid in critical:
        work.notice(rid, "storm", EventReason.STORM,
                    f"{rid}: forced syncs and rebuilds suspended while {len(critical)} "
                    "replicas lag at once (a tripped breaker is still reset)")
    if not critical or not work.spec.remediation.throttle.enabled:
        return
    worst = max(critical.values())
    throttle = work.throttle
    interval = work.spec.remediation.throttle.step_interval_seconds
    if throttle.step_at is not None and work.now - throttle.step_at < interval:
        return
    if throttle.step_at is not None and is_draining(work.spec, throttle.baseline_lag, worst):
        work.throttle = replace(throttle, step_at=work.now, baseline_lag=worst)
        work.note(EventType.NORMAL, EventReason.STEP_WORKING,
                  f"Storm: worst lag drained from {number_text(throttle.baseline_lag)} s to "
                  f"{number_text(worst)} s; holding the current limit", None)
        return
    result = lower_once(work, f"{len(critical)} replicas lagging at once, worst "
                              f"{number_text(worst)} s", worst,
                        to_floor=backpressure(work, worst))
    if result is Lowered.AT_FLOOR and work.cluster_notice != "storm-floor":
        work.cluster_notice = "storm-floor"
        work.note(EventType.WARNING, EventReason.THROTTLE_AT_FLOOR,
                  f"Storm: ingestion limit {rate_text(work.throttle.current_rate)} is the "
                  f"lowest step (floor "
                  f"{work.spec.remediation.throttle.floor_assertions_per_sec}/s); worst lag "
                  f"{number_text(worst)} s", None, Outcome.SKIPPED)


def restore(work: Work) -> None:
    """After every replica recovered (and no storm): raise the limit one ramp step per
    restoreStepSeconds, then restore the rate in force before the episode exactly."""
    throttle = work.throttle
    if not throttle.active:
        return
    if work.lagging_ids() or work.memory.storm:
        reissue_rate(work)
        return
    if work.pending_intent(ActionKind.SET_RATE_LIMIT, None) is not None:
        return
    settings = work.spec.remediation.throttle
    if (throttle.restoring and throttle.step_at is not None
            and work.now - throttle.step_at < settings.restore_step_seconds):
        return
    if throttle.final_restore:  # the last call failed: issue the restore again
        _restore_final(work)
        return
    base = throttle.rate_to_restore if throttle.rate_to_restore is not None else throttle.base_rate
    current = throttle.current_rate
    index = throttle.restore_index + 1
    while index < len(settings.restore_ramp):
        target = math.floor(base * settings.restore_ramp[index])
        if current is None or target > current:
            break
        index += 1
    if index < len(settings.restore_ramp):
        target = math.floor(base * settings.restore_ramp[index])
        message = (f"Raise ingestion limit to {target}/s (step {index + 1} of "
                   f"{len(settings.restore_ramp) + 1} back to "
                   f"{rate_text(throttle.rate_to_restore)})")
        if work.propose(ActionKind.SET_RATE_LIMIT, EventReason.RATE_RESTORE_STEP, message,
                        rate=target, undo=True):
            work.throttle = replace(throttle, restoring=True, restore_index=index,
                                    current_rate=target, step_at=work.now)
        return
    _restore_final(work)


def _restore_final(work: Work) -> None:
    """Restore the rate in force before the episode exactly (or remove the limit)."""
    throttle = work.throttle
    current = throttle.current_rate
    final = throttle.rate_to_restore
    message = (f"Restore ingestion limit to {rate_text(final)}"
               + ("" if throttle.rate_to_restore_known else
                  " (the limit before the episode could not be read; removing the limit)")
               + f", replacing {rate_text(current)}")
    if work.propose(ActionKind.SET_RATE_LIMIT, EventReason.RATE_RESTORED, message, rate=final,
                    undo=True):
        # Ended when the call succeeds (intents.py), not now: a failed restore is
        # issued again instead of leaving the cluster throttled. DryRun makes no call.
        work.throttle = ThrottleMemory() if work.dry_run else replace(
            throttle, restoring=True, current_rate=final, step_at=work.now,
            final_restore=True, reissue=False)
