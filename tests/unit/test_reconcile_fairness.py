"""A broken cluster does not take the remediation of healthy ones with it (issue 14,
#4): refused attempts cost no operator-wide budget, each cluster gets a fair share of
it, and a failing admin API is backed off instead of hammered.

Several StemeDBCluster objects through one Reconciler, with fakes only at the
adapter seams (tests/unit/test_reconcile.py)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.adapters.stemedb_errors import StemeDBHTTPError
from controller.domain.memory import Memory
from tests.unit.test_reconcile import NODE2_CRITICAL, World, primary, raw_spec


class PerClusterStemeDB:
    """Admin calls to the broken clusters' adminUrls answer 500, like a StemeDB whose
    admin API is down; the healthy cluster's calls are answered as usual."""

    METHODS = ("reset_breaker", "set_rate_limit", "force_sync")

    def __init__(self, world: World, broken: set[str]) -> None:
        self.world = world
        self.broken = broken

    def install(self) -> None:
        fake = self.world.stemedb
        for method in self.METHODS:
            setattr(fake, method, self._guarded(method, getattr(fake, method)))

    def _guarded(self, method: str, original: Any) -> Any:
        fake = self.world.stemedb

        async def call(base: str, *args: Any, **kwargs: Any) -> Any:
            if base in self.broken:
                fake._call(method, base, *args, creds=kwargs.get("creds"))
                raise StemeDBHTTPError(500, "internal", "internal server error")
            return await original(base, *args, **kwargs)

        return call


def _cluster(world: World, name: str) -> dict[str, Any]:
    spec = raw_spec(remediation__maxActionsPerHour=500)
    spec["primary"]["adminUrl"] = f"http://{name}-0:18180"
    return world.new_body(name, spec)


@pytest.mark.asyncio
async def test_three_broken_clusters_leave_budget_for_a_healthy_ones_breaker_reset() -> None:
    world = World(budget=8)  # a fair share is 2 actions an hour
    broken = [_cluster(world, f"broken{i}") for i in range(3)]
    healthy = _cluster(world, "healthy")
    PerClusterStemeDB(world, {b["spec"]["primary"]["adminUrl"] for b in broken}).install()
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = ["agent-node2"]

    for _ in range(60):  # ten minutes at a 10 s poll
        for body in broken:
            await world.reconciler.poll(body)
            world.deliver(body)
        world.now += 10.0

    per_cluster = {b["spec"]["primary"]["adminUrl"]: 0 for b in broken}
    for call in world.calls:
        if call.method in PerClusterStemeDB.METHODS:
            per_cluster[call.args[0]] += 1
    assert all(n <= 12 for n in per_cluster.values()), (
        f"backed off: about one attempt a minute at most, not one a poll: {per_cluster}")
    assert world.budget.remaining(world.now) == 8, "refused attempts cost no budget"

    await world.reconciler.poll(healthy)
    url = healthy["spec"]["primary"]["adminUrl"]
    resets = [c for c in world.calls if c.method == "reset_breaker" and c.args[0] == url]
    assert [c.args[1] for c in resets] == ["agent-node2"]
    assert world.budget.remaining(world.now) == 7


@pytest.mark.asyncio
async def test_a_failed_attempt_is_backed_off_in_the_memory_the_status_keeps() -> None:
    world = World()
    body = _cluster(world, "broken")
    PerClusterStemeDB(world, {body["spec"]["primary"]["adminUrl"]}).install()
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = ["agent-node2"]
    await world.poll(body=body, advance=1.0)
    memory = Memory.from_text(world.kube.stored[("db", "broken")]["memory"])
    assert [(b.kind, b.failures) for b in memory.backoffs] == [("ResetBreaker", 1)]
    await world.poll(body=body, advance=1.0)  # within the backoff: no second attempt
    assert len([c for c in world.calls if c.method == "reset_breaker"]) == 1
