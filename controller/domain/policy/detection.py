"""Detection: metrics problems, severity with for-windows, corruption, recovery, storms."""

from __future__ import annotations

import math
from dataclasses import replace

from controller.domain.conditions import (
    EventReason,
    EventType,
    Reason,
)
from controller.domain.memory import (
    ReplicaMemory,
    Severity,
    Step,
)
from controller.domain.observation import (
    Observation,
    ReplicaObservation,
    SourceState,
)
from controller.domain.policy.text import _f
from controller.domain.policy.work import _Work
from controller.domain.spec import ReplicaSpec, Spec


def quantize_lag(previous: float | None, lag: float, state_changed: bool) -> float:
    """The lag shown in status: refreshed on a state change, or when it moved by
    at least max(2 s, 25 % of the shown value); rounded to 0.1 s."""
    if previous is None or state_changed:
        return round(lag, 1)
    if abs(lag - previous) >= max(2.0, 0.25 * previous):
        return round(lag, 1)
    return previous


def is_in_sync(spec: Spec, rm: ReplicaMemory, lag: float | None) -> bool:
    """Counts towards minInSyncReplicas: lag known, below warning, not marked for rebuild."""
    return (
        lag is not None
        and lag < spec.detection.warning.lag_seconds
        and not rm.rebuild_marked
        and rm.severity is Severity.NONE
    )


def _metrics_problem(obs: Observation, spec: Spec, now: float) -> tuple[Reason, str] | None:
    if obs.primary.state is SourceState.DENIED:
        return Reason.DESTINATION_DENIED, (
            f"{obs.primary.detail or 'the primary URL is denied'}; the operator sends nothing "
            "to a destination its policy denies (docs/security.md)"
        )
    if obs.primary.state is SourceState.FAILED:
        return Reason.PRIMARY_SCRAPE_FAILED, (
            f"The primary's /metrics could not be read ({obs.primary.detail or 'no detail'}); "
            "no action is taken on missing data"
        )
    age = now - obs.at
    if age > spec.detection.stale_after_seconds:
        return Reason.OBSERVATION_STALE, (
            f"The observation is {_f(age)} s old, more than staleAfterSeconds "
            f"{_f(spec.detection.stale_after_seconds)}; no action is taken on stale data"
        )
    missing = [r.id for r in spec.replicas
               if (ro := obs.replica(r.id)) is None or ro.lag_seconds is None
               or not math.isfinite(ro.lag_seconds)]
    if missing:
        return Reason.REPLICA_LAG_MISSING, (
            f"No lag series for {len(missing)} of {len(spec.replicas)} replicas "
            f"({', '.join(missing)}); no action is taken on missing data"
        )
    return None


def _storm_now(w: _Work) -> bool:
    n = sum(1 for rm in w.reps.values() if rm.severity is Severity.CRITICAL)
    return n >= w.spec.detection.storm_replicas


def _detect(w: _Work, r: ReplicaSpec, ro: ReplicaObservation, lag: float) -> None:
    d = w.spec.detection
    now = w.now
    rm = w.reps[r.id]
    prev_state = rm.severity
    aw = (rm.above_warning_since if rm.above_warning_since is not None else now) \
        if lag > d.warning.lag_seconds else None
    ac = (rm.above_critical_since if rm.above_critical_since is not None else now) \
        if lag > d.critical.lag_seconds else None
    br = (rm.below_recovery_since if rm.below_recovery_since is not None else now) \
        if lag < d.recovery.lag_seconds else None
    rm = w.upd(r.id, above_warning_since=aw, above_critical_since=ac, below_recovery_since=br)

    # corruption: any increase of the corruption counter (a first sight above 0 counts)
    corr = ro.sync_corruption_total
    if corr is not None:
        seen = rm.corruption_seen if rm.corruption_seen is not None else 0.0
        if corr > seen:
            first = rm.corrupted_at is None
            rm = w.upd(r.id, corruption_seen=corr, corrupted_at=now)
            if first:
                w.note(EventType.WARNING, EventReason.CORRUPTION,
                       f"{r.id}: Merkle sync reported corruption (counter {_f(corr)}, was "
                       f"{_f(seen)}); automated steps on {r.id} are held, escalating to "
                       f"{w.spec.escalation.principal_engineer}", r.id)
        elif corr < seen:  # counter reset (process restart)
            rm = w.upd(r.id, corruption_seen=corr)
    if (rm.corrupted_at is not None and br is not None
            and now - max(br, rm.corrupted_at) >= d.recovery.for_seconds):
        rm = w.upd(r.id, corrupted_at=None)

    sev = rm.severity
    if lag > d.escalation_lag_seconds and not rm.lag_escalated:
        rm = w.upd(r.id, lag_escalated=True)
        sev = Severity.CRITICAL
    if ac is not None and now - ac >= d.critical.for_seconds:
        sev = Severity.CRITICAL
    elif sev is Severity.NONE and aw is not None and now - aw >= d.warning.for_seconds:
        sev = Severity.WARNING
    if sev is not Severity.NONE and br is not None and now - br >= d.recovery.for_seconds:
        sev = Severity.NONE

    if sev is not prev_state:
        if prev_state is Severity.NONE:
            starts = [t for t in (aw, ac) if t is not None]
            rm = w.upd(r.id, episode_started_at=min(starts) if starts else now)
        if sev is Severity.WARNING:
            w.note(EventType.WARNING, EventReason.LAG_WARNING,
                   f"{r.id} lag {_f(lag)} s above warning {_f(d.warning.lag_seconds)} s for "
                   f"{_f(d.warning.for_seconds)} s", r.id)
        elif sev is Severity.CRITICAL:
            w.note(EventType.WARNING, EventReason.LAG_CRITICAL,
                   f"{r.id} lag {_f(lag)} s above critical {_f(d.critical.lag_seconds)} s"
                   + (f" (over escalation {_f(d.escalation_lag_seconds)} s)"
                      if lag > d.escalation_lag_seconds
                      else f" for {_f(d.critical.for_seconds)} s"), r.id)
        else:
            _recover(w, r, lag)
            rm = w.reps[r.id]
        rm = w.upd(r.id, severity=sev)
    w.upd(r.id, shown_lag=quantize_lag(rm.shown_lag, lag, sev is not prev_state))


def _recover(w: _Work, r: ReplicaSpec, lag: float) -> None:
    rm = w.reps[r.id]
    start = rm.episode_started_at if rm.episode_started_at is not None else w.now
    ttr = w.now - start
    acted = rm.step is not Step.NONE
    w.note(EventType.NORMAL, EventReason.RECOVERED,
           f"{r.id} recovered: lag {_f(lag)} s below {_f(w.spec.detection.recovery.lag_seconds)}"
           f" s for {_f(w.spec.detection.recovery.for_seconds)} s; time to recover {_f(ttr)} s",
           r.id)
    w.reps[r.id] = ReplicaMemory(
        r.id,
        below_recovery_since=rm.below_recovery_since,
        corruption_seen=rm.corruption_seen,
        corrupted_at=rm.corrupted_at,
        cooldown_until=(w.now + w.spec.remediation.cooldown_seconds) if acted
        else rm.cooldown_until,
        last_action=rm.last_action,
        shown_lag=rm.shown_lag,
    )
    w.mem = replace(w.mem, last_recovery_replica=r.id, last_recovery_seconds=ttr)


def _storm(w: _Work) -> None:
    storm = _storm_now(w)
    if storm and not w.mem.storm:
        ids = [rid for rid, rm in w.reps.items() if rm.severity is Severity.CRITICAL]
        w.note(EventType.WARNING, EventReason.STORM,
               f"{len(ids)} replicas lag at once ({', '.join(ids)}; stormReplicas "
               f"{w.spec.detection.storm_replicas}): throttling and escalating, "
               "no per-replica syncs", None)
        w.mem = replace(w.mem, storm=True)
    elif not storm and w.mem.storm:
        w.mem = replace(w.mem, storm=False)
