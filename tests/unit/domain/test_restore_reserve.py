"""maxActionsPerHour bounds every write in an hour, the restore ramp's included, while
lifting the operator's own throttle is never held by a budget: the other actions keep
room for the restore (issue 14, item 4; campaign seeds 502, 517, 609)."""

from __future__ import annotations

import pytest
from _domain_fixtures import FakeCluster, Harness, make_spec

from controller.domain.memory import ThrottleMemory
from controller.domain.policy.restore_reserve import restore_writes

SPEC = make_spec(2)  # restore ramp 0.5, 0.75 of the rate to restore


@pytest.mark.parametrize(("throttle", "current", "writes"), [
    (ThrottleMemory(), None, 0),
    (ThrottleMemory(active=True, rate_to_restore=4000, base_rate=4000), 3000, 1),
    (ThrottleMemory(active=True, rate_to_restore=4000, base_rate=4000), 1000, 3),
    (ThrottleMemory(active=True, rate_to_restore=4000, base_rate=4000, restoring=True,
                    restore_index=0, current_rate=2000), 2000, 2),
    (ThrottleMemory(active=True, rate_to_restore=None, base_rate=2000), 500, 3),
    (ThrottleMemory(active=True, rate_to_restore=4000, base_rate=4000, final_restore=True),
     4000, 1),
], ids=["no throttle", "first step: the final restore only", "at a quarter: two ramp steps "
        "and the final", "restoring, one ramp step done", "unlimited before: of the baseline",
        "the final restore under way"])
def test_restore_writes(throttle: ThrottleMemory, current: int | None, writes: int) -> None:
    assert restore_writes(SPEC, throttle, current) == writes


@pytest.mark.parametrize("limit", [4, 6, 8, 20])
def test_an_episode_and_its_restore_fit_in_max_actions_per_hour(limit: int) -> None:
    """A lag that throttling does not cure, then recovery: every write of the hour (the
    throttle steps, the syncs, the whole restore ramp) stays within the limit, and the
    rate in force before the episode is restored."""
    h = Harness(make_spec(2, remediation__maxActionsPerHour=limit,
                          remediation__breakerReset__enabled=False,
                          remediation__merkleSync__maxAttempts=5),
                FakeCluster(lags={"node2": 0.2, "node3": 0.2}, rate_limit=4000))
    h.cluster.lags["node2"] = 30.0
    h.run(900)
    h.cluster.lags["node2"] = 0.1
    h.run(900)
    assert h.log, "the episode took actions"
    assert len(h.log) <= limit
    assert h.cluster.rate_limit == 4000
    assert all(t < 3600 for t, _ in h.log)
