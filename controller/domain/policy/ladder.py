"""The per-replica remediation ladder."""

from __future__ import annotations

from controller.domain.conditions import (
    EventReason,
    EventType,
)
from controller.domain.memory import (
    ActionKind,
    ReplicaMemory,
    Severity,
    Step,
)
from controller.domain.observation import (
    APPROVE_REBUILD_ANNOTATION,
    ReplicaObservation,
    rebuild_request,
)
from controller.domain.policy.detection import is_in_sync
from controller.domain.policy.plan import Outcome
from controller.domain.policy.text import _f, _rate_str
from controller.domain.policy.throttle import _backpressure, _reissue_rate, _throttle_once
from controller.domain.policy.work import _draining, _short_deadline, _Work
from controller.domain.spec import RebuildPolicy, ReplicaSpec


def _enter(w: _Work, rid: str, step: Step, lag: float) -> ReplicaMemory:
    return w.upd(rid, step=step, step_started_at=w.now, step_baseline_lag=lag, step_attempts=0,
                 last_failed_kind=None)


def _ladder(
    w: _Work, r: ReplicaSpec, ro: ReplicaObservation | None, lags: dict[str, float]
) -> None:
    rm = w.reps[r.id]
    lag = lags[r.id]
    if rm.severity is not Severity.CRITICAL:
        return
    if rm.corrupted_at is not None:
        w.notice(r.id, "corruption", EventReason.ACTION_SKIPPED,
                 f"{r.id}: automated steps held because Merkle sync reported corruption")
        return
    if w.pending_for(None, r.id) is not None:
        return  # an action on this replica awaits its outcome
    if rm.step is not Step.NONE and lag <= w.spec.detection.critical.lag_seconds:
        return  # back under the critical threshold: the step worked, wait for recovery
    if rm.step is Step.NONE:
        if rm.cooldown_until is not None and w.now < rm.cooldown_until:
            w.notice(r.id, "cooldown", EventReason.COOLDOWN,
                     f"{r.id} lag {_f(lag)} s: ladder ran recently, cooldown ends in "
                     f"{_f(rm.cooldown_until - w.now)} s")
            return
        rm = _enter(w, r.id, Step.RESET_BREAKER, lag)
    # Walk the ladder; each step either acts/waits (return) or hands over to the next.
    for _ in range(6):
        step = w.reps[r.id].step
        if step is Step.RESET_BREAKER:
            done = _step_breaker(w, r, lag)
        elif step is Step.THROTTLE:
            done = _step_throttle(w, r, lag)
        elif step is Step.FORCE_SYNC:
            done = _step_sync(w, r, ro, lag)
        elif step is Step.REBUILD:
            done = _step_rebuild(w, r, lag, lags)
        else:
            return
        if not done:
            return
    return  # pragma: no cover


def _waited(w: _Work, rm: ReplicaMemory, seconds: float) -> bool:
    return rm.step_started_at is None or w.now - rm.step_started_at >= seconds


def _give_time(w: _Work, r: ReplicaSpec, lag: float, what: str) -> bool:
    """If lag is draining since the step began, give the step more time (True)."""
    rm = w.reps[r.id]
    if _draining(w.spec, rm.step_baseline_lag, lag):
        w.note(EventType.NORMAL, EventReason.STEP_WORKING,
               f"{r.id}: {what} is working, lag {_f(rm.step_baseline_lag)} s -> {_f(lag)} s; "
               "giving it more time", r.id)
        w.upd(r.id, step_started_at=w.now, step_baseline_lag=lag)
        return True
    return False


def _skip_disabled(w: _Work, r: ReplicaSpec, what: str, next_step: Step, lag: float) -> bool:
    """A step turned off in the spec: say so and move the ladder on."""
    w.note(EventType.NORMAL, EventReason.STEP_DISABLED,
           f"{r.id}: {what} is disabled in the spec; next step", r.id, Outcome.SKIPPED)
    _enter(w, r.id, next_step, lag)
    return True


def _step_breaker(w: _Work, r: ReplicaSpec, lag: float) -> bool:
    spec = w.spec.remediation.breaker_reset
    rm = w.reps[r.id]
    if not spec.enabled:
        return _skip_disabled(w, r, "breaker reset", Step.THROTTLE, lag)
    failed = rm.last_failed_kind == ActionKind.RESET_BREAKER.value
    if rm.step_attempts > 0 and not failed:
        if not _waited(w, rm, spec.timeout_seconds):
            return False
        if _give_time(w, r, lag, "the breaker reset"):
            return False
    tripped = w.obs.tripped_agents
    if tripped is None:
        w.note(EventType.NORMAL, EventReason.BREAKER_STATE_UNKNOWN,
               f"{r.id}: the tripped-breakers list could not be read; skipping the breaker step",
               r.id, Outcome.SKIPPED)
        _enter(w, r.id, Step.THROTTLE, lag)
        return True
    if r.agent_id not in tripped:
        if rm.step_attempts == 0:
            w.note(EventType.NORMAL, EventReason.BREAKER_NOT_TRIPPED,
                   f"{r.id}: breaker {r.agent_id} is not tripped ({len(tripped)} tripped); "
                   "next step", r.id, Outcome.SKIPPED)
        else:
            w.note(EventType.NORMAL, EventReason.STEP_TIMED_OUT,
                   f"{r.id}: lag {_f(lag)} s not draining {_f(spec.timeout_seconds)} s after "
                   "the breaker reset; next step", r.id)
        _enter(w, r.id, Step.THROTTLE, lag)
        return True
    if rm.step_attempts >= spec.max_attempts:
        w.note(EventType.WARNING, EventReason.STEP_TIMED_OUT,
               f"{r.id}: breaker {r.agent_id} still tripped after {rm.step_attempts} resets "
               f"(maxAttempts {spec.max_attempts}); next step", r.id)
        _enter(w, r.id, Step.THROTTLE, lag)
        return True
    msg = (f"Reset circuit breaker {r.agent_id} of {r.id} (lag {_f(lag)} s, attempt "
           f"{rm.step_attempts + 1}/{spec.max_attempts})")
    if w.propose(ActionKind.RESET_BREAKER, EventReason.BREAKER_RESET, msg, replica=r,
                 deadline=w.now + spec.timeout_seconds):
        w.upd(r.id, step_attempts=rm.step_attempts + 1, step_started_at=w.now,
              step_baseline_lag=lag, last_failed_kind=None)
    return False


def _step_throttle(w: _Work, r: ReplicaSpec, lag: float) -> bool:
    ts = w.spec.remediation.throttle
    rm = w.reps[r.id]
    if not ts.enabled:
        return _skip_disabled(w, r, "throttling", Step.FORCE_SYNC, lag)
    _reissue_rate(w)
    if rm.step_attempts > 0:
        if not _waited(w, rm, ts.step_interval_seconds):
            return False
        if w.throttle.step_at is not None and w.now - w.throttle.step_at < ts.step_interval_seconds:
            return False
        if _give_time(w, r, lag, "throttling"):
            return False
    res = _throttle_once(w, f"{r.id} lag {_f(lag)} s", lag, to_floor=_backpressure(w, lag))
    if res == "acted":
        w.upd(r.id, step_attempts=rm.step_attempts + 1, step_started_at=w.now,
              step_baseline_lag=lag)
        return False
    if res == "held":
        return False
    w.note(EventType.NORMAL, EventReason.THROTTLE_AT_FLOOR,
           f"{r.id}: ingestion limit {_rate_str(w.throttle.current_rate)} is the lowest step "
           f"(floor {ts.floor_assertions_per_sec}/s) and lag is {_f(lag)} s; next step",
           r.id, Outcome.SKIPPED)
    _enter(w, r.id, Step.FORCE_SYNC, lag)
    return True


def _step_sync(w: _Work, r: ReplicaSpec, ro: ReplicaObservation | None, lag: float) -> bool:
    ms = w.spec.remediation.merkle_sync
    rm = w.reps[r.id]
    if not ms.enabled:
        return _skip_disabled(w, r, "forced Merkle sync", Step.REBUILD, lag)
    failed_why: str | None = None
    if rm.sync_attempts > 0:
        progress = ro.sync_progress if ro else None
        running = ro.sync_running if ro else None
        restarts = ro.restarts_total if ro else None
        errors = ro.sync_errors_total if ro else None
        if (restarts is not None and rm.sync_restarts_base is not None
                and restarts - rm.sync_restarts_base >= w.spec.detection.crash_loop_restarts):
            w.upd(r.id, crash_loop=True)
            w.note(EventType.WARNING, EventReason.SYNC_FAILED,
                   f"{r.id} restarted {_f(restarts - rm.sync_restarts_base)} times during the "
                   f"forced sync (crashLoopRestarts {w.spec.detection.crash_loop_restarts}): "
                   "crash loop, no further syncs", r.id)
            _enter(w, r.id, Step.REBUILD, lag)
            return True
        if progress is not None and (rm.sync_last_progress is None
                                     or progress > rm.sync_last_progress):
            rm = w.upd(r.id, sync_last_progress=progress, sync_progress_at=w.now)
        if running:
            rm = w.upd(r.id, sync_seen_running=True)
        completed = (progress is not None and progress >= 1.0) or (
            rm.sync_seen_running and running is False)
        if rm.last_failed_kind == ActionKind.FORCE_SYNC.value:
            failed_why = "the sync call failed or was not confirmed in time"
        elif (errors is not None and rm.sync_errors_base is not None
              and errors > rm.sync_errors_base and not running):
            failed_why = (f"sync errors rose from {_f(rm.sync_errors_base)} to {_f(errors)}")
        elif not completed and rm.sync_progress_at is not None \
                and w.now - rm.sync_progress_at >= ms.stall_timeout_seconds:
            at = ("no progress reported" if rm.sync_last_progress is None
                  else f"progress stalled at {_f(rm.sync_last_progress)}")
            failed_why = (f"{at} for "
                          f"{_f(w.now - rm.sync_progress_at)} s (stallTimeoutSeconds "
                          f"{_f(ms.stall_timeout_seconds)})")
            w.note(EventType.WARNING, EventReason.SYNC_STALLED, f"{r.id}: {failed_why}", r.id)
        elif _waited(w, rm, ms.timeout_seconds):
            if _give_time(w, r, lag, "the forced sync"):
                return False
            failed_why = (f"lag {_f(lag)} s not draining {_f(ms.timeout_seconds)} s after the "
                          "sync began")
        elif completed and _draining(w.spec, rm.step_baseline_lag, lag):
            return False  # sync done and lag draining: let it catch up
        else:
            return False
        if rm.sync_attempts >= ms.max_attempts:
            w.note(EventType.WARNING, EventReason.SYNC_ATTEMPTS_EXHAUSTED,
                   f"{r.id}: forced sync failed {rm.sync_attempts} times (maxAttempts "
                   f"{ms.max_attempts}), last because {failed_why}; next step", r.id)
            _enter(w, r.id, Step.REBUILD, lag)
            return True
        w.note(EventType.WARNING, EventReason.SYNC_FAILED,
               f"{r.id}: sync attempt {rm.sync_attempts} failed: {failed_why}", r.id)
    msg = (f"Force Merkle sync of {r.id} (lag {_f(lag)} s, attempt {rm.sync_attempts + 1}/"
           f"{ms.max_attempts})")
    if w.propose(ActionKind.FORCE_SYNC, EventReason.FORCE_SYNC, msg, replica=r,
                 deadline=w.now + ms.timeout_seconds):
        w.upd(r.id, sync_attempts=rm.sync_attempts + 1, step_started_at=w.now,
              step_baseline_lag=lag, sync_seen_running=False, sync_last_progress=None,
              sync_progress_at=w.now, last_failed_kind=None,
              sync_restarts_base=ro.restarts_total if ro else None,
              sync_errors_base=ro.sync_errors_total if ro else None)
    return False


def _rebuild_request(w: _Work, replica_id: str) -> str:
    """This episode's rebuild request for the replica (what an approval must name)."""
    rm = w.reps[replica_id]
    anchor = next((t for t in (rm.episode_started_at, rm.step_started_at) if t is not None),
                  w.now)
    return rebuild_request(replica_id, anchor)


def _step_rebuild(w: _Work, r: ReplicaSpec, lag: float, lags: dict[str, float]) -> bool:
    rb = w.spec.remediation.rebuild
    rm = w.reps[r.id]
    if rm.rebuild_marked:
        return False
    if not rb.enabled:
        w.notice(r.id, "rebuild-disabled", EventReason.STEP_DISABLED,
                 f"{r.id}: rebuild marking is disabled in the spec; ladder exhausted",
                 EventType.WARNING)
        w.upd(r.id, step=Step.EXHAUSTED)
        return False
    marked = sum(1 for x in w.reps.values() if x.rebuild_marked)
    limit = w.spec.remediation.max_concurrent_rebuilds
    if marked >= limit:
        w.notice(r.id, "rebuild-limit", EventReason.ACTION_SKIPPED,
                 f"{r.id}: not marked for rebuild, {marked} replicas already marked "
                 f"(maxConcurrentRebuilds {limit})", EventType.WARNING)
        return False
    in_sync = sum(1 for rid, x in w.reps.items() if rid != r.id and is_in_sync(w.spec, x,
                                                                              lags.get(rid)))
    need = w.spec.remediation.min_in_sync_replicas
    if in_sync < need:
        w.notice(r.id, "rebuild-last-in-sync", EventReason.ACTION_SKIPPED,
                 f"{r.id}: not marked for rebuild, only {in_sync} other replicas in sync "
                 f"(minInSyncReplicas {need})", EventType.WARNING)
        return False
    request = _rebuild_request(w, r.id)
    if rb.policy is RebuildPolicy.MANUAL and request not in w.obs.approved_rebuilds:
        ignored = sorted(a for a in w.obs.approved_rebuilds
                         if a.partition("@")[0] == r.id)
        w.notice(r.id, "rebuild-approval" + ("-ignored" if ignored else ""),
                 EventReason.REBUILD_NEEDS_APPROVAL,
                 f"{r.id}: rebuild needed (lag {_f(lag)} s, {rm.sync_attempts} syncs failed); "
                 f"approve this request with annotation {APPROVE_REBUILD_ANNOTATION}={request}"
                 + (f"; ignored {', '.join(ignored)}: an approval names the request it "
                    "approves, and is used up with its episode" if ignored else ""),
                 EventType.WARNING)
        return False
    msg = (f"Mark {r.id} for rebuild (lag {_f(lag)} s, {rm.sync_attempts} forced syncs failed, "
           f"{in_sync} other replicas in sync, policy {rb.policy.value})")
    if w.propose(ActionKind.MARK_REBUILD, EventReason.MARK_REBUILD, msg, replica=r,
                 deadline=_short_deadline(w)):
        w.upd(r.id, rebuild_marked=True, step_started_at=w.now)
    return False
