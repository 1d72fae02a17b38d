"""Leader election on a coordination.k8s.io/v1 Lease, over our own Kubernetes adapter.

Several replicas run; one acts (polls StemeDB, writes status, calls admin
endpoints). The others keep Kopf's watches and daemons warm and wait. The rules
(when to take, renew, give up) are pure and live in `controller.domain.leadership`;
this module does the I/O and the timers:

- every retry period (2 s for the leader, 1 s for a standby) each replica reads
  the Lease and creates, takes or renews it with a PUT fenced by the
  resourceVersion it read (HTTP 409: someone else wrote first, and this attempt
  failed);
- a leader stops acting at its renew deadline unless a renewal has succeeded:
  a timer, not the loop, enforces it, so a request hanging on a dead API server
  cannot keep it acting; work in flight (`guarded`) is cancelled then;
- on shutdown it stops acting first, then releases the Lease (no holder, 1 s),
  so a standby takes over on its next attempt instead of after 15 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import structlog

from controller.adapters.kube import KubeError, NotLoggedIn, micro_time
from controller.domain.leadership import (
    RENEW_DEADLINE_ANNOTATION,
    LeaseRecord,
    LeaseTimings,
    Move,
    Observation,
    absent_move,
    acting_until,
    next_attempt_in,
    next_move,
    observe,
    renew_deadline_of,
    transitions_after,
)
from controller.domain.sharding import RING_VIEW_ANNOTATION, decode_view

T = TypeVar("T")
SHUTDOWN = "shutting down"
LOGIN_WAIT_SECONDS = 0.1
log = structlog.get_logger("stemedb.leadership")


class LeaseStore(Protocol):
    """The two calls the elector needs (`KubeClient` has them)."""

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def write_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LeaseName:
    namespace: str
    name: str


def record_of(lease: dict[str, Any]) -> LeaseRecord:
    """The fields of a Lease the rules look at (missing ones as the API defaults)."""
    spec = lease.get("spec") or {}
    metadata = lease.get("metadata") or {}
    duration = spec.get("leaseDurationSeconds")
    annotations = metadata.get("annotations") or {}
    acquired = spec.get("acquireTime")
    seconds = float(duration) if isinstance(duration, int) else 0.0
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        lease_duration_seconds=seconds,
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str(metadata.get("resourceVersion") or ""),
        renew_deadline_seconds=renew_deadline_of(annotations.get(RENEW_DEADLINE_ANNOTATION),
                                                 seconds),
        acquire_time=acquired if isinstance(acquired, str) and acquired else None,
        ring_view=decode_view(annotations.get(RING_VIEW_ANNOTATION)),
    )


class LeaderElector:
    """One replica's side of the election; `acting` says whether it may act now."""

    def __init__(
        self,
        store: LeaseStore,
        lease: LeaseName,
        identity: str,
        timings: LeaseTimings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[bool], None] | None = None,
        labels: Mapping[str, str] | None = None,
        declare_deadline: bool = False,
        annotations: Callable[[], Mapping[str, str]] | None = None,
        new_life_each_term: bool = False,
    ) -> None:
        self.store, self.lease, self.identity = store, lease, identity
        self._labels = dict(labels or {})  # on the Lease (a shard ring's selector)
        # On the Lease, the renew deadline it self-fences at (shard Leases: the others
        # may write over its claims, not act on them, once it has surely stopped).
        self._declare_deadline = declare_deadline
        # More annotations for each write, read as the write is made (a shard's
        # acknowledgement of the view it has adopted).
        self._annotations = annotations
        # A fresh acquireTime whenever this process starts acting again, not only when
        # it takes the Lease from another holder: a shard's acquireTime names one life
        # of it, and what others acknowledged for an earlier one must not count.
        self._new_life_each_term = new_life_each_term
        self.acquired: str | None = None  # the acquireTime of our last write
        self._life: str | None = None  # the acquireTime of the term in progress
        self.timings = timings or LeaseTimings()
        self._clock, self._wall, self._on_change = clock, wall, on_change
        self._seen: Observation | None = None
        self._until: float | None = None  # acting until then (monotonic); None: standby
        self._fence: asyncio.TimerHandle | None = None
        self._leading = asyncio.Event()
        self._acts: set[asyncio.Task[Any]] = set()
        self._holding = False  # our last write made us the holder
        self._closing = False  # shutting down: never act again

    @property
    def acting(self) -> bool:
        """True only before the renew deadline of a renewal that succeeded."""
        return self._until is not None and self._clock() < self._until

    async def wait_acting(self) -> None:
        """Return once this replica leads (at once if it does)."""
        while not self.acting:
            await self._leading.wait()

    async def guarded(self, work: Coroutine[Any, Any, T],
                      track: Callable[[asyncio.Task[T]], None] | None = None) -> T | None:
        """Run `work` as leader; None (and `work` cancelled) if leadership is lost
        before it ends, or if someone else cancels its task (`track` is given it).
        A cancellation of the caller itself is passed on."""
        if not self.acting:
            work.close()
            return None
        task = asyncio.ensure_future(work)
        self._acts.add(task)
        if track is not None:
            track(task)
        try:
            return await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise
            return None
        finally:
            self._acts.discard(task)

    async def run(self, after_first_attempt: Callable[[], None] | None = None) -> None:
        """Try to take or renew the Lease every retry period, until cancelled;
        `after_first_attempt` is called once the first request to the API server
        has been answered or has failed."""
        attempted = False
        while True:
            sent = self._clock()
            budget = (self._until - sent) if self._until is not None else \
                self.timings.renew_deadline
            try:
                async with asyncio.timeout(max(budget, 0.1)):
                    won = await self._attempt()
            except NotLoggedIn:
                await asyncio.sleep(LOGIN_WAIT_SECONDS)  # Kopf logs in after start-up
                continue
            except (KubeError, TimeoutError) as err:
                won = False
                log.warning("lease attempt failed", lease=self.lease.name,
                            error=str(err) or "timed out", leading=self.acting)
            if not attempted and after_first_attempt is not None:
                attempted = True
                after_first_attempt()
            if won:
                self._lead(sent)
            await asyncio.sleep(next_attempt_in(self._seen, self.identity, self._clock(),
                                                self.timings))

    async def _attempt(self) -> bool:
        """One read and, if the rules allow, one write; True if we hold the Lease."""
        current = await self.store.get_lease(self.lease.namespace, self.lease.name)
        now = self._clock()
        if current is None:
            move = absent_move(self._seen, self.identity, now)
            if move is Move.CREATE:
                self._seen = None
        else:
            self._seen = observe(self._seen, record_of(current), now)
            move = next_move(self._seen, self.identity, now)
        if move is Move.WAIT:
            self._holding = False
            if self._until is not None:
                holder = self._seen.record.holder if self._seen else None
                self._stop(f"the Lease is held by {holder}")
            return False
        body = self._body(move, current)
        try:
            await self.store.write_lease(self.lease.namespace, body)
        except KubeError as err:
            if err.status != 409:
                raise
            self._holding = False
            if self._until is not None:
                self._stop("another replica wrote the Lease")
            return False
        self.acquired = body["spec"]["acquireTime"]
        return True

    def _body(self, move: Move, current: dict[str, Any] | None) -> dict[str, Any]:
        now = micro_time(self._wall())
        record = record_of(current) if current is not None else None
        metadata: dict[str, Any] = {"name": self.lease.name, "namespace": self.lease.namespace}
        if current is not None:
            metadata = {**current.get("metadata", {}), **metadata}
        if self._labels:
            metadata["labels"] = {**(metadata.get("labels") or {}), **self._labels}
        extra = dict(self._annotations()) if self._annotations is not None else {}
        if self._declare_deadline:
            extra[RENEW_DEADLINE_ANNOTATION] = f"{self.timings.renew_deadline:g}"
        if extra:
            metadata["annotations"] = {**(metadata.get("annotations") or {}), **extra}
        spec = dict((current or {}).get("spec") or {})
        if move is not Move.RENEW or not spec.get("acquireTime") or \
                (self._new_life_each_term and not self.acting):
            spec["acquireTime"] = now
        spec.update(holderIdentity=self.identity,
                    leaseDurationSeconds=int(self.timings.lease_duration),
                    renewTime=now, leaseTransitions=transitions_after(move, record))
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": metadata, "spec": spec}

    def _lead(self, sent: float) -> None:
        self._holding = True
        if self._closing:
            return
        # A new life while acting (the Lease re-created after someone deleted it, or
        # taken anew) is a fence and a new term: what was decided in the old one is
        # decided again. The body's acquireTime was chosen by `acting` when the
        # write was built; the write cannot land after that term's fence, since the
        # attempt's timeout is the time left until it (`run`).
        if self._until is not None and self.acquired != self._life:
            self._stop("the Lease was re-created or taken anew")
        started = self._until is None
        self._life = self.acquired
        self._until = acting_until(sent, self.timings)
        loop = asyncio.get_running_loop()
        if self._fence is not None:
            self._fence.cancel()
        delay = max(self._until - self._clock(), 0.0)
        self._fence = loop.call_later(delay, self._stop, "no renewal within the renew deadline")
        self._leading.set()
        if started:
            log.info("leading: acting", lease=self.lease.name, identity=self.identity)
            if self._on_change:
                self._on_change(True)

    def stop_acting(self) -> None:
        """Stop acting for good, now (no new work, the work in flight cancelled); the
        Lease is kept until `release`. For a signal handler, which cannot await."""
        self._closing = True
        self._stop(SHUTDOWN)

    def _stop(self, why: str) -> None:
        """Stop acting now: no new work, and the work in flight cancelled."""
        if self._fence is not None:
            self._fence.cancel()
            self._fence = None
        was = self._until is not None
        self._until = None
        self._leading.clear()
        for task in list(self._acts):
            task.cancel()
        if was:
            log.warning("stopped acting", lease=self.lease.name, identity=self.identity,
                        reason=why)
            if self._on_change:
                self._on_change(False)

    async def release(self, timeout: float = 2.0) -> None:
        """Stop acting, wait for the work in flight to end, and hand the Lease back
        (no holder, 1 s) if it is still ours, so a standby takes it at once."""
        self.stop_acting()
        held = self._holding
        acts = list(self._acts)
        if acts:
            await asyncio.wait(acts, timeout=timeout)
        if not held:
            return
        with contextlib.suppress(KubeError, TimeoutError):
            async with asyncio.timeout(timeout):
                current = await self.store.get_lease(self.lease.namespace, self.lease.name)
                if current is None or record_of(current).holder != self.identity:
                    return
                spec = {**current.get("spec", {}), "holderIdentity": None,
                        "leaseDurationSeconds": 1, "renewTime": micro_time(self._wall())}
                await self.store.write_lease(self.lease.namespace,
                                             {**current, "spec": spec})
                log.info("released the Lease", lease=self.lease.name, identity=self.identity)

