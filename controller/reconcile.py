"""One poll of one StemeDBCluster: observe, decide, record intent, act, report.

Kopf-free on purpose: `handlers.py` owns the Kopf wiring and hands each poll to a
`Reconciler`, so this orchestration can be tested with fakes at the adapter seams.
Safety rules that live here rather than in the pure policy:
- intent is written to status *before* any admin call; if that write fails,
  nothing is called this poll;
- a failed scrape becomes data (`SourceStatus.failed`), never an exception;
- status is written only when what a human reads has changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, assert_never

import structlog

from controller.adapters.destinations import Destinations
from controller.adapters.kube import KubeClient, KubeError
from controller.adapters.notify import Pager
from controller.adapters.operator_metrics import ClusterReading, OperatorMetrics
from controller.adapters.stemedb import (
    Credentials,
    PrimaryScrape,
    StemeDBClient,
)
from controller.adapters.stemedb_errors import (
    StemeDBDestinationDenied,
    StemeDBError,
    StemeDBUnauthorized,
)
from controller.domain import (
    UNKNOWN,
    Action,
    ActionKind,
    ActionOutcome,
    Condition,
    ConditionType,
    Escalation,
    EventReason,
    EventType,
    Memory,
    MemoryFormatError,
    Observation,
    RateLimit,
    Reason,
    ReplicaObservation,
    SourceStatus,
    Spec,
    SpecError,
    SpecProblem,
    build_status,
    decide,
    evidence_needed,
    merge_conditions,
    parse_approvals,
    parse_spec,
    record_outcome,
    spec_contradictions,
)
from controller.domain.admin_reads import AdminRead, after_read, read_allowed
from controller.domain.budget import ActionBudget
from controller.domain.destinations import DestinationPolicy, literal_destination_problems
from controller.domain.memory import history_from_json
from controller.domain.observation import NOT_READ, SourceState
from controller.domain.sharding import SHARD_FIELDS
from controller.domain.spec import SecretKeyRef
from controller.notifications import ClusterRef, Page

log = structlog.get_logger("stemedb.reconcile")

REBUILD_ANNOTATION = "stemedb.io/rebuild-requested"
REBUILD_REASON_ANNOTATION = "stemedb.io/rebuild-reason"
INVALID_SPEC_RETRY_SECONDS = 30.0
RETRY_READ_SECONDS = 2.0  # a status that could not be read after a takeover
# Status reads after a takeover in flight at once (the Kubernetes client has 4
# connections). The rest wait here, not in the client's pool, where their timeout
# would run while queued: 3,000 first reads of a shard starting at 6,000 clusters
# timed out by the hundred and each cost its cluster a poll.
STATUS_READS_IN_FLIGHT = 4
# Runtime failures name the spec field whose value was used (issue 11: "bad URL
# or request" alone did not say which of the URLs was bad).
ADMIN_URL = "spec.primary.adminUrl"
# A bearer token: printable ASCII without spaces (RFC 6750's b64token, loosened).
_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")
# An Authorization header value: visible ASCII words separated by single spaces.
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_SUMMARY_PREFIX = {Reason.INVALID_SPEC: "Invalid spec",
                   Reason.SPEC_CONTRADICTS_CLUSTER: "Spec contradicts the cluster",
                   Reason.DESTINATION_DENIED: "Destination denied"}
# The Event posted with each reason `_report_invalid` is given.
_INVALID_EVENT = {Reason.INVALID_SPEC: EventReason.INVALID_SPEC,
                  Reason.SPEC_CONTRADICTS_CLUSTER: EventReason.SPEC_CONTRADICTS_CLUSTER,
                  Reason.DESTINATION_DENIED: EventReason.DESTINATION_DENIED}


def _pod_field(spec: Spec, replica_id: str | None) -> str:
    for i, r in enumerate(spec.replicas):
        if r.id == replica_id:
            return f"spec.replicas[{i}].podRef.name"
    return "spec.replicas[].podRef.name"


class EventPoster(Protocol):
    def __call__(
        self, body: Mapping[str, Any], type: str, reason: EventReason, message: str
    ) -> None: ...


@dataclass(frozen=True)
class ClusterKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ClusterKey:
        meta = body.get("metadata", {})
        return cls(str(meta.get("namespace", "")), str(meta.get("name", "")))


class Reconciler:
    """Everything one operator process shares across clusters: clients, budget, metrics."""

    def __init__(
        self,
        stemedb: StemeDBClient,
        kube: KubeClient,
        metrics: OperatorMetrics,
        budget: ActionBudget,
        post_event: EventPoster,
        clock: Callable[[], float] = time.time,
        notifier: Pager | None = None,
        destinations: Destinations | None = None,
    ) -> None:
        self.stemedb = stemedb
        self.destinations = destinations
        self._denied: dict[ClusterKey, tuple[Spec, DestinationPolicy, tuple[SpecProblem, ...]]] = {}
        self.notifier = notifier
        self.kube = kube
        self.metrics = metrics
        self.budget = budget
        self.post_event = post_event
        self.clock = clock
        self._locks: dict[ClusterKey, asyncio.Lock] = {}
        self._written: dict[ClusterKey, dict[str, Any]] = {}
        # Per-poll work skipped while its inputs are unchanged (a healthy cluster):
        # the parsed spec by generation and raw spec, the parsed memory by its text,
        # and the inputs of the last status already written or found current.
        self._specs: dict[ClusterKey, tuple[Any, Mapping[str, Any], Spec]] = {}
        self._memories: dict[ClusterKey, tuple[Any, Memory, Any]] = {}
        self._webhook_problems: dict[ClusterKey, str] = {}
        self._looked: set[ClusterKey] = set()  # clusters this process has observed
        # Leadership terms begun (`took_over`), and the term each status was read in.
        self._term = 0
        self._read_in_term: dict[ClusterKey, int] = {}
        self._reads = asyncio.Semaphore(STATUS_READS_IN_FLIGHT)
        self._reported: dict[ClusterKey, tuple[Spec, Memory, tuple[Condition, ...], int,
                                               Mapping[str, Any]]] = {}

    def lock(self, key: ClusterKey) -> asyncio.Lock:
        """One poll (or deletion) of a cluster at a time."""
        return self._locks.setdefault(key, asyncio.Lock())

    def forget(self, key: ClusterKey) -> None:
        self.release(key)
        if self.notifier is not None:
            self.notifier.gone(ClusterRef(key.namespace, key.name), {}, self.clock())

    def release(self, key: ClusterKey) -> None:
        """Drop what this process knows of a cluster another replica now acts on (a
        shard handing it over): taken back later, it starts from status, as a new
        leader does, and its metrics are exported by one replica only."""
        self._locks.pop(key, None)
        self._written.pop(key, None)
        self._specs.pop(key, None)
        self._memories.pop(key, None)
        self._reported.pop(key, None)
        self._read_in_term.pop(key, None)
        self._denied.pop(key, None)
        self._webhook_problems.pop(key, None)
        self._looked.discard(key)
        self.metrics.forget_cluster(key.namespace, key.name)

    def took_over(self) -> None:
        """This replica has begun acting (again) as the leader. Neither what it wrote
        before nor its watch is a guide any more: another leader may have acted and
        written since, and its watch may not have delivered that yet (a standby
        reconnecting after a partition). Memory from before would repeat that
        leader's actions or forget its throttle. So each cluster's first poll of
        this term reads the status from the API server, and looks afresh."""
        self._written.clear()
        self._reported.clear()
        self._looked.clear()
        self._term += 1

    def acquired(self, key: ClusterKey) -> None:
        """This replica has begun acting on one cluster (a shard the ring moved it
        to, or back to). As after `took_over`, for the same reason: its last owner
        may have written since, and the watch may not have delivered that yet. So
        its first poll reads the status from the API server."""
        self.release(key)
        self._read_in_term[key] = self._term - 1

    async def _read_status_once_per_term(self, key: ClusterKey,
                                         body: Mapping[str, Any]) -> bool:
        """The status as the API server has it, once per leadership term and after
        each `acquired` (none with neither); False if it could not be read (then nothing is
        done this poll: deciding on an older status could repeat an action)."""
        if self._read_in_term.get(key, 0) == self._term:
            return True
        try:
            async with self._reads:
                current = await self.kube.get_cluster(key.namespace, key.name)
        except KubeError as err:
            log.warning("status not read after taking over; no action this poll",
                        namespace=key.namespace, name=key.name, error=str(err))
            return False
        self._written[key] = dict(current.get("status") or {})
        self._read_in_term[key] = self._term
        self.seen(key, body.get("status"))
        return True

    def seen(self, key: ClusterKey, status: Any) -> None:
        """The watch holds `status` (a new event, or the body after a read): if it is
        what this process last wrote or read, keep that copy instead of its own.
        The content is the same as stored (`_same`), so nothing decided changes,
        and every healthy cluster's status is held once, not twice (~4 KiB a
        cluster measured at 3,000). Kopf replaces a body on each event, never
        changes one in place, and nothing here changes a status it keeps, so the
        copy kept cannot change under it. A status that differs is never taken:
        the watch may lag a write."""
        written = self._written.get(key)
        if written is not None and written is not status and isinstance(status, dict) \
                and _pruned(written) == _pruned(status):
            self._written[key] = status
            reported = self._reported.get(key)
            if reported is not None and reported[4] is written:
                self._reported[key] = (*reported[:4], status)

    def _status(self, key: ClusterKey, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """What this process last wrote, else the body's status: the watch may lag a
        patch, and a stale body would mean stale memory (an action repeated)."""
        return self._written.get(key) or body.get("status") or {}

    # ------------------------------------------------------------------ poll
    async def poll(self, body: Mapping[str, Any]) -> float:
        """Run one poll; return the seconds until the next one."""
        key = ClusterKey.of(body)
        started = time.monotonic()
        async with self.lock(key):
            try:
                with self.metrics.attribute_to(key.namespace, key.name):
                    delay = await self._poll(key, body)
                result = "ok"
            except Exception:
                log.exception("poll failed", namespace=key.namespace, name=key.name)
                delay, result = 10.0, "error"
        self.metrics.observe_poll(time.monotonic() - started, result)
        return delay

    async def _poll(self, key: ClusterKey, body: Mapping[str, Any]) -> float:
        if not await self._read_status_once_per_term(key, body):
            return RETRY_READ_SECONDS
        now = self.clock()
        generation = int(body.get("metadata", {}).get("generation") or 0)
        status = self._status(key, body)
        try:
            spec = self._parse_spec(key, body)
        except SpecError as err:
            await self._report_invalid(key, body, err.problems, Reason.INVALID_SPEC, now,
                                       generation)
            return INVALID_SPEC_RETRY_SECONDS

        denied = self._denied_urls(key, spec)
        if denied:
            await self._report_invalid(key, body, denied, Reason.DESTINATION_DENIED, now,
                                       generation)
            return spec.detection.poll_interval_seconds

        memory = self._load_memory(key, body, status)
        creds, creds_error = await self._credentials(key, spec)
        observation, creds, memory = await self._observe(key, spec, memory, creds,
                                                         creds_error, body, now)
        if key not in self._looked:
            self._looked.add(key)
            observation = replace(observation, first_look=True)
        refusal = _refusal(spec, observation)
        if refusal is not None:
            problems, reason = refusal
            await self._report_invalid(key, body, problems, reason, now, generation)
            return spec.detection.poll_interval_seconds
        self.metrics.set_lag(
            key.namespace, key.name, {r.replica_id: r.lag_seconds for r in observation.replicas}
        )
        escalated_before = memory.escalation_level
        budget_left = self.budget.remaining(now, owner=str(key))
        plan = decide(observation, spec, memory, now, operator_budget_remaining=budget_left)
        if plan.wants_tripped_breakers:
            # Only the breaker step's choice reads the list: read it, decide again.
            tripped, memory = await self._tripped_breakers(key, spec, creds, memory, now)
            observation = replace(observation, tripped_agents=tripped)
            plan = decide(observation, spec, memory, now, operator_budget_remaining=budget_left)
        if plan.memory != memory:  # else keep the instance that caches its text
            memory = plan.memory
        if plan.actions:
            acted = await self._carry_out(key, body, spec, creds, plan.actions, memory,
                                          plan.conditions, generation, now)
            if acted is None:
                return spec.detection.poll_interval_seconds
            memory = acted
        for event in plan.events:
            self.post_event(body, event.type.value, event.reason, event.message)
            # Every decision (escalation, held or skipped action with its gate,
            # recovery) is also one log line: the post-mortem trail once Events expire.
            log.info("decision", namespace=key.namespace, name=key.name,
                     reason=event.reason.value, type=event.type.value, message=event.message)
        for kind, gate in plan.suppressed:
            self.metrics.count_suppressed(kind.value if kind else "any", gate.value)
        self.metrics.set_cluster(key.namespace, key.name, ClusterReading.of(plan, spec))
        await self._notify(key, body, spec, escalated_before, plan.escalation, now)
        try:
            await self._write_status(key, body, spec, memory, plan.conditions,
                                     generation, now)
        except KubeError as err:
            log.warning("status not written", namespace=key.namespace, name=key.name,
                        error=str(err))
        return max(0.5, plan.requeue_after)

    async def _carry_out(
        self, key: ClusterKey, body: Mapping[str, Any], spec: Spec, creds: Credentials,
        actions: Sequence[Action], memory: Memory, conditions: tuple[Condition, ...],
        generation: int, now: float,
    ) -> Memory | None:
        """Intent first (a restarted operator must find what was about to happen), then
        each action with its outcome recorded; None when the intent could not be written
        (then nothing is called this poll)."""
        try:
            await self._write_status(key, body, spec, memory, conditions, generation, now)
        except KubeError as err:
            log.warning("intent not recorded; no action this poll",
                        namespace=key.namespace, name=key.name, error=str(err))
            return None
        for action in actions:
            outcome = await self._act(key, spec, creds, action)
            if outcome.ok or outcome.may_have_applied:
                # A refused attempt costs no operator-wide budget (a broken cluster must
                # not use up what healthy ones need); its backoff bounds it instead.
                self.budget.spend(now, owner=str(key))
            memory = record_outcome(memory, action.idempotency_key, outcome, self.clock(),
                                    cluster=str(key))
            if not outcome.ok:
                self.post_event(body, EventType.WARNING.value, EventReason.ACTION_FAILED,
                                f"{action.kind.value}"
                                f"{' on ' + action.replica_id if action.replica_id else ''}"
                                f" failed: {outcome.detail}")
        return memory

    def _denied_urls(self, key: ClusterKey, spec: Spec) -> tuple[SpecProblem, ...]:
        """The spec's URLs written as addresses the destination policy denies
        (kept per spec and policy: a healthy poll pays nothing)."""
        if self.destinations is None:
            return ()
        policy = self.destinations.policy
        cached = self._denied.get(key)
        if cached is not None and cached[0] is spec and cached[1] is policy:
            return cached[2]
        urls = [(ADMIN_URL, spec.primary.admin_url),
                *((f"spec.replicas[{i}].metricsUrl", r.metrics_url)
                  for i, r in enumerate(spec.replicas) if r.metrics_url),
                *((("spec.escalation.webhookUrl", spec.escalation.webhook_url),)
                  if spec.escalation.webhook_url else ())]
        problems = tuple(SpecProblem(field, why) for field, why
                         in literal_destination_problems(urls, policy))
        self._denied[key] = (spec, policy, problems)
        return problems

    def _parse_spec(self, key: ClusterKey, body: Mapping[str, Any]) -> Spec:
        """parse_spec, reused while the generation and the raw spec are unchanged."""
        raw = body.get("spec") or {}
        generation = body.get("metadata", {}).get("generation")
        cached = self._specs.get(key)
        if cached is not None and cached[0] == generation and (
                cached[1] is raw or cached[1] == raw):
            if cached[1] is not raw:
                self._specs[key] = (generation, raw, cached[2])
            return cached[2]
        spec = parse_spec(raw)
        self._specs[key] = (generation, raw, spec)
        return spec

    # ------------------------------------------------------------- observe
    async def _credentials(self, key: ClusterKey, spec: Spec) -> tuple[Credentials, str | None]:
        token: str | None = None
        ca: bytes | None = None
        field = "spec.auth.tokenSecretRef"
        try:
            if spec.auth.token_secret_ref is not None:
                ref = spec.auth.token_secret_ref
                token = (await self.kube.read_secret_key(key.namespace, ref.name, ref.key)).decode(
                    "utf-8", "replace").strip()
                if not _TOKEN.fullmatch(token):
                    # It becomes a header line: a CR/LF would let the Secret's
                    # writer add headers (or requests) of its own.
                    return Credentials(), (
                        f"{field}: the token in Secret {ref.name} key {ref.key} is empty or "
                        "has spaces, control or non-ASCII characters; not sent")
            if spec.auth.ca_secret_ref is not None:
                field = "spec.auth.caSecretRef"
                ref = spec.auth.ca_secret_ref
                ca = await self.kube.read_secret_key(key.namespace, ref.name, ref.key)
        except KubeError as err:
            return Credentials(), f"{field}: {err}"
        return Credentials(token=token, ca_pem=ca), None

    async def _rotated(
        self, key: ClusterKey, spec: Spec, creds: Credentials
    ) -> Credentials | None:
        """After a 401: the token Secret read again past the cache, if it now holds
        another token (a rotation); None if not, so a rejected token costs one
        request per poll, never a retry loop."""
        ref = spec.auth.token_secret_ref
        if ref is None:
            return None
        self.kube.forget_secret(key.namespace, ref.name)
        fresh, error = await self._credentials(key, spec)
        if error is not None or fresh.token == creds.token:
            return None
        log.info("token rotated; retrying once with the new one",
                 namespace=key.namespace, name=key.name)
        return fresh

    async def _observe(
        self,
        key: ClusterKey,
        spec: Spec,
        memory: Memory,
        creds: Credentials,
        creds_error: str | None,
        body: Mapping[str, Any],
        now: float,
    ) -> tuple[Observation, Credentials, Memory]:
        """What this poll saw, the credentials that worked (rotated on a 401), and the
        memory with the outcome of an admin read made for it (its backoff)."""
        approvals = parse_approvals(dict(body.get("metadata", {}).get("annotations") or {}))
        base = spec.primary.admin_url
        if creds_error is not None:
            return Observation(at=now, primary=SourceStatus.failed(creds_error),
                               approved_rebuilds=approvals), creds, memory
        try:
            try:
                scrape = await self.stemedb.scrape_primary(base, creds)
            except StemeDBUnauthorized:
                fresh = await self._rotated(key, spec, creds)
                if fresh is None:
                    raise
                creds = fresh
                scrape = await self.stemedb.scrape_primary(base, creds)
        except StemeDBDestinationDenied as err:
            return Observation(at=now, primary=SourceStatus.denied(f"{ADMIN_URL}: {err}"),
                               approved_rebuilds=approvals), creds, memory
        except StemeDBError as err:
            return Observation(at=now, primary=SourceStatus.failed(f"{ADMIN_URL}: {err}"),
                               approved_rebuilds=approvals), creds, memory
        observation = _primary_observation(spec, scrape, now, approvals)
        evidence = evidence_needed(spec, memory, observation)
        if evidence.nothing_extra:
            return observation, creds, memory
        changes: dict[str, Any] = {}
        if observation.rate_limit is UNKNOWN and read_allowed(memory, AdminRead.RATE_LIMIT,
                                                              now):
            try:
                read = await self.stemedb.get_rate_limit(base, creds)
                changes["rate_limit"] = _as_rate(read.max_assertions_per_sec)
                memory = after_read(memory, AdminRead.RATE_LIMIT, True, now, str(key))
            except StemeDBError:
                memory = after_read(memory, AdminRead.RATE_LIMIT, False, now, str(key))
        if evidence.replica_metrics:
            changes["replicas"] = await self._replica_evidence(
                spec, observation, evidence.replica_metrics, creds)
        return dataclasses.replace(observation, **changes), creds, memory

    async def _tripped_breakers(
        self, key: ClusterKey, spec: Spec, creds: Credentials, memory: Memory, now: float
    ) -> tuple[frozenset[str] | None, Memory]:
        """The tripped-breakers list (None: unreadable, or its reads back off after a
        failure), and the memory with the read's backoff."""
        if not read_allowed(memory, AdminRead.TRIPPED_BREAKERS, now):
            return None, memory
        try:
            tripped = await self.stemedb.tripped_breakers(spec.primary.admin_url, creds)
        except StemeDBError as err:
            log.info("tripped breakers unreadable", namespace=key.namespace, name=key.name,
                     error=str(err))
            return None, after_read(memory, AdminRead.TRIPPED_BREAKERS, False, now, str(key))
        return (frozenset(b.agent_id for b in tripped),
                after_read(memory, AdminRead.TRIPPED_BREAKERS, True, now, str(key)))

    async def _replica_evidence(
        self, spec: Spec, observation: Observation, wanted: frozenset[str], creds: Credentials
    ) -> tuple[ReplicaObservation, ...]:
        urls = {r.id: r.metrics_url for r in spec.replicas if r.id in wanted and r.metrics_url}
        fields = {r.id: f"spec.replicas[{i}].metricsUrl" for i, r in enumerate(spec.replicas)}

        async def one(rid: str, url: str) -> tuple[str, SourceStatus]:
            # Only how the replica answers is read (a denied destination stops the
            # poll); the scraped values are not (docs/remediation-policy.md).
            try:
                await self.stemedb.scrape_node(url, creds)
            except StemeDBDestinationDenied as err:
                return rid, SourceStatus.denied(f"{fields[rid]}: {err}")
            except StemeDBError as err:
                return rid, SourceStatus.failed(f"{fields[rid]}: {err}")
            return rid, SourceStatus.ok()

        results = dict(await asyncio.gather(*(one(rid, url) for rid, url in urls.items())))
        return tuple(
            dataclasses.replace(r, source=results[r.replica_id])
            if r.replica_id in results else r
            for r in observation.replicas
        )

    # ----------------------------------------------------------------- act
    async def _act(
        self, key: ClusterKey, spec: Spec, creds: Credentials, action: Action
    ) -> ActionOutcome:
        base = spec.primary.admin_url
        log.info("action", namespace=key.namespace, name=key.name, action=action.kind.value,
                 replica=action.replica_id, rate=action.rate, key=action.idempotency_key,
                 reason=action.reason.value)
        attempts = 1
        try:
            try:
                detail = await self._perform(key, spec, creds, base, action)
            except StemeDBUnauthorized:
                # Refused, so not applied: safe to send once more with a rotated token
                # (a second request, which maxActionsPerHour counts too).
                fresh = await self._rotated(key, spec, creds)
                if fresh is None:
                    raise
                attempts = 2
                detail = await self._perform(key, spec, fresh, base, action)
        except StemeDBError as err:
            self.metrics.count_action(action.kind.value, "failed")
            return ActionOutcome(False, f"{ADMIN_URL}: {err}",
                                 may_have_applied=bool(getattr(err, "may_have_applied", False)),
                                 attempts=attempts)
        except KubeError as err:
            self.metrics.count_action(action.kind.value, "failed")
            return ActionOutcome(False, f"{_pod_field(spec, action.replica_id)}: {err}",
                                 may_have_applied=False)
        self.metrics.count_action(action.kind.value, "success")
        return ActionOutcome(True, detail, attempts=attempts)

    async def _perform(
        self, key: ClusterKey, spec: Spec, creds: Credentials, base: str, action: Action
    ) -> str:
        """Make the admin (or Kubernetes) call for one action; returns a detail for
        history. The policy's side of each kind is in controller/domain/policy/actions.py."""
        match action.kind:
            case ActionKind.RESET_BREAKER:
                reset = await self.stemedb.reset_breaker(base, str(action.agent_id), creds)
                return "" if reset.was_tripped else "breaker was no longer tripped"
            case ActionKind.SET_RATE_LIMIT:
                await self.stemedb.set_rate_limit(base, action.rate, creds)
                return ""
            case ActionKind.FORCE_SYNC:
                started = await self.stemedb.force_sync(base, str(action.replica_id), creds)
                return f"sync {started.sync_id}" if started.sync_id else ""
            case ActionKind.MARK_REBUILD:
                return await self._mark_rebuild(key, spec, action)
            case _:  # pragma: no cover - mypy proves this unreachable
                assert_never(action.kind)

    async def _mark_rebuild(self, key: ClusterKey, spec: Spec, action: Action) -> str:
        """Annotate the replica's Pod for the rebuild tooling, when it has a podRef."""
        replica = next((r for r in spec.replicas if r.id == action.replica_id), None)
        if replica is not None and replica.pod_name:
            await self.kube.annotate_pod(key.namespace, replica.pod_name, {
                REBUILD_ANNOTATION: "true",
                REBUILD_REASON_ANNOTATION: action.message[:250],
            })
            return f"Pod {replica.pod_name} annotated"
        return "no podRef; marked in status only"

    # -------------------------------------------------------------- report
    def _load_memory(
        self, key: ClusterKey, body: Mapping[str, Any], status: Mapping[str, Any]
    ) -> Memory:
        raw = status.get("memory")
        if raw is None:
            return Memory.empty()
        history = status.get("history")
        cached = self._memories.get(key)
        if cached is not None and cached[0] == raw and cached[2] == history:
            return cached[1]
        try:
            # The memory does not repeat the history: status.history holds it.
            memory = replace(Memory.from_text(raw), history=history_from_json(history))
            self._memories[key] = (raw, memory, history)
            return memory
        except MemoryFormatError as err:
            self.post_event(body, EventType.WARNING.value, EventReason.MEMORY_RESET,
                            f"status.memory could not be read ({err}); starting afresh")
            return Memory.empty()

    async def _write_status(
        self,
        key: ClusterKey,
        body: Mapping[str, Any],
        spec: Spec,
        memory: Memory,
        conditions: tuple[Condition, ...],
        generation: int,
        now: float,
    ) -> None:
        current = self._status(key, body)
        # Same inputs as the last status already written or found current: the same
        # status would be built (`now` only stamps conditions that differ from
        # `current`'s), so nothing to write.
        last = self._reported.get(key)
        if (last is not None and last[0] is spec and last[1] is memory
                and last[2] == conditions and last[3] == generation and last[4] is current):
            return
        new = build_status(spec, memory, conditions, generation, name=key.name,
                           namespace=key.namespace)
        new["conditions"] = merge_conditions(current.get("conditions"), conditions, now,
                                             generation=generation)
        await self._patch_if_changed(key, current, new)
        self._reported[key] = (spec, memory, tuple(conditions), generation,
                               self._status(key, body))

    async def _patch_if_changed(
        self, key: ClusterKey, current: Mapping[str, Any], new: dict[str, Any]
    ) -> None:
        if self._written.get(key) == new or _same(current, new):
            return
        await self.kube.patch_status(key.namespace, key.name, new)
        self._written[key] = new

    async def _report_invalid(
        self, key: ClusterKey, body: Mapping[str, Any], problems: Sequence[SpecProblem],
        reason: Reason, now: float, generation: int,
    ) -> None:
        """Ready and RemediationAllowed False naming each field; no action at all."""
        message = "; ".join(f"{p.path}: {p.message}" for p in problems)[:1000]
        current = self._status(key, body)
        conditions = (
            Condition(ConditionType.READY, False, reason, message),
            Condition(ConditionType.REMEDIATION_ALLOWED, False, reason,
                      "Nothing is acted on until the spec is valid and matches the cluster."),
        )
        new = {
            # The rest of status as it was, but not the shard's name: written with no
            # resourceVersion, one copied from a stale status could name a shard
            # that has moved on.
            **{k: v for k, v in current.items() if k != "conditions" and k not in SHARD_FIELDS},
            "observedGeneration": generation,
            "summary": f"{_SUMMARY_PREFIX.get(reason, reason.value)}: {message}",
            "conditions": merge_conditions(current.get("conditions"), conditions, now,
                                           generation=generation),
        }
        if not _same(current, new) and self._written.get(key) != new:
            self.post_event(body, EventType.WARNING.value, _INVALID_EVENT[reason], message)
            try:
                await self._patch_if_changed(key, current, new)
            except KubeError as err2:
                log.warning("status not written", error=str(err2))

    async def _notify(
        self, key: ClusterKey, body: Mapping[str, Any], spec: Spec, level_before: int,
        esc: Escalation, now: float,
    ) -> None:
        """Page, re-send and resolve (`adapters/notify.py`): started here, delivered
        in the background, outcomes as Events."""
        if self.notifier is None:
            return
        authorization: str | None = None
        ref = spec.escalation.webhook_auth_secret_ref
        if ref is not None and spec.escalation.webhook_url and (esc.level or level_before):
            authorization = await self._webhook_authorization(key, body, ref)
            if authorization is None:
                return  # reported; an unauthenticated page would only be refused
        self.notifier.update(
            ClusterRef(key.namespace, key.name), body,
            Page(esc.level, esc.contact, esc.reason.value, esc.message), now,
            level_before=level_before, contact_before=spec.escalation.contact(level_before),
            webhook_url=spec.escalation.webhook_url, webhook_authorization=authorization,
        )

    async def _webhook_authorization(
        self, key: ClusterKey, body: Mapping[str, Any], ref: SecretKeyRef
    ) -> str | None:
        """The webhook's Authorization header from its Secret (cached like the token),
        or None after an Event naming the field (never the value)."""
        field = "spec.escalation.webhookAuthSecretRef"
        try:
            value = (await self.kube.read_secret_key(key.namespace, ref.name, ref.key)).decode(
                "utf-8", "replace").strip()
        except KubeError as err:
            problem = f"{field}: {err}"
        else:
            if _HEADER_VALUE.fullmatch(value):
                return value
            problem = (f"{field}: the value in Secret {ref.name} key {ref.key} is empty or "
                       "has control or non-ASCII characters; not sent")
        if self._webhook_problems.get(key) != problem:
            self._webhook_problems[key] = problem
            self.post_event(body, EventType.WARNING.value, EventReason.NOTIFICATION_FAILED,
                            problem)
        return None

    # ------------------------------------------------------------ deletion
    async def restore_before_delete(self, body: Mapping[str, Any]) -> str | None:
        """Lift a throttle this operator set before the resource goes away.

        Returns what was done (for an Event), or None when nothing was needed.
        Raises StemeDBError/KubeError when the restore must be retried.
        """
        key = ClusterKey.of(body)
        async with self.lock(key):
            memory = self._load_memory(key, body, self._status(key, body))
            if not memory.throttle.active:
                return None
            spec = self._parse_spec(key, body)
            creds, creds_error = await self._credentials(key, spec)
            if creds_error is not None:
                raise KubeError(creds_error)
            rate = memory.throttle.rate_to_restore
            await self.stemedb.set_rate_limit(spec.primary.admin_url, rate, creds)
            self.metrics.count_action(ActionKind.SET_RATE_LIMIT.value, "success")
            return (f"restored the ingestion rate limit to "
                    f"{'unlimited' if rate is None else f'{rate}/s'} before deletion")


def _refusal(
    spec: Spec, observation: Observation
) -> tuple[Sequence[SpecProblem], Reason] | None:
    """Why this poll may act on nothing although the spec parsed: a replica's metricsUrl
    resolved to a denied address, or the spec contradicts what the cluster reports."""
    refused = [SpecProblem(*r.source.detail.split(": ", 1))
               for r in observation.replicas
               if r.source is not None and r.source.state is SourceState.DENIED
               and ": " in r.source.detail]
    if refused:
        return refused, Reason.DESTINATION_DENIED
    contradictions = spec_contradictions(spec, observation)
    if contradictions:
        return contradictions, Reason.SPEC_CONTRADICTS_CLUSTER
    return None


def _same(current: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return all(_pruned(current.get(k)) == _pruned(v) for k, v in new.items())


def _pruned(value: Any) -> Any:
    """The stored form: a merge patch deletes null fields, nested ones included."""
    if isinstance(value, Mapping):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _as_rate(value: float | None) -> RateLimit:
    """A limit read from StemeDB as whole assertions per second. A fractional limit
    rounds up: 0.5/s must not become 0 (ingestion paused) when it is restored."""
    return None if value is None else math.ceil(value)


def _primary_observation(
    spec: Spec, scrape: PrimaryScrape, now: float, approvals: frozenset[str]
) -> Observation:
    replicas = []
    for replica in spec.replicas:
        scraped = scrape.replicas.get(replica.id)
        if scraped is None:
            replicas.append(ReplicaObservation(replica.id))
            continue
        replicas.append(ReplicaObservation(
            replica_id=replica.id,
            lag_seconds=scraped.lag_seconds,
            sync_running=scraped.sync_running,
            sync_progress=scraped.sync_progress,
            sync_errors_total=scraped.sync_errors_total,
            sync_corruption_total=scraped.sync_corruption_total,
            restarts_total=scraped.restarts_total,
            agent_id=scraped.agent_id,
            breaker_tripped=scraped.breaker_tripped,
            missing_series=tuple(sorted(scraped.missing)),
        ))
    rate: RateLimit = _as_rate(scrape.rate_limit) if scrape.rate_limit_reported else UNKNOWN
    return Observation(
        at=now,
        primary=SourceStatus.ok(),
        replicas=tuple(replicas),
        rate_limit=rate,
        approved_rebuilds=approvals,
        primary_node=scrape.node,
        primary_role=scrape.role,
        tripped_agents=NOT_READ,  # read only if `decide` asks for it
    )
