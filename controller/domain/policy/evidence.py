"""What to fetch beyond the primary scrape."""

from __future__ import annotations

from controller.domain.memory import (
    ActionKind,
    Memory,
    ReplicaMemory,
    Severity,
    Step,
)
from controller.domain.observation import (
    Evidence,
    Observation,
)
from controller.domain.spec import Spec


def evidence_needed(spec: Spec, memory: Memory, primary_only_observation: Observation) -> Evidence:
    """What to fetch beyond the primary scrape. At steady state: nothing.

    - the tripped-breakers list when a replica is (or this poll becomes) critical and
      its ladder has not gone past the breaker step (or a reset awaits confirmation);
    - a replica's own /metrics while it is above the warning threshold or in an episode:
      only how it answers is read (a metricsUrl that resolves to a denied address stops
      the poll with DestinationDenied); the ladder's evidence (sync state, restarts,
      corruption) comes from the primary's scrape. See docs/remediation-policy.md.
    """
    obs = primary_only_observation
    breakers = False
    replicas: set[str] = set()
    for r in spec.replicas:
        rm = memory.replica(r.id) or ReplicaMemory(r.id)
        ro = obs.replica(r.id)
        lag = ro.lag_seconds if ro else None
        above_warning = lag is not None and lag > spec.detection.warning.lag_seconds
        in_episode = rm.severity is not Severity.NONE or rm.step is not Step.NONE
        if above_warning or in_episode or rm.corrupted_at is not None:
            replicas.add(r.id)
        if _critical_due(spec, rm, lag, obs.at) and rm.step in (Step.NONE, Step.RESET_BREAKER):
            breakers = True
    if any(i.kind is ActionKind.RESET_BREAKER for i in memory.pending):
        breakers = True
    return Evidence(fetch_tripped_breakers=breakers, replica_metrics=frozenset(replicas))


def _critical_due(spec: Spec, rm: ReplicaMemory, lag: float | None, now: float) -> bool:
    """Whether `decide` will find the replica critical this poll, so the breaker
    step may run: already critical, over the escalation lag, or above critical
    for `critical.forSeconds` by now. A mere warning, or a critical crossing still
    inside its window, needs no admin read (issue 14, item 6)."""
    d = spec.detection
    if rm.severity is Severity.CRITICAL:
        return True
    if lag is None or not lag > d.critical.lag_seconds:
        return False
    if lag > d.escalation_lag_seconds:
        return True
    since = rm.above_critical_since if rm.above_critical_since is not None else now
    return now - since >= d.critical.for_seconds
