"""Every decision is one INFO log line with the cluster's namespace and name (issue 15,
item 6): the trail a post-mortem reads after the Events expire, never a secret."""

from __future__ import annotations

import json

import pytest
from structlog.testing import capture_logs

from tests.unit.test_reconcile import (
    NAME,
    NODE2_CRITICAL,
    NS,
    TOKEN,
    World,
    primary,
    raw_spec,
    with_token,
)


@pytest.mark.asyncio
async def test_each_event_is_also_a_decision_log_line() -> None:
    world = World(with_token(raw_spec()))
    world.stemedb.scrape = primary(NODE2_CRITICAL)
    world.stemedb.tripped = ["agent-node2"]
    with capture_logs() as logs:
        for _ in range(3):
            await world.poll()
    decisions = [e for e in logs if e["event"] == "decision"]
    assert [d["reason"] for d in decisions] == world.reasons()
    assert {(d["namespace"], d["name"]) for d in decisions} == {(NS, NAME)}
    assert {d["log_level"] for d in decisions} == {"info"}
    assert TOKEN not in json.dumps(logs, default=str)
