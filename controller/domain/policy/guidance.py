"""What happens next and what a human should do now: status.nextStep and
status.manualAction (issue 15, item 1).

Both are derived from the spec and the memory only, like the rest of the status,
so an unchanged situation yields the same values and costs no write. Times are
absolute (a countdown would change the status on every poll).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.domain.memory import Memory, Severity, Step
from controller.domain.observation import APPROVE_REBUILD_ANNOTATION, rebuild_request
from controller.domain.policy.ladder import current_step, ladder_step, step_after
from controller.domain.policy.steps.rebuild import request_anchor
from controller.domain.spec import RebuildPolicy, Spec

REBUILD_MARK = "stemedb.io/rebuild-requested"


@dataclass(frozen=True, slots=True)
class NextStep:
    """The next thing the operator will do on its own, when, and on what condition."""

    what: str
    at: float | None
    why: str


@dataclass(frozen=True, slots=True)
class ManualAction:
    """What a human should do by hand now; `command` is copied as is (None: no
    command does it, e.g. rebuilding a replica)."""

    what: str
    command: str | None = None
    request: str | None = None  # the rebuild request an approval must name


def next_step(spec: Spec, memory: Memory) -> NextStep | None:
    """The earliest of: the current step's judgement, a retry after a backoff, and the
    promotion of an unresolved escalation. None when nothing is scheduled."""
    options: list[NextStep] = []
    replica_id, step = current_step(memory)
    declared = ladder_step(step)
    remembered = memory.replica(replica_id) if replica_id else None
    if declared is not None and remembered is not None and not remembered.rebuild_marked \
            and remembered.corrupted_at is None and remembered.step_started_at is not None:
        wait = declared.judged_after(spec)
        if wait is not None and remembered.step_attempts > 0:
            following = step_after(step)
            then = ("no automated step is left" if following is Step.EXHAUSTED
                    else f"it moves on to {following.value}")
            options.append(NextStep(
                f"judge {step.value} on {replica_id}", remembered.step_started_at + wait,
                f"if {replica_id}'s lag is not draining by then, {then}"))
    for backoff in memory.backoffs:
        if backoff.retry_at is not None:
            options.append(NextStep(
                f"retry {backoff.kind}", backoff.retry_at,
                f"the admin API failed it {backoff.failures} time"
                f"{'s' if backoff.failures != 1 else ''} in a row"))
    level = memory.escalation_level
    if 0 < level < 2 and memory.escalated_since is not None:
        options.append(NextStep(
            f"escalate to level 2 ({spec.escalation.contact(2)})",
            memory.escalated_since + spec.escalation.promote_after_seconds,
            "if the escalation is still unresolved"))
    timed = [o for o in options if o.at is not None]
    return min(timed, key=lambda o: o.at or 0.0) if timed else None


def manual_action(spec: Spec, memory: Memory, name: str, namespace: str) -> ManualAction | None:
    """The one thing a human should do by hand now, most urgent first: corruption,
    a replica to rebuild, a rebuild to approve, remediation paused while lagging."""
    for remembered in memory.replicas:
        if remembered.corrupted_at is not None:
            return ManualAction(
                f"Merkle sync reported corruption on {remembered.replica_id}: automated "
                "steps are held; check data integrity (docs/runbooks/) and rebuild it from "
                "a healthy replica")
    for remembered in memory.replicas:
        if remembered.rebuild_marked:
            return ManualAction(
                f"Rebuild {remembered.replica_id}: the operator marked it ({REBUILD_MARK} "
                "on its Pod) and does not rebuild replicas itself")
    for remembered in memory.replicas:
        if remembered.step is Step.REBUILD and spec.remediation.rebuild.enabled \
                and spec.remediation.rebuild.policy is RebuildPolicy.MANUAL:
            anchor = request_anchor(remembered)
            if anchor is None:
                continue
            request = rebuild_request(remembered.replica_id, anchor)
            return ManualAction(
                f"Approve the rebuild of {remembered.replica_id} (request {request}; or "
                f"annotate {APPROVE_REBUILD_ANNOTATION}={request})",
                f"kubectl stemedb approve-rebuild {name} {remembered.replica_id} "
                f"-n {namespace}", request)
    lagging = [r.replica_id for r in memory.replicas if r.severity is not Severity.NONE]
    if spec.remediation.paused and lagging:
        return ManualAction(
            f"Remediation is paused while {', '.join(lagging)} lag: resume it, or act by "
            "hand", f"kubectl stemedb resume {name} -n {namespace}")
    return None
