"""A shard's claims at its seam with the API server (a fake store with the API
server's optimistic concurrency): it acts only on claims it confirmed in its
current term, stops before handing over, and takes only a gone shard's claims."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.adapters.kube import KubeError
from controller.adapters.sharding import CLAIMS_IN_FLIGHT, Shards
from controller.domain.leadership import RENEW_DEADLINE_ANNOTATION
from controller.domain.sharding import RING_LABEL, ClaimMove, lease_name, owner

RING, NS = "ops", "ops-system"


class FakeStore:
    """Shard Leases and StemeDBClusters; a write over a stale version answers 409."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.clusters: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.claims: list[tuple[str, str]] = []
        self.on_claim: Any = None

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

    async def claim_cluster(self, namespace: str, name: str, resource_version: str,
                            shard: str) -> str:
        if self.on_claim is not None:
            self.on_claim(name, shard)
        obj = self.clusters[name]
        if obj["metadata"]["resourceVersion"] != resource_version:
            raise KubeError("conflict", status=409)
        obj["status"] = {**obj.get("status", {}), "shard": shard}
        obj["metadata"]["resourceVersion"] = self._rv()
        self.claims.append((name, shard))
        return str(obj["metadata"]["resourceVersion"])

    def cluster(self, name: str, claim: str | None = None) -> dict[str, Any]:
        self.clusters[name] = {"metadata": {"name": name, "namespace": "db",
                                            "uid": str(uuid.uuid4()),
                                            "resourceVersion": self._rv()},
                               "status": {"shard": claim} if claim else {}}
        return self.clusters[name]

    def shard_lease(self, who: str, holder: str | None, deadline: str | None = None) -> None:
        self.leases[lease_name(RING, who)] = {
            "metadata": {"name": lease_name(RING, who), "namespace": NS,
                         "labels": {RING_LABEL: RING}, "resourceVersion": self._rv(),
                         "annotations": {RENEW_DEADLINE_ANNOTATION: deadline} if deadline
                         else {}},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _acting(store: FakeStore, clock: Clock, me: str = "me",
                  registry: CollectorRegistry | None = None) -> Shards:
    shards = Shards(store, NS, RING, me, clock=clock, registry=registry)
    assert await shards.elector._attempt()
    shards.elector._lead(clock.now)
    await shards.refresh()
    return shards


def _owned_by(store: FakeStore, who: str, members: list[str], claim: str | None = None
              ) -> dict[str, Any]:
    """A cluster whose UID the ring of `members` gives to `who`."""
    while True:
        body = store.cluster(f"c{store.version}", claim)
        if owner(body["metadata"]["uid"], members) == who:
            return body
        del store.clusters[body["metadata"]["name"]]


async def test_the_shard_lease_is_labelled_for_the_ring_and_makes_it_a_member() -> None:
    store, clock = FakeStore(), Clock()
    shards = await _acting(store, clock)
    metadata = store.leases[lease_name(RING, "me")]["metadata"]
    assert metadata["labels"] == {RING_LABEL: RING}
    # The renew deadline it self-fences at, for the others to rely on.
    assert metadata["annotations"] == {RENEW_DEADLINE_ANNOTATION: "10"}
    assert shards.members == {"me"}


@pytest.mark.parametrize(
    ("deadline", "meanwhile", "moves"),
    [
        # t=1010: the other has stopped (10 s unchanged); its claim is written over at
        # once, and acted on from its expiry (t=1015).
        ("10", None, [(1010, ClaimMove.CLAIM, False), (1014, ClaimMove.WAIT, None),
                      (1015, ClaimMove.ACT, None)]),
        # It renews after the claim was written: the claim is held back all the same
        # (its last work needs the margin), then handed back to it by the ring.
        ("10", "renews", [(1010, ClaimMove.CLAIM, False), (1014, ClaimMove.WAIT, None),
                          (1015, ClaimMove.HAND_OVER, None)]),
        # This replica is fenced and acts again meanwhile: confirming its claim again
        # does not lift the hold.
        ("10", "fenced", [(1010, ClaimMove.CLAIM, False), (1011, ClaimMove.CLAIM, False),
                          (1014, ClaimMove.WAIT, None), (1015, ClaimMove.ACT, None)]),
        # Its daemon restarted by Kopf: confirming the claim again does not lift it.
        ("10", "restarted", [(1010, ClaimMove.CLAIM, False), (1012, ClaimMove.CLAIM, False),
                             (1014, ClaimMove.WAIT, None), (1015, ClaimMove.ACT, None)]),
        # Its listings fail from t=1012: the hold lasts until one sent after its end
        # succeeds (the last one seen might have missed a renewal).
        ("10", "cannot list", [(1010, ClaimMove.CLAIM, False), (1016, ClaimMove.WAIT, None),
                               (1017, ClaimMove.ACT, None)]),
        # An older replica declares no deadline: nothing before its expiry.
        (None, None, [(1010, ClaimMove.WAIT, None), (1015, ClaimMove.CLAIM, True),
                      (1015, ClaimMove.ACT, None)]),
    ],
    ids=["stopped", "renews after the claim", "fenced meanwhile", "daemon restarted",
         "cannot list", "no deadline declared"],
)
async def test_a_stopped_shards_claims_are_written_before_its_lease_expires_acted_on_after(
    deadline: str | None, meanwhile: str | None,
    moves: list[tuple[float, ClaimMove, bool | None]],
) -> None:
    """A takeover's claim writes (one per cluster) overlap the last 5 s of the dead
    shard's Lease instead of starting after it."""
    store, clock, registry = FakeStore(), Clock(), CollectorRegistry()
    store.shard_lease("other", "other", deadline)
    shards = await _acting(store, clock, registry=registry)
    body = _owned_by(store, "other", ["me", "other"], "other")
    uid = body["metadata"]["uid"]

    def acting_on() -> float | None:
        return registry.get_sample_value("stemedb_operator_shard_clusters", {"shard": "me"})

    for at, move, may_act in moves:
        clock.now = at
        if meanwhile == "fenced" and at == 1011:
            shards.elector._stop("no renewal within the renew deadline")
        if meanwhile == "restarted" and at == 1012:
            shards.forget(uid)  # the daemon's `finally`, then a new daemon
        assert await shards.elector._attempt()  # this replica renews throughout
        shards.elector._lead(clock.now)
        if meanwhile != "cannot list" or at not in (1012, 1016):
            await shards.refresh()
        assert shards.move(body)[0] is move, at
        if move is ClaimMove.CLAIM:
            # True: it may act on it now.
            assert await shards.claim(body, "me") is may_act
            assert body["status"]["shard"] == "me"
        if move is ClaimMove.WAIT and body["status"]["shard"] == "me":
            assert acting_on() == 0.0  # held back: not counted as acted on
            # It wakes when it may act, or a retry period later if no listing has
            # come since: never 0 (a daemon loop that never yields).
            assert 0 < shards.idle(uid, 120.0) <= max(1015 - at, 2.0)
        if move is ClaimMove.ACT:
            assert acting_on() == 1.0
        if meanwhile == "renews" and at == 1010:
            store.shard_lease("other", "other", deadline)  # a new version: renewed


@pytest.mark.parametrize(
    ("other", "claim", "move"),
    [
        ("live", "other", ClaimMove.WAIT),  # the holder hands it over, not us
        ("released", "other", ClaimMove.CLAIM),
        ("live", None, ClaimMove.CLAIM),
        ("live", "me", ClaimMove.CLAIM),  # ours, not yet confirmed in this term
    ],
)
async def test_what_a_shard_does_with_a_cluster_the_ring_gives_it(
    other: str, claim: str | None, move: ClaimMove
) -> None:
    store, clock = FakeStore(), Clock()
    store.shard_lease("other", "other" if other == "live" else None)
    shards = await _acting(store, clock)
    members = ["me", "other"] if other == "live" else ["me"]
    assert shards.members == set(members)
    body = _owned_by(store, "me", members, claim)
    assert shards.move(body)[0] is move


async def test_a_claim_over_a_stale_version_is_refused_and_not_acted_on() -> None:
    store, clock = FakeStore(), Clock()
    shards = await _acting(store, clock)
    body = _owned_by(store, "me", ["me"])
    stale = {**body, "metadata": {**body["metadata"], "resourceVersion": "0"}}
    assert not await shards.claim(stale, "me")
    assert shards.move(body)[0] is ClaimMove.CLAIM
    assert await shards.claim(body, "me")
    assert shards.move(body)[0] is ClaimMove.ACT


async def test_a_fenced_shard_confirms_every_claim_again_before_acting() -> None:
    """While it was cut off another shard may have taken a claim; its copy of the
    object may still show the old one: only a fenced write can tell."""
    store, clock = FakeStore(), Clock()
    shards = await _acting(store, clock)
    body = _owned_by(store, "me", ["me"])
    assert await shards.claim(body, "me")
    assert shards.move(body)[0] is ClaimMove.ACT
    shards.elector._stop("no renewal within the renew deadline")
    assert shards.move(body)[0] is ClaimMove.WAIT
    assert await shards.elector._attempt()
    shards.elector._lead(clock.now)
    assert shards.move(body)[0] is ClaimMove.CLAIM
    stale = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
    assert not await shards.claim(stale, "me")  # someone wrote meanwhile
    assert shards.move(stale)[0] is ClaimMove.CLAIM


async def test_a_shard_stops_acting_before_it_hands_a_cluster_over() -> None:
    store, clock, registry = FakeStore(), Clock(), CollectorRegistry()
    shards = await _acting(store, clock, registry=registry)
    body = _owned_by(store, "other", ["me", "other"])
    assert await shards.claim(body, "me")

    def acting_on() -> float | None:
        return registry.get_sample_value("stemedb_operator_shard_clusters", {"shard": "me"})

    assert acting_on() == 1.0
    store.shard_lease("other", "other")
    await shards.refresh()
    move, to = shards.move(body)
    assert (move, to) == (ClaimMove.HAND_OVER, "other")
    seen: list[float | None] = []
    store.on_claim = lambda name, shard: seen.append(acting_on())
    assert not await shards.claim(body, "other")  # True only for its own claims
    assert store.claims[-1] == (body["metadata"]["name"], "other")
    # At the moment of the write it no longer counted the cluster as its own.
    assert seen == [0.0]
    assert shards.move(body)[0] is ClaimMove.WAIT


async def test_a_failed_listing_keeps_the_last_view() -> None:
    store, clock = FakeStore(), Clock()
    store.shard_lease("other", "other")
    shards = await _acting(store, clock)
    assert shards.members == {"me", "other"}

    async def fail(namespace: str, selector: tuple[str, str]) -> list[dict[str, Any]]:
        raise KubeError("cannot connect")

    store.list_leases = fail  # type: ignore[method-assign]
    clock.now += 60
    with pytest.raises(KubeError):
        await shards.refresh()
    assert await shards.elector._attempt()  # its own renewals still succeed
    shards.elector._lead(clock.now)
    body = _owned_by(store, "me", ["me", "other"], claim="other")
    # Sixty seconds without news of "other" is not "other expired".
    assert shards.move(body)[0] is ClaimMove.WAIT


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
    assert await shards.elector._attempt()
    shards.elector._lead(clock.now)
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


async def test_a_claim_is_written_over_the_version_it_was_decided_on() -> None:
    """Claims queue for their turn; one decided on a version that has changed
    meanwhile (another shard took the cluster) must fail, not overwrite."""
    store, clock = FakeStore(), Clock()
    shards = await _acting(store, clock)
    body = _owned_by(store, "me", ["me"])
    live = body  # the object as the watch keeps it up to date
    async with contextlib.AsyncExitStack() as slots:
        for _ in range(CLAIMS_IN_FLIGHT):  # every slot busy
            await slots.enter_async_context(shards._writing)
        pending = asyncio.ensure_future(shards.claim(live, "me"))
        await asyncio.sleep(0)
        live["metadata"]["resourceVersion"] = store._rv()  # someone else wrote
        live["status"] = {"shard": "other"}
    assert not await pending
    assert store.claims == []


@pytest.mark.parametrize(
    ("was", "to", "then", "move"),
    [
        # Taken from a gone shard (or free): the lagging copy still shows the old claim.
        ("gone", "me", "lagging", ClaimMove.ACT),
        (None, "me", "lagging", ClaimMove.ACT),
        ("gone", "me", "caught up", ClaimMove.ACT),
        # Fenced since: the write is no confirmation in the new term.
        ("gone", "me", "fenced", ClaimMove.CLAIM),
        # Handed over: the lagging copy still names this replica.
        ("me", "other", "lagging", ClaimMove.WAIT),
        # The object moved on past this replica's write: decided on as it is now.
        ("me", "other", "taken back", ClaimMove.HAND_OVER),
    ],
)
async def test_a_copy_that_lags_a_claim_write_is_read_as_after_it(
    was: str | None, to: str, then: str, move: ClaimMove
) -> None:
    """Under a takeover's load the watch delivered a claim write seconds late; the
    daemon woke on the old copy, decided again and wrote again over a version that
    was gone (a 409 per cluster, a third of the API server's takeover writes)."""
    store, clock = FakeStore(), Clock()
    store.shard_lease("gone", None)
    store.shard_lease("other", "other")
    shards = await _acting(store, clock)
    owner_ = "me" if to == "me" else "other"
    body = _owned_by(store, owner_, ["me", "other"], was)
    if was == "me":
        assert await shards.claim(body, "me")
    copy = {"metadata": dict(body["metadata"]), "status": dict(body["status"])}
    shards.members = frozenset({"me", "other"})
    assert shards.move(copy)[0] is (ClaimMove.CLAIM if to == "me" else ClaimMove.HAND_OVER)
    await shards.claim(copy, to)
    assert store.clusters[copy["metadata"]["name"]]["status"]["shard"] == to
    if then == "caught up":
        copy = body
    elif then == "fenced":
        shards.elector._stop("no renewal within the renew deadline")
        assert await shards.elector._attempt()
        shards.elector._lead(clock.now)
    elif then == "taken back":
        body["metadata"]["resourceVersion"] = store._rv()
        body["status"]["shard"] = "me"
        copy = body
    assert shards.move(copy)[0] is move


@pytest.mark.parametrize(
    ("keep_claim", "fenced", "move"),
    [
        (True, False, ClaimMove.ACT),  # stopped for a deletion: on.delete acts at once
        (False, False, ClaimMove.CLAIM),  # stopped for good: confirmed again first
        (True, True, ClaimMove.CLAIM),  # a kept claim is still void once fenced
    ],
)
async def test_a_daemon_stopped_for_a_deletion_leaves_its_claim_to_on_delete(
    keep_claim: bool, fenced: bool, move: ClaimMove
) -> None:
    store, clock = FakeStore(), Clock()
    shards = await _acting(store, clock)
    body = _owned_by(store, "me", ["me"], "me")
    assert await shards.claim(body, "me")
    shards.forget(body["metadata"]["uid"], keep_claim=keep_claim)
    if fenced:
        shards.elector._stop("no renewal within the renew deadline")
        assert await shards.elector._attempt()
        shards.elector._lead(clock.now)
    assert shards.move(body)[0] is move


@pytest.mark.parametrize(
    ("patches_between", "acts"),
    [
        (0, True),  # the body Kopf gave is current: claimed at once
        (2, True),  # others' patches of the deleting object: decided again, claimed
        (10, False),  # patched on every read: retried later, not in step with them
    ],
)
async def test_on_delete_claims_over_other_replicas_patches(
    patches_between: int, acts: bool
) -> None:
    """Every replica runs on.delete for a deleting cluster and the others' retries
    patch it; the claim this one must write there is decided again on a fresh read
    after each conflict (a few times), not only after a retry delay they share."""
    from controller import handlers

    store, clock = FakeStore(), Clock()
    shards = await _acting(store, clock)
    body = _owned_by(store, "me", ["me"])
    stale = {**body, "metadata": {**body["metadata"]}}
    left = [patches_between]

    def another_replica_patches(name: str, shard: str) -> None:
        if left[0] > 0:
            left[0] -= 1
            store.clusters[name]["metadata"]["resourceVersion"] = store._rv()

    store.on_claim = another_replica_patches

    async def read(namespace: str, name: str) -> dict[str, Any]:
        obj = store.clusters[name]
        return {**obj, "metadata": {**obj["metadata"]}}

    if acts:
        assert await handlers._deleting_shard(stale, shards, read) is shards.elector
        assert shards.move(body)[0] is ClaimMove.ACT
    else:
        with pytest.raises(handlers.kopf.TemporaryError) as raised:
            await handlers._deleting_shard(stale, shards, read)
        delay = raised.value.delay
        assert delay is not None
        assert 0.5 * shards.timings.retry_period <= delay <= 1.5 * shards.timings.retry_period


async def _woken(shards: Shards, uid: str, change: Any) -> bool:
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
        ("nothing", False, ClaimMove.WAIT),
        ("released", True, ClaimMove.CLAIM),
        ("expired", True, ClaimMove.CLAIM),
        # Out of the ring at once, but its claims are free only a Lease duration
        # later, with no other change to wake the daemon then.
        ("deleted", True, ClaimMove.WAIT),
        ("deleted, a Lease duration later", True, ClaimMove.CLAIM),
    ],
)
async def test_a_daemon_sleeping_on_another_shards_claim_wakes_when_it_can_be_taken(
    what: str, woken: bool, then: ClaimMove
) -> None:
    store, clock = FakeStore(), Clock()
    store.shard_lease("other", "other")
    shards = await _acting(store, clock)
    body = _owned_by(store, "me", ["me"], "other")
    uid = body["metadata"]["uid"]
    assert shards.move(body)[0] is ClaimMove.WAIT

    async def later(seconds: float) -> None:
        clock.now += seconds
        assert await shards.elector._attempt()  # its own Lease stays renewed
        shards.elector._lead(clock.now)

    if what == "deleted, a Lease duration later":
        del store.leases[lease_name(RING, "other")]
        await shards.refresh()  # out of the ring now: the first wake-up, not this one

    async def change() -> None:
        if what == "released":
            store.shard_lease("other", None)
        elif what == "expired" or what == "deleted, a Lease duration later":
            await later(16)
        elif what == "deleted":
            del store.leases[lease_name(RING, "other")]

    assert await _woken(shards, uid, change) is woken
    assert shards.move(body)[0] is then


async def _holding_a_claim() -> tuple[FakeStore, Clock, Shards, dict[str, Any]]:
    """At t=1010 "me" has claimed a cluster of "other", stopped (10 s unrenewed) but
    not expired: the claim is held until 1015."""
    store, clock = FakeStore(), Clock()
    store.shard_lease("other", "other", "10")
    shards = await _acting(store, clock)
    body = _owned_by(store, "other", ["me", "other"], "other")
    clock.now = 1010
    assert await shards.elector._attempt()
    shards.elector._lead(clock.now)
    await shards.refresh()
    assert shards.move(body)[0] is ClaimMove.CLAIM
    assert not await shards.claim(body, "me")  # held
    return store, clock, shards, body

async def test_a_fenced_replica_whose_hold_ran_out_sleeps() -> None:
    """Fenced while a hold runs out, its daemon must still sleep: a zero sleep in a
    loop that never yields starves the very renewal that would end the fence."""
    _, clock, shards, body = await _holding_a_claim()
    uid = body["metadata"]["uid"]
    shards.elector._stop("no renewal within the renew deadline")
    clock.now = 1020
    await shards.refresh()
    assert shards.move(body)[0] is ClaimMove.WAIT
    assert shards.idle(uid, 120.0) == 120.0


async def test_a_replica_holding_claims_releases_its_lease_only_when_the_holds_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A released Lease lets the others take its claims at once, with no hold of
    their own: released earlier, a claim taken from a stopped shard would be acted
    on inside that shard's margin."""
    store, clock, shards, _ = await _holding_a_claim()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr("controller.adapters.leadership.asyncio.sleep", sleep)
    clock.now = 1011
    await shards.elector.release()
    assert slept == [4.0]
    assert store.leases[lease_name(RING, "me")]["spec"]["holderIdentity"] is None
