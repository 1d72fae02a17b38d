"""Throttle and restore: the cluster-wide ingestion rate limit."""

from __future__ import annotations

import math
from dataclasses import replace

from controller.domain.conditions import (
    EventReason,
    EventType,
)
from controller.domain.memory import (
    ActionKind,
    Severity,
    ThrottleMemory,
)
from controller.domain.observation import (
    UNKNOWN,
)
from controller.domain.policy.plan import Outcome
from controller.domain.policy.text import _f, _rate_str
from controller.domain.policy.work import _draining, _short_deadline, _Work
from controller.domain.spec import Spec


def _ladder_rate(spec: Spec, base: int, index: int) -> int:
    t = spec.remediation.throttle
    return max(t.floor_assertions_per_sec, math.floor(base * t.ladder[index]))


def _start_throttle(w: _Work) -> None:
    if w.throttle.active:
        if w.throttle.restoring:
            w.throttle = replace(w.throttle, restoring=False, restore_index=-1)
        return
    rl = w.obs.rate_limit
    t = w.spec.remediation.throttle
    if rl is UNKNOWN:
        w.throttle = ThrottleMemory(active=True, rate_to_restore=None,
                                    rate_to_restore_known=False,
                                    base_rate=t.unlimited_baseline_assertions_per_sec)
    elif rl is None:
        w.throttle = ThrottleMemory(active=True, rate_to_restore=None,
                                    base_rate=t.unlimited_baseline_assertions_per_sec)
    else:
        assert isinstance(rl, int)
        w.throttle = ThrottleMemory(active=True, rate_to_restore=rl, base_rate=rl,
                                    current_rate=rl)


def _next_rate(w: _Work, to_floor: bool) -> int | None:
    """The next lower ladder rate below the current limit, or None when at the floor."""
    t = w.spec.remediation.throttle
    cur = w.throttle.current_rate
    candidates = [_ladder_rate(w.spec, w.throttle.base_rate, i) for i in range(len(t.ladder))]
    if to_floor:
        candidates = [t.floor_assertions_per_sec]
    for c in candidates:
        if cur is None or c < cur:
            return c
    return None


def _throttle_once(w: _Work, why: str, lag_for_baseline: float, to_floor: bool = False) -> str:
    """Lower the limit one step. Returns 'acted', 'floor' or 'held'."""
    if w.pending_for(ActionKind.SET_RATE_LIMIT, None) is not None:
        return "held"
    was_active = w.throttle.active
    saved = w.throttle
    _start_throttle(w)
    rate = _next_rate(w, to_floor)
    if rate is None:
        return "floor"
    prev = w.throttle.current_rate
    msg = (f"Set ingestion limit to {rate}/s (was {_rate_str(prev)}"
           f"{'' if w.throttle.rate_to_restore_known else ', read-back unknown'}; "
           f"floor {w.spec.remediation.throttle.floor_assertions_per_sec}/s): {why}")
    dl = _short_deadline(w)
    if w.propose(ActionKind.SET_RATE_LIMIT, EventReason.THROTTLE_STEP, msg, rate=rate,
                 deadline=dl):
        w.throttle = replace(w.throttle, current_rate=rate, step_at=w.now,
                             baseline_lag=lag_for_baseline, reissue=False)
        return "acted"
    if not was_active:
        w.throttle = saved
    return "held"


def _reissue_rate(w: _Work) -> None:
    t = w.throttle
    if not t.active or not t.reissue or w.pending_for(ActionKind.SET_RATE_LIMIT, None):
        return
    if w.obs.rate_limit is not UNKNOWN and w.obs.rate_limit == t.current_rate:
        w.throttle = replace(t, reissue=False)
        return
    msg = f"Re-issue ingestion limit {_rate_str(t.current_rate)} (last call unconfirmed)"
    dl = _short_deadline(w)
    if w.propose(ActionKind.SET_RATE_LIMIT, EventReason.THROTTLE_STEP, msg,
                 rate=t.current_rate, deadline=dl):
        w.throttle = replace(w.throttle, reissue=False)


def _storm_throttle(w: _Work, lags: dict[str, float]) -> None:
    _reissue_rate(w)
    crit = {rid: lags[rid] for rid, rm in w.reps.items() if rm.severity is Severity.CRITICAL}
    for rid in crit:
        w.notice(rid, "storm", EventReason.STORM,
                 f"{rid}: per-replica steps suspended while {len(crit)} replicas lag at once")
    if not crit or not w.spec.remediation.throttle.enabled:
        return
    worst = max(crit.values())
    t = w.throttle
    interval = w.spec.remediation.throttle.step_interval_seconds
    if t.step_at is not None and w.now - t.step_at < interval:
        return
    if t.step_at is not None and _draining(w.spec, t.baseline_lag, worst):
        w.throttle = replace(t, step_at=w.now, baseline_lag=worst)
        w.note(EventType.NORMAL, EventReason.STEP_WORKING,
               f"Storm: worst lag drained from {_f(t.baseline_lag)} s to {_f(worst)} s; "
               "holding the current limit", None)
        return
    bp = _backpressure(w, worst)
    res = _throttle_once(w, f"{len(crit)} replicas lagging at once, worst {_f(worst)} s", worst,
                         to_floor=bp)
    if res == "floor" and w.cluster_notice != "storm-floor":
        w.cluster_notice = "storm-floor"
        w.note(EventType.WARNING, EventReason.THROTTLE_AT_FLOOR,
               f"Storm: ingestion limit at the floor "
               f"{w.spec.remediation.throttle.floor_assertions_per_sec}/s; worst lag "
               f"{_f(worst)} s", None, Outcome.SKIPPED)


def _backpressure(w: _Work, lag: float) -> bool:
    bp = w.spec.remediation.backpressure
    return bp.enabled and lag > bp.lag_seconds


def _restore(w: _Work) -> None:
    t = w.throttle
    if not t.active:
        return
    if any(rm.severity is not Severity.NONE for rm in w.reps.values()) or w.mem.storm:
        _reissue_rate(w)
        return
    if w.pending_for(ActionKind.SET_RATE_LIMIT, None) is not None:
        return
    ts = w.spec.remediation.throttle
    if t.restoring and t.step_at is not None and w.now - t.step_at < ts.restore_step_seconds:
        return
    base = t.rate_to_restore if t.rate_to_restore is not None else t.base_rate
    cur = t.current_rate
    idx = t.restore_index + 1
    while idx < len(ts.restore_ramp):
        target = math.floor(base * ts.restore_ramp[idx])
        if cur is None or target > cur:
            break
        idx += 1
    if idx < len(ts.restore_ramp):
        target = math.floor(base * ts.restore_ramp[idx])
        msg = (f"Raise ingestion limit to {target}/s (step {idx + 1} of "
               f"{len(ts.restore_ramp) + 1} back to {_rate_str(t.rate_to_restore)})")
        if w.propose(ActionKind.SET_RATE_LIMIT, EventReason.RATE_RESTORE_STEP, msg,
                     rate=target, deadline=_short_deadline(w)):
            w.throttle = replace(t, restoring=True, restore_index=idx, current_rate=target,
                                 step_at=w.now)
        return
    final = t.rate_to_restore
    msg = (f"Restore ingestion limit to {_rate_str(final)}"
           + ("" if t.rate_to_restore_known else
              " (the limit before the episode could not be read; removing the limit)")
           + f", replacing {_rate_str(cur)}")
    if w.propose(ActionKind.SET_RATE_LIMIT, EventReason.RATE_RESTORED, msg, rate=final,
                 deadline=_short_deadline(w)):
        w.throttle = ThrottleMemory()
