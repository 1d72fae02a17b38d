"""Detection: whether the metrics can be trusted, each replica's severity with its
`for` windows and hysteresis, Merkle corruption, recovery, and storms."""

from __future__ import annotations

import math
from dataclasses import replace

from controller.domain.conditions import EventReason, EventType, Reason
from controller.domain.memory import ReplicaMemory, Severity, Step
from controller.domain.observation import Observation, ReplicaObservation, SourceState
from controller.domain.policy.text import number_text
from controller.domain.policy.work import Work
from controller.domain.spec import ReplicaSpec, Spec


def quantize_lag(previous: float | None, lag: float, state_changed: bool) -> float:
    """The lag shown in status: refreshed on a state change, or when it moved by
    at least max(2 s, 25 % of the shown value); rounded to 0.1 s."""
    if previous is None or state_changed:
        return round(lag, 1)
    if abs(lag - previous) >= max(2.0, 0.25 * previous):
        return round(lag, 1)
    return previous


def is_in_sync(spec: Spec, replica: ReplicaMemory, lag: float | None) -> bool:
    """Counts towards minInSyncReplicas: lag known, below warning, not marked for rebuild."""
    return (
        lag is not None
        and lag < spec.detection.warning.lag_seconds
        and not replica.rebuild_marked
        and replica.severity is Severity.NONE
    )


def is_draining(spec: Spec, baseline: float | None, lag: float) -> bool:
    """Lag fell by at least drainFraction since `baseline` was taken: a step is working."""
    if baseline is None or baseline <= 0:
        return False
    return lag <= baseline * (1.0 - spec.remediation.drain_fraction)


def metrics_problem(
    observation: Observation, spec: Spec, now: float
) -> tuple[Reason, str] | None:
    """Why the lag cannot be trusted this poll (then nothing is acted on), or None."""
    if observation.primary.state is SourceState.DENIED:
        return Reason.DESTINATION_DENIED, (
            f"{observation.primary.detail or 'the primary URL is denied'}; the operator "
            "sends nothing to a destination its policy denies (docs/security.md)"
        )
    if observation.primary.state is SourceState.FAILED:
        return Reason.PRIMARY_SCRAPE_FAILED, (
            f"The primary's /metrics could not be read "
            f"({observation.primary.detail or 'no detail'}); no action is taken on missing data"
        )
    age = now - observation.at
    if age > spec.detection.stale_after_seconds:
        return Reason.OBSERVATION_STALE, (
            f"The observation is {number_text(age)} s old, more than staleAfterSeconds "
            f"{number_text(spec.detection.stale_after_seconds)}; no action is taken on "
            "stale data"
        )
    missing = [r.id for r in spec.replicas
               if (seen := observation.replica(r.id)) is None or seen.lag_seconds is None
               or not math.isfinite(seen.lag_seconds)]
    if missing:
        return Reason.REPLICA_LAG_MISSING, (
            f"No lag series for {len(missing)} of {len(spec.replicas)} replicas "
            f"({', '.join(missing)}); no action is taken on missing data"
        )
    return _incomplete(observation, spec)


def _incomplete(observation: Observation, spec: Spec) -> tuple[Reason, str] | None:
    """A series the decisions need is missing for some replica: the body was cut
    short (a cut at a line boundary parses) or this StemeDB lacks it. Acting on the
    rest would take a missing sync or breaker series for "none" (issue 14, item 9)."""
    lacking: dict[str, list[str]] = {}
    for r in spec.replicas:
        seen = observation.replica(r.id)
        for name in seen.missing_series if seen is not None else ():
            lacking.setdefault(name, []).append(r.id)
    if not lacking:
        return None
    shown = sorted(lacking.items())
    listed = "; ".join(f"{name} for {', '.join(ids)}" for name, ids in shown[:3])
    more = f"; and {len(shown) - 3} more series" if len(shown) > 3 else ""
    return Reason.PRIMARY_METRICS_INCOMPLETE, (
        f"The primary's /metrics has no {listed}{more} (a body cut short, or a StemeDB "
        "without them); no action is taken on partial data"
    )


def storm_now(work: Work) -> bool:
    """At least stormReplicas replicas are critical at once."""
    return len(work.critical_ids()) >= work.spec.detection.storm_replicas


def _since(started: float | None, now: float, above: bool) -> float | None:
    """When a threshold crossing began: kept while it holds, None once it does not."""
    if not above:
        return None
    return started if started is not None else now


def detect(work: Work, replica: ReplicaSpec, seen: ReplicaObservation, lag: float) -> None:
    """Update one replica's windows, corruption and severity from this poll's lag."""
    windows = work.spec.detection
    now = work.now
    remembered = work.replicas[replica.id]
    previous = remembered.severity
    above_warning = _since(remembered.above_warning_since, now, lag > windows.warning.lag_seconds)
    above_critical = _since(remembered.above_critical_since, now,
                            lag > windows.critical.lag_seconds)
    below_recovery = _since(remembered.below_recovery_since, now,
                            lag < windows.recovery.lag_seconds)
    remembered = work.update_replica(replica.id, above_warning_since=above_warning,
                                     above_critical_since=above_critical,
                                     below_recovery_since=below_recovery)
    remembered = _detect_corruption(work, replica, seen, below_recovery)

    severity = remembered.severity
    if lag > windows.escalation_lag_seconds and not remembered.lag_escalated:
        remembered = work.update_replica(replica.id, lag_escalated=True)
        severity = Severity.CRITICAL
    if above_critical is not None and now - above_critical >= windows.critical.for_seconds:
        severity = Severity.CRITICAL
    elif (severity is Severity.NONE and above_warning is not None
          and now - above_warning >= windows.warning.for_seconds):
        severity = Severity.WARNING
    if (severity is not Severity.NONE and below_recovery is not None
            and now - below_recovery >= windows.recovery.for_seconds):
        severity = Severity.NONE

    if severity is not previous:
        if previous is Severity.NONE:
            starts = [t for t in (above_warning, above_critical) if t is not None]
            remembered = work.update_replica(replica.id,
                                             episode_started_at=min(starts) if starts else now)
        _report_severity(work, replica, severity, lag)
        remembered = work.update_replica(replica.id, severity=severity)
    work.update_replica(replica.id, shown_lag=quantize_lag(remembered.shown_lag, lag,
                                                           severity is not previous))


def _detect_corruption(
    work: Work, replica: ReplicaSpec, seen: ReplicaObservation, below_recovery: float | None
) -> ReplicaMemory:
    """Any increase of the corruption counter (a first sight above 0 counts) holds the
    replica's steps until lag stays below recovery for recovery.forSeconds."""
    remembered = work.replicas[replica.id]
    counter = seen.sync_corruption_total
    if counter is not None:
        before = remembered.corruption_seen if remembered.corruption_seen is not None else 0.0
        if counter > before:
            first = remembered.corrupted_at is None
            remembered = work.update_replica(replica.id, corruption_seen=counter,
                                             corrupted_at=work.now)
            if first:
                work.note(EventType.WARNING, EventReason.CORRUPTION,
                          f"{replica.id}: Merkle sync reported corruption (counter "
                          f"{number_text(counter)}, was {number_text(before)}); automated "
                          f"steps on {replica.id} are held, escalating to "
                          f"{work.spec.escalation.principal_engineer}", replica.id)
        elif counter < before:  # counter reset (process restart)
            remembered = work.update_replica(replica.id, corruption_seen=counter)
    if (remembered.corrupted_at is not None and below_recovery is not None
            and work.now - max(below_recovery, remembered.corrupted_at)
            >= work.spec.detection.recovery.for_seconds):
        remembered = work.update_replica(replica.id, corrupted_at=None)
    return remembered


def _report_severity(work: Work, replica: ReplicaSpec, severity: Severity, lag: float) -> None:
    """The Event for a severity change; a return to NONE closes the episode."""
    windows = work.spec.detection
    if severity is Severity.WARNING:
        work.note(EventType.WARNING, EventReason.LAG_WARNING,
                  f"{replica.id} lag {number_text(lag)} s above warning "
                  f"{number_text(windows.warning.lag_seconds)} s for "
                  f"{number_text(windows.warning.for_seconds)} s", replica.id)
    elif severity is Severity.CRITICAL:
        work.note(EventType.WARNING, EventReason.LAG_CRITICAL,
                  f"{replica.id} lag {number_text(lag)} s above critical "
                  f"{number_text(windows.critical.lag_seconds)} s"
                  + (f" (over escalation {number_text(windows.escalation_lag_seconds)} s)"
                     if lag > windows.escalation_lag_seconds
                     else f" for {number_text(windows.critical.for_seconds)} s"), replica.id)
    else:
        _recover(work, replica, lag)


def _recover(work: Work, replica: ReplicaSpec, lag: float) -> None:
    """Close the episode: report the time to recover, start the cooldown if a step ran."""
    remembered = work.replicas[replica.id]
    start = remembered.episode_started_at if remembered.episode_started_at is not None else work.now
    time_to_recover = work.now - start
    acted = remembered.step is not Step.NONE
    recovery = work.spec.detection.recovery
    work.note(EventType.NORMAL, EventReason.RECOVERED,
              f"{replica.id} recovered: lag {number_text(lag)} s below "
              f"{number_text(recovery.lag_seconds)} s for {number_text(recovery.for_seconds)}"
              f" s; time to recover {number_text(time_to_recover)} s", replica.id)
    work.replicas[replica.id] = ReplicaMemory(
        replica.id,
        below_recovery_since=remembered.below_recovery_since,
        corruption_seen=remembered.corruption_seen,
        corrupted_at=remembered.corrupted_at,
        cooldown_until=(work.now + work.spec.remediation.cooldown_seconds) if acted
        else remembered.cooldown_until,
        last_action=remembered.last_action,
        shown_lag=remembered.shown_lag,
    )
    work.memory = replace(work.memory, last_recovery_replica=replica.id,
                          last_recovery_seconds=time_to_recover)


def detect_storm(work: Work) -> None:
    """Enter or leave the storm state; entering it is reported once."""
    storm = storm_now(work)
    if storm and not work.memory.storm:
        ids = work.critical_ids()
        work.note(EventType.WARNING, EventReason.STORM,
                  f"{len(ids)} replicas lag at once ({', '.join(ids)}; stormReplicas "
                  f"{work.spec.detection.storm_replicas}): throttling and escalating, "
                  "no per-replica syncs", None)
        work.memory = replace(work.memory, storm=True)
    elif not storm and work.memory.storm:
        work.memory = replace(work.memory, storm=False)
