"""Step 3: force a Merkle sync of the replica, judged from its progress and errors."""

from __future__ import annotations

from controller.domain.conditions import EventReason, EventType, Reason
from controller.domain.memory import ActionKind, ReplicaMemory, Step
from controller.domain.policy.steps.base import (
    LadderStep,
    Progress,
    StepContext,
    attempts_text,
    give_time,
    waited,
)
from controller.domain.policy.text import number_text
from controller.domain.policy.work import Work
from controller.domain.spec import Spec


class ForcedSync(LadderStep):
    """Force a sync; an attempt fails when its call fails, sync errors rise, progress
    stalls, or lag does not drain within timeoutSeconds. Retried up to maxAttempts; a
    crash loop or the attempts used: next step.

    No `attempt_wait`: a stall, errors or a crash loop are judged before the timeout,
    so `act` judges the last attempt itself (with the shared `waited`/`give_time`)."""

    step = Step.FORCE_SYNC
    action = ActionKind.FORCE_SYNC
    title = "forced Merkle sync"
    working_title = "the forced sync"
    reason = Reason.FORCING_SYNC
    notice_key = "sync"

    def enabled(self, spec: Spec) -> bool:
        return spec.remediation.merkle_sync.enabled

    def act(self, ctx: StepContext) -> Progress:
        settings = ctx.work.spec.remediation.merkle_sync
        attempts = ctx.remembered.sync_attempts
        if attempts > 0:
            if self._crash_loop(ctx):
                return Progress.NEXT
            failure = self._failure(ctx)
            if failure is None:
                return Progress.WAIT
            still_running = bool(ctx.seen and ctx.seen.sync_running)
            if still_running and attempts < settings.max_attempts:
                # StemeDB runs one sync per replica: a request now would only be
                # answered 409 with this same sync. The running sync is the next
                # attempt, judged afresh, without a request.
                ctx.note(EventType.WARNING, EventReason.SYNC_FAILED,
                         f"sync attempt {attempts} failed: {failure}; the sync still runs, "
                         f"so it counts as attempt {attempts + 1}/{settings.max_attempts} "
                         "without a new request")
                ctx.work.update_replica(
                    ctx.replica.id, sync_attempts=attempts + 1, step_started_at=ctx.work.now,
                    step_baseline_lag=ctx.lag, sync_progress_at=ctx.work.now,
                    last_failed_kind=None)
                return Progress.WAIT
            if attempts >= settings.max_attempts:
                ctx.note(EventType.WARNING, EventReason.SYNC_ATTEMPTS_EXHAUSTED,
                         f"forced sync failed {attempts} times (maxAttempts "
                         f"{settings.max_attempts}), last because {failure}; next step")
                return Progress.NEXT
            ctx.note(EventType.WARNING, EventReason.SYNC_FAILED,
                     f"sync attempt {attempts} failed: {failure}")
        return self._start(ctx)

    def _crash_loop(self, ctx: StepContext) -> bool:
        """crashLoopRestarts or more restarts since the sync began: no further syncs."""
        remembered = ctx.remembered
        restarts = ctx.seen.restarts_total if ctx.seen else None
        limit = ctx.work.spec.detection.crash_loop_restarts
        if (restarts is None or remembered.sync_restarts_base is None
                or restarts - remembered.sync_restarts_base < limit):
            return False
        ctx.work.update_replica(ctx.replica.id, crash_loop=True)
        ctx.work.note(EventType.WARNING, EventReason.SYNC_FAILED,
                      f"{ctx.replica.id} restarted "
                      f"{number_text(restarts - remembered.sync_restarts_base)} times during the "
                      f"forced sync (crashLoopRestarts {limit}): crash loop, no further syncs",
                      ctx.replica.id)
        return True

    def _failure(self, ctx: StepContext) -> str | None:
        """Why the last attempt failed, or None while it runs or drains."""
        settings = ctx.work.spec.remediation.merkle_sync
        work = ctx.work
        progress = ctx.seen.sync_progress if ctx.seen else None
        running = ctx.seen.sync_running if ctx.seen else None
        errors = ctx.seen.sync_errors_total if ctx.seen else None
        remembered = ctx.remembered
        if progress is not None and (remembered.sync_last_progress is None
                                     or progress > remembered.sync_last_progress):
            remembered = work.update_replica(ctx.replica.id, sync_last_progress=progress,
                                             sync_progress_at=work.now)
        if running:
            remembered = work.update_replica(ctx.replica.id, sync_seen_running=True)
        completed = (progress is not None and progress >= 1.0) or (
            remembered.sync_seen_running and running is False)
        if work.observation.first_look and not completed:
            # Nobody watched the sync since the memory was written (a restart, a new
            # leader): that gap is not a stall, so the stall clock starts now.
            remembered = work.update_replica(ctx.replica.id, sync_progress_at=work.now)
        if remembered.last_failed_kind == ActionKind.FORCE_SYNC.value:
            return "the sync call failed or was not confirmed in time"
        if (errors is not None and remembered.sync_errors_base is not None
                and errors > remembered.sync_errors_base and not running):
            return (f"sync errors rose from {number_text(remembered.sync_errors_base)} to "
                    f"{number_text(errors)}")
        if (not completed and remembered.sync_progress_at is not None
                and work.now - remembered.sync_progress_at >= settings.stall_timeout_seconds):
            at = ("no progress reported" if remembered.sync_last_progress is None
                  else f"progress stalled at {number_text(remembered.sync_last_progress)}")
            stalled = (f"{at} for {number_text(work.now - remembered.sync_progress_at)} s "
                       f"(stallTimeoutSeconds {number_text(settings.stall_timeout_seconds)})")
            ctx.note(EventType.WARNING, EventReason.SYNC_STALLED, stalled)
            return stalled
        if waited(work, remembered, settings.timeout_seconds):
            if give_time(ctx, self.working_title):
                return None
            return (f"lag {number_text(ctx.lag)} s not draining "
                    f"{number_text(settings.timeout_seconds)} s after the sync began")
        # Still inside its timeout (completed and draining, or still running): wait.
        return None

    def _start(self, ctx: StepContext) -> Progress:
        """Propose the next sync, remembering the counters it is judged against; a sync
        already running (a human's, or one from before a restart) is adopted as this
        attempt instead: StemeDB would answer a request with 409 and that same sync."""
        settings = ctx.work.spec.remediation.merkle_sync
        attempts = ctx.remembered.sync_attempts
        seen = ctx.seen
        if seen is not None and seen.sync_running:
            ctx.note(EventType.NORMAL, EventReason.SYNC_ADOPTED,
                     f"a sync is already running (progress "
                     f"{number_text(seen.sync_progress)}); it counts as attempt "
                     f"{attempts + 1}/{settings.max_attempts}, no second sync is requested")
            ctx.work.update_replica(
                ctx.replica.id, sync_attempts=attempts + 1, step_started_at=ctx.work.now,
                step_baseline_lag=ctx.lag, sync_seen_running=True,
                sync_last_progress=seen.sync_progress, sync_progress_at=ctx.work.now,
                last_failed_kind=None, sync_restarts_base=seen.restarts_total,
                sync_errors_base=seen.sync_errors_total)
            return Progress.WAIT
        message = (f"Force Merkle sync of {ctx.replica.id} (lag {number_text(ctx.lag)} s, "
                   f"attempt {attempts + 1}/{settings.max_attempts})")
        if ctx.work.propose(self.action, EventReason.FORCE_SYNC, message,
                            replica=ctx.replica):
            seen = ctx.seen
            ctx.work.update_replica(
                ctx.replica.id, sync_attempts=attempts + 1, step_started_at=ctx.work.now,
                step_baseline_lag=ctx.lag, sync_seen_running=False, sync_last_progress=None,
                sync_progress_at=ctx.work.now, last_failed_kind=None,
                sync_restarts_base=seen.restarts_total if seen else None,
                sync_errors_base=seen.sync_errors_total if seen else None)
        return Progress.WAIT

    def judged_after(self, spec: Spec) -> float | None:
        return spec.remediation.merkle_sync.timeout_seconds

    def detail(self, work: Work, remembered: ReplicaMemory) -> str:
        return attempts_text(remembered.sync_attempts,
                             work.spec.remediation.merkle_sync.max_attempts)

