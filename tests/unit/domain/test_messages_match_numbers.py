"""What a human reads agrees with the numbers (issue 14, #8): no message quotes a lag
below a threshold as "over" it, a floor that is not the limit in force, a step
"attempt 1/2" that is held, or a last known lag as current while the lag is unknown."""

from __future__ import annotations

import re

from _domain_fixtures import FakeCluster, Harness, make_spec

from controller.domain import SourceStatus, build_status


def _h(n: int = 2, **kw: object) -> Harness:
    spec = make_spec(n, **kw)
    lags: dict[str, float | None] = {f"node{k}": 0.3 for k in range(2, n + 2)}
    return Harness(spec, FakeCluster(lags))


def _condition(h: Harness, type_: str) -> tuple[bool | None, str, str]:
    c = next(c for c in h.plans[-1].conditions if c.type.value == type_)
    return c.status, c.reason.value, c.message


def test_while_blind_the_status_shows_unknown_not_the_last_lag() -> None:
    h = _h()
    h.cluster.lags["node2"] = 7.0
    h.run(60)
    h.cluster.primary = SourceStatus.failed("connection refused")
    h.run(30)
    status = build_status(h.spec, h.memory, h.plans[-1].conditions, 1)
    assert status["maxLag"] == "Unknown"
    assert status["maxLagSeconds"] is None and status["laggingReplicas"] is None
    assert status["lagUnknownSince"] is not None
    assert {r["state"] for r in status["replicas"]} == {"Unknown"}
    assert all(r["lagSeconds"] is None for r in status["replicas"])
    degraded = _condition(h, "Degraded")
    assert degraded[:2] == (None, "MetricsUnavailable")
    assert "Lag unknown since" in degraded[2]
    by_type = {c["type"]: c["status"] for c in _status_conditions(h)}
    assert by_type["Degraded"] == "Unknown"

    h.cluster.primary = SourceStatus.ok()  # seen again: numbers come back
    h.run(10)
    status = build_status(h.spec, h.memory, h.plans[-1].conditions, 1)
    assert status["maxLag"] == "7s" and status["laggingReplicas"] is not None
    assert status["lagUnknownSince"] is None


def _status_conditions(h: Harness) -> list[dict[str, str]]:
    return [{"type": c.type.value, "status": c.status_str} for c in h.plans[-1].conditions]


def test_a_step_held_by_corruption_says_held_not_attempt() -> None:
    h = _h(remediation__throttle__enabled=False, remediation__breakerReset__enabled=False)
    h.cluster.lags["node2"] = 25.0
    h.run(300)
    assert _condition(h, "Remediating")[1] == "ForcingSync"
    h.cluster.corruption["node2"] = 1.0
    h.run(30)
    status, reason, message = _condition(h, "Remediating")
    assert (status, reason) == (True, "Holding")
    assert "held: Merkle sync reported corruption" in message


def test_a_step_held_by_the_budget_says_so() -> None:
    h = _h(remediation__maxActionsPerHour=1)
    h.cluster.tripped = {"agent-node2"}
    h.cluster.lags["node2"] = 25.0
    h.run(300)
    status, reason, message = _condition(h, "Remediating")
    assert (status, reason) == (True, "Holding"), message
    assert "next attempt held by the cluster's maxActionsPerHour" in message


def test_the_storm_floor_message_quotes_the_limit_in_force() -> None:
    h = _h(3)
    h.cluster.rate_limit = 2000  # ladder 1500, 1000, 500: the lowest step is 500/s
    for rid in ("node2", "node3"):
        h.cluster.lags[rid] = 20.0
    h.run(1200)
    floor_events = [e.message for p in h.plans for e in p.events
                    if e.reason.value == "ThrottleAtFloor"]
    assert floor_events, "the storm reached the lowest step"
    assert all(f"limit {h.cluster.rate_limit}/s" in m for m in floor_events), floor_events


def test_an_escalation_over_the_lag_threshold_never_prints_a_lower_lag_as_over_it() -> None:
    h = _h()
    h.cluster.lags["node2"] = 75.0
    h.run(20)
    h.cluster.lags["node2"] = 56.0  # draining, still lagging: escalation stands
    h.run(60)
    message = h.plans[-1].escalation.message
    for lag, limit in re.findall(r"lag ([\d.]+) s over ([\d.]+) s", message):
        assert float(lag) > float(limit), message
    assert "went over 60 s" in message
