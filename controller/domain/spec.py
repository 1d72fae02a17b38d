"""The StemeDBCluster spec as typed, frozen values with defaults, declared once.

Each field carries its JSON name, description, bounds and text rules
(`spec_field`, controller/domain/spec_schema.py). From that one declaration
hack/gen-crd.py writes the CRD's OpenAPI schema, and `parse_spec` reads and
checks a raw `.spec` (as the API server stored it, possibly already defaulted),
section by section, raising `SpecError` with *every* problem found, each with
its field path and a plain sentence. `spec_to_raw` is the inverse (camelCase
JSON, by the codec memory uses).

The throttle ladder is expressed as fractions of the ingestion rate limit in
force when the episode started (see docs/remediation-policy.md).
"""

# ruff: noqa: RUF009 - every field is declared by `spec_field` (a `dataclasses.field`
# carrying its Meta) or a helper returning one; ruff sees only a call.
from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from controller.domain.codec import to_json
from controller.domain.spec_reader import SpecProblem, SpecReader, shown_number
from controller.domain.spec_schema import (
    CONTACT_TEXT,
    NODE_ID_TEXT,
    OBJECT_NAME_TEXT,
    SECRET_KEY_TEXT,
    URL_TEXT,
    Meta,
    Order,
    Rule,
    Via,
    declared,
    numeric_fields,
    spec_field,
)

__all__ = [
    "MAXIMA",
    "MAX_REPLICAS",
    "SPEC_META",
    "AuthSpec",
    "BackpressureSpec",
    "BreakerResetSpec",
    "DetectionSpec",
    "EscalationSpec",
    "MerkleSyncSpec",
    "Mode",
    "PrimarySpec",
    "RebuildPolicy",
    "RebuildSpec",
    "RemediationSpec",
    "ReplicaSpec",
    "SecretKeyRef",
    "Spec",
    "SpecError",
    "SpecProblem",
    "Threshold",
    "ThrottleSpec",
    "parse_spec",
    "spec_to_raw",
]

# Upper bounds: a week for any time window, a day for a lag threshold. Without
# them `forSeconds: 1e308` was accepted and simply never elapsed.
_WEEK, _DAY = 604800, 86400
MAX_REPLICAS = 64
_RUN_STEP = "Run this step."


class Mode(enum.StrEnum):
    AUTO = "Auto"
    DRY_RUN = "DryRun"
    OBSERVE = "Observe"


class RebuildPolicy(enum.StrEnum):
    MANUAL = "Manual"
    AUTOMATIC = "Automatic"


class SpecError(ValueError):
    """An invalid spec; `problems` lists every problem at once."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems: tuple[SpecProblem, ...] = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems))


def _duration(default: float, description: str, *, positive: bool = True,
              maximum: float = _WEEK) -> Any:
    """A duration (or lag) in seconds: above 0 (or at least 0), and bounded."""
    return spec_field(default, description=description, minimum=0,
                      exclusive_minimum=positive, maximum=maximum)


def _count(default: int, description: str, *, minimum: int, maximum: float) -> Any:
    return spec_field(default, description=description, minimum=minimum, maximum=maximum)


_FRACTION = Meta(minimum=0, exclusive_minimum=True, maximum=1, exclusive_maximum=True)


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    name: str = spec_field(
        description="Name of the Secret in the resource's namespace (a name, never a path: "
        "the namespace is always the resource's own).",
        text=OBJECT_NAME_TEXT, required=True)
    key: str = spec_field(description="Key inside the Secret.", text=SECRET_KEY_TEXT,
                          required=True)


@dataclass(frozen=True, slots=True)
class PrimarySpec:
    admin_url: str = spec_field(
        description="Base URL of the primary (its /metrics and /v1/admin/... hang under it), "
        "e.g. http://stemedb-0:18180.",
        text=URL_TEXT, required=True)
    id: str = spec_field("node1", description="Node id of the primary as it appears in "
                         "metrics labels.", text=NODE_ID_TEXT)


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    id: str = spec_field(
        description="Replica id as in the replica label of stemedb_replication_lag_seconds "
        "(e.g. node2).",
        text=NODE_ID_TEXT, required=True)
    # Required by the CRD; the parser alone defaults it to agent-<id> (older objects).
    agent_id: str = spec_field(
        description="Agent id of the replica's circuit breaker (e.g. agent-node2).",
        text=NODE_ID_TEXT, required=True)
    metrics_url: str | None = spec_field(
        None, description="Optional base URL of the replica itself; its /metrics is scraped "
        "only during an episode.", text=URL_TEXT)
    pod_name: str | None = spec_field(
        None, key="name",
        description="Pod name in the resource's namespace (a name, never a path: the "
        "namespace is always the resource's own).",
        text=OBJECT_NAME_TEXT, required=True,
        via=Via("podRef", "Optional Pod of the replica; annotated when the replica is marked "
                "for rebuild."))


@dataclass(frozen=True, slots=True)
class AuthSpec:
    token_secret_ref: SecretKeyRef | None = spec_field(
        None, description="Secret key holding the bearer token.")
    ca_secret_ref: SecretKeyRef | None = spec_field(
        None, description="Secret key holding a PEM CA bundle for TLS.")


@dataclass(frozen=True, slots=True)
class Threshold:
    """A lag level held for a window; each use describes its two fields."""

    lag_seconds: float = spec_field(minimum=0, exclusive_minimum=True, maximum=_DAY)
    for_seconds: float = spec_field(minimum=0, maximum=_WEEK)


def _threshold(default: Threshold, description: str, lag: str, held: str) -> Any:
    return spec_field(default, description=description, describe=(
        ("lag_seconds", lag),
        ("for_seconds", f"How long lag must stay {held} the threshold, in seconds.")))


_DETECTION_RULES = (
    Rule("self.warning.lagSeconds < self.critical.lagSeconds",
         "spec.detection.critical.lagSeconds must be greater than "
         "spec.detection.warning.lagSeconds", ".critical.lagSeconds"),
    Rule("self.critical.lagSeconds < self.escalation.lagSeconds",
         "spec.detection.escalation.lagSeconds must be greater than "
         "spec.detection.critical.lagSeconds", ".escalation.lagSeconds"),
    Rule("self.recovery.lagSeconds < self.warning.lagSeconds",
         "spec.detection.recovery.lagSeconds must be less than "
         "spec.detection.warning.lagSeconds", ".recovery.lagSeconds"),
    Rule("!has(self.staleAfterSeconds) || !has(self.pollIntervalSeconds) || "
         "self.staleAfterSeconds >= self.pollIntervalSeconds",
         "staleAfterSeconds must be at least pollIntervalSeconds (otherwise every observation "
         "is stale when it is used)", ".staleAfterSeconds"),
)


@dataclass(frozen=True, slots=True)
class DetectionSpec:
    poll_interval_seconds: float = spec_field(
        10.0, description="Seconds between polls of the primary's /metrics.",
        minimum=1, maximum=3600)
    warning: Threshold = _threshold(
        Threshold(5.0, 300.0),
        "Warning level: lag above lagSeconds for forSeconds (runbook: > 5 s for 5 m).",
        "Warning lag threshold in seconds.", "above")
    critical: Threshold = _threshold(
        Threshold(10.0, 180.0),
        "Critical level: lag above lagSeconds for forSeconds (runbook: > 10 s for 3 m). "
        "The ladder starts here.",
        "Critical lag threshold in seconds.", "above")
    escalation_lag_seconds: float = spec_field(
        60.0, key="lagSeconds", description="Escalation lag threshold in seconds; no window.",
        minimum=0, exclusive_minimum=True, maximum=_DAY,
        via=Via("escalation", "Escalate immediately above this lag (runbook: > 60 s).",
                defaulted=True))
    recovery: Threshold = _threshold(
        Threshold(3.0, 120.0),
        "Hysteresis: an episode ends only after lag stays below lagSeconds for forSeconds.",
        "Recovery lag threshold in seconds; below the warning threshold.", "below")
    stale_after_seconds: float = _duration(
        30.0, "An observation older than this is stale; no action is taken on it.")
    storm_replicas: int = _count(
        2, "This many replicas critical at once is a storm: throttle and escalate, no "
        "forced syncs or rebuilds (a tripped breaker is still reset).",
        minimum=2, maximum=MAX_REPLICAS)
    crash_loop_restarts: int = _count(
        3, "Restarts during a forced sync that count as a crash loop (escalates).",
        minimum=1, maximum=1000)


@dataclass(frozen=True, slots=True)
class BreakerResetSpec:
    enabled: bool = spec_field(True, description=_RUN_STEP)
    timeout_seconds: float = _duration(60.0, "Wait this long after a reset before judging it.")
    max_attempts: int = _count(2, "Resets before moving on.", minimum=1, maximum=10)


_MAX_STEPS = 10


@dataclass(frozen=True, slots=True)
class ThrottleSpec:
    enabled: bool = spec_field(True, description=_RUN_STEP)
    ladder: tuple[float, ...] = spec_field(
        (0.75, 0.5, 0.25),
        description="Rate limit steps as fractions (0..1, strictly decreasing) of the limit "
        "in force when the episode began (or of unlimitedBaselineAssertionsPerSec when there "
        "was none).",
        items=_FRACTION, min_items=1, max_items=_MAX_STEPS, list_type="set",
        order=Order.DECREASING,
        rules=(Rule("self.map(x, 0.0 - x).isSorted()",
                    "spec.remediation.throttle.ladder must be strictly decreasing"),))
    floor_assertions_per_sec: int = _count(
        100, "Never throttle below this many assertions per second.",
        minimum=1, maximum=1_000_000_000)
    step_interval_seconds: float = _duration(
        60.0, "Wait this long between throttle steps, checking the lag trend.")
    unlimited_baseline_assertions_per_sec: int = _count(
        2000, "Rate the ladder fractions apply to when no limit was set, or it could not be "
        "read back.", minimum=1, maximum=1_000_000_000)
    restore_ramp: tuple[float, ...] = spec_field(
        (0.5, 0.75),
        description="After recovery the limit is raised through these fractions (strictly "
        "increasing) of the rate to restore, then restored fully.",
        items=_FRACTION, max_items=_MAX_STEPS, list_type="set", order=Order.INCREASING,
        rules=(Rule("self.isSorted()",
                    "spec.remediation.throttle.restoreRamp must be strictly increasing"),))
    restore_step_seconds: float = _duration(60.0, "Seconds between restore ramp steps.")


@dataclass(frozen=True, slots=True)
class MerkleSyncSpec:
    enabled: bool = spec_field(True, description=_RUN_STEP)
    timeout_seconds: float = _duration(
        600.0, "A sync that has not caught the replica up by then counts as failed (unless "
        "lag is draining).")
    max_attempts: int = _count(3, "Forced syncs before moving on to rebuild.",
                               minimum=1, maximum=10)
    stall_timeout_seconds: float = _duration(
        120.0, "A sync whose progress does not move for this long has stalled.")


@dataclass(frozen=True, slots=True)
class RebuildSpec:
    enabled: bool = spec_field(True, description=_RUN_STEP)
    policy: RebuildPolicy = spec_field(
        RebuildPolicy.MANUAL,
        description="Manual: mark only once the annotation stemedb.io/approve-rebuild names "
        "the request shown in the Remediating condition (replica@request; used up with its "
        "episode). Automatic: mark without approval.")


@dataclass(frozen=True, slots=True)
class BackpressureSpec:
    enabled: bool = spec_field(False, description="Apply backpressure.")
    lag_seconds: float = _duration(
        30.0, "Lag in seconds above which ingestion goes to the floor.", maximum=_DAY)


@dataclass(frozen=True, slots=True)
class RemediationSpec:
    mode: Mode = spec_field(
        Mode.AUTO, description="Auto acts; DryRun reports what it would do without admin "
        "calls; Observe only reports.")
    paused: bool = spec_field(
        False, description="When true nothing is acted on (detection and reporting continue).")
    cooldown_seconds: float = _duration(
        600.0, "After a replica's episode in which steps ran, its ladder does not start again "
        "for this long.", positive=False)
    max_actions_per_hour: int = _count(
        20, "Per-cluster budget of admin calls in any hour.", minimum=0, maximum=10000)
    max_concurrent_rebuilds: int = _count(
        1, "At most this many replicas marked for rebuild at once.",
        minimum=0, maximum=MAX_REPLICAS)
    min_in_sync_replicas: int = _count(
        1, "Never mark a replica for rebuild unless at least this many other replicas are in "
        "sync.", minimum=0, maximum=MAX_REPLICAS)
    drain_fraction: float = spec_field(
        0.1, description="A step is working (given more time) if lag fell by at least this "
        "fraction since the step began.",
        minimum=0, exclusive_minimum=True, maximum=1, exclusive_maximum=True)
    breaker_reset: BreakerResetSpec = spec_field(
        BreakerResetSpec(), description="Runbook: reset the lagging replica's circuit "
        "breaker, only if it is tripped.")
    throttle: ThrottleSpec = spec_field(
        ThrottleSpec(), description="Runbook: temporarily reduce ingestion on the primary, "
        "in steps, restored in a ramp afterwards.",
        rules=(Rule("double(self.floorAssertionsPerSec) < self.ladder[size(self.ladder) - 1] "
                    "* double(self.unlimitedBaselineAssertionsPerSec)",
                    "spec.remediation.throttle.floorAssertionsPerSec must be below the "
                    "ladder's last step times unlimitedBaselineAssertionsPerSec",
                    ".floorAssertionsPerSec"),))
    merkle_sync: MerkleSyncSpec = spec_field(
        MerkleSyncSpec(), description="Runbook: force a Merkle sync and watch "
        "merkle_sync_progress.",
        rules=(Rule("self.stallTimeoutSeconds <= self.timeoutSeconds",
                    "spec.remediation.merkleSync.stallTimeoutSeconds must not exceed "
                    "timeoutSeconds", ".stallTimeoutSeconds"),))
    rebuild: RebuildSpec = spec_field(
        RebuildSpec(), description="Runbook: if sync fails repeatedly, rebuild the replica "
        "(the operator marks it; a human or tool rebuilds).")
    backpressure: BackpressureSpec = spec_field(
        BackpressureSpec(), description="Runbook's max_replication_lag_seconds: above this "
        "lag, throttle straight to the floor.")


@dataclass(frozen=True, slots=True)
class EscalationSpec:
    cluster_sre: str = spec_field(
        "Cluster SRE", description="Level 1, primary on-call.", text=CONTACT_TEXT)
    distributed_systems_engineer: str = spec_field(
        "Distributed systems engineer", description="Level 2, secondary.", text=CONTACT_TEXT)
    principal_engineer: str = spec_field(
        "Principal engineer", description="Level 3, data corruption suspected.",
        text=CONTACT_TEXT)
    promote_after_seconds: float = _duration(
        1800.0, "A level 1 escalation unresolved for this long is promoted to level 2.")
    webhook_url: str | None = spec_field(
        None, description="Optional URL told (one JSON POST) each time the escalation level "
        'rises: {"kind": "StemeDBClusterEscalated", "cluster": {namespace, name}, "level", '
        '"contact", "reason", "message"}. Delivery shows as a Notified or NotificationFailed '
        "Event.", text=URL_TEXT)
    webhook_auth_secret_ref: SecretKeyRef | None = spec_field(
        None, description="Optional Secret key holding the Authorization header value sent "
        "with each webhook POST (for example 'Bearer <token>'). The Secret needs the "
        "operator's credentials label, as the StemeDB token does; the value is never "
        "logged, shown or sent anywhere else.")

    def contact(self, level: int) -> str:
        return {1: self.cluster_sre, 2: self.distributed_systems_engineer}.get(
            level, self.principal_engineer if level >= 3 else ""
        )


@dataclass(frozen=True, slots=True)
class Spec:
    primary: PrimarySpec = spec_field(
        description="The primary node. Never a target of any action.", required=True)
    replicas: tuple[ReplicaSpec, ...] = spec_field(
        description="The replicas to watch; ids must be non-empty and unique.",
        item_description="One replica.", required=True,
        min_items=1, max_items=MAX_REPLICAS, list_type="map", map_keys=("id",),
        rules=(Rule("self.all(r, self.filter(s, s.agentId == r.agentId).size() == 1)",
                    "each replica must have its own agentId (replicas[].agentId values "
                    "must be unique)"),))
    auth: AuthSpec = spec_field(AuthSpec(), description="Credentials for the admin API.")
    detection: DetectionSpec = spec_field(
        DetectionSpec(), description="How lag is detected (runbook alert rules), with "
        "hysteresis on the way down.", rules=_DETECTION_RULES)
    remediation: RemediationSpec = spec_field(
        RemediationSpec(), description="How the runbook is automated, and the safety limits.")
    escalation: EscalationSpec = spec_field(
        EscalationSpec(), description="Who is called at each escalation level (runbook "
        "escalation path).")

    def replica(self, replica_id: str) -> ReplicaSpec | None:
        for replica in self.replicas:
            if replica.id == replica_id:
                return replica
        return None


# The `.spec` node itself (hack/gen-crd.py writes it into the CRD).
SPEC_META = Meta(
    description="Desired state: where the StemeDB cluster is, how lag is detected, how the "
    "runbook is automated and who is called.",
    rules=(Rule("!self.replicas.exists(r, r.id == self.primary.id)",
                "a replica id must not be the primary's id", ".replicas"),))

# Upper bound of every number in the spec, by field path ([i] dropped): the CRD's
# `maximum`s, which the parser enforces too.
MAXIMA: dict[str, float] = {
    path: meta.maximum for path, meta in numeric_fields(Spec, "spec") if meta.maximum is not None
}


# --------------------------------------------------------------------------- parsing

_SECTIONS = {item.name: item for item in declared(Spec)}
_REPLICA_ID, _AGENT_ID = (item for item in declared(ReplicaSpec) if item.key in ("id", "agentId"))
# Required at admission; the parser alone defaults it to agent-<id> (older objects).
_AGENT_ID_OR_DEFAULT = replace(_AGENT_ID, meta=replace(_AGENT_ID.meta, required=False))


def parse_spec(raw_spec: Mapping[str, Any]) -> Spec:
    """Parse and validate a raw `.spec`; raise SpecError listing every problem."""
    if not isinstance(raw_spec, Mapping):
        raise SpecError([SpecProblem("spec", "spec must be an object")])
    reader = SpecReader()
    primary = _primary(reader, raw_spec)
    replicas = _replicas(reader, raw_spec, primary.id)
    auth = _section(reader, raw_spec, "auth")
    detection = _detection(reader, raw_spec)
    remediation = _remediation(reader, raw_spec)
    escalation = _section(reader, raw_spec, "escalation")
    if reader.problems:
        raise SpecError(reader.problems)
    return Spec(primary, replicas, auth, detection, remediation, escalation)


def spec_to_raw(spec: Spec) -> dict[str, Any]:
    """The camelCase JSON form of a spec (what the CRD stores after defaulting)."""
    raw: dict[str, Any] = to_json(spec)
    return raw


def _section(reader: SpecReader, raw_spec: Mapping[str, Any], name: str) -> Any:
    """One top-level section read by its declaration, defaults included."""
    section = _SECTIONS[name]
    return reader.field(section, raw_spec, "spec", section.default)


def _primary(reader: SpecReader, raw_spec: Mapping[str, Any]) -> PrimarySpec:
    section = reader.obj(raw_spec, "primary", "spec")
    if "primary" not in raw_spec:
        reader.fail("spec.primary", "spec.primary is required")
    # A missing or refused adminUrl is reported, so this value is never returned.
    primary: PrimarySpec = reader.build(PrimarySpec, section, "spec.primary")
    return primary


def _replicas(reader: SpecReader, raw_spec: Mapping[str, Any],
              primary_id: str) -> tuple[ReplicaSpec, ...]:
    """The replicas, each checked, with ids and agent ids unique and not the primary's."""
    listed = raw_spec.get("replicas")
    if listed is None:
        reader.fail("spec.replicas", "spec.replicas is required and must list at least one "
                    "replica")
        return ()
    if not isinstance(listed, list):
        reader.fail("spec.replicas", "spec.replicas must be a list")
        return ()
    if not listed:
        reader.fail("spec.replicas", "spec.replicas must list at least one replica")
    elif len(listed) > MAX_REPLICAS:
        reader.fail("spec.replicas", f"spec.replicas lists {len(listed)} replicas; "
                    f"at most {MAX_REPLICAS}")
    replicas: list[ReplicaSpec] = []
    index_of_id: dict[str, int] = {}
    index_of_agent: dict[str, int] = {}
    for index, item in enumerate(listed):
        at = f"spec.replicas[{index}]"
        if not isinstance(item, Mapping):
            reader.fail(at, f"{at} must be an object")
            continue
        replica = _replica(reader, item, at)
        agent, replica_id = replica.agent_id, replica.id
        if agent in index_of_agent:
            reader.fail(f"{at}.agentId", f"{at}.agentId ({agent}) repeats "
                        f"spec.replicas[{index_of_agent[agent]}].agentId: each replica has its "
                        "own breaker")
        elif agent:
            index_of_agent[agent] = index
        if replica_id in index_of_id:
            reader.fail(f"{at}.id", f"{at}.id ({replica_id}) repeats "
                        f"spec.replicas[{index_of_id[replica_id]}].id")
        elif replica_id:
            index_of_id[replica_id] = index
        if replica_id and replica_id == primary_id:
            reader.fail(f"{at}.id", f"{at}.id ({replica_id}) must not be the primary's id")
        replicas.append(replica)
    return tuple(replicas)


def _replica(reader: SpecReader, item: Mapping[str, Any], at: str) -> ReplicaSpec:
    """One replica; a missing agentId (allowed for objects older than the CRD's
    rule) is agent-<id>."""
    replica_id = reader.field(_REPLICA_ID, item, at, "") or ""
    agent_id = reader.field(_AGENT_ID_OR_DEFAULT, item, at,
                            f"agent-{replica_id}" if replica_id else "") or ""
    replica: ReplicaSpec = reader.build(ReplicaSpec, item, at, id=replica_id, agent_id=agent_id)
    return replica


def _detection(reader: SpecReader, raw_spec: Mapping[str, Any]) -> DetectionSpec:
    """Detection, with its thresholds in order: recovery < warning < critical < escalation."""
    detection: DetectionSpec = _section(reader, raw_spec, "detection")
    at = "spec.detection"
    stale, poll = detection.stale_after_seconds, detection.poll_interval_seconds
    if stale < poll:
        reader.fail(f"{at}.staleAfterSeconds",
                    f"{at}.staleAfterSeconds ({shown_number(stale)}) must be at least "
                    f"{at}.pollIntervalSeconds ({shown_number(poll)}): otherwise every "
                    "observation is stale when it is used")
    warning, critical = detection.warning.lag_seconds, detection.critical.lag_seconds
    escalation, recovery = detection.escalation_lag_seconds, detection.recovery.lag_seconds
    _check_above(reader, f"{at}.critical.lagSeconds", critical, f"{at}.warning.lagSeconds",
                 warning)
    _check_above(reader, f"{at}.escalation.lagSeconds", escalation,
                 f"{at}.critical.lagSeconds", critical)
    if not recovery < warning:
        reader.fail(f"{at}.recovery.lagSeconds",
                    f"{at}.recovery.lagSeconds ({shown_number(recovery)}) must be less than "
                    f"{at}.warning.lagSeconds ({shown_number(warning)})")
    return detection


def _check_above(reader: SpecReader, path: str, value: float, other_path: str,
                 other: float) -> None:
    if not value > other:
        reader.fail(path, f"{path} ({shown_number(value)}) must be greater than "
                    f"{other_path} ({shown_number(other)})")


def _remediation(reader: SpecReader, raw_spec: Mapping[str, Any]) -> RemediationSpec:
    """Remediation and its steps (each step's own bounds come from its declaration)."""
    remediation: RemediationSpec = _section(reader, raw_spec, "remediation")
    _check_throttle(reader, remediation.throttle, "spec.remediation.throttle")
    _check_merkle_sync(reader, remediation.merkle_sync, "spec.remediation.merkleSync")
    return remediation


def _check_throttle(reader: SpecReader, throttle: ThrottleSpec, at: str) -> None:
    """The floor is below the ladder's last step, or the last step could never be set."""
    if not throttle.ladder:
        return
    baseline = throttle.unlimited_baseline_assertions_per_sec
    lowest = throttle.ladder[-1] * baseline
    if not throttle.floor_assertions_per_sec < lowest:
        reader.fail(f"{at}.floorAssertionsPerSec",
                    f"{at}.floorAssertionsPerSec ({throttle.floor_assertions_per_sec}) must be "
                    f"below the ladder's last step ({shown_number(throttle.ladder[-1])} x "
                    f"{at}.unlimitedBaselineAssertionsPerSec {baseline} = "
                    f"{shown_number(lowest)})")


def _check_merkle_sync(reader: SpecReader, merkle_sync: MerkleSyncSpec, at: str) -> None:
    stall, timeout = merkle_sync.stall_timeout_seconds, merkle_sync.timeout_seconds
    if stall > timeout:
        reader.fail(f"{at}.stallTimeoutSeconds",
                    f"{at}.stallTimeoutSeconds ({shown_number(stall)}) must not exceed "
                    f"{at}.timeoutSeconds ({shown_number(timeout)})")
