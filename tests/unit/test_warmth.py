"""A replica joins the shard ring, or competes for the leader Lease, only once a
daemon runs for every cluster it watches (`adapters/warmth.py`).

Before this, a joining shard created its Lease at start-up: the running shards
stopped polling the clusters the ring moved to it at once, and those went
unpolled until its daemons existed (up to 17.9 s at 3,000 clusters, 67 s at
6,000). The count is a fake at the adapter seam (`KubeClient.count_clusters` is
tested against the API server in tests/unit/adapters/test_kube_client.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import kopf
import pytest

from controller import handlers
from controller.adapters.kube import KubeError, NotLoggedIn
from controller.adapters.warmth import Presence, Warmth


class Counts:
    """What the API server answers, one entry per count (the last repeats)."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers, self.calls = list(answers), 0

    async def __call__(self) -> int:
        self.calls += 1
        answer = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def warmth(counts: Counts, max_seconds: float = 30.0) -> Warmth:
    return Warmth(counts, max_seconds=max_seconds, recount_seconds=0.01)


async def test_it_waits_until_every_listed_cluster_has_a_daemon() -> None:
    w = warmth(Counts(3))
    waiting = asyncio.create_task(w.wait("joining"))
    for uid in ("a", "b"):
        w.seen(uid)
        await settle()
        assert not waiting.done() and not w.warm
    w.seen("c")
    await asyncio.wait_for(waiting, 1)
    assert w.warm and w.present == 3


@pytest.mark.parametrize(("counts", "seen", "gone"), [
    pytest.param(Counts(0), [], [], id="no-cluster-at-all"),
    pytest.param(Counts(2, 1), ["a"], [], id="a-cluster-deleted-while-waiting"),
    pytest.param(Counts(KubeError("counting: HTTP 500"), 1), ["a"], [],
                 id="a-failed-count-is-tried-again"),
    pytest.param(Counts(NotLoggedIn("not logged in yet"), 1), ["a"], [],
                 id="before-login"),
    pytest.param(Counts(2), ["a", "b", "c"], ["c"], id="more-daemons-than-clusters-after-a-delete"),
])
async def test_it_becomes_warm(counts: Counts, seen: list[str], gone: list[str]) -> None:
    w = warmth(counts)
    for uid in seen:
        w.seen(uid)
    for uid in gone:
        w.gone(uid)
    await asyncio.wait_for(w.wait("joining"), 2)
    assert w.warm


async def test_a_deletion_counts_once_and_outlives_its_daemon() -> None:
    """A deletion begun while the replica warms: Kopf stops the daemon, and its end
    may come after the deletion handler began. The cluster stays present, once,
    until the handler is done."""
    w = warmth(Counts(2))
    w.seen("a")
    w.seen("b")
    w.seen("b", Presence.DELETION)
    assert w.present == 2
    w.gone("b")  # the daemon's end, after the handler began
    assert w.present == 2
    await asyncio.wait_for(w.wait("joining"), 1)
    w.gone("b", Presence.DELETION)
    assert w.present == 1


async def test_a_daemon_that_ended_no_longer_counts() -> None:
    w = warmth(Counts(2))
    w.seen("a")
    w.seen("b")
    w.gone("b")
    waiting = asyncio.create_task(w.wait("joining"))
    await asyncio.sleep(0.05)  # several recounts
    assert not waiting.done()
    w.seen("b")
    await asyncio.wait_for(waiting, 1)


async def test_it_never_waits_past_its_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """A replica that never joins remediates nothing: past the limit it joins, and
    says so."""
    w = warmth(Counts(5), max_seconds=0.05)
    w.seen("a")
    await asyncio.wait_for(w.wait("joining the shard ring"), 2)
    assert w.warm
    assert "joining the shard ring before every cluster's daemon started" in capsys.readouterr().out


Run = Callable[[Callable[[], None]], Coroutine[Any, Any, None]]


@pytest.mark.parametrize("what", ["competing for the leader Lease", "joining the shard ring"])
async def test_the_lease_is_not_touched_until_the_replica_is_warm(what: str) -> None:
    """The wiring: `_release_on_signal` starts the elector (or the ring) only once
    warm; the elector's first attempt is what creates the Lease."""
    memo = kopf.Memo()
    memo.warmth = warmth(Counts(2))
    began = asyncio.Event()

    async def run(after_first_attempt: Callable[[], None]) -> None:
        began.set()
        await asyncio.Event().wait()

    handlers._release_on_signal(memo, elector=None, run=run, what=what)  # type: ignore[arg-type]
    try:
        memo.warmth.seen("a")
        await asyncio.sleep(0.05)
        assert not began.is_set()
        memo.warmth.seen("b")
        await asyncio.wait_for(began.wait(), 1)
    finally:
        memo.election_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await memo.election_task


async def test_readiness_says_how_far_it_is() -> None:
    w = warmth(Counts(2))
    assert w.not_ready() == "counting the clusters"
    waiting = asyncio.create_task(w.wait("joining"))
    w.seen("a")
    await settle()
    assert w.not_ready() == "1 of 2 clusters have a daemon"
    w.seen("b")
    await asyncio.wait_for(waiting, 1)
    assert w.not_ready() is None
