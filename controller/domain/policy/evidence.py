"""What to fetch beyond the primary scrape: at steady state, nothing."""

from __future__ import annotations

from controller.domain.memory import ActionKind, Memory, ReplicaMemory, Severity, Step
from controller.domain.observation import Evidence, Observation
from controller.domain.policy.ladder import not_past
from controller.domain.spec import Spec


def evidence_needed(spec: Spec, memory: Memory, primary_only_observation: Observation) -> Evidence:
    """What to fetch beyond the primary scrape. At steady state: nothing.

    - the tripped-breakers list when a replica is (or this poll becomes) critical and
      its ladder has not gone past the breaker step, or a reset awaits confirmation
      and the primary reports no breaker gauge for the replica to confirm it from;
    - a replica's own /metrics while it is above the warning threshold or in an episode:
      only how it answers is read (a metricsUrl that resolves to a denied address stops
      the poll with DestinationDenied); the ladder's evidence (sync state, restarts,
      corruption) comes from the primary's scrape. See docs/remediation-policy.md.
    """
    observation = primary_only_observation
    breakers = False
    replicas: set[str] = set()
    for replica in spec.replicas:
        remembered = memory.replica(replica.id) or ReplicaMemory(replica.id)
        seen = observation.replica(replica.id)
        lag = seen.lag_seconds if seen else None
        above_warning = lag is not None and lag > spec.detection.warning.lag_seconds
        in_episode = remembered.severity is not Severity.NONE or remembered.step is not Step.NONE
        if above_warning or in_episode or remembered.corrupted_at is not None:
            replicas.add(replica.id)
        if (critical_due(spec, remembered, lag, observation.at)
                and not_past(remembered.step, Step.RESET_BREAKER)):
            breakers = True
    for intent in memory.pending:
        if intent.kind is not ActionKind.RESET_BREAKER:
            continue
        seen = observation.replica(intent.replica_id) if intent.replica_id else None
        if seen is None or seen.breaker_tripped is None:
            breakers = True  # no gauge to confirm the reset from: read the list
    return Evidence(fetch_tripped_breakers=breakers, replica_metrics=frozenset(replicas))


def critical_due(spec: Spec, replica: ReplicaMemory, lag: float | None, now: float) -> bool:
    """Whether `decide` will find the replica critical this poll, so the breaker
    step may run: already critical, over the escalation lag, or above critical
    for `critical.forSeconds` by now. A mere warning, or a critical crossing still
    inside its window, needs no admin read (issue 14, item 6)."""
    windows = spec.detection
    if replica.severity is Severity.CRITICAL:
        return True
    if lag is None or not lag > windows.critical.lag_seconds:
        return False
    if lag > windows.escalation_lag_seconds:
        return True
    since = replica.above_critical_since if replica.above_critical_since is not None else now
    return now - since >= windows.critical.for_seconds
