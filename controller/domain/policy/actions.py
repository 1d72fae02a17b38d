"""One home per action kind: its deadline, how its intent is confirmed from
metrics, and what a failure or timeout undoes.

Each kind's rules sit together in one class; `rules_for` is the one table,
an exhaustive `match` so mypy flags a kind added to `ActionKind` without rules.
Where each kind is proposed: breaker reset and forced sync by their ladder
steps (steps/), the rate limit by throttle.py, the rebuild mark by
steps/rebuild.py. How the adapter performs it: `Reconciler._perform`
(controller/reconcile.py), a `match` on the same enum.
"""

from __future__ import annotations

from dataclasses import replace
from typing import assert_never

from controller.domain.conditions import EventType
from controller.domain.memory import ActionKind, Intent, ReplicaMemory, ThrottleMemory
from controller.domain.observation import UNKNOWN, Observation
from controller.domain.spec import ReplicaSpec, Spec


def quick_call_deadline(spec: Spec, now: float) -> float:
    """Deadline for an idempotent call's outcome (rate limit, rebuild mark)."""
    return now + max(3 * spec.detection.poll_interval_seconds, 30.0)


class ActionRules:
    """What one action kind means to the policy; the defaults suit a replica action
    that metrics cannot confirm and whose failure counts as a failed attempt."""

    kind: ActionKind
    event_type = EventType.NORMAL

    def deadline(self, spec: Spec, now: float) -> float:
        """When an intent without an outcome counts as a failed attempt."""
        return quick_call_deadline(spec, now)

    def agent_of(self, replica: ReplicaSpec | None) -> str | None:
        """The agent id the admin call names, if any."""
        return None

    def confirmed(self, intent: Intent, observation: Observation) -> bool:
        """Whether the metrics already show the action took effect."""
        return False

    def on_confirmed(self, remembered: ReplicaMemory) -> ReplicaMemory:
        """What the replica's memory learns from a confirmation."""
        return remembered

    def settle_throttle(self, throttle: ThrottleMemory, intent: Intent) -> ThrottleMemory:
        """The throttle after this action succeeded (default: unchanged)."""
        return throttle

    def on_failed(
        self, throttle: ThrottleMemory, remembered: ReplicaMemory | None, *, timed_out: bool
    ) -> tuple[ThrottleMemory, ReplicaMemory | None]:
        """What a failed (or timed-out) call undoes or marks for a retry."""
        if remembered is None:
            return throttle, None
        return throttle, replace(remembered, last_failed_kind=self.kind.value)


class ResetBreakerRules(ActionRules):
    """Reset the replica's tripped circuit breaker; confirmed when the tripped list no
    longer names its agent."""

    kind = ActionKind.RESET_BREAKER

    def deadline(self, spec: Spec, now: float) -> float:
        return now + spec.remediation.breaker_reset.timeout_seconds

    def agent_of(self, replica: ReplicaSpec | None) -> str | None:
        return replica.agent_id if replica else None

    def confirmed(self, intent: Intent, observation: Observation) -> bool:
        """From the tripped list when it was read, else from the primary's own
        breaker gauge for the replica (so the list need not be read every poll)."""
        tripped = observation.tripped_agents
        if isinstance(tripped, frozenset):
            return intent.agent_id not in tripped
        seen = observation.replica(intent.replica_id) if intent.replica_id else None
        return seen is not None and seen.breaker_tripped is False


class ForceSyncRules(ActionRules):
    """Force a Merkle sync of the replica; confirmed when its sync is seen running."""

    kind = ActionKind.FORCE_SYNC

    def deadline(self, spec: Spec, now: float) -> float:
        return now + spec.remediation.merkle_sync.timeout_seconds

    def confirmed(self, intent: Intent, observation: Observation) -> bool:
        if intent.replica_id is None:
            return False
        seen = observation.replica(intent.replica_id)
        return seen is not None and seen.sync_running is True

    def on_confirmed(self, remembered: ReplicaMemory) -> ReplicaMemory:
        return replace(remembered, sync_seen_running=True)


class SetRateLimitRules(ActionRules):
    """Set (or remove) the cluster's ingestion limit; confirmed when the limit read
    back equals it. A failure leaves the limit to be issued again."""

    kind = ActionKind.SET_RATE_LIMIT

    def confirmed(self, intent: Intent, observation: Observation) -> bool:
        return observation.rate_limit is not UNKNOWN and observation.rate_limit == intent.rate

    def settle_throttle(self, throttle: ThrottleMemory, intent: Intent) -> ThrottleMemory:
        """The restore of the rate before the episode succeeded: the throttle ends."""
        if throttle.final_restore and intent.rate == throttle.current_rate:
            return ThrottleMemory()
        return throttle

    def on_failed(
        self, throttle: ThrottleMemory, remembered: ReplicaMemory | None, *, timed_out: bool
    ) -> tuple[ThrottleMemory, ReplicaMemory | None]:
        return replace(throttle, reissue=True if timed_out else throttle.active), remembered


class MarkRebuildRules(ActionRules):
    """Mark the replica for rebuild (status, and its Pod's annotation); never seen in
    metrics, so it is settled only by the call's outcome. A failure unmarks."""

    kind = ActionKind.MARK_REBUILD
    event_type = EventType.WARNING

    def on_failed(
        self, throttle: ThrottleMemory, remembered: ReplicaMemory | None, *, timed_out: bool
    ) -> tuple[ThrottleMemory, ReplicaMemory | None]:
        return throttle, replace(remembered, rebuild_marked=False) if remembered else None


_RESET_BREAKER = ResetBreakerRules()
_FORCE_SYNC = ForceSyncRules()
_SET_RATE_LIMIT = SetRateLimitRules()
_MARK_REBUILD = MarkRebuildRules()


def rules_for(kind: ActionKind) -> ActionRules:
    """The rules of one action kind (exhaustive: a new kind fails type checking here)."""
    match kind:
        case ActionKind.RESET_BREAKER:
            return _RESET_BREAKER
        case ActionKind.FORCE_SYNC:
            return _FORCE_SYNC
        case ActionKind.SET_RATE_LIMIT:
            return _SET_RATE_LIMIT
        case ActionKind.MARK_REBUILD:
            return _MARK_REBUILD
        case _:  # pragma: no cover - mypy proves this unreachable
            assert_never(kind)
