"""status.nextStep and status.manualAction (issue 15, item 1): what happens next and
when, and what a human should do by hand now, with the exact command."""

from __future__ import annotations

import re

from _domain_fixtures import FakeCluster, Harness, make_spec

from controller.domain import build_status
from controller.domain.policy.text import clock_text


def _h(n: int = 2, **kw: object) -> Harness:
    spec = make_spec(n, **kw)
    lags: dict[str, float | None] = {f"node{k}": 0.3 for k in range(2, n + 2)}
    return Harness(spec, FakeCluster(lags))


def _status(h: Harness) -> dict:
    return build_status(h.spec, h.memory, h.plans[-1].conditions, 1, name="orders",
                        namespace="shop")


def _message(h: Harness, type_: str) -> str:
    return next(c.message for c in h.plans[-1].conditions if c.type.value == type_)


def test_a_healthy_cluster_has_no_next_step_and_nothing_to_do() -> None:
    h = _h()
    h.run(60)
    status = _status(h)
    assert status["nextStep"] is None and status["manualAction"] is None


def test_a_breaker_reset_says_when_it_is_judged_and_what_follows() -> None:
    h = _h()
    h.cluster.tripped = {"agent-node2"}
    h.cluster.lags["node2"] = 25.0
    while not h.kinds():
        h.poll()
    assert h.kinds() == ["ResetBreaker:node2"]
    status = _status(h)
    step = status["nextStep"]
    remembered = h.memory.replica("node2")
    assert remembered is not None and remembered.step_started_at is not None
    at = remembered.step_started_at + h.spec.remediation.breaker_reset.timeout_seconds
    assert step["what"] == "judge ResetBreaker on node2"
    assert step["at"].endswith(clock_text(at))
    assert "Throttle" in step["why"]
    assert _message(h, "Remediating").endswith(f"next: judge ResetBreaker on node2 at "
                                               f"{clock_text(at)}")


def test_a_rebuild_waiting_for_approval_gives_the_exact_command() -> None:
    h = _h(3, remediation__breakerReset__enabled=False, remediation__throttle__enabled=False,
           remediation__merkleSync__enabled=False, remediation__rebuild__policy="Manual")
    h.cluster.lags["node2"] = 25.0
    h.run(300)
    action = _status(h)["manualAction"]
    assert action["command"] == "kubectl stemedb approve-rebuild orders node2 -n shop"
    asked = [e.message for p in h.plans for e in p.events
             if e.reason.value == "RebuildNeedsApproval"]
    assert asked, "the policy asked for approval"
    shown = re.search(r"approve-rebuild=(\S+)", asked[-1])
    assert shown is not None and action["request"] == shown.group(1), (
        "the request is the one the policy will accept")


def test_an_escalation_says_when_it_is_promoted() -> None:
    h = _h(remediation__mode="Observe")
    h.cluster.lags["node2"] = 75.0
    h.run(30)
    step = _status(h)["nextStep"]
    assert h.memory.escalation_level == 1 and h.memory.escalated_since is not None
    promote = h.memory.escalated_since + h.spec.escalation.promote_after_seconds
    assert step["what"].startswith("escalate to level 2")
    assert step["at"].endswith(clock_text(promote))


def test_paused_while_lagging_says_how_to_resume() -> None:
    h = _h(remediation__paused=True)
    h.cluster.lags["node2"] = 25.0
    h.run(300)
    action = _status(h)["manualAction"]
    assert action["command"] == "kubectl stemedb resume orders -n shop"
    assert "node2" in action["what"]
