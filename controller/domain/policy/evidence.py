"""What to fetch beyond the primary scrape: at steady state, nothing."""

from __future__ import annotations

from controller.domain.memory import Memory, ReplicaMemory, Severity, Step
from controller.domain.observation import Evidence, Observation
from controller.domain.spec import Spec


def evidence_needed(spec: Spec, memory: Memory, primary_only_observation: Observation) -> Evidence:
    """What to fetch beyond the primary scrape. At steady state: nothing.

    A replica's own /metrics while it is above the warning threshold or in an episode:
    only how it answers is read (a metricsUrl that resolves to a denied address stops
    the poll with DestinationDenied); the ladder's evidence (sync state, restarts,
    corruption, the breaker gauge) comes from the primary's scrape.

    The tripped-breakers list is not decided here: the breaker step asks for it
    (`Plan.wants_tripped_breakers`) in the poll it chooses what to reset, so the
    two cannot disagree (issue 14, items 4 and 6: a copy of the step's rules here read
    it every poll while the step waited). See docs/remediation-policy.md.
    """
    observation = primary_only_observation
    replicas: set[str] = set()
    for replica in spec.replicas:
        remembered = memory.replica(replica.id) or ReplicaMemory(replica.id)
        seen = observation.replica(replica.id)
        lag = seen.lag_seconds if seen else None
        above_warning = lag is not None and lag > spec.detection.warning.lag_seconds
        in_episode = remembered.severity is not Severity.NONE or remembered.step is not Step.NONE
        if above_warning or in_episode or remembered.corrupted_at is not None:
            replicas.add(replica.id)
    return Evidence(replica_metrics=frozenset(replicas))
