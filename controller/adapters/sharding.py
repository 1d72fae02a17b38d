"""Sharding across replicas: each holds its own Lease, the live ones form a ring,
and each cluster is acted on by one replica at a time, with no write per cluster.

The rules are pure (`controller.domain.sharding`); this module does the I/O:

- the replica's own shard Lease is a `LeaderElector` that nobody else competes
  for: it renews every 2 s, self-fences at its renew deadline (cancelling the
  polls in flight) and releases on shutdown, exactly as the leader Lease. Each
  renewal carries the acknowledgement of the view this replica has adopted, once
  the polls that view takes from it have ended (the drain);
- every second it lists the ring's Leases (one LIST by label) and recomputes the
  members, the stopped shards whose clusters wait, and whether every member has
  acknowledged this replica; a change of any wakes every cluster's daemon to look
  at its cluster again. Only these changes can make a cluster this replica's, so
  the daemons of other shards' clusters sleep until one comes;
- `status.shard` names the shard acting on a cluster for `kubectl get sdb`: written
  by that shard after it has polled, in the background, information only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from controller.adapters.kube import KubeError, NotLoggedIn, micro_time
from controller.adapters.leadership import LeaderElector, LeaseName, LeaseStore, record_of
from controller.domain.leadership import LeaseTimings
from controller.domain.sharding import (
    LEASE_GC_SECONDS,
    RING_LABEL,
    RING_VIEW_ANNOTATION,
    SHARD_FIELD,
    Member,
    RingView,
    Standing,
    collectable,
    encode_view,
    identity_of,
    judge,
    lease_name,
    may_act,
    taken_away,
    unseen,
    update,
)

T = TypeVar("T")
log = structlog.get_logger("stemedb.sharding")
# `status.shard` writes: information only, so never many at once and never fast.
# Each is a PATCH of the whole object (~10 ms of the API server's CPU): unpaced, a
# shard starting with 3,000 clusters wrote 3,000 as fast as the API server took
# them, beside the status reads of its first polls. Paced, its column fills in
# 150 s at 3,000 clusters, and a takeover's writes never crowd the API server.
OWNER_WRITES_PER_SECOND = 20.0


class RingStore(LeaseStore, Protocol):
    """The Lease calls a shard needs (`KubeClient` has them)."""

    async def list_leases(self, namespace: str,
                          selector: tuple[str, str]) -> list[dict[str, Any]]: ...

    async def delete_lease(self, namespace: str, name: str, resource_version: str) -> None: ...


class OwnerStore(Protocol):
    """The write of `status.shard` (`KubeClient` has it)."""

    async def record_shard(self, namespace: str, name: str, shard: str,
                           since: str) -> None: ...


def shard_of(body: Mapping[str, Any]) -> str | None:
    """Which shard the object's status names (None: none, or not a string)."""
    shard = (body.get("status") or {}).get(SHARD_FIELD)
    return shard if isinstance(shard, str) and shard else None


class Shards:
    """This replica's place in the ring, and which clusters it may act on."""

    def __init__(
        self,
        store: RingStore,
        namespace: str,
        ring: str,
        identity: str,
        timings: LeaseTimings | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        owners: OwnerStore | None = None,
        lease_gc_seconds: float = LEASE_GC_SECONDS,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.namespace, self.ring, self.identity = store, namespace, ring, identity
        # `status.shard` goes through another client than the Lease: a burst of them
        # after a takeover must never hold up a renewal.
        self.owners: OwnerStore = owners if owners is not None else cast(OwnerStore, store)
        self.timings = timings or LeaseTimings()
        self.lease_gc_seconds = lease_gc_seconds
        self._clock, self._wall = clock, wall
        self.elector = LeaderElector(
            store, LeaseName(namespace, lease_name(ring, identity)), identity, self.timings,
            clock=clock, on_change=self._acting_changed, labels={RING_LABEL: ring},
            declare_deadline=True, annotations=self._acknowledging, new_life_each_term=True)
        self.view = RingView()
        self.members: frozenset[str] = frozenset()  # itself included while acting
        self.held: frozenset[str] = frozenset()  # stopped shards whose clusters wait
        self.standing = Standing.FENCED
        self.unacked: frozenset[str] = frozenset()
        self._ring: frozenset[str] = frozenset()  # members | held: one rendezvous
        self._new = True  # listing for less than a Lease duration
        self._began: float | None = None  # when this replica last began acting
        self._adopted: frozenset[Member] = frozenset()  # the view it acts by
        self._acked: frozenset[Member] = frozenset()  # on its Lease: drained
        self._polls: dict[asyncio.Task[Any], str] = {}  # work in flight -> its uid
        self._acting_on: set[str] = set()
        self._recorded: set[str] = set()  # uids whose status.shard it wrote this term
        self._to_record: asyncio.Queue[tuple[str, str, str, Mapping[str, Any]]] = \
            asyncio.Queue()
        self._wakers: dict[str, asyncio.Event] = {}
        self._list_now: asyncio.Event | None = None
        self._clusters = Gauge("stemedb_operator_shard_clusters",
                               "Clusters this shard acts on",
                               ["shard"], registry=registry).labels(identity)
        self._members = Gauge("stemedb_operator_shard_members",
                              "Live shards this replica sees in its ring (itself included)",
                              ["shard"], registry=registry).labels(identity)
        self._polls_made = Counter("stemedb_operator_shard_polls",
                                   "Polls of StemeDB clusters made by this shard",
                                   ["shard"], registry=registry).labels(identity)

    # The ring.

    async def run(self, after_first_attempt: Callable[[], None] | None = None) -> None:
        """Hold this replica's Lease and follow the ring, until cancelled."""
        self._list_now = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(self.elector.run(after_first_attempt), name="shard lease")
            group.create_task(self._follow_ring(), name="shard ring")
            group.create_task(self._record_owners(), name="shard owner writes")

    async def _follow_ring(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.timings.renew_deadline):
                    await self.refresh()
            except NotLoggedIn:
                await asyncio.sleep(0.1)
                continue
            except (KubeError, TimeoutError) as err:
                # The view stays as last listed, and is judged as of then.
                log.warning("listing the shard ring failed", ring=self.ring,
                            error=str(err) or "timed out")
            assert self._list_now is not None
            # Every second, or at once when this replica begins acting (rule 5 wants
            # a listing sent after that before it acts).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timings.standby_retry_period):
                    await self._list_now.wait()
            self._list_now.clear()

    async def refresh(self) -> None:
        """List the ring's Leases once and recompute the members."""
        sent = self._clock()
        leases = await self.store.list_leases(self.namespace, (RING_LABEL, self.ring))
        records = {}
        for lease in leases:
            who = identity_of(self.ring, str((lease.get("metadata") or {}).get("name")))
            if who is not None:
                records[who] = record_of(lease)
        self.view = update(self.view, records, self._clock(), sent)
        self._recompute()
        if self.elector.acting:
            await self._collect()

    async def _collect(self) -> None:
        """Delete the Leases of shards gone for good (released or expired, unchanged
        for `lease_gc_seconds`); the resourceVersion precondition spares one that
        came back meanwhile, and of several replicas trying, one succeeds."""
        for who in collectable(self.view, self.lease_gc_seconds):
            obs = self.view.seen[who]
            try:
                await self.store.delete_lease(self.namespace, lease_name(self.ring, who),
                                              obs.record.resource_version)
            except KubeError as err:
                if err.status not in (404, 409):
                    log.warning("deleting a gone shard's Lease failed", shard=who,
                                error=str(err))
                continue
            log.info("deleted a gone shard's Lease", ring=self.ring, shard=who)

    def _recompute(self) -> None:
        was = (self.members, self.held, self.standing, self._new)
        judged = judge(self.view, self.identity, self.elector.acting, self.elector.acquired,
                       self._began, self.timings.lease_duration)
        self._adopted = judged.adopted
        if judged.members != self.members:
            log.info("shard ring changed", ring=self.ring, shard=self.identity,
                     members=sorted(judged.members), was=sorted(self.members))
            self.members = judged.members
            self._members.set(len(judged.members))
            self._drain()
        if judged.unacked != self.unacked and judged.unacked:
            older = sorted(w for w in judged.unacked if self._acks_nothing(w))
            log.info("waiting for shards to acknowledge this one", ring=self.ring,
                     shard=self.identity, waiting_for=sorted(judged.unacked),
                     **({"without_acknowledgements": older,
                         "hint": "a replica of a version without stemedb.io/ring-view "
                                 "never acknowledges: finish the upgrade"} if older else {}))
        if judged.standing is not self.standing:
            log.info("shard standing changed", ring=self.ring, shard=self.identity,
                     standing=judged.standing.value, was=self.standing.value)
        self.held, self.unacked, self.standing = judged.held, judged.unacked, judged.standing
        self._new = judged.new
        self._ring = self.members | self.held
        if (self.members, self.held, self.standing, self._new) != was:
            self._wake_all()

    def _acks_nothing(self, who: str) -> bool:
        obs = self.view.seen.get(who)
        return obs is not None and obs.record.ring_view is None

    def _drain(self) -> None:
        """Cancel the work in flight on clusters the new members take from this
        replica: its acknowledgement of them waits for that (`_acknowledging`)."""
        moved = taken_away(self._polls.values(), self.identity, self.members)
        for task, uid in list(self._polls.items()):
            if uid in moved:
                task.cancel()

    def _acknowledging(self) -> dict[str, str]:
        """The annotation for the renewal being written: the adopted view once no
        work it takes from this replica is in flight, else the last one drained."""
        if not taken_away(self._polls.values(), self.identity,
                          (who for who, _ in self._adopted)):
            self._acked = self._adopted
        return {RING_VIEW_ANNOTATION: encode_view(self._acked)}

    def _acting_changed(self, acting: bool) -> None:
        if acting:
            self._began = self._clock()
            if self._list_now is not None:
                self._list_now.set()
        else:
            self._began = None
            self._recorded.clear()
        self._recompute()

    def _wake_all(self) -> None:
        for event in self._wakers.values():
            event.set()

    # One cluster.

    def may_act(self, body: Mapping[str, Any]) -> bool:
        """All five rules, for this cluster, now; and, in this replica's first Lease
        duration of listing, not a cluster whose status names a shard it has never
        seen (`unseen`)."""
        return self.standing is Standing.ACTING and self.elector.acting and \
            may_act(str(body["metadata"]["uid"]), self.identity, self.members, self._ring) \
            and not (self._new and unseen(self.view, shard_of(body),
                                          self.timings.lease_duration))

    def mark(self, uid: str, acting: bool) -> None:
        """What the cluster's daemon decided: the gauge counts the clusters acted on."""
        if acting:
            self._acting_on.add(uid)
        else:
            self._acting_on.discard(uid)
            self._recorded.discard(uid)
        self._clusters.set(len(self._acting_on))

    async def guarded(self, body: Mapping[str, Any],
                      work: Coroutine[Any, Any, T]) -> T | None:
        """Run `work` on this cluster if this replica may act on it; None (and `work`
        cancelled) if it may not, or stops being allowed before `work` ends: a fence,
        or a new view that gives the cluster to another shard."""
        if not self.may_act(body):
            work.close()
            return None
        uid = str(body["metadata"]["uid"])
        tracked: list[asyncio.Task[Any]] = []

        def track(task: asyncio.Task[Any]) -> None:
            tracked.append(task)
            self._polls[task] = uid

        try:
            return await self.elector.guarded(work, track)
        finally:
            for task in tracked:
                self._polls.pop(task, None)

    def record(self, body: Mapping[str, Any]) -> None:
        """After a poll: have `status.shard` name this replica, if it does not yet."""
        meta = body["metadata"]
        uid = str(meta["uid"])
        if shard_of(body) == self.identity or uid in self._recorded:
            return
        self._recorded.add(uid)
        self._to_record.put_nowait((uid, str(meta["namespace"]), str(meta["name"]), body))

    async def _record_owners(self) -> None:
        while True:
            uid, namespace, name, body = await self._to_record.get()
            if uid not in self._recorded:
                continue  # moved on meanwhile: the next owner writes its own name
            if not self.may_act(body):
                self._recorded.discard(uid)  # the next poll asks again, if still its own
                continue
            try:
                await self.owners.record_shard(namespace, name, self.identity,
                                               micro_time(self._wall()))
            except NotLoggedIn:
                self._recorded.discard(uid)
            except KubeError as err:
                self._recorded.discard(uid)
                if err.status != 404:
                    log.warning("status.shard not written", namespace=namespace, name=name,
                                shard=self.identity, error=str(err))
            await asyncio.sleep(1 / OWNER_WRITES_PER_SECOND)

    def forget(self, uid: str) -> None:
        """Drop what is kept for a cluster (its daemon has stopped)."""
        self._wakers.pop(uid, None)
        self._recorded.discard(uid)
        if uid in self._acting_on:
            self.mark(uid, False)

    async def wait(self, uid: str, timeout: float) -> None:
        """Sleep up to `timeout`, less if the object or the ring changes meanwhile
        (`settle` before deciding, so no change between the two is missed).

        The timeout sets the same event a change sets, instead of `asyncio.timeout`:
        no cancellation and no exceptions per sleep (a shard sleeps this way between
        all its polls and for every cluster it does not own)."""
        event = self._wakers.setdefault(uid, asyncio.Event())
        if timeout <= 0 or event.is_set():
            return
        timer = asyncio.get_running_loop().call_later(timeout, event.set)
        try:
            await event.wait()
        finally:
            timer.cancel()

    def settle(self, uid: str) -> None:
        """Forget the changes seen so far: the next decision reads them."""
        self._wakers.setdefault(uid, asyncio.Event()).clear()

    def count_poll(self) -> None:
        self._polls_made.inc()

    async def release(self) -> None:
        await self.elector.release()


class ClusterGate:
    """One cluster's side of `Shards`, shaped like a `LeaderElector` (`acting`,
    `guarded`, `timings`), for code that acts under either (the on.delete handler)."""

    def __init__(self, shards: Shards, body: Mapping[str, Any]) -> None:
        self._shards, self._body = shards, body

    @property
    def acting(self) -> bool:
        return self._shards.may_act(self._body)

    @property
    def timings(self) -> LeaseTimings:
        return self._shards.timings

    async def guarded(self, work: Coroutine[Any, Any, T]) -> T | None:
        return await self._shards.guarded(self._body, work)
