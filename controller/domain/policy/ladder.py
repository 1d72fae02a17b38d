"""The per-replica remediation ladder: ONE ordered declaration of its steps, and the
preamble every step shares.

Order, enable/disable, rank (`STEP_RANK`) and each step's Remediating text come from
`LADDER`; docs/remediation-policy.md's diagram is checked against it by a test.
To add a step, see docs/adding-a-step.md.
"""

from __future__ import annotations

from controller.domain.conditions import EventReason, EventType
from controller.domain.memory import Memory, Severity, Step
from controller.domain.observation import ReplicaObservation
from controller.domain.policy.plan import Outcome
from controller.domain.policy.steps.base import (
    LadderStep,
    Progress,
    StepContext,
    enter,
    give_time,
    waited,
)
from controller.domain.policy.steps.breaker_reset import BreakerReset
from controller.domain.policy.steps.forced_sync import ForcedSync
from controller.domain.policy.steps.rebuild import Rebuild
from controller.domain.policy.steps.throttle import Throttle
from controller.domain.policy.text import number_text
from controller.domain.policy.work import Work
from controller.domain.spec import ReplicaSpec

LADDER: tuple[LadderStep, ...] = (BreakerReset(), Throttle(), ForcedSync(), Rebuild())

# How far up the ladder each step is (Exhausted: past the last step).
STEP_RANK: tuple[Step, ...] = (*(s.step for s in LADDER), Step.EXHAUSTED)

_BY_STEP = {s.step: s for s in LADDER}


def ladder_step(step: Step) -> LadderStep | None:
    """The declared step for a memory value; None for NONE and EXHAUSTED."""
    return _BY_STEP.get(step)


def current_step(memory: Memory) -> tuple[str, Step]:
    """(replica id, step) of the replica furthest up the ladder; ('', NONE) if none."""
    best: tuple[str, Step] = ("", Step.NONE)
    for remembered in memory.replicas:
        step = remembered.step
        if step is Step.NONE:
            continue
        if best[1] is Step.NONE or STEP_RANK.index(step) > STEP_RANK.index(best[1]):
            best = (remembered.replica_id, step)
    return best


def not_past(step: Step, target: Step) -> bool:
    """The replica (on `step`) has not gone past `target` on the ladder yet."""
    return step is Step.NONE or STEP_RANK.index(step) <= STEP_RANK.index(target)


def step_after(step: Step) -> Step:
    """The step the ladder hands over to; EXHAUSTED after the last."""
    return STEP_RANK[STEP_RANK.index(step) + 1]


def run_ladder(
    work: Work, replica: ReplicaSpec, seen: ReplicaObservation | None, lags: dict[str, float],
    *, storm: bool = False,
) -> None:
    """Walk a critical replica's ladder: each step acts or waits (the walk stops), or
    hands over to the next step, which runs in the same poll. In a storm the walk
    stops at the first step that may not run in one (`LadderStep.runs_in_storm`)."""
    remembered = work.replicas[replica.id]
    lag = lags[replica.id]
    if remembered.severity is not Severity.CRITICAL:
        return
    if storm:
        first = LADDER[0] if remembered.step is Step.NONE else ladder_step(remembered.step)
        if first is None or not first.runs_in_storm:
            return
    if remembered.corrupted_at is not None:
        work.notice(replica.id, "corruption", EventReason.ACTION_SKIPPED,
                    f"{replica.id}: automated steps held because Merkle sync reported "
                    "corruption")
        return
    if work.pending_intent(None, replica.id) is not None:
        return  # an action on this replica awaits its outcome
    if remembered.step is not Step.NONE and lag <= work.spec.detection.critical.lag_seconds:
        return  # back under the critical threshold: the step worked, wait for recovery
    if remembered.step is Step.NONE:
        if remembered.cooldown_until is not None and work.now < remembered.cooldown_until:
            work.notice(replica.id, "cooldown", EventReason.COOLDOWN,
                        f"{replica.id} lag {number_text(lag)} s: ladder ran recently, "
                        f"cooldown ends in {number_text(remembered.cooldown_until - work.now)} s")
            return
        enter(work, replica.id, LADDER[0].step, lag)
    ctx = StepContext(work, replica, seen, lag, lags)
    while (step := ladder_step(work.replicas[replica.id].step)) is not None:
        if storm and not step.runs_in_storm:
            return
        if run_step(step, ctx) is Progress.WAIT:
            return


def run_step(step: LadderStep, ctx: StepContext) -> Progress:
    """The preamble every step shares, then the step's own `act`; on NEXT the replica
    enters the following step."""
    if step.settled(ctx):
        return Progress.WAIT
    if not step.enabled(ctx.work.spec):
        return _disabled(step, ctx)
    step.prepare(ctx)
    wait = step.attempt_wait(ctx)
    if wait is not None:
        if not waited(ctx.work, ctx.remembered, wait) or step.held(ctx):
            return Progress.WAIT
        if give_time(ctx, step.working_title):
            return Progress.WAIT
    progress = step.act(ctx)
    if progress is Progress.NEXT:
        enter(ctx.work, ctx.replica.id, step_after(step.step), ctx.lag)
    return progress


def _disabled(step: LadderStep, ctx: StepContext) -> Progress:
    """A step turned off in the spec: say so and move on; past the last, the ladder is
    exhausted (reported once)."""
    following = step_after(step.step)
    if following is Step.EXHAUSTED:
        ctx.work.notice(ctx.replica.id, f"{step.notice_key}-disabled", EventReason.STEP_DISABLED,
                        f"{ctx.replica.id}: {step.title} is disabled in the spec; ladder "
                        "exhausted", EventType.WARNING)
        ctx.work.update_replica(ctx.replica.id, step=Step.EXHAUSTED)
        return Progress.WAIT
    ctx.note(EventType.NORMAL, EventReason.STEP_DISABLED,
             f"{step.title} is disabled in the spec; next step", Outcome.SKIPPED)
    enter(ctx.work, ctx.replica.id, following, ctx.lag)
    return Progress.NEXT
