"""The mutable scratch state of one decide() call, and the gates every action passes.

`Work` collects what one poll decides (actions, Events, history, memory changes);
`Work.propose` is the one way to take an action: it applies the mode, the pause
and both action budgets, then records the intent before anything is performed.
"""

from __future__ import annotations

from dataclasses import replace

from controller.domain.backoff import Backoff
from controller.domain.conditions import EventReason, EventType, Reason
from controller.domain.memory import (
    ActionKind,
    HistoryEntry,
    Intent,
    Memory,
    ReplicaMemory,
    Severity,
)
from controller.domain.observation import Observation
from controller.domain.policy.actions import rules_for
from controller.domain.policy.plan import Action, EventRecord, Outcome
from controller.domain.policy.restore_reserve import restore_writes
from controller.domain.policy.text import clock_text
from controller.domain.spec import Mode, ReplicaSpec, Spec

HOUR = 3600.0
MIN_REQUEUE = 1.0


class Work:
    """Mutable scratch state for one decide() call."""

    def __init__(
        self, observation: Observation, spec: Spec, memory: Memory, now: float,
        operator_budget: int,
    ) -> None:
        self.observation = observation
        self.spec = spec
        self.now = now
        self.memory = memory
        self.operator_budget = operator_budget
        self.actions: list[Action] = []
        self.events: list[EventRecord] = []
        self.history: list[HistoryEntry] = []
        self.seq = memory.seq
        self.pending = list(memory.pending)
        self.action_times = [t for t in memory.action_times if now - t < HOUR]
        self.throttle = memory.throttle
        self.replicas: dict[str, ReplicaMemory] = {}
        for replica in spec.replicas:
            self.replicas[replica.id] = (memory.replica(replica.id)
                                         or ReplicaMemory(replica.id))
        mode = spec.remediation.mode
        self.paused = spec.remediation.paused
        self.acting = mode is Mode.AUTO and not self.paused
        self.dry_run = mode is Mode.DRY_RUN and not self.paused
        self.budget_block: Reason | None = None
        # The breaker step needs the tripped-breakers list, which this poll has not read.
        self.wants_tripped_breakers = False
        self.backoff_block: tuple[str, Backoff] | None = None  # (kind, its backoff)
        self.cluster_notice = memory.last_notice
        self.suppressed: list[tuple[ActionKind | None, Reason]] = []

    def lagging_ids(self) -> list[str]:
        """The replicas in an episode (warning or critical), in spec order."""
        return [rid for rid, remembered in self.replicas.items()
                if remembered.severity is not Severity.NONE]

    def critical_ids(self) -> list[str]:
        """The critical replicas, in spec order."""
        return [rid for rid, remembered in self.replicas.items()
                if remembered.severity is Severity.CRITICAL]

    # events / history -------------------------------------------------------
    def event(self, event_type: EventType, reason: EventReason, message: str) -> None:
        self.events.append(EventRecord(event_type, reason, message))

    def note(
        self, event_type: EventType, reason: EventReason, message: str, replica: str | None,
        outcome: Outcome = Outcome.NOTE, kind: str | None = None,
    ) -> None:
        """An Event and a history entry."""
        self.event(event_type, reason, message)
        self.history.append(
            HistoryEntry(self.now, kind or reason.value, replica, reason.value, message,
                         outcome.value)
        )

    def notice(
        self, replica: str, key: str, reason: EventReason, message: str,
        event_type: EventType = EventType.NORMAL,
    ) -> None:
        """A skip / hold explanation, reported once per distinct key."""
        remembered = self.replicas[replica]
        if remembered.last_notice == key:
            return
        self.replicas[replica] = replace(remembered, last_notice=key)
        self.note(event_type, reason, message, replica, Outcome.SKIPPED)

    def update_replica(self, replica: str, **changes: object) -> ReplicaMemory:
        """Change one replica's memory; returns the new memory."""
        updated = replace(self.replicas[replica], **changes)  # type: ignore[arg-type]
        self.replicas[replica] = updated
        return updated

    def pending_intent(self, kind: ActionKind | None, replica: str | None) -> Intent | None:
        """The intent of this kind (any kind when None) on this replica awaiting its outcome."""
        for intent in self.pending:
            if (kind is None or intent.kind is kind) and intent.replica_id == replica:
                return intent
        return None

    # actions ----------------------------------------------------------------
    def propose(
        self,
        kind: ActionKind,
        reason: EventReason,
        message: str,
        *,
        replica: ReplicaSpec | None = None,
        rate: int | None = None,
        undo: bool = False,
    ) -> bool:
        """Try to take an action. Returns True if it is taken (or, in DryRun, would be),
        in which case the caller advances the ladder; False if a safety gate held it.

        `undo`: the action lifts the operator's own throttle. No budget holds it (a
        throttle left in place for an hour is itself the harm the budgets exist to
        prevent); it still counts against them, and a failing API still backs it off."""
        replica_id = replica.id if replica else None
        if replica_id is not None and replica_id == self.spec.primary.id:  # pragma: no cover
            return False  # the spec forbids a replica with the primary's id
        if self.dry_run:
            self.suppressed.append((kind, Reason.DRY_RUN_MODE))
            would = f"would {message[0].lower()}{message[1:]}"
            self.note(EventType.NORMAL, EventReason.WOULD_ACT, would, replica_id,
                      Outcome.WOULD_DO, kind.value)
            if replica_id is not None:
                self.update_replica(replica_id, last_action=kind.value, last_notice=None)
            return True
        if not self.acting:
            self.suppressed.append(
                (kind, Reason.PAUSED if self.paused else Reason.OBSERVE_MODE))
            return False
        if self._held_by_backoff(kind, replica_id) or (
                not undo and self._held_by_budget(kind, replica_id, rate)):
            return False
        rules = rules_for(kind)
        self.seq += 1
        key = f"{kind.value}-{replica_id or 'cluster'}-{self.seq}"
        agent = rules.agent_of(replica)
        self.actions.append(Action(kind, key, reason, message, replica_id, agent, rate))
        self.pending.append(Intent(key, kind, replica_id, agent, rate, self.now,
                                   rules.deadline(self.spec, self.now)))
        self.action_times.append(self.now)
        self.operator_budget -= 1
        self.event(rules.event_type, reason, message)
        self.history.append(
            HistoryEntry(self.now, kind.value, replica_id, reason.value, message,
                         Outcome.PENDING.value, key)
        )
        if replica_id is not None:
            self.update_replica(replica_id, last_action=kind.value, last_notice=None)
        return True

    def _held_by_backoff(self, kind: ActionKind, replica_id: str | None) -> bool:
        """The admin API failed this kind's last attempts: wait for its backoff
        (reported once per kind and replica)."""
        backoff = next((b for b in self.memory.backoffs if b.kind == kind.value), None)
        if backoff is None or backoff.allows(self.now):
            return False
        self.backoff_block = (kind.value, backoff)
        self.suppressed.append((kind, Reason.ADMIN_API_BACKING_OFF))
        assert backoff.retry_at is not None
        text = (f"Holding {kind.value}{' on ' + replica_id if replica_id else ''}: it failed "
                f"{backoff.failures} time{'s' if backoff.failures != 1 else ''} in a row; "
                f"next attempt at {clock_text(backoff.retry_at)}")
        if replica_id is not None:
            self.notice(replica_id, f"backoff:{kind.value}:{backoff.failures}",
                        EventReason.ACTION_SKIPPED, text, EventType.WARNING)
        elif self.cluster_notice != f"backoff:{kind.value}:{backoff.failures}":
            self.cluster_notice = f"backoff:{kind.value}:{backoff.failures}"
            self.note(EventType.WARNING, EventReason.ACTION_SKIPPED, text, None,
                      Outcome.SKIPPED)
        return True

    def restore_reserve(self, kind: ActionKind | None = None, rate: int | None = None) -> int:
        """Writes kept for lifting the throttle after this action (restore_reserve.py):
        a throttle step's rate is the limit the restore will start from."""
        current = rate if kind is ActionKind.SET_RATE_LIMIT else self.throttle.current_rate
        return restore_writes(self.spec, self.throttle, current)

    def _held_by_budget(self, kind: ActionKind, replica_id: str | None,
                        rate: int | None = None) -> bool:
        """The cluster's maxActionsPerHour (with the writes kept for lifting the
        throttle) or the operator-wide budget holds the action (reported once per kind
        and replica)."""
        limit = self.spec.remediation.max_actions_per_hour
        reserve = self.restore_reserve(kind, rate)
        if limit - len(self.action_times) - reserve <= 0:
            block = Reason.CLUSTER_BUDGET_EXHAUSTED
            why = (f"{len(self.action_times)} actions in the last hour"
                   + (f" and {reserve} kept for lifting the throttle" if reserve else "")
                   + f" reached maxActionsPerHour {limit}")
        elif self.operator_budget <= 0:
            block = Reason.OPERATOR_BUDGET_EXHAUSTED
            why = "the operator-wide action budget is used up"
        else:
            return False
        self.budget_block = block
        self.suppressed.append((kind, block))
        text = f"Skipped {kind.value}{' on ' + replica_id if replica_id else ''}: {why}"
        if replica_id is not None:
            self.notice(replica_id, f"budget:{kind.value}", EventReason.ACTION_SKIPPED, text,
                        EventType.WARNING)
        elif self.cluster_notice != f"budget:{kind.value}":
            self.cluster_notice = f"budget:{kind.value}"
            self.note(EventType.WARNING, EventReason.ACTION_SKIPPED, text, None,
                      Outcome.SKIPPED)
        return True
