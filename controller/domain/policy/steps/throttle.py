"""Step 2: lower the cluster's ingestion limit one ladder rate at a time."""

from __future__ import annotations

from controller.domain.conditions import EventReason, EventType, Reason
from controller.domain.memory import ActionKind, ReplicaMemory, Step
from controller.domain.policy.plan import Outcome
from controller.domain.policy.steps.base import LadderStep, Progress, StepContext
from controller.domain.policy.text import number_text, rate_text
from controller.domain.policy.throttle import Lowered, backpressure, lower_once, reissue_rate
from controller.domain.policy.work import Work
from controller.domain.spec import Spec


class Throttle(LadderStep):
    """Lower the limit stepIntervalSeconds apart (cluster-wide) while lag does not drain;
    at the lowest ladder rate: next step. The rate machinery is in policy/throttle.py."""

    step = Step.THROTTLE
    action = ActionKind.SET_RATE_LIMIT
    title = "throttling"
    working_title = "throttling"
    reason = Reason.THROTTLING
    notice_key = "throttle"

    def enabled(self, spec: Spec) -> bool:
        return spec.remediation.throttle.enabled

    def prepare(self, ctx: StepContext) -> None:
        reissue_rate(ctx.work)

    def attempt_wait(self, ctx: StepContext) -> float | None:
        if ctx.remembered.step_attempts > 0:
            return ctx.work.spec.remediation.throttle.step_interval_seconds
        return None

    def held(self, ctx: StepContext) -> bool:
        """Steps are stepIntervalSeconds apart cluster-wide, whichever replica took them."""
        step_at = ctx.work.throttle.step_at
        interval = ctx.work.spec.remediation.throttle.step_interval_seconds
        return step_at is not None and ctx.work.now - step_at < interval

    def act(self, ctx: StepContext) -> Progress:
        work = ctx.work
        attempts = ctx.remembered.step_attempts
        result = lower_once(work, f"{ctx.replica.id} lag {number_text(ctx.lag)} s", ctx.lag,
                            to_floor=backpressure(work, ctx.lag))
        match result:
            case Lowered.LOWERED:
                work.update_replica(ctx.replica.id, step_attempts=attempts + 1,
                                    step_started_at=work.now, step_baseline_lag=ctx.lag)
                return Progress.WAIT
            case Lowered.HELD:
                return Progress.WAIT
            case Lowered.AT_FLOOR:
                ctx.note(EventType.NORMAL, EventReason.THROTTLE_AT_FLOOR,
                         f"ingestion limit {rate_text(work.throttle.current_rate)} is the "
                         f"lowest step (floor "
                         f"{work.spec.remediation.throttle.floor_assertions_per_sec}/s) and lag "
                         f"is {number_text(ctx.lag)} s; next step", Outcome.SKIPPED)
                return Progress.NEXT

    def judged_after(self, spec: Spec) -> float | None:
        return spec.remediation.throttle.step_interval_seconds

    def detail(self, work: Work, remembered: ReplicaMemory) -> str:
        return f"limit {rate_text(work.throttle.current_rate)}"
