"""Sharding across replicas: each holds its own Lease, the live ones form a ring,
and each cluster is acted on by one replica at a time, the one its claim names.

The rules are pure (`controller.domain.sharding`); this module does the I/O:

- the replica's own shard Lease is a `LeaderElector` that nobody else competes
  for: it renews every 2 s, self-fences at its renew deadline (cancelling the
  polls in flight) and releases on shutdown, exactly as the leader Lease;
- every second it lists the ring's Leases (one LIST by label) and recomputes the
  members and which shards are gone; a change of either wakes every cluster's
  daemon to look at its cluster again. Only these changes and the object's own
  can make another shard's cluster this replica's business, so the daemons of
  such clusters sleep until one comes (their wake-ups every 10 s were a
  measurable part of what a shard paid for clusters it does not own);
- the claim (`status.shard`) is written with the resourceVersion the replica
  read, so two writers never both succeed; a replica acts only on claims it has
  itself confirmed with such a write since it last started acting, so a claim
  taken from it while it was cut off is never acted on from a stale copy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from controller.adapters.kube import KubeError, NotLoggedIn
from controller.adapters.leadership import LeaderElector, LeaseName, LeaseStore, record_of
from controller.domain.leadership import LeaseTimings
from controller.domain.sharding import (
    CLAIM_FIELD,
    LEASE_GC_SECONDS,
    RING_LABEL,
    ClaimMove,
    RingView,
    collectable,
    gone,
    gone_shards,
    held_until,
    identity_of,
    lease_name,
    live,
    next_claim_move,
    owner,
    stopped,
    update,
)

log = structlog.get_logger("stemedb.sharding")
# Claim writes in flight at once. The rest wait here, not in the client's pool, where
# their 30 s timeout would run while queued: at 3,000 clusters the start-up claims
# timed out by the thousand and held up status writes behind them.
CLAIMS_IN_FLIGHT = 2


class RingStore(LeaseStore, Protocol):
    """The Lease calls a shard needs (`KubeClient` has them)."""

    async def list_leases(self, namespace: str,
                          selector: tuple[str, str]) -> list[dict[str, Any]]: ...

    async def delete_lease(self, namespace: str, name: str, resource_version: str) -> None: ...


class ClaimStore(Protocol):
    """The claim's write (`KubeClient` has it)."""

    async def claim_cluster(self, namespace: str, name: str, resource_version: str,
                            shard: str) -> str: ...


def claim_of(body: Mapping[str, Any]) -> str | None:
    """Whom the object's claim names (None: nobody, or not a string)."""
    shard = (body.get("status") or {}).get(CLAIM_FIELD)
    return shard if isinstance(shard, str) and shard else None


class Shards:
    """This replica's place in the ring and its claims."""

    def __init__(
        self,
        store: RingStore,
        namespace: str,
        ring: str,
        identity: str,
        timings: LeaseTimings | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        claims: ClaimStore | None = None,
        lease_gc_seconds: float = LEASE_GC_SECONDS,
    ) -> None:
        self.store, self.namespace, self.ring, self.identity = store, namespace, ring, identity
        # Claims go through another client than the Lease: a start-up burst of claim
        # writes must never hold up a renewal (that fences the shard, which drops
        # every claim, which makes the next burst).
        self.claims: ClaimStore = claims if claims is not None else cast(ClaimStore, store)
        self.timings = timings or LeaseTimings()
        self.lease_gc_seconds = lease_gc_seconds
        self._clock = clock
        self.elector = LeaderElector(
            store, LeaseName(namespace, lease_name(ring, identity)), identity, self.timings,
            clock=clock, on_change=self._acting_changed, labels={RING_LABEL: ring},
            declare_deadline=True, release_after=self.holds_end)
        self.view = RingView()
        self.members: frozenset[str] = frozenset()
        self._gone = gone_shards(self.view, self.timings.lease_duration)
        self._term = 0  # counts the times this replica started acting
        self._confirmed: dict[str, int] = {}  # uid -> the term its claim was confirmed in
        # uid -> (the version this replica's last claim write replaced, whom it named):
        # a body still at that version has not caught up with the write yet.
        self._written_over: dict[str, tuple[str, str]] = {}
        # uid -> until when a claim taken over from a stopped shard may not be acted
        # on or handed on (its Lease's expiry; this replica's clock): kept across
        # terms and daemon restarts, lifted by a listing sent after it (`_held_back`).
        self._held: dict[str, float] = {}
        self._wakers: dict[str, asyncio.Event] = {}
        self._writing = asyncio.Semaphore(CLAIMS_IN_FLIGHT)
        self._clusters = Gauge("stemedb_operator_shard_clusters",
                               "Clusters this shard holds a confirmed claim on and acts on",
                               ["shard"], registry=registry).labels(identity)
        self._members = Gauge("stemedb_operator_shard_members",
                              "Live shards this replica sees in its ring (itself included)",
                              ["shard"], registry=registry).labels(identity)
        self._polls = Counter("stemedb_operator_shard_polls",
                              "Polls of StemeDB clusters made by this shard",
                              ["shard"], registry=registry).labels(identity)

    # The ring.

    async def run(self, after_first_attempt: Callable[[], None] | None = None) -> None:
        """Hold this replica's Lease and follow the ring, until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.elector.run(after_first_attempt), name="shard lease")
            group.create_task(self._follow_ring(), name="shard ring")

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
            await asyncio.sleep(self.timings.standby_retry_period)

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
        members = set(live(self.view)) - {self.identity}
        # Not before the first listing: alone in a ring it has not read, a replica
        # would claim every free cluster only to hand most of them over a second later.
        if self.elector.acting and self.view.listed_at is not None:
            members.add(self.identity)
        # Whose claims may be taken changes only here (as of a listing), and may
        # not change the members (a deleted Lease is gone a Lease duration later).
        gone_now = gone_shards(self.view, self.timings.lease_duration)
        changed = members != self.members or gone_now != self._gone
        self._gone = gone_now
        if members != self.members:
            log.info("shard ring changed", ring=self.ring, shard=self.identity,
                     members=sorted(members), was=sorted(self.members))
            self.members = frozenset(members)
            self._members.set(len(members))
        if changed:
            self._wake_all()

    def _acting_changed(self, acting: bool) -> None:
        if acting:
            self._term += 1
        else:
            # Fenced (or stopping): every claim must be confirmed again before use.
            self._confirmed.clear()
            self._written_over.clear()
            self._count()
        self._recompute()

    def _count(self) -> None:
        """The gauge: confirmed claims this replica acts on (a held one from when its
        daemon, woken as the hold ends, finds it may)."""
        held = sum(1 for uid in self._held if uid in self._confirmed)
        self._clusters.set(len(self._confirmed) - held)

    def _wake_all(self) -> None:
        for event in self._wakers.values():
            event.set()

    # One cluster.

    def touched(self, uid: str) -> None:
        """The object changed (a watch event): its daemon looks again."""
        event = self._wakers.get(uid)
        if event is not None:
            event.set()

    def forget(self, uid: str, keep_claim: bool = False, deleted: bool = False) -> None:
        """Drop what is kept for a cluster; `keep_claim` keeps its confirmed claim
        (still void once this replica stops acting: `_acting_changed`). A hold goes
        only with the object (`deleted`): a daemon restarted by Kopf confirms the
        claim again, and that must not lift it."""
        self._wakers.pop(uid, None)
        if deleted:
            self._held.pop(uid, None)
        if keep_claim:
            return
        self._written_over.pop(uid, None)
        if self._confirmed.pop(uid, None) is not None:
            self._count()

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

    def owner_of(self, body: Mapping[str, Any]) -> str | None:
        return owner(str(body["metadata"]["uid"]), self.members)

    def move(self, body: Mapping[str, Any]) -> tuple[ClaimMove, str | None]:
        """What to do about this cluster now, and the ring's owner of it."""
        uid = str(body["metadata"]["uid"])
        held_back = self._held_back(uid)
        if uid in self._held and not held_back:
            del self._held[uid]
            self._count()
        if not self.elector.acting:
            return ClaimMove.WAIT, None
        ring_owner = owner(uid, self.members)
        claim = claim_of(body)
        written = self._written_over.get(uid)
        if written is not None:
            if written[0] == str(body["metadata"].get("resourceVersion")):
                # The watch has not delivered this replica's own claim write yet (under
                # a takeover's load it lagged by seconds): deciding on the version the
                # write replaced would write again, over a version that is gone.
                claim = written[1]
            else:
                del self._written_over[uid]  # caught up
        confirmed = self._confirmed.get(uid) == self._term
        claim_gone = claim is not None and claim != self.identity and (
            gone(self.view, claim, self.timings.lease_duration) or stopped(self.view, claim))
        move = next_claim_move(self.identity, ring_owner, claim, confirmed, claim_gone,
                               held_back)
        return move, ring_owner

    def _held_back(self, uid: str) -> bool:
        """A hold ends at its time and, like every judgement of the ring, only as of
        a listing sent after it: a replica that cannot list keeps it."""
        until = self._held.get(uid)
        if until is None:
            return False
        listed = self.view.listed_at
        return self._clock() < until or listed is None or listed < until

    def holds_end(self) -> float | None:
        """When the last hold ends (None: none): this replica releases its Lease no
        earlier, as a released Lease lets the others take its claims at once."""
        return max(self._held.values(), default=None)

    def idle(self, uid: str, longest: float) -> float:
        """How long a daemon with nothing to do may sleep: at most until a claim held
        back (`held_until`) may be acted on, then a listing later."""
        if not self._held_back(uid):
            return longest
        left = self._held[uid] - self._clock()
        return min(longest, left if left > 0 else self.timings.retry_period)

    async def claim(self, body: Mapping[str, Any], to: str) -> bool:
        """Write the claim for `to` (this replica, or the ring's owner on a hand-over)
        over the version read; False if someone wrote first (or the write failed)."""
        meta = body["metadata"]
        # The version the decision was made on (the body is a live view): a claim
        # written later over a newer version could overwrite another shard's.
        namespace, name, rv = str(meta["namespace"]), str(meta["name"]), \
            str(meta["resourceVersion"])
        uid = str(meta["uid"])
        term = self._term
        if not self.elector.acting:
            return False
        mine = to == self.identity
        # Judged on the view the decision was made on: should the stopped holder
        # renew before this write lands, its last work still needs the margin.
        taken_from = claim_of(body)
        until = held_until(self.view, taken_from) \
            if mine and taken_from and taken_from != self.identity else None
        if not mine:
            # Stop first, write second: from here this replica never acts on it.
            self._confirmed.pop(uid, None)
            self._count()
        try:
            async with self._writing:
                if mine and not self.elector.acting:
                    return False  # fenced while waiting for its turn
                await self.claims.claim_cluster(namespace, name, rv, to)
            self._written_over[uid] = (rv, to)
            if until is not None:
                self._held[uid] = max(self._held.get(uid, until), until)
        except KubeError as err:
            if err.status != 409:
                log.warning("claim not written", namespace=namespace, name=name,
                            shard=self.identity, to=to, error=str(err))
            return False
        if mine and term == self._term and self.elector.acting:
            self._confirmed[uid] = term
            self._count()
        held = until is not None and self._clock() < until
        log.info("claimed" if mine else "handed over", namespace=namespace, name=name,
                 shard=self.identity, to=to, **({"held_for": round(until - self._clock(), 1)}
                                                if held and until is not None else {}))
        # True: it may act on it now (a held claim waits for `move` to say so).
        return mine and self._confirmed.get(uid) == self._term and \
            not self._held_back(uid)

    def count_poll(self) -> None:
        self._polls.inc()

    async def release(self) -> None:
        await self.elector.release()
