"""The condition vocabulary: types, reasons (each with a one-line meaning), and a merge
helper that moves `lastTransitionTime` only when a condition's status flips.

Messages carry numbers but never timestamps, so an unchanged situation yields an
unchanged condition list and the handler can skip the status write.
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class _Meaning(enum.StrEnum):
    """A string enum whose members carry a one-line meaning."""

    meaning: str

    def __new__(cls, value: str, meaning: str = "") -> _Meaning:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.meaning = meaning
        return obj


class ConditionType(_Meaning):
    READY = "Ready", "Summary: metrics available, no replica lagging, nothing escalated."
    METRICS_AVAILABLE = "MetricsAvailable", "The last poll produced fresh, complete lag data."
    DEGRADED = "Degraded", "At least one replica is past the warning or critical threshold."
    REMEDIATING = "Remediating", "A runbook step or a throttle restore ramp is in progress."
    REMEDIATION_ALLOWED = "RemediationAllowed", "The operator may call the admin API now."
    ESCALATED = "Escalated", "A human has to look; the message says who and why."


class Reason(_Meaning):
    # Ready
    ALL_REPLICAS_IN_SYNC = "AllReplicasInSync", "Every replica is below the warning threshold."
    REPLICAS_LAGGING = "ReplicasLagging", "One or more replicas are in a lag episode."
    NOT_READY_ESCALATED = "EscalatedToHuman", "The cluster is escalated to a human."
    # MetricsAvailable
    METRICS_SCRAPED = "MetricsScraped", "The primary's /metrics was scraped and had every replica."
    PRIMARY_SCRAPE_FAILED = "PrimaryScrapeFailed", "The primary's /metrics could not be read."
    DESTINATION_DENIED = (
        "DestinationDenied",
        "A spec URL resolves to an address the operator's destination policy denies.",
    )
    OBSERVATION_STALE = "ObservationStale", "The observation is older than staleAfterSeconds."
    REPLICA_LAG_MISSING = "ReplicaLagMissing", "A replica in the spec has no lag series."
    PRIMARY_METRICS_INCOMPLETE = (
        "PrimaryMetricsIncomplete",
        "The primary's /metrics lacks a series the decisions need for a replica (sync, "
        "restarts, corruption, breaker): a body cut short, or a StemeDB without it.",
    )
    # Degraded
    NO_LAG = "NoLag", "No replica is past the warning threshold for its window."
    LAG_WARNING = "LagWarning", "A replica is past the warning threshold for its window."
    LAG_CRITICAL = "LagCritical", "A replica is past the critical threshold for its window."
    # Remediating
    IDLE = "Idle", "No runbook step is running."
    RESETTING_BREAKER = "ResettingBreaker", "The lagging replica's tripped breaker is being reset."
    THROTTLING = "Throttling", "Ingestion is being reduced step by step."
    FORCING_SYNC = "ForcingSync", "A forced Merkle sync is running or being watched."
    AWAITING_REBUILD_APPROVAL = (
        "AwaitingRebuildApproval",
        "Rebuild is the next step and needs the stemedb.io/approve-rebuild annotation.",
    )
    REBUILD_MARKED = "RebuildMarked", "A replica is marked for rebuild."
    RESTORING_RATE = "RestoringRate", "The episode is over; ingestion is ramped back up."
    LADDER_EXHAUSTED = "LadderExhausted", "Every automated step was tried; a human must act."
    HOLDING = "Holding", "A replica is in an episode but automated steps are held."
    # RemediationAllowed
    ALLOWED = "Allowed", "Mode Auto, not paused, metrics available, budget left."
    PAUSED = "Paused", "spec.remediation.paused is true: nothing is acted on."
    OBSERVE_MODE = "ObserveMode", "spec.remediation.mode is Observe: only reports."
    DRY_RUN_MODE = "DryRunMode", "spec.remediation.mode is DryRun: decisions are 'would do'."
    METRICS_UNAVAILABLE = "MetricsUnavailable", "No action is taken on missing or stale data."
    CLUSTER_BUDGET_EXHAUSTED = (
        "ClusterBudgetExhausted",
        "spec.remediation.maxActionsPerHour actions were taken in the last hour.",
    )
    OPERATOR_BUDGET_EXHAUSTED = (
        "OperatorBudgetExhausted",
        "The operator-wide action budget (--max-actions-per-hour) is used up.",
    )
    ADMIN_API_BACKING_OFF = (
        "AdminApiBackingOff",
        "The admin API failed the last attempts of an action; the next one waits "
        "(exponential backoff with jitter, capped at 5 minutes).",
    )
    SPEC_CONTRADICTS_CLUSTER = (
        "SpecContradictsCluster",
        "StemeDB's metrics contradict a spec field (the message names it); nothing is acted on.",
    )
    INVALID_SPEC = (
        "InvalidSpec",
        "The spec got past the schema but fails the policy's checks; the message lists each.",
    )
    # Escalated
    NOT_ESCALATED = "NotEscalated", "Nothing needs a human."
    LAG_ABOVE_ESCALATION_THRESHOLD = (
        "LagAboveEscalationThreshold",
        "A replica's lag exceeds spec.detection.escalation.lagSeconds (runbook: > 60 s).",
    )
    CRASH_LOOP_DURING_SYNC = (
        "CrashLoopDuringSync", "A replica restarted repeatedly while a Merkle sync ran."
    )
    MERKLE_CORRUPTION = "MerkleCorruption", "Merkle sync reported corruption (data integrity)."
    ADMIN_API_FAILING = (
        "AdminApiFailing",
        "A critical replica's step is held because the admin API keeps failing it.",
    )
    REPLICA_STORM = (
        "ReplicaStorm", "Several replicas lag at once: primary overload or network, not a replica."
    )
    ESCALATION_UNRESOLVED = (
        "EscalationUnresolved",
        "Escalated longer than spec.escalation.promoteAfterSeconds; promoted one level.",
    )
    BLIND_TOO_LONG = (
        "LagUnreadableTooLong",
        "The cluster's lag has been unreadable for longer than critical.forSeconds: a "
        "critical replica would go unnoticed.",
    )
    HELD_BY_BUDGET = (
        "RemediationHeldByBudget",
        "A replica is critical and an action budget holds its next step.",
    )


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class EventReason(_Meaning):
    LAG_WARNING = "LagWarning", "A replica crossed the warning threshold for its window."
    LAG_CRITICAL = "LagCritical", "A replica crossed the critical threshold; the ladder starts."
    BREAKER_RESET = "BreakerReset", "Reset the lagging replica's tripped circuit breaker."
    BREAKER_NOT_TRIPPED = "BreakerNotTripped", "The replica's breaker is not tripped; step skipped."
    BREAKER_STATE_UNKNOWN = (
        "BreakerStateUnknown", "The tripped-breakers list could not be read; step skipped."
    )
    THROTTLE_STEP = "ThrottleStep", "Lowered the ingestion rate limit by one ladder step."
    THROTTLE_AT_FLOOR = "ThrottleAtFloor", "The rate limit is at the floor; no lower step."
    STEP_WORKING = "StepWorking", "Lag is draining; the current step is given more time."
    STEP_TIMED_OUT = "StepTimedOut", "The step did not bring lag down in time; moving on."
    FORCE_SYNC = "ForceSync", "Started a forced Merkle sync of the replica."
    SYNC_ADOPTED = (
        "SyncAdopted",
        "A sync of the replica was already running (started by a human or before a "
        "restart): it counts as the step's attempt, and no second sync is requested.",
    )
    SYNC_STALLED = "SyncStalled", "Sync progress did not move for stallTimeoutSeconds."
    SYNC_FAILED = "SyncFailed", "A forced sync ended without catching the replica up."
    SYNC_ATTEMPTS_EXHAUSTED = "SyncAttemptsExhausted", "Forced sync failed maxAttempts times."
    MARK_REBUILD = "MarkRebuild", "Marked the replica for rebuild."
    REBUILD_NEEDS_APPROVAL = (
        "RebuildNeedsApproval", "Rebuild needs the stemedb.io/approve-rebuild annotation."
    )
    STEP_DISABLED = "StepDisabled", "The step is disabled in the spec; skipped."
    ACTION_SKIPPED = "ActionSkipped", "A planned action was not taken; the message says why."
    ACTION_FAILED = "ActionFailed", "An admin call failed."
    ACTION_CONFIRMED = "ActionConfirmed", "An admin call succeeded."
    ACTION_TIMED_OUT = "ActionTimedOut", "No outcome was recorded for an action within its timeout."
    WOULD_ACT = "WouldAct", "DryRun: the operator would have taken this action."
    ESCALATED = "Escalated", "Escalated to a human; the message names who and why."
    ESCALATION_CLEARED = "EscalationCleared", "The escalation is over."
    STORM = ("ReplicaStorm", "Several replicas lag at once; syncs and rebuilds are suspended "
             "(tripped breakers are still reset).")
    CORRUPTION = "MerkleCorruption", "Merkle sync reported corruption; actions on it are held."
    RECOVERED = "Recovered", "The replica stayed below the recovery threshold for its window."
    RATE_RESTORE_STEP = "RateRestoreStep", "Raised the rate limit one step of the restore ramp."
    RATE_RESTORED = "RateRestored", "The rate limit is back to what it was before the episode."
    METRICS_UNAVAILABLE = "MetricsUnavailable", "Metrics were missing or stale; nothing done."
    COOLDOWN = "CooldownActive", "The replica's ladder ran recently; waiting out the cooldown."
    # Posted by the handler, outside the policy (never in history):
    INVALID_SPEC = "InvalidSpec", "The spec fails the policy's checks; nothing is acted on."
    DESTINATION_DENIED = (
        "DestinationDenied", "A spec URL is, or resolves to, a denied address; nothing is sent."
    )
    SPEC_CONTRADICTS_CLUSTER = (
        "SpecContradictsCluster", "StemeDB's metrics contradict a spec field; nothing is acted on."
    )
    MEMORY_RESET = "MemoryReset", "status.memory could not be read; the operator starts afresh."
    NOTIFIED = "Notified", "The escalation webhook was told of a rise in level."
    NOTIFICATION_FAILED = "NotificationFailed", "The escalation webhook could not be told."
    RESTORE_ABANDONED = (
        "RestoreAbandoned",
        "On deletion the throttle could not be lifted; the rate must be set by hand.",
    )
    DELETION_HELD = (
        "DeletionHeld",
        "The object stays until the throttle this operator set is lifted; the message says "
        "why it cannot be yet and when the operator gives up.",
    )


@dataclass(frozen=True, slots=True)
class Condition:
    type: ConditionType
    status: bool | None  # None: Unknown (the operator cannot tell)
    reason: Reason
    message: str

    @property
    def status_str(self) -> str:
        return "Unknown" if self.status is None else "True" if self.status else "False"


def _rfc3339(ts: float) -> str:
    return (
        _dt.datetime.fromtimestamp(int(ts), tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )


def merge_conditions(
    old: Sequence[dict[str, Any]] | None,
    new: Iterable[Condition],
    now: float,
    *,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """metav1.Condition dicts for `new`, keeping each old `lastTransitionTime` unless the
    status flipped. Old conditions of types not in `new` are kept as they were; the
    result is ordered by ConditionType declaration order, then the unknown types."""
    by_type: dict[str, dict[str, Any]] = {}
    for c in old or ():
        if isinstance(c, dict) and "type" in c:
            by_type[str(c["type"])] = dict(c)
    for cond in new:
        prev = by_type.get(cond.type.value)
        status = cond.status_str
        if prev is not None and prev.get("status") == status and prev.get("lastTransitionTime"):
            ltt = prev["lastTransitionTime"]
        else:
            ltt = _rfc3339(now)
        d: dict[str, Any] = {
            "type": cond.type.value,
            "status": status,
            "reason": cond.reason.value,
            "message": cond.message,
            "lastTransitionTime": ltt,
        }
        if generation is not None:
            d["observedGeneration"] = generation
        elif prev is not None and "observedGeneration" in prev:
            d["observedGeneration"] = prev["observedGeneration"]
        by_type[cond.type.value] = d
    order = [t.value for t in ConditionType]
    known = [by_type[t] for t in order if t in by_type]
    rest = [by_type[t] for t in sorted(by_type) if t not in order]
    return known + rest
