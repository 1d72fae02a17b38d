"""The StemeDBCluster spec as typed, frozen values with defaults.

`parse_spec` turns the raw `.spec` mapping (as the API server stored it, i.e.
possibly already defaulted by the CRD schema) into a `Spec`, or raises
`SpecError` carrying *every* problem found, each with its field path and a
plain sentence. `spec_to_raw` is the inverse (camelCase JSON); a unit test
compares the CRD's schema defaults with `spec_to_raw(parse_spec(minimal))`.

The throttle ladder is expressed as fractions of the ingestion rate limit in
force when the episode started (see docs/remediation-policy.md).
"""

from __future__ import annotations

import enum
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.domain.validation import (
    contact_problem,
    node_id_problem,
    object_name_problem,
    secret_key_problem,
    url_problem,
)

_WEEK, _DAY = 604800, 86400
# Upper bounds of every number in the spec, by field path ([i] dropped). The CRD
# carries the same `maximum`s (a unit test compares them): a week for any time
# window, a day for a lag threshold. Without them `forSeconds: 1e308` was
# accepted and simply never elapsed.
MAXIMA: dict[str, float] = {
    "spec.detection.pollIntervalSeconds": 3600,
    "spec.detection.warning.lagSeconds": _DAY,
    "spec.detection.warning.forSeconds": _WEEK,
    "spec.detection.critical.lagSeconds": _DAY,
    "spec.detection.critical.forSeconds": _WEEK,
    "spec.detection.escalation.lagSeconds": _DAY,
    "spec.detection.recovery.lagSeconds": _DAY,
    "spec.detection.recovery.forSeconds": _WEEK,
    "spec.detection.staleAfterSeconds": _WEEK,
    "spec.detection.stormReplicas": 64,
    "spec.detection.crashLoopRestarts": 1000,
    "spec.remediation.cooldownSeconds": _WEEK,
    "spec.remediation.maxActionsPerHour": 10000,
    "spec.remediation.maxConcurrentRebuilds": 64,
    "spec.remediation.minInSyncReplicas": 64,
    "spec.remediation.breakerReset.timeoutSeconds": _WEEK,
    "spec.remediation.breakerReset.maxAttempts": 10,
    "spec.remediation.throttle.floorAssertionsPerSec": 1_000_000_000,
    "spec.remediation.throttle.stepIntervalSeconds": _WEEK,
    "spec.remediation.throttle.unlimitedBaselineAssertionsPerSec": 1_000_000_000,
    "spec.remediation.throttle.restoreStepSeconds": _WEEK,
    "spec.remediation.merkleSync.timeoutSeconds": _WEEK,
    "spec.remediation.merkleSync.maxAttempts": 10,
    "spec.remediation.merkleSync.stallTimeoutSeconds": _WEEK,
    "spec.remediation.backpressure.lagSeconds": _DAY,
    "spec.escalation.promoteAfterSeconds": _WEEK,
}
MAX_REPLICAS = 64  # the CRD's maxItems
_INDEX = re.compile(r"\[\d+\]")


def _maximum(path: str) -> float | None:
    return MAXIMA.get(_INDEX.sub("", path))


class Mode(enum.StrEnum):
    AUTO = "Auto"
    DRY_RUN = "DryRun"
    OBSERVE = "Observe"


class RebuildPolicy(enum.StrEnum):
    MANUAL = "Manual"
    AUTOMATIC = "Automatic"


@dataclass(frozen=True, slots=True)
class SpecProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """An invalid spec; `problems` lists every problem at once."""

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        self.problems: tuple[SpecProblem, ...] = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems))


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class PrimarySpec:
    admin_url: str
    id: str = "node1"


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    id: str
    agent_id: str
    metrics_url: str | None = None
    pod_name: str | None = None


@dataclass(frozen=True, slots=True)
class AuthSpec:
    token_secret_ref: SecretKeyRef | None = None
    ca_secret_ref: SecretKeyRef | None = None


@dataclass(frozen=True, slots=True)
class Threshold:
    lag_seconds: float
    for_seconds: float


@dataclass(frozen=True, slots=True)
class DetectionSpec:
    poll_interval_seconds: float = 10.0
    warning: Threshold = Threshold(5.0, 300.0)
    critical: Threshold = Threshold(10.0, 180.0)
    escalation_lag_seconds: float = 60.0
    recovery: Threshold = Threshold(3.0, 120.0)
    stale_after_seconds: float = 30.0
    storm_replicas: int = 2
    crash_loop_restarts: int = 3


@dataclass(frozen=True, slots=True)
class BreakerResetSpec:
    enabled: bool = True
    timeout_seconds: float = 60.0
    max_attempts: int = 2


@dataclass(frozen=True, slots=True)
class ThrottleSpec:
    enabled: bool = True
    ladder: tuple[float, ...] = (0.75, 0.5, 0.25)
    floor_assertions_per_sec: int = 100
    step_interval_seconds: float = 60.0
    unlimited_baseline_assertions_per_sec: int = 2000
    restore_ramp: tuple[float, ...] = (0.5, 0.75)
    restore_step_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class MerkleSyncSpec:
    enabled: bool = True
    timeout_seconds: float = 600.0
    max_attempts: int = 3
    stall_timeout_seconds: float = 120.0


@dataclass(frozen=True, slots=True)
class RebuildSpec:
    enabled: bool = True
    policy: RebuildPolicy = RebuildPolicy.MANUAL


@dataclass(frozen=True, slots=True)
class BackpressureSpec:
    enabled: bool = False
    lag_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class RemediationSpec:
    mode: Mode = Mode.AUTO
    paused: bool = False
    cooldown_seconds: float = 600.0
    max_actions_per_hour: int = 20
    max_concurrent_rebuilds: int = 1
    min_in_sync_replicas: int = 1
    drain_fraction: float = 0.1
    breaker_reset: BreakerResetSpec = BreakerResetSpec()
    throttle: ThrottleSpec = ThrottleSpec()
    merkle_sync: MerkleSyncSpec = MerkleSyncSpec()
    rebuild: RebuildSpec = RebuildSpec()
    backpressure: BackpressureSpec = BackpressureSpec()


@dataclass(frozen=True, slots=True)
class EscalationSpec:
    cluster_sre: str = "Cluster SRE"
    distributed_systems_engineer: str = "Distributed systems engineer"
    principal_engineer: str = "Principal engineer"
    promote_after_seconds: float = 1800.0
    webhook_url: str | None = None

    def contact(self, level: int) -> str:
        return {1: self.cluster_sre, 2: self.distributed_systems_engineer}.get(
            level, self.principal_engineer if level >= 3 else ""
        )


@dataclass(frozen=True, slots=True)
class Spec:
    primary: PrimarySpec
    replicas: tuple[ReplicaSpec, ...]
    auth: AuthSpec = AuthSpec()
    detection: DetectionSpec = DetectionSpec()
    remediation: RemediationSpec = RemediationSpec()
    escalation: EscalationSpec = EscalationSpec()

    def replica(self, replica_id: str) -> ReplicaSpec | None:
        for r in self.replicas:
            if r.id == replica_id:
                return r
        return None


# --------------------------------------------------------------------------- parsing

_MISSING = object()


class _Reader:
    def __init__(self) -> None:
        self.problems: list[SpecProblem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(SpecProblem(path, message))

    def obj(self, raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(f"{path}.{key}", f"{path}.{key} must be an object")
            return {}
        return value

    def number(
        self,
        raw: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        positive: bool = False,
        minimum: float | None = None,
    ) -> float:
        p = f"{path}.{key}"
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(p, f"{p} must be a number, not {value!r}")
            return default
        v = float(value)
        if not math.isfinite(v):
            self.fail(p, f"{p} must be a finite number")
            return default
        high = _maximum(p)
        if positive and v <= 0:
            self.fail(p, f"{p} ({_fmt(v)}) must be greater than 0")
        elif minimum is not None and v < minimum:
            self.fail(p, f"{p} ({_fmt(v)}) must be at least {_fmt(minimum)}")
        elif high is not None and v > high:
            self.fail(p, f"{p} ({_fmt(v)}) must be at most {_fmt(high)}")
            return default
        return v

    def integer(
        self, raw: Mapping[str, Any], key: str, path: str, default: int, *, minimum: int = 0
    ) -> int:
        p = f"{path}.{key}"
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or (isinstance(value, float) and not math.isfinite(value))
                or value != int(value)):
            self.fail(p, f"{p} must be a whole number, not {value!r}")
            return default
        high = _maximum(p)
        if high is not None and abs(value) > high:
            self.fail(p, f"{p} ({_fmt(value)}) must be at most {_fmt(high)}")
            return default
        v = int(value)
        if v < minimum:
            self.fail(p, f"{p} ({v}) must be at least {minimum}")
        return v

    def boolean(self, raw: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        p = f"{path}.{key}"
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, bool):
            self.fail(p, f"{p} must be true or false, not {value!r}")
            return default
        return value

    def string(
        self, raw: Mapping[str, Any], key: str, path: str, default: str | None, *,
        required: bool = False, check: Callable[[str], str | None] | None = None,
    ) -> str | None:
        p = f"{path}.{key}"
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            if required:
                self.fail(p, f"{p} is required")
            return default
        if not isinstance(value, str):
            self.fail(p, f"{p} must be a string, not {value!r}")
            return default
        if required and not value:
            self.fail(p, f"{p} must not be empty")
            return default
        problem = check(value) if check is not None else None
        if problem is not None:
            # Never keep a refused value: it must not reach a request, even by mistake.
            self.fail(p, f"{p} {problem}")
            return default
        return str(value)

    def fractions(
        self, raw: Mapping[str, Any], key: str, path: str, default: tuple[float, ...],
        *, allow_empty: bool, decreasing: bool = True,
    ) -> tuple[float, ...]:
        p = f"{path}.{key}"
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, list):
            self.fail(p, f"{p} must be a list of fractions")
            return default
        out: list[float] = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int | float):
                self.fail(f"{p}[{i}]", f"{p}[{i}] must be a number, not {item!r}")
                continue
            if not 0 < item < 1:
                self.fail(f"{p}[{i}]", f"{p}[{i}] ({_fmt(item)}) must be between 0 and 1")
                continue
            out.append(float(item))
        if not out and not allow_empty and not value:
            self.fail(p, f"{p} must list at least one step")
        for a, b in itertools.pairwise(out):
            if decreasing and not a > b:
                self.fail(p, f"{p} must be strictly decreasing "
                          f"({_fmt(a)} is followed by {_fmt(b)})")
                break
        return tuple(out)

    def secret_ref(self, raw: Mapping[str, Any], key: str, path: str) -> SecretKeyRef | None:
        if raw.get(key) is None:
            return None
        obj = self.obj(raw, key, path)
        p = f"{path}.{key}"
        name = self.string(obj, "name", p, "", required=True, check=object_name_problem) or ""
        k = self.string(obj, "key", p, "", required=True, check=secret_key_problem) or ""
        return SecretKeyRef(name, k)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def parse_spec(raw_spec: Mapping[str, Any]) -> Spec:
    """Parse and validate a raw `.spec`; raise SpecError listing every problem."""
    r = _Reader()
    if not isinstance(raw_spec, Mapping):
        raise SpecError([SpecProblem("spec", "spec must be an object")])
    s = "spec"

    prim_raw = r.obj(raw_spec, "primary", s)
    if "primary" not in raw_spec:
        r.fail("spec.primary", "spec.primary is required")
    primary = PrimarySpec(
        admin_url=r.string(prim_raw, "adminUrl", "spec.primary", "", required=True,
                           check=url_problem) or "",
        id=r.string(prim_raw, "id", "spec.primary", "node1", check=node_id_problem) or "node1",
    )

    replicas: list[ReplicaSpec] = []
    raw_replicas = raw_spec.get("replicas", _MISSING)
    if raw_replicas is _MISSING or raw_replicas is None:
        r.fail("spec.replicas", "spec.replicas is required and must list at least one replica")
    elif not isinstance(raw_replicas, list):
        r.fail("spec.replicas", "spec.replicas must be a list")
    else:
        if not raw_replicas:
            r.fail("spec.replicas", "spec.replicas must list at least one replica")
        elif len(raw_replicas) > MAX_REPLICAS:
            r.fail("spec.replicas", f"spec.replicas lists {len(raw_replicas)} replicas; "
                   f"at most {MAX_REPLICAS}")
        seen: dict[str, int] = {}
        seen_agents: dict[str, int] = {}
        for i, item in enumerate(raw_replicas):
            p = f"spec.replicas[{i}]"
            if not isinstance(item, Mapping):
                r.fail(p, f"{p} must be an object")
                continue
            rid = r.string(item, "id", p, "", required=True, check=node_id_problem) or ""
            agent = r.string(item, "agentId", p, f"agent-{rid}" if rid else "",
                             check=node_id_problem) or ""
            murl = r.string(item, "metricsUrl", p, None, check=url_problem)
            pod = r.obj(item, "podRef", p)
            pod_name = None
            if item.get("podRef") is not None:
                pod_name = r.string(pod, "name", f"{p}.podRef", None, required=True,
                                    check=object_name_problem)
            if agent and agent in seen_agents:
                r.fail(f"{p}.agentId", f"{p}.agentId ({agent}) repeats "
                       f"spec.replicas[{seen_agents[agent]}].agentId: each replica has its "
                       "own breaker")
            elif agent:
                seen_agents[agent] = i
            if rid and rid in seen:
                r.fail(f"{p}.id", f"{p}.id ({rid}) repeats spec.replicas[{seen[rid]}].id")
            elif rid:
                seen[rid] = i
            if rid and rid == primary.id:
                r.fail(f"{p}.id", f"{p}.id ({rid}) must not be the primary's id")
            replicas.append(ReplicaSpec(rid, agent, murl, pod_name))

    auth_raw = r.obj(raw_spec, "auth", s)
    auth = AuthSpec(
        token_secret_ref=r.secret_ref(auth_raw, "tokenSecretRef", "spec.auth"),
        ca_secret_ref=r.secret_ref(auth_raw, "caSecretRef", "spec.auth"),
    )

    d = "spec.detection"
    det_raw = r.obj(raw_spec, "detection", s)
    dd = DetectionSpec()

    def threshold(key: str, default: Threshold) -> Threshold:
        t = r.obj(det_raw, key, d)
        p = f"{d}.{key}"
        return Threshold(
            r.number(t, "lagSeconds", p, default.lag_seconds, positive=True),
            r.number(t, "forSeconds", p, default.for_seconds, minimum=0),
        )

    warning = threshold("warning", dd.warning)
    critical = threshold("critical", dd.critical)
    esc_raw = r.obj(det_raw, "escalation", d)
    escalation_lag = r.number(
        esc_raw, "lagSeconds", f"{d}.escalation", dd.escalation_lag_seconds, positive=True
    )
    recovery = threshold("recovery", dd.recovery)
    detection = DetectionSpec(
        poll_interval_seconds=r.number(
            det_raw, "pollIntervalSeconds", d, dd.poll_interval_seconds, positive=True
        ),
        warning=warning,
        critical=critical,
        escalation_lag_seconds=escalation_lag,
        recovery=recovery,
        stale_after_seconds=r.number(
            det_raw, "staleAfterSeconds", d, dd.stale_after_seconds, positive=True
        ),
        storm_replicas=r.integer(det_raw, "stormReplicas", d, dd.storm_replicas, minimum=2),
        crash_loop_restarts=r.integer(
            det_raw, "crashLoopRestarts", d, dd.crash_loop_restarts, minimum=1
        ),
    )
    if detection.stale_after_seconds < detection.poll_interval_seconds:
        r.fail(
            f"{d}.staleAfterSeconds",
            f"{d}.staleAfterSeconds ({_fmt(detection.stale_after_seconds)}) must be at least "
            f"{d}.pollIntervalSeconds ({_fmt(detection.poll_interval_seconds)}): otherwise "
            "every observation is stale when it is used",
        )
    if not critical.lag_seconds > warning.lag_seconds:
        r.fail(
            f"{d}.critical.lagSeconds",
            f"{d}.critical.lagSeconds ({_fmt(critical.lag_seconds)}) must be greater than "
            f"{d}.warning.lagSeconds ({_fmt(warning.lag_seconds)})",
        )
    if not escalation_lag > critical.lag_seconds:
        r.fail(
            f"{d}.escalation.lagSeconds",
            f"{d}.escalation.lagSeconds ({_fmt(escalation_lag)}) must be greater than "
            f"{d}.critical.lagSeconds ({_fmt(critical.lag_seconds)})",
        )
    if not recovery.lag_seconds < warning.lag_seconds:
        r.fail(
            f"{d}.recovery.lagSeconds",
            f"{d}.recovery.lagSeconds ({_fmt(recovery.lag_seconds)}) must be less than "
            f"{d}.warning.lagSeconds ({_fmt(warning.lag_seconds)})",
        )

    m = "spec.remediation"
    rem_raw = r.obj(raw_spec, "remediation", s)
    rd = RemediationSpec()
    mode_raw = r.string(rem_raw, "mode", m, rd.mode.value)
    try:
        mode = Mode(mode_raw or "")
    except ValueError:
        r.fail(f"{m}.mode", f"{m}.mode ({mode_raw}) must be one of Auto, DryRun, Observe")
        mode = rd.mode

    br_raw = r.obj(rem_raw, "breakerReset", m)
    bp = f"{m}.breakerReset"
    bd = BreakerResetSpec()
    breaker = BreakerResetSpec(
        enabled=r.boolean(br_raw, "enabled", bp, bd.enabled),
        timeout_seconds=r.number(br_raw, "timeoutSeconds", bp, bd.timeout_seconds, positive=True),
        max_attempts=r.integer(br_raw, "maxAttempts", bp, bd.max_attempts, minimum=1),
    )

    th_raw = r.obj(rem_raw, "throttle", m)
    tp = f"{m}.throttle"
    td = ThrottleSpec()
    throttle = ThrottleSpec(
        enabled=r.boolean(th_raw, "enabled", tp, td.enabled),
        ladder=r.fractions(th_raw, "ladder", tp, td.ladder, allow_empty=False),
        floor_assertions_per_sec=r.integer(
            th_raw, "floorAssertionsPerSec", tp, td.floor_assertions_per_sec, minimum=1
        ),
        step_interval_seconds=r.number(
            th_raw, "stepIntervalSeconds", tp, td.step_interval_seconds, positive=True
        ),
        unlimited_baseline_assertions_per_sec=r.integer(
            th_raw, "unlimitedBaselineAssertionsPerSec", tp,
            td.unlimited_baseline_assertions_per_sec, minimum=1,
        ),
        restore_ramp=r.fractions(
            th_raw, "restoreRamp", tp, td.restore_ramp, allow_empty=True, decreasing=False
        ),
        restore_step_seconds=r.number(
            th_raw, "restoreStepSeconds", tp, td.restore_step_seconds, positive=True
        ),
    )
    if len(throttle.restore_ramp) > 1 and list(throttle.restore_ramp) != sorted(
        set(throttle.restore_ramp)
    ):
        r.fail(f"{tp}.restoreRamp", f"{tp}.restoreRamp must be strictly increasing")
    if throttle.ladder:
        lowest = throttle.ladder[-1] * throttle.unlimited_baseline_assertions_per_sec
        if not throttle.floor_assertions_per_sec < lowest:
            r.fail(
                f"{tp}.floorAssertionsPerSec",
                f"{tp}.floorAssertionsPerSec ({throttle.floor_assertions_per_sec}) must be below "
                f"the ladder's last step ({_fmt(throttle.ladder[-1])} x "
                f"{tp}.unlimitedBaselineAssertionsPerSec "
                f"{throttle.unlimited_baseline_assertions_per_sec} = {_fmt(lowest)})",
            )

    ms_raw = r.obj(rem_raw, "merkleSync", m)
    mp = f"{m}.merkleSync"
    md = MerkleSyncSpec()
    merkle = MerkleSyncSpec(
        enabled=r.boolean(ms_raw, "enabled", mp, md.enabled),
        timeout_seconds=r.number(ms_raw, "timeoutSeconds", mp, md.timeout_seconds, positive=True),
        max_attempts=r.integer(ms_raw, "maxAttempts", mp, md.max_attempts, minimum=1),
        stall_timeout_seconds=r.number(
            ms_raw, "stallTimeoutSeconds", mp, md.stall_timeout_seconds, positive=True
        ),
    )
    if merkle.stall_timeout_seconds > merkle.timeout_seconds:
        r.fail(
            f"{mp}.stallTimeoutSeconds",
            f"{mp}.stallTimeoutSeconds ({_fmt(merkle.stall_timeout_seconds)}) must not exceed "
            f"{mp}.timeoutSeconds ({_fmt(merkle.timeout_seconds)})",
        )

    rb_raw = r.obj(rem_raw, "rebuild", m)
    rp = f"{m}.rebuild"
    policy_raw = r.string(rb_raw, "policy", rp, RebuildPolicy.MANUAL.value)
    try:
        policy = RebuildPolicy(policy_raw or "")
    except ValueError:
        r.fail(f"{rp}.policy", f"{rp}.policy ({policy_raw}) must be one of Manual, Automatic")
        policy = RebuildPolicy.MANUAL
    rebuild = RebuildSpec(enabled=r.boolean(rb_raw, "enabled", rp, True), policy=policy)

    bk_raw = r.obj(rem_raw, "backpressure", m)
    kp = f"{m}.backpressure"
    backpressure = BackpressureSpec(
        enabled=r.boolean(bk_raw, "enabled", kp, False),
        lag_seconds=r.number(bk_raw, "lagSeconds", kp, 30.0, positive=True),
    )

    remediation = RemediationSpec(
        mode=mode,
        paused=r.boolean(rem_raw, "paused", m, rd.paused),
        cooldown_seconds=r.number(rem_raw, "cooldownSeconds", m, rd.cooldown_seconds, minimum=0),
        max_actions_per_hour=r.integer(
            rem_raw, "maxActionsPerHour", m, rd.max_actions_per_hour, minimum=0
        ),
        max_concurrent_rebuilds=r.integer(
            rem_raw, "maxConcurrentRebuilds", m, rd.max_concurrent_rebuilds, minimum=0
        ),
        min_in_sync_replicas=r.integer(
            rem_raw, "minInSyncReplicas", m, rd.min_in_sync_replicas, minimum=0
        ),
        drain_fraction=r.number(rem_raw, "drainFraction", m, rd.drain_fraction, positive=True),
        breaker_reset=breaker,
        throttle=throttle,
        merkle_sync=merkle,
        rebuild=rebuild,
        backpressure=backpressure,
    )
    if remediation.drain_fraction >= 1:
        r.fail(f"{m}.drainFraction", f"{m}.drainFraction ({_fmt(remediation.drain_fraction)}) "
               "must be less than 1")

    e = "spec.escalation"
    esc = r.obj(raw_spec, "escalation", s)
    ed = EscalationSpec()
    escalation = EscalationSpec(
        cluster_sre=r.string(esc, "clusterSre", e, ed.cluster_sre, check=contact_problem)
        or ed.cluster_sre,
        distributed_systems_engineer=r.string(
            esc, "distributedSystemsEngineer", e, ed.distributed_systems_engineer,
            check=contact_problem,
        ) or ed.distributed_systems_engineer,
        principal_engineer=r.string(esc, "principalEngineer", e, ed.principal_engineer,
                                    check=contact_problem)
        or ed.principal_engineer,
        promote_after_seconds=r.number(
            esc, "promoteAfterSeconds", e, ed.promote_after_seconds, positive=True
        ),
        webhook_url=r.string(esc, "webhookUrl", e, None, check=url_problem),
    )

    if r.problems:
        raise SpecError(r.problems)
    return Spec(
        primary=primary,
        replicas=tuple(replicas),
        auth=auth,
        detection=detection,
        remediation=remediation,
        escalation=escalation,
    )


def spec_to_raw(spec: Spec) -> dict[str, Any]:
    """The camelCase JSON form of a spec (what the CRD stores after defaulting)."""

    def thr(t: Threshold) -> dict[str, Any]:
        return {"lagSeconds": t.lag_seconds, "forSeconds": t.for_seconds}

    def ref(x: SecretKeyRef | None) -> dict[str, Any] | None:
        return None if x is None else {"name": x.name, "key": x.key}

    replicas: list[dict[str, Any]] = []
    for rep in spec.replicas:
        item: dict[str, Any] = {"id": rep.id, "agentId": rep.agent_id}
        if rep.metrics_url is not None:
            item["metricsUrl"] = rep.metrics_url
        if rep.pod_name is not None:
            item["podRef"] = {"name": rep.pod_name}
        replicas.append(item)
    auth: dict[str, Any] = {}
    if spec.auth.token_secret_ref:
        auth["tokenSecretRef"] = ref(spec.auth.token_secret_ref)
    if spec.auth.ca_secret_ref:
        auth["caSecretRef"] = ref(spec.auth.ca_secret_ref)
    d, rm, es = spec.detection, spec.remediation, spec.escalation
    escalation: dict[str, Any] = {
        "clusterSre": es.cluster_sre,
        "distributedSystemsEngineer": es.distributed_systems_engineer,
        "principalEngineer": es.principal_engineer,
        "promoteAfterSeconds": es.promote_after_seconds,
    }
    if es.webhook_url is not None:
        escalation["webhookUrl"] = es.webhook_url
    return {
        "primary": {"adminUrl": spec.primary.admin_url, "id": spec.primary.id},
        "replicas": replicas,
        "auth": auth,
        "detection": {
            "pollIntervalSeconds": d.poll_interval_seconds,
            "warning": thr(d.warning),
            "critical": thr(d.critical),
            "escalation": {"lagSeconds": d.escalation_lag_seconds},
            "recovery": thr(d.recovery),
            "staleAfterSeconds": d.stale_after_seconds,
            "stormReplicas": d.storm_replicas,
            "crashLoopRestarts": d.crash_loop_restarts,
        },
        "remediation": {
            "mode": rm.mode.value,
            "paused": rm.paused,
            "cooldownSeconds": rm.cooldown_seconds,
            "maxActionsPerHour": rm.max_actions_per_hour,
            "maxConcurrentRebuilds": rm.max_concurrent_rebuilds,
            "minInSyncReplicas": rm.min_in_sync_replicas,
            "drainFraction": rm.drain_fraction,
            "breakerReset": {
                "enabled": rm.breaker_reset.enabled,
                "timeoutSeconds": rm.breaker_reset.timeout_seconds,
                "maxAttempts": rm.breaker_reset.max_attempts,
            },
            "throttle": {
                "enabled": rm.throttle.enabled,
                "ladder": list(rm.throttle.ladder),
                "floorAssertionsPerSec": rm.throttle.floor_assertions_per_sec,
                "stepIntervalSeconds": rm.throttle.step_interval_seconds,
                "unlimitedBaselineAssertionsPerSec":
                    rm.throttle.unlimited_baseline_assertions_per_sec,
                "restoreRamp": list(rm.throttle.restore_ramp),
                "restoreStepSeconds": rm.throttle.restore_step_seconds,
            },
            "merkleSync": {
                "enabled": rm.merkle_sync.enabled,
                "timeoutSeconds": rm.merkle_sync.timeout_seconds,
                "maxAttempts": rm.merkle_sync.max_attempts,
                "stallTimeoutSeconds": rm.merkle_sync.stall_timeout_seconds,
            },
            "rebuild": {"enabled": rm.rebuild.enabled, "policy": rm.rebuild.policy.value},
            "backpressure": {
                "enabled": rm.backpressure.enabled,
                "lagSeconds": rm.backpressure.lag_seconds,
            },
        },
        "escalation": escalation,
    }
