"""The runbook's situations, end to end: real kube-apiserver, real simulator over
HTTP, the operator as it ships (its console command) under the chart's RBAC rules.

Each test asserts what `kubectl` shows and what the simulator's admin log recorded.
"""

from __future__ import annotations

import pytest
from conftest import Env, fast_spec
from harness import condition, events

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def cond_status(obj: dict, ctype: str) -> str | None:
    c = condition(obj, ctype)
    return None if c is None else c["status"]


def reasons(env: Env) -> list[str]:
    return [e["reason"] for e in events(env.cp, env.namespace, "db")]


def test_a_tripped_breaker_is_reset_and_the_replica_recovers(env: Env) -> None:
    env.apply(fast_spec(env.sim, env.cluster))
    env.start_operator()
    env.wait_status("a healthy first look", lambda o: cond_status(o, "Ready") == "True")

    env.fault("breaker_trip", replica="node2")
    env.wait_status("the breaker reset", lambda o: any(
        c["endpoint"].endswith("/circuit-breaker/reset") for c in env.writes()))
    env.wait_status("recovery", lambda o: cond_status(o, "Ready") == "True"
                    and o["status"]["laggingReplicas"] == 0, timeout=90)

    resets = [c for c in env.writes() if c["endpoint"].endswith("/circuit-breaker/reset")]
    assert [c["body"] for c in resets] == [{"agent_id": "agent-node2"}]
    assert not [c for c in env.writes() if c["endpoint"].endswith("/cluster/sync")]
    assert "BreakerReset" in reasons(env)
    state = env.sim.state(env.cluster)
    assert state["replicas"]["node2"]["breaker"]["tripped"] is False
