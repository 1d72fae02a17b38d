"""The mutable scratch state of one decide() call, and how it proposes an action."""

from __future__ import annotations

from dataclasses import replace

from controller.domain.conditions import (
    EventReason,
    EventType,
    Reason,
)
from controller.domain.memory import (
    ActionKind,
    HistoryEntry,
    Intent,
    Memory,
    ReplicaMemory,
)
from controller.domain.observation import (
    Observation,
)
from controller.domain.policy.plan import Action, EventRecord, Outcome
from controller.domain.spec import Mode, ReplicaSpec, Spec

HOUR = 3600.0


MIN_REQUEUE = 1.0


def _draining(spec: Spec, baseline: float | None, lag: float) -> bool:
    if baseline is None or baseline <= 0:
        return False
    return lag <= baseline * (1.0 - spec.remediation.drain_fraction)


def _short_deadline(w: _Work) -> float:
    """Deadline for an idempotent call's outcome (rate limit, rebuild mark)."""
    return w.now + max(3 * w.spec.detection.poll_interval_seconds, 30.0)


class _Work:
    """Mutable scratch state for one decide() call."""

    def __init__(
        self, obs: Observation, spec: Spec, memory: Memory, now: float, budget: int
    ) -> None:
        self.obs = obs
        self.spec = spec
        self.now = now
        self.mem = memory
        self.operator_budget = budget
        self.actions: list[Action] = []
        self.events: list[EventRecord] = []
        self.history: list[HistoryEntry] = []
        self.seq = memory.seq
        self.pending = list(memory.pending)
        self.action_times = [t for t in memory.action_times if now - t < HOUR]
        self.throttle = memory.throttle
        self.reps: dict[str, ReplicaMemory] = {}
        for r in spec.replicas:
            self.reps[r.id] = memory.replica(r.id) or ReplicaMemory(r.id)
        self.mode = spec.remediation.mode
        self.paused = spec.remediation.paused
        self.acting = self.mode is Mode.AUTO and not self.paused
        self.dry_run = self.mode is Mode.DRY_RUN and not self.paused
        self.budget_block: Reason | None = None
        self.cluster_notice = memory.last_notice
        self.suppressed: list[tuple[ActionKind | None, Reason]] = []

    # events / history -------------------------------------------------------
    def event(self, etype: EventType, reason: EventReason, message: str) -> None:
        self.events.append(EventRecord(etype, reason, message))

    def note(
        self, etype: EventType, reason: EventReason, message: str, replica: str | None,
        outcome: Outcome = Outcome.NOTE, kind: str | None = None,
    ) -> None:
        self.event(etype, reason, message)
        self.history.append(
            HistoryEntry(self.now, kind or reason.value, replica, reason.value, message,
                         outcome.value)
        )

    def notice(
        self, replica: str, key: str, reason: EventReason, message: str,
        etype: EventType = EventType.NORMAL,
    ) -> None:
        """A skip / hold explanation, reported once per distinct key."""
        rm = self.reps[replica]
        if rm.last_notice == key:
            return
        self.reps[replica] = replace(rm, last_notice=key)
        self.note(etype, reason, message, replica, Outcome.SKIPPED)

    def upd(self, replica: str, **changes: object) -> ReplicaMemory:
        rm = replace(self.reps[replica], **changes)  # type: ignore[arg-type]
        self.reps[replica] = rm
        return rm

    def pending_for(self, kind: ActionKind | None, replica: str | None) -> Intent | None:
        for i in self.pending:
            if (kind is None or i.kind is kind) and i.replica_id == replica:
                return i
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
        deadline: float,
    ) -> bool:
        """Try to take an action. Returns True if it is taken (or, in DryRun, would be),
        in which case the caller advances the ladder; False if a safety gate held it."""
        rid = replica.id if replica else None
        if rid is not None and rid == self.spec.primary.id:  # pragma: no cover - spec forbids
            return False
        if self.dry_run:
            self.suppressed.append((kind, Reason.DRY_RUN_MODE))
            msg = f"would {message[0].lower()}{message[1:]}"
            self.note(EventType.NORMAL, EventReason.WOULD_ACT, msg, rid, Outcome.WOULD_DO,
                      kind.value)
            if rid is not None:
                self.upd(rid, last_action=kind.value, last_notice=None)
            return True
        if not self.acting:
            self.suppressed.append(
                (kind, Reason.PAUSED if self.paused else Reason.OBSERVE_MODE))
            return False
        cluster_left = self.spec.remediation.max_actions_per_hour - len(self.action_times)
        block: Reason | None = None
        if cluster_left <= 0:
            block = Reason.CLUSTER_BUDGET_EXHAUSTED
            why = (f"{len(self.action_times)} actions in the last hour reached "
                   f"maxActionsPerHour {self.spec.remediation.max_actions_per_hour}")
        elif self.operator_budget <= 0:
            block = Reason.OPERATOR_BUDGET_EXHAUSTED
            why = "the operator-wide action budget is used up"
        if block is not None:
            self.budget_block = block
            self.suppressed.append((kind, block))
            text = f"Skipped {kind.value}{' on ' + rid if rid else ''}: {why}"
            if rid is not None:
                self.notice(rid, f"budget:{kind.value}", EventReason.ACTION_SKIPPED, text,
                            EventType.WARNING)
            elif self.cluster_notice != f"budget:{kind.value}":
                self.cluster_notice = f"budget:{kind.value}"
                self.note(EventType.WARNING, EventReason.ACTION_SKIPPED, text, None,
                          Outcome.SKIPPED)
            return False
        self.seq += 1
        key = f"{kind.value}-{rid or 'cluster'}-{self.seq}"
        agent = replica.agent_id if (replica and kind is ActionKind.RESET_BREAKER) else None
        self.actions.append(Action(kind, key, reason, message, rid, agent, rate))
        self.pending.append(Intent(key, kind, rid, agent, rate, self.now, deadline))
        self.action_times.append(self.now)
        self.operator_budget -= 1
        etype = EventType.WARNING if kind is ActionKind.MARK_REBUILD else EventType.NORMAL
        self.event(etype, reason, message)
        self.history.append(
            HistoryEntry(self.now, kind.value, rid, reason.value, message,
                         Outcome.PENDING.value, key)
        )
        if rid is not None:
            self.upd(rid, last_action=kind.value, last_notice=None)
        return True
