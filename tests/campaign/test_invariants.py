"""The invariants themselves, on hand-made traces: a check that never fires, or fires on
what the policy allows, would make the campaign's verdicts worthless."""

from __future__ import annotations

import pytest

from tests.campaign.incidents import generate
from tests.campaign.invariants import _spec, admin_request_rate
from tests.campaign.world import Poll, Request, Trace

LIMIT = "/v1/admin/rate-limit"


def _trace(writes: list[tuple[float, int | None, int | None]], per_hour: int) -> Trace:
    """One poll per write: (t, limit set (None: lift it), answer status (None: reset))."""
    incident = generate(0)
    incident.spec["remediation.maxActionsPerHour"] = per_hour
    polls = [Poll(i, t, [Request(t, i, "POST", "node1", LIMIT,
                                 {"max_assertions_per_sec": v}, status)])
             for i, (t, v, status) in enumerate(writes)]
    return Trace(incident, polls)


@pytest.mark.parametrize(("writes", "per_hour", "expected"), [
    # within the hour's budget
    ([(0, 3000, 200), (60, 4000, 200), (120, None, 200)], 6, []),
    # throttle steps beyond the budget are violations, whatever their answer
    ([(0, 3000, 500), (10, 3000, 500), (30, 3000, 500)], 2, ["3 admin write attempts"]),
    # a failed restore repeated after its backoff: not counted (lifting our own throttle
    # is never held by a budget)
    ([(0, 3000, 200), (100, None, 504), (110, None, 504), (130, None, 200)], 2, []),
    # a failed ramp step (raising the limit) repeated, then lifted: still a restore
    ([(0, 3000, 200), (100, 4000, 500), (110, 4000, 200), (200, None, 200)], 3, []),
    # throttle writes that timed out, then the limit lifted: the lift is a restore
    ([(0, 3000, 504), (4, 3000, 504), (100, None, 504), (300, None, 200)], 3, []),
    # a failed restore repeated sooner than the backoff's least delay (2.5 s)
    ([(0, 3000, 200), (100, None, 500), (101, None, 200)], 6, ["sooner than its backoff"]),
    # the second repeat must wait at least 5 s
    ([(0, 3000, 200), (100, None, 500), (103, None, 500), (106, None, 200)], 6,
     ["sooner than its backoff (5 s after 2 failures)"]),
    # a lowering after a failed restore is not a repeat of it
    ([(0, 3000, 200), (100, None, 500), (110, 2000, 200)], 2, ["3 admin write attempts"]),
])
def test_admin_writes_per_hour_spares_only_a_failed_restores_repeats(
        writes: list[tuple[float, int | None, int | None]], per_hour: int,
        expected: list[str]) -> None:
    trace = _trace(writes, per_hour)
    found = admin_request_rate(trace, _spec(trace))
    assert [v.invariant for v in found] == ["admin_writes_per_hour"] * len(expected)
    for v, text in zip(found, expected, strict=True):
        assert text in v.detail
