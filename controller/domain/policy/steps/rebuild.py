"""Step 4: mark the replica for rebuild, within the rebuild limits, once approved."""

from __future__ import annotations

from controller.domain.conditions import EventReason, EventType, Reason
from controller.domain.memory import ActionKind, ReplicaMemory, Step
from controller.domain.observation import APPROVE_REBUILD_ANNOTATION, rebuild_request
from controller.domain.policy.detection import is_in_sync
from controller.domain.policy.steps.base import LadderStep, Progress, StepContext
from controller.domain.policy.text import number_text
from controller.domain.policy.work import Work
from controller.domain.spec import RebuildPolicy, Spec


def request_anchor(remembered: ReplicaMemory) -> float | None:
    """The moment a replica's rebuild request is named after: its episode's start
    (else its step's), so the request stays the same through the episode."""
    return next((t for t in (remembered.episode_started_at, remembered.step_started_at)
                 if t is not None), None)


def rebuild_request_of(work: Work, replica_id: str) -> str:
    """This episode's rebuild request for the replica (what an approval must name)."""
    anchor = request_anchor(work.replicas[replica_id])
    return rebuild_request(replica_id, work.now if anchor is None else anchor)


class Rebuild(LadderStep):
    """Mark for rebuild when fewer than maxConcurrentRebuilds are marked, at least
    minInSyncReplicas others are in sync, and (policy Manual) an annotation approves
    this episode's request. The last step: disabled, the ladder is exhausted."""

    step = Step.REBUILD
    action = ActionKind.MARK_REBUILD
    title = "rebuild marking"
    working_title = "the rebuild"
    reason = Reason.AWAITING_REBUILD_APPROVAL
    notice_key = "rebuild"

    def enabled(self, spec: Spec) -> bool:
        return spec.remediation.rebuild.enabled

    def settled(self, ctx: StepContext) -> bool:
        return ctx.remembered.rebuild_marked

    def act(self, ctx: StepContext) -> Progress:
        work, replica_id = ctx.work, ctx.replica.id
        if self._sync_progressing(ctx):
            return Progress.WAIT
        marked = sum(1 for other in work.replicas.values() if other.rebuild_marked)
        limit = work.spec.remediation.max_concurrent_rebuilds
        if marked >= limit:
            work.notice(replica_id, f"{self.notice_key}-limit", EventReason.ACTION_SKIPPED,
                        f"{replica_id}: not marked for rebuild, {marked} replicas already "
                        f"marked (maxConcurrentRebuilds {limit})", EventType.WARNING)
            return Progress.WAIT
        in_sync = sum(1 for rid, other in work.replicas.items()
                      if rid != replica_id and is_in_sync(work.spec, other, ctx.lags.get(rid)))
        need = work.spec.remediation.min_in_sync_replicas
        if in_sync < need:
            work.notice(replica_id, f"{self.notice_key}-last-in-sync", EventReason.ACTION_SKIPPED,
                        f"{replica_id}: not marked for rebuild, only {in_sync} other replicas "
                        f"in sync (minInSyncReplicas {need})", EventType.WARNING)
            return Progress.WAIT
        if not self._approved(ctx):
            return Progress.WAIT
        policy = work.spec.remediation.rebuild.policy
        message = (f"Mark {replica_id} for rebuild (lag {number_text(ctx.lag)} s, "
                   f"{ctx.remembered.sync_attempts} forced syncs failed, {in_sync} other replicas "
                   f"in sync, policy {policy.value})")
        if work.propose(self.action, EventReason.MARK_REBUILD, message,
                        replica=ctx.replica):
            work.update_replica(replica_id, rebuild_marked=True, step_started_at=work.now)
        return Progress.WAIT

    def _sync_progressing(self, ctx: StepContext) -> bool:
        """A sync of the replica runs and its progress moved within stallTimeoutSeconds
        (one a human started after the ladder's own syncs failed, say): a sync that
        works is not replaced by a rebuild. Progress that *changes* counts, not only
        progress that rises: a new sync starts again from 0. The ladder's own stalled
        sync, unchanged since, does not hold the rebuild."""
        work, replica_id = ctx.work, ctx.replica.id
        seen = ctx.seen
        if seen is None or not seen.sync_running:
            return False
        remembered = ctx.remembered
        progress = seen.sync_progress
        if progress is not None and progress != remembered.sync_last_progress:
            remembered = work.update_replica(replica_id, sync_last_progress=progress,
                                             sync_progress_at=work.now)
        stall = work.spec.remediation.merkle_sync.stall_timeout_seconds
        if (remembered.sync_progress_at is None
                or work.now - remembered.sync_progress_at >= stall):
            return False
        work.notice(replica_id, f"{self.notice_key}-sync-running", EventReason.ACTION_SKIPPED,
                    f"{replica_id}: not marked for rebuild, a sync of it is running and "
                    f"progressing (progress {number_text(progress or 0.0)}); the rebuild waits "
                    f"until it ends or stalls for {number_text(stall)} s", EventType.NORMAL)
        return True

    def _approved(self, ctx: StepContext) -> bool:
        """Policy Automatic, or an annotation names this episode's request; else say
        how to approve it (and which stale approvals were ignored)."""
        work, replica_id = ctx.work, ctx.replica.id
        request = rebuild_request_of(work, replica_id)
        approvals = work.observation.approved_rebuilds
        if (work.spec.remediation.rebuild.policy is not RebuildPolicy.MANUAL
                or request in approvals):
            return True
        ignored = sorted(a for a in approvals if a.partition("@")[0] == replica_id)
        work.notice(replica_id, f"{self.notice_key}-approval" + ("-ignored" if ignored else ""),
                    EventReason.REBUILD_NEEDS_APPROVAL,
                    f"{replica_id}: rebuild needed (lag {number_text(ctx.lag)} s, "
                    f"{ctx.remembered.sync_attempts} syncs failed); approve this request with "
                    f"annotation {APPROVE_REBUILD_ANNOTATION}={request}"
                    + (f"; ignored {', '.join(ignored)}: an approval names the request it "
                       "approves, and is used up with its episode" if ignored else ""),
                    EventType.WARNING)
        return False

    def detail(self, work: Work, remembered: ReplicaMemory) -> str:
        return (f"after {remembered.sync_attempts} failed syncs; approve with "
                f"{APPROVE_REBUILD_ANNOTATION}={rebuild_request_of(work, remembered.replica_id)}")

    def remediating(self, work: Work, replica_id: str) -> tuple[Reason, str]:
        """Approved (or Automatic) but not marked: a safety limit holds the rebuild."""
        request = rebuild_request_of(work, replica_id)
        if (work.spec.remediation.rebuild.policy is RebuildPolicy.AUTOMATIC
                or request in work.observation.approved_rebuilds):
            return Reason.LADDER_EXHAUSTED, (f"{replica_id} needs a rebuild that safety "
                                             "limits hold back")
        return super().remediating(work, replica_id)
