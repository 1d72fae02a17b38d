"""Leader election: the pure take/renew/fence rules, and the elector against a fake
Lease store (our own adapter seam) with the clock passed in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.adapters.kube import KubeError
from controller.adapters.leadership import LeaderElector, LeaseName, record_of
from controller.domain.leadership import (
    LeaseRecord,
    LeaseTimings,
    Move,
    Observation,
    absent_move,
    acting_until,
    next_attempt_in,
    next_move,
    observe,
    timings_problem,
    transitions_after,
)

ME = "op-a"


def rec(holder: str | None, rv: str = "1", duration: float = 15.0, transitions: int = 0
        ) -> LeaseRecord:
    return LeaseRecord(holder=holder, lease_duration_seconds=duration,
                       transitions=transitions, resource_version=rv)


@pytest.mark.parametrize(
    ("case", "seen", "now", "move"),
    [
        ("no Lease yet", None, 0.0, Move.CREATE),
        ("ours: renew", Observation(rec(ME), 0.0), 100.0, Move.RENEW),
        ("released (no holder)", Observation(rec(None, duration=1), 0.0), 0.0, Move.TAKE),
        ("another's, just seen", Observation(rec("op-b"), 10.0), 10.0, Move.WAIT),
        ("another's, unchanged 14.9 s", Observation(rec("op-b"), 10.0), 24.9, Move.WAIT),
        ("another's, unchanged 15 s: expired", Observation(rec("op-b"), 10.0), 25.0,
         Move.TAKE),
        ("another's with a 60 s duration, 20 s", Observation(rec("op-b", duration=60), 0.0),
         20.0, Move.WAIT),
    ],
)
def test_next_move(case: str, seen: Observation | None, now: float, move: Move) -> None:
    assert next_move(seen, ME, now) is move, case


@pytest.mark.parametrize(
    ("case", "last_seen", "now", "move"),
    [
        ("never read one", None, 0.0, Move.CREATE),
        ("ours was deleted: re-created at once", Observation(rec(ME), 0.0), 1.0, Move.CREATE),
        ("a released one was deleted", Observation(rec(None), 0.0), 1.0, Move.CREATE),
        ("another's deleted, 14.9 s after its last change: its holder may still act",
         Observation(rec("op-b"), 10.0), 24.9, Move.WAIT),
        ("another's deleted, 15 s after its last change: it would have expired",
         Observation(rec("op-b"), 10.0), 25.0, Move.CREATE),
    ],
)
def test_absent_move(case: str, last_seen: Observation | None, now: float,
                     move: Move) -> None:
    assert absent_move(last_seen, ME, now) is move, case


@pytest.mark.parametrize(
    ("case", "previous", "record", "since"),
    [
        ("first read starts the clock", None, rec("op-b", "7"), 30.0),
        ("the same version keeps it running", Observation(rec("op-b", "7"), 5.0),
         rec("op-b", "7"), 5.0),
        ("a renewal (new version) restarts it", Observation(rec("op-b", "7"), 5.0),
         rec("op-b", "8"), 30.0),
    ],
)
def test_expiry_is_measured_on_our_clock_from_the_last_change(
    case: str, previous: Observation | None, record: LeaseRecord, since: float
) -> None:
    assert observe(previous, record, 30.0).since == since, case


@pytest.mark.parametrize(
    ("timings", "problem"),
    [
        ((15.0, 10.0, 2.0), None),
        ((10.0, 10.0, 2.0), "the lease duration must be greater than the renew deadline"),
        ((15.0, 2.4, 2.0), "the renew deadline must be greater than 1.2 x the retry period"),
        ((15.0, 10.0, 0.0), "the retry period must be > 0"),
        ((15.0, 10.0, 2.0, 3.0),
         "the standby retry period must be > 0 and at most the retry period"),
    ],
)
def test_timings_that_could_let_two_leaders_overlap_are_refused(
    timings: tuple[float, ...], problem: str | None
) -> None:
    if problem is None:
        assert timings_problem(LeaseTimings(*timings)) is None
    else:
        with pytest.raises(ValueError, match=problem.replace(".", r"\.")):
            LeaseTimings(*timings)


def test_the_leader_stops_acting_before_anyone_may_take_its_lease() -> None:
    t = LeaseTimings()
    sent = 100.0
    # Another replica saw that renewal no earlier than it was sent.
    earliest_takeover = sent + t.lease_duration
    assert acting_until(sent, t) == 110.0
    assert earliest_takeover - acting_until(sent, t) == 5.0


@pytest.mark.parametrize(
    ("move", "record", "transitions"),
    [(Move.CREATE, None, 0), (Move.RENEW, rec(ME, transitions=3), 3),
     (Move.TAKE, rec("op-b", transitions=3), 4)],
)
def test_transitions_count_changes_of_holder(
    move: Move, record: LeaseRecord | None, transitions: int
) -> None:
    assert transitions_after(move, record) == transitions


class FakeStore:
    """A Lease store with the API server's optimistic concurrency (HTTP 409)."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.fail: KubeError | None = None
        self.writes: list[dict[str, Any]] = []

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.fail:
            raise self.fail
        return None if self.lease is None else {**self.lease}

    async def write_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        if self.fail:
            raise self.fail
        rv = lease["metadata"].get("resourceVersion")
        if (self.lease is None) != (rv is None) or (
                self.lease is not None and rv != self.lease["metadata"]["resourceVersion"]):
            raise KubeError("conflict", status=409)
        self.version += 1
        self.lease = {**lease, "metadata": {**lease["metadata"],
                                            "resourceVersion": str(self.version)}}
        self.writes.append(self.lease)
        return self.lease

    def holder(self) -> str | None:
        return record_of(self.lease).holder if self.lease else None

    def steal(self, holder: str) -> None:
        assert self.lease is not None
        self.version += 1
        self.lease = {**self.lease, "spec": {**self.lease["spec"], "holderIdentity": holder},
                      "metadata": {**self.lease["metadata"],
                                   "resourceVersion": str(self.version)}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(store: FakeStore, clock: Clock, identity: str = ME) -> LeaderElector:
    return LeaderElector(store, LeaseName("ops", "lease"), identity, clock=clock,
                         wall=lambda: datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("case", "after_winning", "advance", "acting"),
    [
        ("renewed: still acting", "renew", 9.0, True),
        ("the API server fails: acting until the renew deadline", "fail", 9.9, True),
        ("the API server fails: fenced at the renew deadline", "fail", 10.0, False),
        ("the Lease stolen: fenced at the next attempt", "steal", 0.0, False),
        ("a conflicting write: fenced at once", "conflict", 0.0, False),
    ],
)
async def test_a_leader_acts_only_while_its_renewals_succeed(
    case: str, after_winning: str, advance: float, acting: bool
) -> None:
    store, clock = FakeStore(), Clock()
    e = elector(store, clock)
    assert await e._attempt()
    e._lead(clock.now)
    assert e.acting and store.holder() == ME
    won = True
    if after_winning == "fail":
        store.fail = KubeError("cannot connect")
        with pytest.raises(KubeError):
            await e._attempt()
        won = False
    elif after_winning == "steal":
        store.steal("op-b")
        won = await e._attempt()
    elif after_winning == "conflict":
        real_get = store.get_lease

        async def stale_get(namespace: str, name: str) -> dict[str, Any] | None:
            lease = await real_get(namespace, name)
            store.steal(ME)  # someone writes between our read and our write
            return lease

        store.get_lease = stale_get  # type: ignore[method-assign]
        won = await e._attempt()
    else:
        won = await e._attempt()
    if won:
        e._lead(clock.now)
    clock.now += advance
    assert e.acting is acting, case


async def test_a_standby_takes_an_unrenewed_lease_only_after_its_duration() -> None:
    store, clock = FakeStore(), Clock()
    a, b = elector(store, clock, "op-a"), elector(store, clock, "op-b")
    assert await a._attempt()
    a._lead(clock.now)
    assert not await b._attempt()  # held and fresh
    clock.now += 14.0
    assert not await b._attempt()
    assert not a.acting, "a (not renewing) stopped acting at 10 s"
    clock.now += 1.0
    assert await b._attempt()
    assert store.holder() == "op-b"
    assert record_of(store.lease or {}).transitions == 1


async def test_a_deleted_lease_is_not_created_by_a_standby_while_its_leader_acts() -> None:
    """Someone deletes the Lease ("forcing a failover"): the leader re-creates it on
    its next renewal; the standby waits as if it were still there."""
    store, clock = FakeStore(), Clock()
    a, b = elector(store, clock, "op-a"), elector(store, clock, "op-b")
    assert await a._attempt()
    a._lead(clock.now)
    assert not await b._attempt()
    store.lease = None
    clock.now += 1.0
    assert not await b._attempt(), "created while op-a still acts"
    assert a.acting
    clock.now += 1.0
    assert await a._attempt()  # the leader's renewal re-creates it
    a._lead(clock.now)
    assert store.holder() == "op-a"
    assert not await b._attempt()  # the standby sees it held again
    store.lease = None  # deleted again, and now op-a is gone for good
    clock.now += 14.9
    assert not await b._attempt()
    clock.now += 0.1
    assert await b._attempt()
    assert store.holder() == "op-b"


async def test_release_hands_the_lease_over_at_once_and_cancels_work_in_flight() -> None:
    store, clock = FakeStore(), Clock()
    a, b = elector(store, clock, "op-a"), elector(store, clock, "op-b")
    assert await a._attempt()
    a._lead(clock.now)
    started = asyncio.Event()

    async def work() -> str:
        started.set()
        await asyncio.sleep(3600)
        return "done"

    in_flight = asyncio.create_task(a.guarded(work()))
    await started.wait()
    await a.release()
    assert await in_flight is None, "the work was cancelled, not finished"
    assert not a.acting
    assert store.holder() is None
    assert (store.lease or {})["spec"]["leaseDurationSeconds"] == 1
    assert await b._attempt(), "a standby takes a released Lease without waiting"


async def test_guarded_work_does_not_start_on_a_standby() -> None:
    e = elector(FakeStore(), Clock())
    ran = []

    async def work() -> None:
        ran.append(1)

    assert await e.guarded(work()) is None
    assert ran == []


async def test_after_a_shutdown_signal_a_renewal_in_flight_does_not_make_it_act_again() -> None:
    store, clock = FakeStore(), Clock()
    e = elector(store, clock)
    assert await e._attempt()
    e._lead(clock.now)
    e.stop_acting()  # SIGTERM: synchronous, while an attempt may be running
    assert not e.acting
    assert await e._attempt(), "the renewal itself succeeds"
    e._lead(clock.now)
    assert not e.acting
    await e.release()
    assert store.holder() is None, "and the Lease is still handed back"


@pytest.mark.parametrize(
    ("case", "seen", "now", "wait"),
    [
        ("no Lease: a standby's period", None, 0.0, 1.0),
        ("ours: the leader renews every 2 s", Observation(rec(ME), 0.0), 5.0, 2.0),
        ("released: a standby's period", Observation(rec(None, duration=1), 0.0), 5.0, 1.0),
        ("another's, expiring in 10 s", Observation(rec("op-b"), 0.0), 5.0, 1.0),
        ("another's, expiring in 0.4 s: try then", Observation(rec("op-b"), 0.0), 14.6, 0.4),
        ("expired, and the attempt failed: no tight loop", Observation(rec("op-b"), 0.0),
         16.0, 1.0),
    ],
)
def test_a_standby_tries_again_when_the_lease_it_waits_for_expires(
    case: str, seen: Observation | None, now: float, wait: float
) -> None:
    assert next_attempt_in(seen, ME, now, LeaseTimings()) == pytest.approx(wait), case


async def test_the_hook_after_the_first_attempt_runs_once_after_a_real_answer() -> None:
    store, clock = FakeStore(), Clock()
    e = LeaderElector(store, LeaseName("ops", "lease"), ME, clock=clock,
                      timings=LeaseTimings(0.3, 0.2, 0.01, 0.01))
    calls: list[str | None] = []
    task = asyncio.create_task(e.run(after_first_attempt=lambda: calls.append(store.holder())))
    while len(store.writes) < 3:  # created, then renewed twice
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == [ME], "once, after the first answered attempt"
