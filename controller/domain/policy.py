"""The remediation policy: the runbook as a pure, deterministic escalation state machine.

`decide(observation, spec, memory, now, operator_budget_remaining=...)` returns a `Plan`.
The handler writes `plan.memory` to status (intents recorded as pending) BEFORE it
performs `plan.actions`, then reports each outcome with `record_outcome`.

See docs/remediation-policy.md for the state diagram and every reason code.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

from controller.domain.conditions import (
    Condition,
    ConditionType,
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
    Severity,
    Step,
    ThrottleMemory,
)
from controller.domain.observation import (
    APPROVE_REBUILD_ANNOTATION,
    UNKNOWN,
    Evidence,
    Observation,
    ReplicaObservation,
    SourceState,
    rebuild_request,
)
from controller.domain.spec import Mode, RebuildPolicy, ReplicaSpec, Spec

HOUR = 3600.0
MIN_REQUEUE = 1.0


class Outcome(enum.StrEnum):
    PENDING = "Pending"
    OK = "Ok"
    FAILED = "Failed"
    WOULD_DO = "WouldDo"
    SKIPPED = "Skipped"
    TIMED_OUT = "TimedOut"
    NOTE = "Note"


@dataclass(frozen=True, slots=True)
class Action:
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
    type: EventType
    reason: EventReason
    message: str


@dataclass(frozen=True, slots=True)
class Escalation:
    level: int  # 0 none, 1 cluster SRE, 2 distributed-systems engineer, 3 principal engineer
    reason: Reason
    contact: str
    message: str


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
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


# --------------------------------------------------------------------------- helpers


def _f(v: float | None) -> str:
    if v is None:
        return "unknown"
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.1f}"


def _rate_str(rate: int | None) -> str:
    return "unlimited" if rate is None else f"{rate}/s"


def quantize_lag(previous: float | None, lag: float, state_changed: bool) -> float:
    """The lag shown in status: refreshed on a state change, or when it moved by
    at least max(2 s, 25 % of the shown value); rounded to 0.1 s."""
    if previous is None or state_changed:
        return round(lag, 1)
    if abs(lag - previous) >= max(2.0, 0.25 * previous):
        return round(lag, 1)
    return previous


def is_in_sync(spec: Spec, rm: ReplicaMemory, lag: float | None) -> bool:
    """Counts towards minInSyncReplicas: lag known, below warning, not marked for rebuild."""
    return (
        lag is not None
        and lag < spec.detection.warning.lag_seconds
        and not rm.rebuild_marked
        and rm.severity is Severity.NONE
    )


def _draining(spec: Spec, baseline: float | None, lag: float) -> bool:
    if baseline is None or baseline <= 0:
        return False
    return lag <= baseline * (1.0 - spec.remediation.drain_fraction)


def _short_deadline(w: _Work) -> float:
    """Deadline for an idempotent call's outcome (rate limit, rebuild mark)."""
    return w.now + max(3 * w.spec.detection.poll_interval_seconds, 30.0)


def _ladder_rate(spec: Spec, base: int, index: int) -> int:
    t = spec.remediation.throttle
    return max(t.floor_assertions_per_sec, math.floor(base * t.ladder[index]))


# --------------------------------------------------------------------------- work state


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


# --------------------------------------------------------------------------- evidence


def evidence_needed(spec: Spec, memory: Memory, primary_only_observation: Observation) -> Evidence:
    """What to fetch beyond the primary scrape. At steady state: nothing.

    - the tripped-breakers list when a replica is (or this poll becomes) critical and
      its ladder has not gone past the breaker step (or a reset awaits confirmation);
    - a replica's own /metrics while it is above the warning threshold or in an episode:
      only how it answers is read (a metricsUrl that resolves to a denied address stops
      the poll with DestinationDenied); the ladder's evidence (sync state, restarts,
      corruption) comes from the primary's scrape. See docs/remediation-policy.md.
    """
    obs = primary_only_observation
    breakers = False
    replicas: set[str] = set()
    for r in spec.replicas:
        rm = memory.replica(r.id) or ReplicaMemory(r.id)
        ro = obs.replica(r.id)
        lag = ro.lag_seconds if ro else None
        above_warning = lag is not None and lag > spec.detection.warning.lag_seconds
        in_episode = rm.severity is not Severity.NONE or rm.step is not Step.NONE
        if above_warning or in_episode or rm.corrupted_at is not None:
            replicas.add(r.id)
        if _critical_due(spec, rm, lag, obs.at) and rm.step in (Step.NONE, Step.RESET_BREAKER):
            breakers = True
    if any(i.kind is ActionKind.RESET_BREAKER for i in memory.pending):
        breakers = True
    return Evidence(fetch_tripped_breakers=breakers, replica_metrics=frozenset(replicas))


def _critical_due(spec: Spec, rm: ReplicaMemory, lag: float | None, now: float) -> bool:
    """Whether `decide` will find the replica critical this poll, so the breaker
    step may run: already critical, over the escalation lag, or above critical
    for `critical.forSeconds` by now. A mere warning, or a critical crossing still
    inside its window, needs no admin read (issue 14, item 6)."""
    d = spec.detection
    if rm.severity is Severity.CRITICAL:
        return True
    if lag is None or not lag > d.critical.lag_seconds:
        return False
    if lag > d.escalation_lag_seconds:
        return True
    since = rm.above_critical_since if rm.above_critical_since is not None else now
    return now - since >= d.critical.for_seconds


# --------------------------------------------------------------------------- decide


def _metrics_problem(obs: Observation, spec: Spec, now: float) -> tuple[Reason, str] | None:
    if obs.primary.state is SourceState.DENIED:
        return Reason.DESTINATION_DENIED, (
            f"{obs.primary.detail or 'the primary URL is denied'}; the operator sends nothing "
            "to a destination its policy denies (docs/security.md)"
        )
    if obs.primary.state is SourceState.FAILED:
        return Reason.PRIMARY_SCRAPE_FAILED, (
            f"The primary's /metrics could not be read ({obs.primary.detail or 'no detail'}); "
            "no action is taken on missing data"
        )
    age = now - obs.at
    if age > spec.detection.stale_after_seconds:
        return Reason.OBSERVATION_STALE, (
            f"The observation is {_f(age)} s old, more than staleAfterSeconds "
            f"{_f(spec.detection.stale_after_seconds)}; no action is taken on stale data"
        )
    missing = [r.id for r in spec.replicas
               if (ro := obs.replica(r.id)) is None or ro.lag_seconds is None
               or not math.isfinite(ro.lag_seconds)]
    if missing:
        return Reason.REPLICA_LAG_MISSING, (
            f"No lag series for {len(missing)} of {len(spec.replicas)} replicas "
            f"({', '.join(missing)}); no action is taken on missing data"
        )
    return None


def decide(
    observation: Observation,
    spec: Spec,
    memory: Memory,
    now: float,
    *,
    operator_budget_remaining: int,
) -> Plan:
    w = _Work(observation, spec, memory, now, operator_budget_remaining)
    problem = _metrics_problem(observation, spec, now)
    if problem is not None:
        reason, message = problem
        if w.cluster_notice != f"metrics:{reason.value}":
            w.cluster_notice = f"metrics:{reason.value}"
            w.note(EventType.WARNING, EventReason.METRICS_UNAVAILABLE, message, None,
                   Outcome.SKIPPED)
        since = w.mem.blind_since if w.mem.blind_since is not None else now
        w.mem = replace(w.mem, blind_since=since)
        return _finish(w, metrics=(reason, message), blind_for=now - since)
    if w.cluster_notice is not None and w.cluster_notice.startswith("metrics:"):
        w.cluster_notice = None
    if w.mem.blind_since is not None:
        w.mem = replace(w.mem, blind_since=None)

    lags: dict[str, float] = {}
    for r in spec.replicas:
        ro = observation.replica(r.id)
        assert ro is not None and ro.lag_seconds is not None
        lags[r.id] = ro.lag_seconds

    _resolve_intents(w)
    for r in spec.replicas:
        ro = observation.replica(r.id)
        assert ro is not None
        _detect(w, r, ro, lags[r.id])
    _storm(w)
    if w.acting or w.dry_run:
        if w.mem.storm or _storm_now(w):
            _storm_throttle(w, lags)
        else:
            for r in spec.replicas:
                _ladder(w, r, observation.replica(r.id), lags)
        _restore(w)
    elif any(rm.severity is not Severity.NONE for rm in w.reps.values()):
        for r in spec.replicas:
            if w.reps[r.id].severity is Severity.CRITICAL:
                key = "paused" if w.paused else "observe"
                w.suppressed.append(
                    (None, Reason.PAUSED if w.paused else Reason.OBSERVE_MODE))
                text = (f"{r.id} lag {_f(lags[r.id])} s: no action because "
                        + ("spec.remediation.paused is true" if w.paused
                           else "spec.remediation.mode is Observe"))
                w.notice(r.id, key, EventReason.ACTION_SKIPPED, text)
    return _finish(w, metrics=None)


def _storm_now(w: _Work) -> bool:
    n = sum(1 for rm in w.reps.values() if rm.severity is Severity.CRITICAL)
    return n >= w.spec.detection.storm_replicas


# --------------------------------------------------------------------------- intents


def _resolve_intents(w: _Work) -> None:
    keep: list[Intent] = []
    for i in w.pending:
        confirmed = False
        if i.kind is ActionKind.RESET_BREAKER:
            tripped = w.obs.tripped_agents
            confirmed = tripped is not None and i.agent_id not in tripped
        elif i.kind is ActionKind.SET_RATE_LIMIT:
            confirmed = w.obs.rate_limit is not UNKNOWN and w.obs.rate_limit == i.rate
        elif i.kind is ActionKind.FORCE_SYNC and i.replica_id is not None:
            ro = w.obs.replica(i.replica_id)
            confirmed = ro is not None and ro.sync_running is True
            if confirmed and i.replica_id in w.reps:
                w.upd(i.replica_id, sync_seen_running=True)
        if confirmed:
            w.history.append(HistoryEntry(w.now, i.kind.value, i.replica_id,
                                          EventReason.ACTION_CONFIRMED.value,
                                          f"{i.kind.value} confirmed from metrics",
                                          Outcome.OK.value, i.key))
            continue
        if w.now >= i.deadline:
            msg = (f"No outcome for {i.kind.value}"
                   f"{' on ' + i.replica_id if i.replica_id else ''} within its timeout; "
                   "counted as an attempt")
            w.note(EventType.WARNING, EventReason.ACTION_TIMED_OUT, msg, i.replica_id,
                   Outcome.TIMED_OUT, i.kind.value)
            if i.kind is ActionKind.SET_RATE_LIMIT:
                w.throttle = replace(w.throttle, reissue=True)
            elif i.kind is ActionKind.MARK_REBUILD and i.replica_id in w.reps:
                w.upd(i.replica_id, rebuild_marked=False)
            elif i.replica_id in w.reps:
                w.upd(i.replica_id, last_failed_kind=i.kind.value)
            continue
        keep.append(i)
    w.pending = keep


# --------------------------------------------------------------------------- detection


def _detect(w: _Work, r: ReplicaSpec, ro: ReplicaObservation, lag: float) -> None:
    d = w.spec.detection
    now = w.now
    rm = w.reps[r.id]
    prev_state = rm.severity
    aw = (rm.above_warning_since if rm.above_warning_since is not None else now) \
        if lag > d.warning.lag_seconds else None
    ac = (rm.above_critical_since if rm.above_critical_since is not None else now) \
        if lag > d.critical.lag_seconds else None
    br = (rm.below_recovery_since if rm.below_recovery_since is not None else now) \
        if lag < d.recovery.lag_seconds else None
    rm = w.upd(r.id, above_warning_since=aw, above_critical_since=ac, below_recovery_since=br)

    # corruption: any increase of the corruption counter (a first sight above 0 counts)
    corr = ro.sync_corruption_total
    if corr is not None:
        seen = rm.corruption_seen if rm.corruption_seen is not None else 0.0
        if corr > seen:
            first = rm.corrupted_at is None
            rm = w.upd(r.id, corruption_seen=corr, corrupted_at=now)
            if first:
                w.note(EventType.WARNING, EventReason.CORRUPTION,
                       f"{r.id}: Merkle sync reported corruption (counter {_f(corr)}, was "
                       f"{_f(seen)}); automated steps on {r.id} are held, escalating to "
                       f"{w.spec.escalation.principal_engineer}", r.id)
        elif corr < seen:  # counter reset (process restart)
            rm = w.upd(r.id, corruption_seen=corr)
    if (rm.corrupted_at is not None and br is not None
            and now - max(br, rm.corrupted_at) >= d.recovery.for_seconds):
        rm = w.upd(r.id, corrupted_at=None)

    sev = rm.severity
    if lag > d.escalation_lag_seconds and not rm.lag_escalated:
        rm = w.upd(r.id, lag_escalated=True)
        sev = Severity.CRITICAL
    if ac is not None and now - ac >= d.critical.for_seconds:
        sev = Severity.CRITICAL
    elif sev is Severity.NONE and aw is not None and now - aw >= d.warning.for_seconds:
        sev = Severity.WARNING
    if sev is not Severity.NONE and br is not None and now - br >= d.recovery.for_seconds:
        sev = Severity.NONE

    if sev is not prev_state:
        if prev_state is Severity.NONE:
            starts = [t for t in (aw, ac) if t is not None]
            rm = w.upd(r.id, episode_started_at=min(starts) if starts else now)
        if sev is Severity.WARNING:
            w.note(EventType.WARNING, EventReason.LAG_WARNING,
                   f"{r.id} lag {_f(lag)} s above warning {_f(d.warning.lag_seconds)} s for "
                   f"{_f(d.warning.for_seconds)} s", r.id)
        elif sev is Severity.CRITICAL:
            w.note(EventType.WARNING, EventReason.LAG_CRITICAL,
                   f"{r.id} lag {_f(lag)} s above critical {_f(d.critical.lag_seconds)} s"
                   + (f" (over escalation {_f(d.escalation_lag_seconds)} s)"
                      if lag > d.escalation_lag_seconds
                      else f" for {_f(d.critical.for_seconds)} s"), r.id)
        else:
            _recover(w, r, lag)
            rm = w.reps[r.id]
        rm = w.upd(r.id, severity=sev)
    w.upd(r.id, shown_lag=quantize_lag(rm.shown_lag, lag, sev is not prev_state))


def _recover(w: _Work, r: ReplicaSpec, lag: float) -> None:
    rm = w.reps[r.id]
    start = rm.episode_started_at if rm.episode_started_at is not None else w.now
    ttr = w.now - start
    acted = rm.step is not Step.NONE
    w.note(EventType.NORMAL, EventReason.RECOVERED,
           f"{r.id} recovered: lag {_f(lag)} s below {_f(w.spec.detection.recovery.lag_seconds)}"
           f" s for {_f(w.spec.detection.recovery.for_seconds)} s; time to recover {_f(ttr)} s",
           r.id)
    w.reps[r.id] = ReplicaMemory(
        r.id,
        below_recovery_since=rm.below_recovery_since,
        corruption_seen=rm.corruption_seen,
        corrupted_at=rm.corrupted_at,
        cooldown_until=(w.now + w.spec.remediation.cooldown_seconds) if acted
        else rm.cooldown_until,
        last_action=rm.last_action,
        shown_lag=rm.shown_lag,
    )
    w.mem = replace(w.mem, last_recovery_replica=r.id, last_recovery_seconds=ttr)


def _storm(w: _Work) -> None:
    storm = _storm_now(w)
    if storm and not w.mem.storm:
        ids = [rid for rid, rm in w.reps.items() if rm.severity is Severity.CRITICAL]
        w.note(EventType.WARNING, EventReason.STORM,
               f"{len(ids)} replicas lag at once ({', '.join(ids)}; stormReplicas "
               f"{w.spec.detection.storm_replicas}): throttling and escalating, "
               "no per-replica syncs", None)
        w.mem = replace(w.mem, storm=True)
    elif not storm and w.mem.storm:
        w.mem = replace(w.mem, storm=False)


# --------------------------------------------------------------------------- throttle


def _start_throttle(w: _Work) -> None:
    if w.throttle.active:
        if w.throttle.restoring:
            w.throttle = replace(w.throttle, restoring=False, restore_index=-1)
        return
    rl = w.obs.rate_limit
    t = w.spec.remediation.throttle
    if rl is UNKNOWN:
        w.throttle = ThrottleMemory(active=True, rate_to_restore=None,
                                    rate_to_restore_known=False,
                                    base_rate=t.unlimited_baseline_assertions_per_sec)
    elif rl is None:
        w.throttle = ThrottleMemory(active=True, rate_to_restore=None,
                                    base_rate=t.unlimited_baseline_assertions_per_sec)
    else:
        assert isinstance(rl, int)
        w.throttle = ThrottleMemory(active=True, rate_to_restore=rl, base_rate=rl,
                                    current_rate=rl)


def _next_rate(w: _Work, to_floor: bool) -> int | None:
    """The next lower ladder rate below the current limit, or None when at the floor."""
    t = w.spec.remediation.throttle
    cur = w.throttle.current_rate
    candidates = [_ladder_rate(w.spec, w.throttle.base_rate, i) for i in range(len(t.ladder))]
    if to_floor:
        candidates = [t.floor_assertions_per_sec]
    for c in candidates:
        if cur is None or c < cur:
            return c
    return None


def _throttle_once(w: _Work, why: str, lag_for_baseline: float, to_floor: bool = False) -> str:
    """Lower the limit one step. Returns 'acted', 'floor' or 'held'."""
    if w.pending_for(ActionKind.SET_RATE_LIMIT, None) is not None:
        return "held"
    was_active = w.throttle.active
    saved = w.throttle
    _start_throttle(w)
    rate = _next_rate(w, to_floor)
    if rate is None:
        return "floor"
    prev = w.throttle.current_rate
    msg = (f"Set ingestion limit to {rate}/s (was {_rate_str(prev)}"
           f"{'' if w.throttle.rate_to_restore_known else ', read-back unknown'}; "
           f"floor {w.spec.remediation.throttle.floor_assertions_per_sec}/s): {why}")
    dl = _short_deadline(w)
    if w.propose(ActionKind.SET_RATE_LIMIT, EventReason.THROTTLE_STEP, msg, rate=rate,
                 deadline=dl):
        w.throttle = replace(w.throttle, current_rate=rate, step_at=w.now,
                             baseline_lag=lag_for_baseline, reissue=False)
        return "acted"
    if not was_active:
        w.throttle = saved
    return "held"


def _reissue_rate(w: _Work) -> None:
    t = w.throttle
    if not t.active or not t.reissue or w.pending_for(ActionKind.SET_RATE_LIMIT, None):
        return
    if w.obs.rate_limit is not UNKNOWN and w.obs.rate_limit == t.current_rate:
        w.throttle = replace(t, reissue=False)
        return
    msg = f"Re-issue ingestion limit {_rate_str(t.current_rate)} (last call unconfirmed)"
    dl = _short_deadline(w)
    if w.propose(ActionKind.SET_RATE_LIMIT, EventReason.THROTTLE_STEP, msg,
                 rate=t.current_rate, deadline=dl):
        w.throttle = replace(w.throttle, reissue=False)


def _storm_throttle(w: _Work, lags: dict[str, float]) -> None:
    _reissue_rate(w)
    crit = {rid: lags[rid] for rid, rm in w.reps.items() if rm.severity is Severity.CRITICAL}
    for rid in crit:
        w.notice(rid, "storm", EventReason.STORM,
                 f"{rid}: per-replica steps suspended while {len(crit)} replicas lag at once")
    if not crit or not w.spec.remediation.throttle.enabled:
        return
    worst = max(crit.values())
    t = w.throttle
    interval = w.spec.remediation.throttle.step_interval_seconds
    if t.step_at is not None and w.now - t.step_at < interval:
        return
    if t.step_at is not None and _draining(w.spec, t.baseline_lag, worst):
        w.throttle = replace(t, step_at=w.now, baseline_lag=worst)
        w.note(EventType.NORMAL, EventReason.STEP_WORKING,
               f"Storm: worst lag drained from {_f(t.baseline_lag)} s to {_f(worst)} s; "
               "holding the current limit", None)
        return
    bp = _backpressure(w, worst)
    res = _throttle_once(w, f"{len(crit)} replicas lagging at once, worst {_f(worst)} s", worst,
                         to_floor=bp)
    if res == "floor" and w.cluster_notice != "storm-floor":
        w.cluster_notice = "storm-floor"
        w.note(EventType.WARNING, EventReason.THROTTLE_AT_FLOOR,
               f"Storm: ingestion limit at the floor "
               f"{w.spec.remediation.throttle.floor_assertions_per_sec}/s; worst lag "
               f"{_f(worst)} s", None, Outcome.SKIPPED)


def _backpressure(w: _Work, lag: float) -> bool:
    bp = w.spec.remediation.backpressure
    return bp.enabled and lag > bp.lag_seconds


def _restore(w: _Work) -> None:
    t = w.throttle
    if not t.active:
        return
    if any(rm.severity is not Severity.NONE for rm in w.reps.values()) or w.mem.storm:
        _reissue_rate(w)
        return
    if w.pending_for(ActionKind.SET_RATE_LIMIT, None) is not None:
        return
    ts = w.spec.remediation.throttle
    if t.restoring and t.step_at is not None and w.now - t.step_at < ts.restore_step_seconds:
        return
    base = t.rate_to_restore if t.rate_to_restore is not None else t.base_rate
    cur = t.current_rate
    idx = t.restore_index + 1
    while idx < len(ts.restore_ramp):
        target = math.floor(base * ts.restore_ramp[idx])
        if cur is None or target > cur:
            break
        idx += 1
    if idx < len(ts.restore_ramp):
        target = math.floor(base * ts.restore_ramp[idx])
        msg = (f"Raise ingestion limit to {target}/s (step {idx + 1} of "
               f"{len(ts.restore_ramp) + 1} back to {_rate_str(t.rate_to_restore)})")
        if w.propose(ActionKind.SET_RATE_LIMIT, EventReason.RATE_RESTORE_STEP, msg,
                     rate=target, deadline=_short_deadline(w)):
            w.throttle = replace(t, restoring=True, restore_index=idx, current_rate=target,
                                 step_at=w.now)
        return
    final = t.rate_to_restore
    msg = (f"Restore ingestion limit to {_rate_str(final)}"
           + ("" if t.rate_to_restore_known else
              " (the limit before the episode could not be read; removing the limit)")
           + f", replacing {_rate_str(cur)}")
    if w.propose(ActionKind.SET_RATE_LIMIT, EventReason.RATE_RESTORED, msg, rate=final,
                 deadline=_short_deadline(w)):
        w.throttle = ThrottleMemory()


# --------------------------------------------------------------------------- ladder


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


# --------------------------------------------------------------------------- finish


def _escalation(w: _Work, blind: tuple[float, Reason] | None = None) -> Escalation:
    """The level, why and who, from the replicas' state; `blind` is (seconds, why)
    while the lag cannot be read."""
    es = w.spec.escalation
    level, reason, parts = 0, Reason.NOT_ESCALATED, []
    for rid, rm in w.reps.items():
        if rm.corrupted_at is not None:
            parts.append(f"{rid} Merkle corruption")
            if level < 3:
                level, reason = 3, Reason.MERKLE_CORRUPTION
        exhausted = rm.step is Step.EXHAUSTED or rm.rebuild_marked or (
            rm.step is Step.REBUILD)
        if exhausted and rm.severity is not Severity.NONE:
            parts.append(f"{rid} ladder exhausted after {rm.sync_attempts} syncs"
                         + (", marked for rebuild" if rm.rebuild_marked else ""))
            if level < 2:
                level, reason = 2, Reason.LADDER_EXHAUSTED
        if rm.crash_loop and rm.severity is not Severity.NONE:
            parts.append(f"{rid} crash loop during sync")
            if level < 1:
                level, reason = 1, Reason.CRASH_LOOP_DURING_SYNC
        if rm.lag_escalated and rm.severity is not Severity.NONE:
            shown = rm.shown_lag
            parts.append(f"{rid} lag {_f(shown)} s over "
                         f"{_f(w.spec.detection.escalation_lag_seconds)} s")
            if level < 1:
                level, reason = 1, Reason.LAG_ABOVE_ESCALATION_THRESHOLD
    if w.mem.storm:
        n = sum(1 for rm in w.reps.values() if rm.severity is Severity.CRITICAL)
        parts.insert(0, f"{n} replicas lagging at once")
        if level < 1:
            level, reason = 1, Reason.REPLICA_STORM
    if blind is not None:
        parts.append(f"lag unreadable for {_f(blind[0])} s ({blind[1].value}); a critical "
                     "replica would go unnoticed")
        if level < 1:
            level, reason = 1, Reason.BLIND_TOO_LONG
    critical = sorted(rid for rid, rm in w.reps.items() if rm.severity is Severity.CRITICAL)
    if w.budget_block is not None and critical:
        frees = _budget_frees_in(w)
        parts.append(f"{', '.join(critical)} critical with every step held by the "
                     + ("cluster's maxActionsPerHour"
                        if w.budget_block is Reason.CLUSTER_BUDGET_EXHAUSTED
                        else "operator-wide action budget")
                     + (f" (frees in {_f(frees)} s)" if frees is not None else ""))
        if level < 1:
            level, reason = 1, Reason.HELD_BY_BUDGET
    since = w.mem.escalated_since
    if level == 0:
        since = None
    elif since is None:
        since = w.now
    if 0 < level < 2 and since is not None and w.now - since >= es.promote_after_seconds:
        parts.append(f"unresolved for {_f(w.now - since)} s")
        level, reason = 2, Reason.ESCALATION_UNRESOLVED
    contact = es.contact(level) if level else ""
    message = (f"Level {level} ({contact}): " + "; ".join(parts)) if level else \
        "Nothing needs a human"
    old_level = w.mem.escalation_level
    if level > old_level or (level and reason.value != w.mem.escalation_reason):
        w.note(EventType.WARNING, EventReason.ESCALATED, message, None)
    elif level == 0 and old_level > 0:
        w.note(EventType.NORMAL, EventReason.ESCALATION_CLEARED,
               f"Escalation level {old_level} cleared", None)
    w.mem = replace(w.mem, escalation_level=level,
                    escalation_reason=reason.value if level else None,
                    escalation_message=message if level else None, escalated_since=since)
    return Escalation(level, reason, contact, message)


def _budget_frees_in(w: _Work) -> float | None:
    """Seconds until the cluster's budget has room again (None: not known here)."""
    if w.budget_block is not Reason.CLUSTER_BUDGET_EXHAUSTED or not w.action_times:
        return None
    return max(0.0, min(w.action_times) + HOUR - w.now)


def _conditions(
    w: _Work, metrics: tuple[Reason, str] | None, esc: Escalation
) -> tuple[Condition, ...]:
    spec = w.spec
    reps = w.reps
    n = len(spec.replicas)
    lagging = [rid for rid, rm in reps.items() if rm.severity is not Severity.NONE]
    critical = [rid for rid, rm in reps.items() if rm.severity is Severity.CRITICAL]
    ok = metrics is None
    ma = Condition(ConditionType.METRICS_AVAILABLE, ok,
                   Reason.METRICS_SCRAPED if ok else metrics[0],  # type: ignore[index]
                   f"Lag read for {n} of {n} replicas" if ok else metrics[1])  # type: ignore[index]

    def lagdesc(ids: list[str]) -> str:
        return ", ".join(f"{i} {_f(reps[i].shown_lag)} s" for i in ids)

    if critical:
        deg = Condition(ConditionType.DEGRADED, True, Reason.LAG_CRITICAL,
                        f"{len(critical)} of {n} replicas past critical "
                        f"{_f(spec.detection.critical.lag_seconds)} s: {lagdesc(critical)}")
    elif lagging:
        deg = Condition(ConditionType.DEGRADED, True, Reason.LAG_WARNING,
                        f"{len(lagging)} of {n} replicas past warning "
                        f"{_f(spec.detection.warning.lag_seconds)} s: {lagdesc(lagging)}")
    else:
        deg = Condition(ConditionType.DEGRADED, False, Reason.NO_LAG,
                        f"0 of {n} replicas past warning "
                        f"{_f(spec.detection.warning.lag_seconds)} s")

    rem_reason, rem_msg = _remediating(w)
    rem = Condition(ConditionType.REMEDIATING, rem_reason is not Reason.IDLE, rem_reason, rem_msg)

    rm_ = spec.remediation
    left = rm_.max_actions_per_hour - len(w.action_times)
    if spec.remediation.paused:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False, Reason.PAUSED,
                            "spec.remediation.paused is true; no admin calls are made")
    elif rm_.mode is Mode.OBSERVE:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False, Reason.OBSERVE_MODE,
                            "Mode Observe: lag is reported, nothing is acted on")
    elif rm_.mode is Mode.DRY_RUN:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False, Reason.DRY_RUN_MODE,
                            "Mode DryRun: decisions are reported as 'would do', no admin calls")
    elif not ok:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False, Reason.METRICS_UNAVAILABLE,
                            "No action while metrics are missing or stale")
    elif left <= 0:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False,
                            Reason.CLUSTER_BUDGET_EXHAUSTED,
                            f"{len(w.action_times)} actions in the last hour "
                            f"(maxActionsPerHour {rm_.max_actions_per_hour})")
    elif w.budget_block is Reason.OPERATOR_BUDGET_EXHAUSTED:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, False,
                            Reason.OPERATOR_BUDGET_EXHAUSTED,
                            "The operator-wide action budget is used up")
    else:
        allowed = Condition(ConditionType.REMEDIATION_ALLOWED, True, Reason.ALLOWED,
                            f"Mode Auto; {left} of {rm_.max_actions_per_hour} actions left "
                            "this hour")
    escalated = Condition(ConditionType.ESCALATED, esc.level > 0, esc.reason, esc.message)
    if not ok:
        ready = Condition(ConditionType.READY, False, Reason.METRICS_UNAVAILABLE,
                          "Metrics are missing or stale")
    elif esc.level > 0:
        ready = Condition(ConditionType.READY, False, Reason.NOT_READY_ESCALATED,
                          f"Escalated to level {esc.level} ({esc.contact})")
    elif lagging:
        ready = Condition(ConditionType.READY, False, Reason.REPLICAS_LAGGING,
                          f"{n - len(lagging)} of {n} replicas in sync")
    else:
        ready = Condition(ConditionType.READY, True, Reason.ALL_REPLICAS_IN_SYNC,
                          f"{n} of {n} replicas in sync")
    return (ready, ma, deg, rem, allowed, escalated)


_STEP_REASON = {
    Step.RESET_BREAKER: Reason.RESETTING_BREAKER,
    Step.THROTTLE: Reason.THROTTLING,
    Step.FORCE_SYNC: Reason.FORCING_SYNC,
    Step.REBUILD: Reason.AWAITING_REBUILD_APPROVAL,
    Step.EXHAUSTED: Reason.LADDER_EXHAUSTED,
}
_STEP_RANK = [Step.RESET_BREAKER, Step.THROTTLE, Step.FORCE_SYNC, Step.REBUILD, Step.EXHAUSTED]


def current_step(memory: Memory) -> tuple[str, Step]:
    """(replica id, step) of the replica furthest up the ladder; ('', NONE) if none."""
    best: tuple[str, Step] = ("", Step.NONE)
    for rm in memory.replicas:
        if rm.step is Step.NONE:
            continue
        if best[1] is Step.NONE or _STEP_RANK.index(rm.step) > _STEP_RANK.index(best[1]):
            best = (rm.replica_id, rm.step)
    return best


def _remediating(w: _Work) -> tuple[Reason, str]:
    rid, step = current_step(Memory(replicas=tuple(w.reps.values())))
    if step is not Step.NONE:
        rm = w.reps[rid]
        if rm.rebuild_marked:
            return Reason.REBUILD_MARKED, f"{rid} marked for rebuild"
        request = _rebuild_request(w, rid)
        if step is Step.REBUILD and (w.spec.remediation.rebuild.policy is RebuildPolicy.AUTOMATIC
                                     or request in w.obs.approved_rebuilds):
            return Reason.LADDER_EXHAUSTED, (f"{rid} needs a rebuild that safety limits hold "
                                             "back")
        detail = {
            Step.RESET_BREAKER: f"attempt {rm.step_attempts}/"
                                f"{w.spec.remediation.breaker_reset.max_attempts}",
            Step.THROTTLE: f"limit {_rate_str(w.throttle.current_rate)}",
            Step.FORCE_SYNC: f"attempt {rm.sync_attempts}/"
                             f"{w.spec.remediation.merkle_sync.max_attempts}",
            Step.REBUILD: f"after {rm.sync_attempts} failed syncs; approve with "
                          f"{APPROVE_REBUILD_ANNOTATION}={request}",
            Step.EXHAUSTED: "no automated step left",
        }[step]
        return _STEP_REASON[step], f"{rid}: {step.value}, {detail}"
    if w.throttle.active:
        if not any(rm.severity is not Severity.NONE for rm in w.reps.values()):
            return Reason.RESTORING_RATE, (f"Limit {_rate_str(w.throttle.current_rate)}, "
                                           f"restoring to {_rate_str(w.throttle.rate_to_restore)}")
        return Reason.THROTTLING, f"Limit {_rate_str(w.throttle.current_rate)}"
    if any(rm.severity is Severity.CRITICAL for rm in w.reps.values()):
        return Reason.HOLDING, "Replicas are critical but no step is running"
    return Reason.IDLE, "No runbook step is running"


def _blind_limit(spec: Spec) -> float:
    """How long the lag may be unreadable before a human is called: the time in which
    a critical replica would otherwise have been acted on (issue 14, item 7)."""
    d = spec.detection
    return max(d.critical.for_seconds, 3 * d.poll_interval_seconds)


def _finish(w: _Work, *, metrics: tuple[Reason, str] | None,
            blind_for: float | None = None) -> Plan:
    if metrics is None:
        esc = _escalation(w)
    elif blind_for is not None and blind_for >= _blind_limit(w.spec):
        esc = _escalation(w, blind=(blind_for, metrics[0]))
    else:  # briefly blind: the escalation stands as last seen
        esc = Escalation(
            w.mem.escalation_level,
            Reason(w.mem.escalation_reason) if w.mem.escalation_reason
            else Reason.NOT_ESCALATED,
            w.spec.escalation.contact(w.mem.escalation_level) if w.mem.escalation_level
            else "",
            w.mem.escalation_message or "Nothing needs a human",
        )
    conditions = _conditions(w, metrics, esc)
    mem = replace(
        w.mem,
        replicas=tuple(w.reps[r.id] for r in w.spec.replicas),
        throttle=w.throttle,
        pending=tuple(w.pending),
        action_times=tuple(w.action_times),
        seq=w.seq,
        last_notice=w.cluster_notice,
    ).with_history(*w.history)
    return Plan(
        actions=tuple(w.actions),
        memory=mem,
        conditions=conditions,
        events=tuple(w.events),
        requeue_after=_requeue(w),
        escalation=esc,
        metrics_available=metrics is None,
        suppressed=tuple(w.suppressed),
    )


def _requeue(w: _Work) -> float:
    d = w.spec.detection
    poll = d.poll_interval_seconds
    deadlines: list[float] = [i.deadline for i in w.pending]
    for rm in w.reps.values():
        if rm.above_warning_since is not None and rm.severity is Severity.NONE:
            deadlines.append(rm.above_warning_since + d.warning.for_seconds)
        if rm.above_critical_since is not None and rm.severity is not Severity.CRITICAL:
            deadlines.append(rm.above_critical_since + d.critical.for_seconds)
        if rm.below_recovery_since is not None and rm.severity is not Severity.NONE:
            deadlines.append(rm.below_recovery_since + d.recovery.for_seconds)
    future = [t - w.now for t in deadlines if t > w.now]
    nxt = min([poll, *future])
    return max(MIN_REQUEUE, min(poll, nxt))


# --------------------------------------------------------------------------- outcomes


def record_outcome(
    memory: Memory, idempotency_key: str, outcome: ActionOutcome, now: float
) -> Memory:
    """Confirm or fail a pending intent; the outcome is appended to the bounded history."""
    intent = next((i for i in memory.pending if i.key == idempotency_key), None)
    if intent is None:
        return memory
    pending = tuple(i for i in memory.pending if i.key != idempotency_key)
    mem = replace(memory, pending=pending)
    if not outcome.ok:
        if intent.kind is ActionKind.SET_RATE_LIMIT:
            mem = replace(mem, throttle=replace(mem.throttle, reissue=mem.throttle.active))
        elif intent.replica_id is not None:
            reps = []
            for rm in mem.replicas:
                if rm.replica_id == intent.replica_id:
                    if intent.kind is ActionKind.MARK_REBUILD:
                        rm = replace(rm, rebuild_marked=False)
                    else:
                        rm = replace(rm, last_failed_kind=intent.kind.value)
                reps.append(rm)
            mem = replace(mem, replicas=tuple(reps))
    detail = outcome.detail[:200]
    text = (f"{intent.kind.value}{' on ' + intent.replica_id if intent.replica_id else ''} "
            + ("succeeded" if outcome.ok else "failed") + (f": {detail}" if detail else ""))
    return mem.with_history(HistoryEntry(
        now, intent.kind.value, intent.replica_id,
        (EventReason.ACTION_CONFIRMED if outcome.ok else EventReason.ACTION_FAILED).value,
        text, (Outcome.OK if outcome.ok else Outcome.FAILED).value, intent.key))
