"""A shard at its seam with the API server (a fake store with the API server's
optimistic concurrency): it acts on a cluster only while the ring gives it, every
other member has acknowledged it in its current life and no stopped shard may
still be finishing work there; it acknowledges a view only once the work that
view takes from it has ended; and it writes `status.shard` as information only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.adapters.kube import KubeError
from controller.adapters.sharding import ClusterGate, Shards
from controller.domain.leadership import RENEW_DEADLINE_ANNOTATION
from controller.domain.sharding import (
    RING_LABEL,
    RING_VIEW_ANNOTATION,
    Standing,
    decode_view,
    encode_view,
    lease_name,
    owner,
)

RING, NS = "ops", "ops-system"
OTHER_LIFE = "2026-11-30T10:00:00.000000Z"  # "other"'s Lease's acquireTime


class FakeStore:
    """Shard Leases and StemeDBClusters; a Lease write over a stale version answers 409."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.clusters: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.recorded: list[tuple[str, str]] = []

    def _rv(self) -> str:
        self.version += 1
        return str(self.version)

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        lease = self.leases.get(name)
        return None if lease is None else {**lease}

    async def write_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        name = lease["metadata"]["name"]
        current = self.leases.get(name)
        if (current or {}).get("metadata", {}).get("resourceVersion") != \
                lease["metadata"].get("resourceVersion"):
            raise KubeError("conflict", status=409)
        self.leases[name] = {**lease, "metadata": {**lease["metadata"], "resourceVersion":
                                                   self._rv()}}
        return self.leases[name]

    async def list_leases(self, namespace: str,
                          selector: tuple[str, str]) -> list[dict[str, Any]]:
        key, value = selector
        return [dict(v) for v in self.leases.values()
                if v["metadata"].get("labels", {}).get(key) == value]

    async def record_shard(self, namespace: str, name: str, shard: str, since: str) -> None:
        self.recorded.append((name, shard))

    def cluster(self, name: str, shard: str | None = None) -> dict[str, Any]:
        self.clusters[name] = {"metadata": {"name": name, "namespace": "db",
                                            "uid": str(uuid.uuid4()),
                                            "resourceVersion": self._rv()},
                               "status": {"shard": shard} if shard else {}}
        return self.clusters[name]

    def shard_lease(self, who: str, holder: str | None, deadline: str | None = "10",
                    acks: dict[str, str] | None = None, acquired: str = OTHER_LIFE) -> None:
        """`who`'s Lease (renewed: a new version), acknowledging `acks` (None: a
        replica of a version without acknowledgements)."""
        annotations = {RENEW_DEADLINE_ANNOTATION: deadline} if deadline else {}
        if acks is not None:
            annotations[RING_VIEW_ANNOTATION] = encode_view(acks.items())
        self.leases[lease_name(RING, who)] = {
            "metadata": {"name": lease_name(RING, who), "namespace": NS,
                         "labels": {RING_LABEL: RING}, "resourceVersion": self._rv(),
                         "annotations": annotations},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "acquireTime": acquired}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _renew(shards: Shards, clock: Clock) -> None:
    assert await shards.elector._attempt()
    shards.elector._lead(clock.now)
    clock.now += 0.01  # a listing sent next is sent after it


async def _acting(store: FakeStore, clock: Clock, me: str = "me",
                  registry: CollectorRegistry | None = None) -> Shards:
    shards = Shards(store, NS, RING, me, clock=clock, registry=registry)
    await _renew(shards, clock)
    await shards.refresh()
    return shards


async def _with_other(store: FakeStore, clock: Clock, deadline: str | None = "10"
                      ) -> Shards:
    """"me" acting in a ring with "other", each acknowledging the other."""
    store.shard_lease("other", "other", deadline, acks={})
    shards = await _acting(store, clock)
    store.shard_lease("other", "other", deadline, acks=_life(shards))
    await shards.refresh()
    assert shards.standing is Standing.ACTING
    return shards


def _life(shards: Shards) -> dict[str, str]:
    """An acknowledgement naming `shards` in its current life (and "other")."""
    assert shards.elector.acquired is not None
    return {shards.identity: shards.elector.acquired, "other": OTHER_LIFE}


def _owned_by(store: FakeStore, who: str, members: list[str], shard: str | None = None
              ) -> dict[str, Any]:
    """A cluster whose UID the ring of `members` gives to `who`."""
    while True:
        body = store.cluster(f"c{store.version}", shard)
        if owner(body["metadata"]["uid"], members) == who:
            return body
        del store.clusters[body["metadata"]["name"]]


def _uid(body: dict[str, Any]) -> str:
    return str(body["metadata"]["uid"])


def _ack_on_lease(store: FakeStore, who: str) -> frozenset[tuple[str, str]] | None:
    annotations = store.leases[lease_name(RING, who)]["metadata"]["annotations"]
    return decode_view(annotations.get(RING_VIEW_ANNOTATION))


async def test_the_shard_lease_is_labelled_declares_its_deadline_and_acknowledges() -> None:
    store, clock = FakeStore(), Clock()
    shards = await _acting(store, clock)
    metadata = store.leases[lease_name(RING, "me")]["metadata"]
    assert metadata["labels"] == {RING_LABEL: RING}
    # The renew deadline it self-fences at, for the others to rely on.
    assert metadata["annotations"][RENEW_DEADLINE_ANNOTATION] == "10"
    # Its first renewal came before any listing: it acknowledged nothing yet.
    assert _ack_on_lease(store, "me") == frozenset()
    assert shards.members == {"me"} and shards.standing is Standing.ACTING
    await _renew(shards, clock)
    assert _ack_on_lease(store, "me") == {("me", shards.elector.acquired)}


@pytest.mark.parametrize(
    ("acks", "acting"),
    [
        (None, False),  # a replica of a version before acknowledgements
        ({}, False),
        ({"other": OTHER_LIFE}, False),  # its view does not have "me" yet
        ({"me": "2026-11-30T09:00:00.000000Z", "other": OTHER_LIFE}, False),  # an old life
        ("current", True),
    ],
    ids=["no annotation", "empty", "without me", "an earlier life of me", "me as I am"],
)
async def test_a_shard_acts_only_once_every_other_member_acknowledges_its_current_life(
    acks: dict[str, str] | str | None, acting: bool
) -> None:
    store, clock = FakeStore(), Clock()
    store.shard_lease("other", "other", acks={})
    shards = await _acting(store, clock)
    mine = _owned_by(store, "me", ["me", "other"])
    theirs = _owned_by(store, "other", ["me", "other"])
    store.shard_lease("other", "other", acks=_life(shards) if acks == "current"
                      else acks if not isinstance(acks, str) else None)
    await shards.refresh()
    assert shards.members == {"me", "other"}
    assert shards.standing is (Standing.ACTING if acting else Standing.UNACKNOWLEDGED)
    assert shards.unacked == (frozenset() if acting else {"other"})
    assert shards.may_act(mine) is acting
    assert not shards.may_act(theirs)  # never another member's


@pytest.mark.parametrize(
    ("deadline", "what", "acting_from"),
    [
        # Stopped at t=1010 (10 s unrenewed, the deadline it declares): out of the
        # ring, but its clusters wait for its expiry (its last work's margin).
        ("10", "stops", 1015),
        # An older replica declares no deadline: it is a member until it expires.
        (None, "stops", 1015),
        # It renews at 1012, after it was judged stopped: the cluster is its again.
        ("10", "renews", None),
        # Released (SIGTERM: it stopped before it released): at once.
        ("10", "released", 1001),
        # Its Lease deleted by hand: a live holder re-creates it on its next
        # renewal, so its clusters wait a Lease duration.
        ("10", "deleted", 1016),
    ],
    ids=["stopped", "no deadline declared", "renews after it stopped", "released",
         "Lease deleted"],
)
async def test_a_departed_shards_clusters_are_acted_on_only_once_it_cannot_be_acting(
    deadline: str | None, what: str, acting_from: float | None
) -> None:
    store, clock = FakeStore(), Clock()
    shards = await _with_other(store, clock, deadline)
    theirs = _owned_by(store, "other", ["me", "other"])
    assert not shards.may_act(theirs)
    if what == "released":
        store.shard_lease("other", None, deadline, acks=_life(shards))
    elif what == "deleted":
        del store.leases[lease_name(RING, "other")]
    timeline = {}
    for t in range(1001, 1020):
        clock.now = t
        if what == "renews" and t == 1012:
            store.shard_lease("other", "other", deadline, acks=_life(shards))
        await _renew(shards, clock)
        await shards.refresh()
        timeline[t] = shards.may_act(theirs)
    first = min((t for t, acting in timeline.items() if acting), default=None)
    assert first == acting_from, timeline
    assert all(timeline[t] for t in timeline if first is not None and t >= first)


async def test_after_a_fence_a_shard_acts_again_only_as_a_new_life_on_a_fresh_listing(
) -> None:
    """A fence can hide a shard that joined meanwhile (so a listing from before it
    does not count), and what the others acknowledged for the life before it must
    not count either: its Lease gets a new acquireTime."""
    store, clock = FakeStore(), Clock()
    shards = await _with_other(store, clock)
    mine = _owned_by(store, "me", ["me", "other"])
    before = shards.elector.acquired
    shards.elector._stop("no renewal within the renew deadline")
    assert shards.standing is Standing.FENCED and not shards.may_act(mine)
    clock.now += 1
    await _renew(shards, clock)
    assert shards.elector.acquired != before
    assert shards.standing is Standing.NOT_LISTED and not shards.may_act(mine)
    await shards.refresh()
    assert shards.standing is Standing.UNACKNOWLEDGED and not shards.may_act(mine)
    store.shard_lease("other", "other", acks=_life(shards))
    await shards.refresh()
    assert shards.standing is Standing.ACTING and shards.may_act(mine)


async def test_a_leader_lease_keeps_its_acquire_time_across_renewals() -> None:
    """Only a shard's Lease names a life per term; renewals keep it."""
    store, clock = FakeStore(), Clock()
    shards = await _acting(store, clock)
    first = shards.elector.acquired
    clock.now += 2
    await _renew(shards, clock)
    assert shards.elector.acquired == first


async def test_a_shard_acknowledges_a_view_only_once_the_work_it_takes_away_has_ended(
) -> None:
    """A third shard joins and takes a cluster "me" is polling: the poll is cancelled,
    and the acknowledgement of the new view waits for it to end; a poll of a cluster
    that stays "me"'s runs on."""
    store, clock = FakeStore(), Clock()
    shards = await _with_other(store, clock)
    moving = _owned_by(store, "me", ["me", "other"])
    while owner(_uid(moving), ["me", "other", "new"]) != "new":
        moving = _owned_by(store, "me", ["me", "other"])
    staying = moving
    while owner(_uid(staying), ["me", "other", "new"]) != "me":
        staying = _owned_by(store, "me", ["me", "other"])
    release = asyncio.Event()
    ended: list[str] = []

    async def work(uid: str) -> str:
        try:
            await release.wait()
        finally:
            ended.append(uid)
        return uid

    polls = [asyncio.create_task(shards.guarded(body, work(_uid(body))))
             for body in (moving, staying)]
    for _ in range(3):
        await asyncio.sleep(0)  # both polls running
    store.shard_lease("new", "new", acks={}, acquired="2026-11-30T11:00:00.000000Z")
    await shards.refresh()
    assert "new" in shards.members
    # Adopted, not yet drained: the renewal still carries the old view.
    await _renew(shards, clock)
    assert ("new", "2026-11-30T11:00:00.000000Z") not in (_ack_on_lease(store, "me") or ())
    assert await polls[0] is None  # cancelled
    assert ended == [_uid(moving)] and not polls[1].done()
    await _renew(shards, clock)
    assert ("new", "2026-11-30T11:00:00.000000Z") in (_ack_on_lease(store, "me") or ())
    release.set()
    assert await polls[1] == _uid(staying)


async def _record_all(shards: Shards) -> None:
    """Let the background writer of `status.shard` run until its queue is empty."""
    writer = asyncio.create_task(shards._record_owners())
    for _ in range(10):
        await asyncio.sleep(0)
    writer.cancel()


@pytest.mark.parametrize(
    ("status_names", "then", "writes"),
    [
        ("other", None, ["me"]),
        (None, None, ["me"]),
        ("me", None, []),  # already says so
        ("other", "polled again", ["me"]),  # once per term, not per poll
        ("other", "fenced and back", ["me", "me"]),
        ("other", "moved away before the write", []),
    ],
)
async def test_status_shard_names_the_acting_shard_written_once_per_term(
    status_names: str | None, then: str | None, writes: list[str]
) -> None:
    store, clock = FakeStore(), Clock()
    shards = await _with_other(store, clock)
    body = _owned_by(store, "me", ["me", "other"], status_names)
    shards.record(body)
    if then == "moved away before the write":
        store.shard_lease("other", "other", deadline=None, acks={})  # no longer acks me
        await shards.refresh()
    await _record_all(shards)
    if then == "polled again":
        shards.record(body)
    elif then == "fenced and back":
        shards.elector._stop("no renewal within the renew deadline")
        clock.now += 1
        await _renew(shards, clock)
        store.shard_lease("other", "other", acks=_life(shards))
        await shards.refresh()
        shards.record(body)
    await _record_all(shards)
    assert store.recorded == [(body["metadata"]["name"], w) for w in writes]


async def test_a_failed_listing_keeps_the_last_view() -> None:
    store, clock = FakeStore(), Clock()
    shards = await _with_other(store, clock)

    async def fail(namespace: str, selector: tuple[str, str]) -> list[dict[str, Any]]:
        raise KubeError("cannot connect")

    store.list_leases = fail  # type: ignore[method-assign]
    clock.now += 60
    with pytest.raises(KubeError):
        await shards.refresh()
    await _renew(shards, clock)  # its own renewals still succeed
    theirs = _owned_by(store, "other", ["me", "other"])
    # Sixty seconds without news of "other" is not "other expired".
    assert shards.members == {"me", "other"} and not shards.may_act(theirs)


async def test_a_gone_shards_lease_is_deleted_at_the_version_seen_only() -> None:
    store, clock = FakeStore(), Clock()
    store.shard_lease("old", None)  # released by a replica of the last rollout
    store.shard_lease("back", None)
    deleted: list[tuple[str, str]] = []

    async def delete_lease(namespace: str, name: str, resource_version: str) -> None:
        current = store.leases[name]["metadata"]["resourceVersion"]
        if current != resource_version:
            raise KubeError("conflict", status=409)
        deleted.append((name, resource_version))
        del store.leases[name]

    store.delete_lease = delete_lease  # type: ignore[attr-defined]
    shards = await _acting(store, clock)
    clock.now += 600
    await _renew(shards, clock)
    real_list = store.list_leases

    async def list_then_come_back(namespace: str,
                                  selector: tuple[str, str]) -> list[dict[str, Any]]:
        listed = await real_list(namespace, selector)
        store.shard_lease("back", "back")  # renewed between our read and our delete
        return listed

    store.list_leases = list_then_come_back  # type: ignore[method-assign]
    await shards.refresh()
    assert [n for n, _ in deleted] == [lease_name(RING, "old")]
    assert lease_name(RING, "back") in store.leases and lease_name(RING, "me") in store.leases


async def _woken(shards: Shards, uid: str, change: Callable[[], Awaitable[None]]) -> bool:
    """Whether a daemon sleeping (with no timeout that could end it here) on `uid`
    is woken by `change` and the listing after it."""
    shards.settle(uid)
    sleeping = asyncio.create_task(shards.wait(uid, 3600))
    await asyncio.sleep(0)
    await change()
    await shards.refresh()
    for _ in range(3):
        await asyncio.sleep(0)
    woken = sleeping.done()
    sleeping.cancel()
    return woken


@pytest.mark.parametrize(
    ("what", "woken", "then"),
    [
        ("nothing", False, False),
        ("another renewal", False, False),
        ("released", True, True),
        ("expired", True, True),
        # Out of the ring at once, but its clusters wait a Lease duration.
        ("deleted", True, False),
        # ... and then, with no other change, the end of the wait wakes it.
        ("deleted, a Lease duration later", True, True),
    ],
)
async def test_a_daemon_sleeping_on_another_shards_cluster_wakes_when_it_may_act(
    what: str, woken: bool, then: bool
) -> None:
    store, clock = FakeStore(), Clock()
    shards = await _with_other(store, clock)
    body = _owned_by(store, "other", ["me", "other"])
    uid = _uid(body)
    assert not shards.may_act(body)

    async def later(seconds: float) -> None:
        clock.now += seconds
        await _renew(shards, clock)  # its own Lease stays renewed

    if what == "deleted, a Lease duration later":
        del store.leases[lease_name(RING, "other")]
        await shards.refresh()  # out of the ring now: the first wake-up, not this one

    async def change() -> None:
        if what == "released":
            store.shard_lease("other", None, acks=_life(shards))
        elif what == "another renewal":
            store.shard_lease("other", "other", acks=_life(shards))
        elif what in ("expired", "deleted, a Lease duration later"):
            await later(16)
        elif what == "deleted":
            del store.leases[lease_name(RING, "other")]

    assert await _woken(shards, uid, change) is woken
    assert shards.may_act(body) is then


async def test_the_gauge_counts_the_clusters_the_daemons_act_on() -> None:
    store, clock, registry = FakeStore(), Clock(), CollectorRegistry()
    shards = await _acting(store, clock, registry=registry)

    def gauge() -> float | None:
        return registry.get_sample_value("stemedb_operator_shard_clusters", {"shard": "me"})

    shards.mark("a", True)
    shards.mark("b", True)
    shards.mark("a", True)
    assert gauge() == 2
    shards.mark("a", False)
    shards.forget("b")
    assert gauge() == 0


async def test_the_deletion_gate_is_the_clusters_own() -> None:
    """on.delete acts under a `ClusterGate`: the cluster's acting shard restores the
    rate, and its work is cancelled like a poll's when that stops."""
    store, clock = FakeStore(), Clock()
    shards = await _with_other(store, clock)
    mine, theirs = (_owned_by(store, w, ["me", "other"]) for w in ("me", "other"))
    assert ClusterGate(shards, mine).acting and not ClusterGate(shards, theirs).acting

    async def restore() -> str:
        return "restored"

    assert await ClusterGate(shards, mine).guarded(restore()) == "restored"
    assert await ClusterGate(shards, theirs).guarded(restore()) is None


@pytest.mark.parametrize(
    ("named", "held_until"),
    [
        (None, None),
        ("me", None),
        ("gone", None),  # its released Lease is listed: it stopped before releasing
        ("unseen", 1015.0),  # never listed: its Lease may have been deleted under it
    ],
)
async def test_a_new_replica_holds_a_cluster_whose_status_names_a_shard_it_never_saw(
    named: str | None, held_until: float | None
) -> None:
    """A live shard whose Lease was deleted by hand keeps acting until its next
    renewal, and a replica that starts meanwhile cannot see it. Its clusters'
    `status.shard` names it: a new replica holds those for a Lease duration of
    listing, and the end of the hold wakes their daemons."""
    store, clock = FakeStore(), Clock()
    store.shard_lease("gone", None)
    shards = await _acting(store, clock)
    body = _owned_by(store, "me", ["me"], named)
    uid = _uid(body)
    assert shards.may_act(body) is (held_until is None)
    if held_until is None:
        return

    async def listing_at(t: float) -> None:
        clock.now = t
        await _renew(shards, clock)

    await listing_at(1014.5)
    await shards.refresh()
    assert not shards.may_act(body)
    assert await _woken(shards, uid, lambda: listing_at(held_until))
    assert shards.may_act(body)


async def test_a_shard_whose_own_lease_is_deleted_stops_at_its_next_listing() -> None:
    """The others no longer see it, so nothing it acts on is safe from them: it stops
    as soon as a listing shows its Lease gone, and its next renewal (a new Lease, a
    new life) starts a term that the others must acknowledge again."""
    store, clock = FakeStore(), Clock()
    shards = await _with_other(store, clock)
    mine = _owned_by(store, "me", ["me", "other"])
    life = shards.elector.acquired
    del store.leases[lease_name(RING, "me")]
    await shards.refresh()
    assert shards.standing is Standing.NOT_LISTED and not shards.may_act(mine)
    await _renew(shards, clock)
    assert shards.elector.acquired != life
    await shards.refresh()
    assert shards.standing is Standing.UNACKNOWLEDGED
    store.shard_lease("other", "other", acks=_life(shards))
    await shards.refresh()
    assert shards.may_act(mine)
