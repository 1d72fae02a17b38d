"""What every ladder step is, and the helpers the steps share.

A step is one object in `ladder.LADDER`. The ladder runs the shared preamble
(settled? disabled -> next step; waited? give time?) and then the step's `act`,
which proposes its action or hands over to the next step.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import ClassVar

from controller.domain.conditions import EventReason, EventType, Reason
from controller.domain.memory import ActionKind, ReplicaMemory, Step
from controller.domain.observation import ReplicaObservation
from controller.domain.policy.detection import is_draining
from controller.domain.policy.plan import Outcome
from controller.domain.policy.text import number_text
from controller.domain.policy.work import Work
from controller.domain.spec import ReplicaSpec, Spec


class Progress(enum.Enum):
    """What a step did this poll."""

    WAIT = "wait"  # acted, or waits for its effect: the ladder stops here this poll
    NEXT = "next"  # handed over: the ladder enters the next step and runs it now


@dataclass(frozen=True, slots=True)
class StepContext:
    """One replica's turn on the ladder in one poll."""

    work: Work
    replica: ReplicaSpec
    seen: ReplicaObservation | None  # this poll's observation of the replica
    lag: float
    lags: dict[str, float]  # every replica's lag (a rebuild counts the others in sync)

    @property
    def remembered(self) -> ReplicaMemory:
        """What the memory holds about this replica now (it changes as the step acts)."""
        return self.work.replicas[self.replica.id]

    def note(self, event_type: EventType, reason: EventReason, message: str,
             outcome: Outcome = Outcome.NOTE) -> None:
        """An Event and history entry about this replica; the message gets its id."""
        self.work.note(event_type, reason, f"{self.replica.id}: {message}", self.replica.id,
                       outcome)


class LadderStep(abc.ABC):
    """One rung of the runbook's ladder: when it applies, what it proposes, how the last
    attempt is judged, and what the Remediating condition says while it runs."""

    step: ClassVar[Step]  # its value in status.memory and its state in the diagram
    action: ClassVar[ActionKind]  # the action it proposes (rules in actions.py)
    title: ClassVar[str]  # "<title> is disabled in the spec"
    working_title: ClassVar[str]  # "<working title> is working ... giving it more time"
    reason: ClassVar[Reason]  # the Remediating condition's reason while on this step
    notice_key: ClassVar[str]  # prefix of the once-only notices it reports
    # Whether the step still runs while a storm holds the ladder. Only a step that is
    # cheap, targeted at one replica and safe on evidence (a breaker seen tripped) may:
    # a storm points at the primary or the network, so syncs and rebuilds would only
    # add load, but a tripped breaker stays tripped whatever else lags (issue 14, #3).
    runs_in_storm: ClassVar[bool] = False

    @abc.abstractmethod
    def enabled(self, spec: Spec) -> bool:
        """Whether the spec turns the step on; off, the ladder moves past it."""

    def settled(self, ctx: StepContext) -> bool:
        """Nothing is left to do on this step until the episode ends."""
        return False

    def prepare(self, ctx: StepContext) -> None:
        """Work done before the wait for the last attempt (default: none)."""
        return None

    def attempt_wait(self, ctx: StepContext) -> float | None:
        """Seconds the last attempt is given before it is judged, None when no attempt
        awaits judging (then `act` judges on its own)."""
        return None

    def held(self, ctx: StepContext) -> bool:
        """A hold beyond the attempt's own wait (default: none)."""
        return False

    @abc.abstractmethod
    def act(self, ctx: StepContext) -> Progress:
        """Propose the step's action, or hand over to the next step."""

    def judged_after(self, spec: Spec) -> float | None:
        """Seconds after an attempt at which it is judged (for status.nextStep); None
        when the step waits on something else (an approval, a limit)."""
        return None

    @abc.abstractmethod
    def detail(self, work: Work, remembered: ReplicaMemory) -> str:
        """How far the step has come, for the Remediating condition."""

    def remediating(self, work: Work, replica_id: str) -> tuple[Reason, str]:
        """The Remediating condition's reason and message while the replica is here."""
        remembered = work.replicas[replica_id]
        return self.reason, f"{replica_id}: {self.step.value}, {self.detail(work, remembered)}"


def attempts_text(made: int, allowed: int) -> str:
    """How far a step's attempts have come; no "attempt 0/N" for a step that has not
    acted yet (it reads like an attempt under way)."""
    return f"attempt {made}/{allowed}" if made else f"no attempt yet (up to {allowed})"


def enter(work: Work, replica_id: str, step: Step, lag: float) -> ReplicaMemory:
    """Put the replica on `step`, its wait starting now from this lag."""
    return work.update_replica(replica_id, step=step, step_started_at=work.now,
                               step_baseline_lag=lag, step_attempts=0, last_failed_kind=None)


def waited(work: Work, remembered: ReplicaMemory, seconds: float) -> bool:
    """The step has run for `seconds` since it began or last acted."""
    return remembered.step_started_at is None or work.now - remembered.step_started_at >= seconds


def give_time(ctx: StepContext, working_title: str) -> bool:
    """If lag is draining since the step began, give the step more time (True)."""
    remembered = ctx.remembered
    if is_draining(ctx.work.spec, remembered.step_baseline_lag, ctx.lag):
        ctx.note(EventType.NORMAL, EventReason.STEP_WORKING,
                 f"{working_title} is working, lag {number_text(remembered.step_baseline_lag)} s"
                 f" -> {number_text(ctx.lag)} s; giving it more time")
        ctx.work.update_replica(ctx.replica.id, step_started_at=ctx.work.now,
                                step_baseline_lag=ctx.lag)
        return True
    return False
