"""How often one cluster's admin state is read (issue 14, items 4 and 6), through the
real Reconciler with fakes at the StemeDB seam: the tripped-breakers list only when the
breaker step chooses what to reset, and reads of a failing admin API backed off per
cluster like its actions. Before, the list was read every poll while a reset waited
(30 reads a minute at a 2 s poll, campaign seed 15) and for a whole storm."""

from __future__ import annotations

import pytest

from controller.adapters.stemedb import RateLimitReading, StemeDBHTTPError
from tests.unit.test_reconcile import World, primary, raw_spec

POLL = 2.0
MINUTES = 10


def _reads(world: World, method: str) -> int:
    return sum(1 for c in world.calls if c.method == method)


CASES = [
    # name, lags, tripped agents, failing methods, most list reads in 10 minutes
    ("a reset waiting out its timeout (60 s) reads nothing more",
     {"node2": 30.0, "node3": 0.2}, ["agent-node2"], (), 1 + MINUTES * 60 // 60),
    ("a breaker that is not tripped: read once, the ladder moves on",
     {"node2": 30.0, "node3": 0.2}, [], (), 1),
    ("a storm reads once per replica that starts its ladder",
     {"node2": 30.0, "node3": 40.0}, [], (), 2),
    ("a failing admin API: the list's reads back off like the actions",
     {"node2": 30.0, "node3": 0.2}, ["agent-node2"],
     ("tripped_breakers", "reset_breaker", "set_rate_limit", "force_sync"), 1),
]


@pytest.mark.parametrize(("lags", "tripped", "failing", "most"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_the_breaker_list_is_read_only_when_a_decision_needs_it(
    lags: dict[str, float], tripped: list[str], failing: tuple[str, ...], most: int
) -> None:
    world = World(raw_spec(2, detection__pollIntervalSeconds=POLL))
    world.stemedb.scrape = primary(lags)
    world.stemedb.tripped = list(tripped)
    for method in failing:
        world.stemedb.errors[method] = StemeDBHTTPError(500, "internal", "injected")
    for _ in range(int(MINUTES * 60 / POLL)):
        await world.poll(advance=POLL)
    assert 1 <= _reads(world, "tripped_breakers") <= most


async def test_reads_of_the_rate_limit_from_a_failing_api_back_off() -> None:
    """A primary without the rate gauge: the limit is read back while an episode needs
    it; against an API answering 500 those reads back off (2.5 s doubling to 5 min):
    at most 8 in 10 minutes at a 2 s poll, not 300."""
    world = World(raw_spec(2, detection__pollIntervalSeconds=POLL))
    world.stemedb.scrape = primary({"node2": 30.0, "node3": 0.2}, reported=False)
    world.stemedb.rate = RateLimitReading(1000.0)
    world.stemedb.errors["get_rate_limit"] = StemeDBHTTPError(500, "internal", "injected")
    for _ in range(int(MINUTES * 60 / POLL)):
        await world.poll(advance=POLL)
    assert 1 <= _reads(world, "get_rate_limit") <= 8
