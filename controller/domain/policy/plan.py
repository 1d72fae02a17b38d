"""The decision's output: a Plan of actions, events, conditions and escalation."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from controller.domain.conditions import Condition, EventReason, EventType, Reason
from controller.domain.memory import ActionKind, Memory


class Outcome(enum.StrEnum):
    """How a history entry ended (status.history[].outcome)."""

    PENDING = "Pending"
    OK = "Ok"
    FAILED = "Failed"
    WOULD_DO = "WouldDo"
    SKIPPED = "Skipped"
    TIMED_OUT = "TimedOut"
    NOTE = "Note"


@dataclass(frozen=True, slots=True)
class Action:
    """An admin (or Pod) call the handler performs after writing its intent."""

    kind: ActionKind
    idempotency_key: str
    reason: EventReason
    message: str
    replica_id: str | None = None
    agent_id: str | None = None
    # SET_RATE_LIMIT: assertions per second; None means "remove the limit" (unlimited).
    rate: int | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A Kubernetes Event the handler posts."""

    type: EventType
    reason: EventReason
    message: str


@dataclass(frozen=True, slots=True)
class Escalation:
    """Whom to call and why; level 0 means nobody."""

    level: int  # 0 none, 1 cluster SRE, 2 distributed-systems engineer, 3 principal engineer
    reason: Reason
    contact: str
    message: str


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """How a performed action went, reported back with `record_outcome`."""

    ok: bool
    detail: str = ""
    # False when the call cannot have changed anything (refused before it was sent,
    # or answered with an error): such an attempt costs no operator-wide budget.
    may_have_applied: bool = True
    # Requests that reached StemeDB for this action: more than one when a refused token
    # was rotated and the call sent again. Each counts against maxActionsPerHour.
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class Plan:
    """One poll's decision: write `memory` (the intents) first, then perform `actions`."""

    actions: tuple[Action, ...]
    memory: Memory
    conditions: tuple[Condition, ...]
    events: tuple[EventRecord, ...]
    requeue_after: float
    escalation: Escalation
    metrics_available: bool
    # Actions held by a gate, for metrics: (action kind, or None when the ladder did not
    # run because remediation is paused or observing; the gate's reason).
    suppressed: tuple[tuple[ActionKind | None, Reason], ...] = ()
    # A decision needs the tripped-breakers list, which the observation did not carry:
    # read it and decide again (this plan is then discarded, nothing of it is done).
    wants_tripped_breakers: bool = False
