"""Step 1: reset the replica's own circuit breaker, if it is tripped."""

from __future__ import annotations

from controller.domain.conditions import EventReason, EventType, Reason
from controller.domain.memory import ActionKind, ReplicaMemory, Step
from controller.domain.observation import NOT_READ
from controller.domain.policy.plan import Outcome
from controller.domain.policy.steps.base import (
    LadderStep,
    Progress,
    StepContext,
    attempts_text,
)
from controller.domain.policy.text import number_text
from controller.domain.policy.work import Work
from controller.domain.spec import Spec


class BreakerReset(LadderStep):
    """Reset breaker `agentId` while it is tripped, up to maxAttempts, timeoutSeconds
    apart; not tripped, unreadable or attempts used: next step."""

    step = Step.RESET_BREAKER
    action = ActionKind.RESET_BREAKER
    title = "breaker reset"
    working_title = "the breaker reset"
    reason = Reason.RESETTING_BREAKER
    notice_key = "breaker"
    runs_in_storm = True  # only ever resets a breaker the primary reports tripped

    def enabled(self, spec: Spec) -> bool:
        return spec.remediation.breaker_reset.enabled

    def attempt_wait(self, ctx: StepContext) -> float | None:
        remembered = ctx.remembered
        failed = remembered.last_failed_kind == ActionKind.RESET_BREAKER.value
        if remembered.step_attempts > 0 and not failed:
            return ctx.work.spec.remediation.breaker_reset.timeout_seconds
        return None

    def act(self, ctx: StepContext) -> Progress:
        settings = ctx.work.spec.remediation.breaker_reset
        remembered = ctx.remembered
        agent = ctx.replica.agent_id
        tripped = ctx.work.observation.tripped_agents
        if tripped is NOT_READ:
            # The only decision that reads the list (issue 14, item 6): ask for it, and
            # the poll is decided again with it. Nothing else in this pass is kept.
            ctx.work.wants_tripped_breakers = True
            return Progress.WAIT
        if tripped is None:
            ctx.note(EventType.NORMAL, EventReason.BREAKER_STATE_UNKNOWN,
                     "the tripped-breakers list could not be read; skipping the breaker step",
                     Outcome.SKIPPED)
            return Progress.NEXT
        if agent not in tripped:
            if remembered.step_attempts == 0:
                ctx.note(EventType.NORMAL, EventReason.BREAKER_NOT_TRIPPED,
                         f"breaker {agent} is not tripped ({len(tripped)} tripped); next step",
                         Outcome.SKIPPED)
            else:
                ctx.note(EventType.NORMAL, EventReason.STEP_TIMED_OUT,
                         f"lag {number_text(ctx.lag)} s not draining "
                         f"{number_text(settings.timeout_seconds)} s after the breaker reset; "
                         "next step")
            return Progress.NEXT
        if remembered.step_attempts >= settings.max_attempts:
            ctx.note(EventType.WARNING, EventReason.STEP_TIMED_OUT,
                     f"breaker {agent} still tripped after {remembered.step_attempts} resets "
                     f"(maxAttempts {settings.max_attempts}); next step")
            return Progress.NEXT
        message = (f"Reset circuit breaker {agent} of {ctx.replica.id} (lag "
                   f"{number_text(ctx.lag)} s, attempt {remembered.step_attempts + 1}/"
                   f"{settings.max_attempts})")
        if ctx.work.propose(self.action, EventReason.BREAKER_RESET, message,
                            replica=ctx.replica):
            ctx.work.update_replica(ctx.replica.id, step_attempts=remembered.step_attempts + 1,
                                    step_started_at=ctx.work.now, step_baseline_lag=ctx.lag,
                                    last_failed_kind=None)
        return Progress.WAIT

    def judged_after(self, spec: Spec) -> float | None:
        return spec.remediation.breaker_reset.timeout_seconds

    def detail(self, work: Work, remembered: ReplicaMemory) -> str:
        return attempts_text(remembered.step_attempts,
                             work.spec.remediation.breaker_reset.max_attempts)
