"""An intent left by an operator that died before the call's outcome came back is
settled from what StemeDB shows on the next poll (docs/remediation-policy.md, Intents)."""

from __future__ import annotations

from typing import Any

import pytest
from _domain_fixtures import FakeCluster, Harness, make_spec

from controller.domain import Action, ActionKind

ONLY_THROTTLE = {"remediation__breakerReset__enabled": False}
ONLY_SYNC = {**ONLY_THROTTLE, "remediation__throttle__enabled": False}
ONLY_REBUILD = {**ONLY_SYNC, "remediation__merkleSync__enabled": False,
                "remediation__rebuild__policy": "Automatic"}


def _first_action(harness: Harness) -> Action:
    """Poll (the operator dying after each intent is written) until an action is planned."""
    for _ in range(60):
        plan = harness.poll(act=False)
        if plan.actions:
            return plan.actions[0]
    raise AssertionError("no action planned")


@pytest.mark.parametrize(("settings", "kind", "outcome"), [
    pytest.param({}, ActionKind.RESET_BREAKER, "Ok",
                 id="a breaker no longer tripped confirms its reset"),
    pytest.param(ONLY_THROTTLE, ActionKind.SET_RATE_LIMIT, "Ok",
                 id="a limit read back confirms it"),
    pytest.param(ONLY_SYNC, ActionKind.FORCE_SYNC, "Ok",
                 id="a running sync confirms it"),
    pytest.param(ONLY_REBUILD, ActionKind.MARK_REBUILD, "Pending",
                 id="a rebuild mark is not in metrics: it waits for its deadline"),
])
def test_an_intent_is_settled_from_metrics_after_a_restart(
    settings: dict[str, Any], kind: ActionKind, outcome: str
) -> None:
    cluster = FakeCluster(lags={"node2": 25.0, "node3": 0.2, "node4": 0.2},
                          tripped={"agent-node2"}, rate_limit=2000)
    harness = Harness(make_spec(3, **settings), cluster)
    action = _first_action(harness)
    assert action.kind is kind
    cluster.apply(action)  # the call had reached StemeDB
    plan = harness.poll(act=False)
    entries = [e for e in plan.memory.history if e.key == action.idempotency_key]
    assert entries[-1].outcome == outcome
    still_pending = any(i.key == action.idempotency_key for i in plan.memory.pending)
    assert still_pending == (outcome == "Pending")
    assert not plan.actions  # nothing is sent again


@pytest.mark.parametrize(("tripped", "gauge", "confirmed"), [
    (frozenset(), None, True),
    (frozenset({"agent-node2"}), False, False),
    (None, False, True),
    (None, True, False),
    (None, None, False),
], ids=["the list no longer names it", "the list wins over the gauge",
        "no list read: the primary's gauge says reset", "the gauge says still tripped",
        "neither: not confirmed"])
def test_a_breaker_reset_is_confirmed_from_the_list_or_the_primarys_gauge(
    tripped: frozenset[str] | None, gauge: bool | None, confirmed: bool,
) -> None:
    from controller.domain.memory import ActionKind, Intent
    from controller.domain.observation import Observation, ReplicaObservation, SourceStatus
    from controller.domain.policy.actions import rules_for

    intent = Intent("k", ActionKind.RESET_BREAKER, "node2", "agent-node2", None, 0.0, 60.0)
    observation = Observation(
        at=1.0, primary=SourceStatus.ok(), tripped_agents=tripped,
        replicas=(ReplicaObservation("node2", lag_seconds=20.0, breaker_tripped=gauge),))
    assert rules_for(ActionKind.RESET_BREAKER).confirmed(intent, observation) is confirmed
