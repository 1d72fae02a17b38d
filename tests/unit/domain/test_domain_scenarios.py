"""Scenario traces: one timeline per runbook situation, run through decide() poll by poll,
asserting the exact sequence of actions and the conditions at the end."""

from __future__ import annotations

import json

import pytest
from _domain_fixtures import FakeCluster, Harness, make_spec

from controller.domain import ActionKind, SourceStatus, Step
from controller.domain.memory import Memory


def _h(n: int = 2, **kw: object) -> Harness:
    spec = make_spec(n, **kw)
    lags: dict[str, float | None] = {f"node{k}": 0.3 for k in range(2, n + 2)}
    return Harness(spec, FakeCluster(lags=lags))


def test_tripped_breaker_is_reset_and_the_replica_recovers() -> None:
    h = _h()
    h.run(60)
    h.cluster.lags["node2"] = 14.0
    h.cluster.tripped = {"agent-node2"}
    h.run(180)  # critical window not yet complete
    assert h.kinds() == []
    h.run(20)
    assert h.kinds() == ["ResetBreaker:node2"]
    assert h.cond("Remediating") == (True, "ResettingBreaker")
    h.cluster.lags["node2"] = 1.0  # stream unblocked, lag drains
    h.run(200)
    assert h.kinds() == ["ResetBreaker:node2"]
    assert h.cond("Ready") == (True, "AllReplicasInSync")
    assert h.cond("Remediating") == (False, "Idle")
    assert "Recovered" in h.events()
    assert h.memory.last_recovery_seconds is not None and h.memory.last_recovery_seconds > 180


def test_disk_saturation_is_throttled_in_steps_and_restored_in_a_ramp() -> None:
    h = _h()
    h.cluster.rate_limit = 4000
    h.cluster.lags["node2"] = 20.0
    h.run(190)
    assert h.kinds() == ["SetRateLimit:3000"]  # breaker not tripped: straight to throttle
    h.run(60)
    assert h.kinds() == ["SetRateLimit:3000", "SetRateLimit:2000"]
    h.cluster.lags["node2"] = 12.0  # draining: the step is given time
    h.run(60)
    assert h.kinds() == ["SetRateLimit:3000", "SetRateLimit:2000"]
    assert "StepWorking" in h.events()
    h.cluster.lags["node2"] = 1.0
    h.run(130)
    assert h.cond("Degraded")[0] is False
    h.run(240)
    assert h.kinds() == ["SetRateLimit:3000", "SetRateLimit:2000", "SetRateLimit:3000",
                         "SetRateLimit:4000"]
    assert h.memory.throttle.active is False
    assert h.cluster.rate_limit == 4000
    assert "RateRestored" in h.events()


def test_unknown_rate_limit_is_restored_by_removing_the_limit() -> None:
    h = _h()
    h.cluster.rate_readable = False
    h.cluster.lags["node2"] = 20.0
    h.run(200)
    assert h.memory.throttle.rate_to_restore is None
    assert h.memory.throttle.rate_to_restore_known is False
    h.cluster.lags["node2"] = 0.5
    h.run(400)
    assert h.kinds()[0] == "SetRateLimit:1500"
    assert h.kinds()[-1] == "SetRateLimit:None"
    assert h.memory.throttle.active is False


def test_stuck_replica_gets_a_forced_sync_and_catches_up() -> None:
    h = _h(remediation__throttle__enabled=False)
    h.cluster.lags["node2"] = 25.0
    h.run(200)
    assert h.kinds() == ["ForceSync:node2"]
    assert h.cond("Remediating") == (True, "ForcingSync")
    for p in (0.2, 0.5, 0.9):
        h.cluster.sync_progress["node2"] = p
        h.run(60)
    h.cluster.sync_running["node2"] = False
    h.cluster.sync_progress["node2"] = 1.0
    h.cluster.lags["node2"] = 1.0
    h.run(200)
    assert h.kinds() == ["ForceSync:node2"]
    assert h.cond("Ready") == (True, "AllReplicasInSync")


def test_repeated_sync_failures_end_in_a_rebuild_mark_and_escalation() -> None:
    h = _h(3, remediation__throttle__enabled=False, remediation__rebuild__policy="Automatic")
    h.cluster.lags["node2"] = 25.0
    h.run(200 + 3 * 130)
    # The stalled sync keeps running: it is each next attempt, never requested again
    # (StemeDB would answer 409 with the same sync; issue 14, item 1).
    assert h.kinds() == ["ForceSync:node2", "MarkRebuild:node2"]
    assert h.events().count("SyncStalled") == 3
    assert h.cond("Escalated") == (True, "LadderExhausted")
    assert h.plans[-1].escalation.level == 2
    assert h.plans[-1].escalation.contact == "Distributed systems engineer"
    assert h.cond("Remediating") == (True, "RebuildMarked")
    h.run(300)
    assert h.kinds()[-1] == "MarkRebuild:node2" and len(h.kinds()) == 2


def _requested(h: Harness) -> str:
    """The rebuild request the Remediating condition shows (what a human approves)."""
    [message] = [c.message for c in h.plans[-1].conditions if c.type.value == "Remediating"]
    return message.rsplit("stemedb.io/approve-rebuild=", 1)[1]


def test_manual_rebuild_waits_for_the_approval_of_the_request_it_shows() -> None:
    h = _h(3, remediation__throttle__enabled=False)
    h.cluster.lags["node2"] = 25.0
    h.run(200 + 3 * 130)
    assert h.kinds() == ["ForceSync:node2"]
    assert h.cond("Remediating") == (True, "AwaitingRebuildApproval")
    assert h.events().count("RebuildNeedsApproval") == 1
    request = _requested(h)
    assert request.startswith("node2@")

    # A bare replica id does not name a request: ignored, and the human is told why.
    h.cluster.approved = frozenset({"node2"})
    h.run(10)
    assert h.kinds()[-1] == "ForceSync:node2"
    [told] = [e.message for p in h.plans[-1:] for e in p.events
              if e.reason.value == "RebuildNeedsApproval"] or [""]
    assert "ignored node2" in told

    h.cluster.approved = frozenset({request})
    h.run(10)
    assert h.kinds()[-1] == "MarkRebuild:node2"


def test_an_approval_is_used_up_with_its_episode() -> None:
    """Issue 14: after `approve-rebuild=node2` was used and the cluster recovered, the
    next incident marked the replica at once. The approval names its episode's
    request, so the next episode asks again."""
    h = _h(3, remediation__throttle__enabled=False)
    h.cluster.lags["node2"] = 25.0
    h.run(200 + 3 * 130)
    first = _requested(h)
    h.cluster.approved = frozenset({first})  # and it stays on the object
    h.run(10)
    assert h.kinds().count("MarkRebuild:node2") == 1

    h.cluster.lags["node2"] = 0.1  # rebuilt, recovered
    h.run(400)
    assert h.cond("Ready")[0] is True

    h.cluster.lags["node2"] = 25.0  # the next incident (after the cooldown)
    h.run(1500)
    assert h.kinds().count("MarkRebuild:node2") == 1
    assert h.cond("Remediating") == (True, "AwaitingRebuildApproval")
    assert _requested(h) != first


def test_corruption_escalates_at_once_to_the_principal_engineer_and_holds_actions() -> None:
    h = _h()
    h.run(30)
    h.cluster.corruption["node2"] = 1.0
    h.cluster.lags["node2"] = 30.0
    plan = h.poll()
    assert plan.escalation.level == 3
    assert plan.escalation.contact == "Principal engineer"
    assert h.cond("Escalated") == (True, "MerkleCorruption")
    h.run(400)
    assert h.kinds() == []
    assert "MerkleCorruption" in h.events()


def test_several_replicas_lagging_throttle_and_escalate_without_syncs() -> None:
    h = _h(3)
    h.cluster.rate_limit = 1000
    for rid in ("node2", "node3"):
        h.cluster.lags[rid] = 20.0
    h.run(200)
    assert h.kinds() == ["SetRateLimit:750"]
    assert h.cond("Escalated") == (True, "ReplicaStorm")
    h.run(600)
    kinds = h.kinds()
    assert kinds == ["SetRateLimit:750", "SetRateLimit:500", "SetRateLimit:250"]
    assert not any(k.startswith(("ForceSync", "ResetBreaker")) for k in kinds)
    assert h.plans[-1].escalation.level == 1


def test_a_storm_still_resets_a_breaker_seen_tripped_but_holds_syncs() -> None:
    """Issue 14, #3: one replica's breaker tripped while another lags from its disk,
    both critical in the same poll. The storm must not hold the cheap, targeted reset."""
    h = _h(3)
    h.cluster.rate_limit = 1000
    h.cluster.tripped = {"agent-node2"}
    for rid in ("node2", "node3"):
        h.cluster.lags[rid] = 20.0
    h.run(200)
    kinds = h.kinds()
    assert kinds[:2] == ["SetRateLimit:750", "ResetBreaker:node2"] or kinds[:2] == [
        "ResetBreaker:node2", "SetRateLimit:750"], kinds
    assert h.cond("Escalated") == (True, "ReplicaStorm")
    h.run(600)
    kinds = h.kinds()
    assert kinds.count("ResetBreaker:node2") <= 2, "within breakerReset.maxAttempts"
    assert not any(k.startswith(("ForceSync", "MarkRebuild")) for k in kinds), kinds


def test_lag_over_the_escalation_threshold_escalates_immediately() -> None:
    h = _h()
    h.cluster.lags["node2"] = 75.0
    plan = h.poll()
    assert plan.escalation.level == 1
    assert plan.escalation.contact == "Cluster SRE"
    assert h.cond("Escalated") == (True, "LagAboveEscalationThreshold")
    assert h.cond("Degraded") == (True, "LagCritical")


def test_crash_loop_during_sync_escalates_and_stops_syncing() -> None:
    h = _h(3, remediation__throttle__enabled=False)
    h.cluster.lags["node2"] = 25.0
    h.run(200)
    assert h.kinds() == ["ForceSync:node2"]
    h.cluster.restarts["node2"] = 4.0
    h.run(10)
    assert h.cond("Escalated")[0] is True
    assert h.memory.replica("node2").crash_loop  # type: ignore[union-attr]
    assert h.memory.replica("node2").step is Step.REBUILD  # type: ignore[union-attr]
    h.run(300)
    assert h.kinds() == ["ForceSync:node2"]


def test_flapping_lag_causes_no_action() -> None:
    h = _h()
    for i in range(100):
        h.cluster.lags["node2"] = 15.0 if i % 6 < 3 else 0.5
        h.poll()
    assert h.kinds() == []
    assert h.cond("Degraded")[0] is False


def test_dry_run_reports_would_do_and_never_acts() -> None:
    h = _h(3, remediation__mode="DryRun", remediation__rebuild__policy="Automatic")
    h.cluster.lags["node2"] = 25.0
    h.cluster.tripped = {"agent-node2"}
    h.run(1500)
    assert h.kinds() == []
    would = [e for p in h.plans for e in p.events if e.reason.value == "WouldAct"]
    assert [e.message.split(" ")[1] for e in would][:2] == ["reset", "reset"]
    assert any("would mark node2 for rebuild" in e.message for e in would)
    assert h.cond("RemediationAllowed") == (False, "DryRunMode")


def test_paused_and_observe_act_on_nothing() -> None:
    for kw, reason in (({"remediation__paused": True}, "Paused"),
                       ({"remediation__mode": "Observe"}, "ObserveMode")):
        h = _h(**kw)  # type: ignore[arg-type]
        h.cluster.lags["node2"] = 25.0
        h.cluster.tripped = {"agent-node2"}
        h.run(900)
        assert h.kinds() == []
        assert h.cond("RemediationAllowed") == (False, reason)
        assert h.cond("Degraded") == (True, "LagCritical")
        assert h.events().count("ActionSkipped") == 1


def test_restart_mid_sync_never_repeats_the_sync() -> None:
    h = _h(remediation__throttle__enabled=False)
    h.cluster.lags["node2"] = 25.0
    h.run(180)
    plan = h.poll(act=False)  # intent written, operator dies before the call returns
    assert [a.kind for a in plan.actions] == [ActionKind.FORCE_SYNC]
    stored = h.memory.to_json()
    from controller.domain import Memory

    h.memory = Memory.from_json(stored)  # restarted operator
    h.cluster.sync_running["node2"] = True  # the call had reached StemeDB
    h.cluster.sync_progress["node2"] = 0.1
    h.run(100)
    assert h.kinds() == ["ForceSync:node2"]
    assert not h.memory.pending


def test_restart_with_unknown_sync_outcome_retries_only_after_the_timeout() -> None:
    h = _h(remediation__throttle__enabled=False, remediation__merkleSync__maxAttempts=2,
           remediation__merkleSync__stallTimeoutSeconds=600)
    h.cluster.lags["node2"] = 25.0
    h.run(180)
    h.poll(act=False)  # the call never reached StemeDB, outcome unknown
    h.run(590)
    assert h.kinds() == ["ForceSync:node2"]
    h.run(20)
    assert h.kinds() == ["ForceSync:node2", "ForceSync:node2"]
    assert "ActionTimedOut" in h.events()


def test_failed_admin_call_is_retried_within_the_attempt_limit() -> None:
    h = _h(remediation__throttle__enabled=False)
    h.fail_kinds = {ActionKind.FORCE_SYNC}
    h.cluster.lags["node2"] = 25.0
    h.run(260)
    assert h.kinds() == ["ForceSync:node2"] * 3
    assert h.memory.replica("node2").step is Step.REBUILD  # type: ignore[union-attr]


@pytest.mark.parametrize("kw, budget, gate", [
    ({"remediation__mode": "DryRun"}, 1000, "DryRunMode"),
    ({"remediation__paused": True}, 1000, "Paused"),
    ({"remediation__mode": "Observe"}, 1000, "ObserveMode"),
    ({}, 0, "OperatorBudgetExhausted"),
    ({"remediation__maxActionsPerHour": 0}, 1000, "ClusterBudgetExhausted"),
], ids=["dry run", "paused", "observe", "operator budget spent", "cluster budget spent"])
def test_every_held_action_is_reported_with_the_gate_that_held_it(
    kw: dict[str, object], budget: int, gate: str
) -> None:
    h = _h(**kw)  # type: ignore[arg-type]
    h.budget = budget
    h.cluster.lags["node2"] = 25.0
    h.cluster.tripped = {"agent-node2"}
    h.run(300)
    held = [(k.value if k else None, r.value) for p in h.plans for k, r in p.suppressed]
    assert h.kinds() == []
    ladder_ran = gate not in ("Paused", "ObserveMode")
    assert held and set(held) >= {("ResetBreaker" if ladder_ran else None, gate)}
    assert {r for _, r in held} == {gate}


@pytest.mark.parametrize(("budget", "kw", "frees"), [
    pytest.param(0, {}, False, id="operator budget spent"),
    pytest.param(1000, {"remediation__maxActionsPerHour": 1}, True, id="cluster budget spent"),
])
def test_a_critical_replica_held_by_a_budget_calls_a_human(
    budget: int, kw: dict[str, object], frees: bool
) -> None:
    """Issue 14, item 7: out of budget mid-incident, the cluster showed Escalated=False
    until lag passed 60 s. Held steps on a critical replica are level 1, saying when
    the cluster's budget frees."""
    h = _h(**kw)  # type: ignore[arg-type]
    h.budget = budget
    h.cluster.lags["node2"] = 25.0
    h.cluster.tripped = {"agent-node2"}
    h.run(300)
    assert h.plans[-1].escalation.level == 1
    assert h.cond("Escalated") == (True, "RemediationHeldByBudget")
    assert ("frees at" in h.plans[-1].escalation.message) is frees
    assert h.plans[-1].escalation.contact == "Cluster SRE"


def test_a_lag_unreadable_for_longer_than_critical_for_seconds_calls_a_human() -> None:
    """Issue 14, item 7: blind for a long time, it never escalated. A short outage
    changes nothing; one longer than critical.forSeconds is level 1, and seeing the
    lag again clears it."""
    h = _h()
    h.run(60)
    h.cluster.primary = SourceStatus.failed("connection refused")
    h.run(60)
    assert h.plans[-1].escalation.level == 0  # a minute: not yet
    h.run(180)
    assert h.plans[-1].escalation.level == 1
    assert h.cond("Escalated") == (True, "LagUnreadableTooLong")
    assert h.events().count("Escalated") == 1
    h.cluster.primary = SourceStatus.ok()
    h.run(30)
    assert h.plans[-1].escalation.level == 0
    assert "EscalationCleared" in h.events()


def _calls_per_minute(h: Harness, kind: str) -> list[int]:
    """How many `kind` actions were proposed in each minute of the run."""
    minutes: dict[int, int] = {}
    for at, action in h.log:
        if action.kind.value == kind:
            minutes[int(at // 60)] = minutes.get(int(at // 60), 0) + 1
    return [minutes.get(m, 0) for m in range(max(minutes, default=-1) + 1)]


def test_a_failing_admin_api_is_backed_off_and_a_human_is_told() -> None:
    """Issue 14, #4: with the admin API answering 503 the operator used to re-send the
    failed call on every poll. Now each kind backs off (doubling, capped), the hold is
    reported with when the next attempt goes, and a human is called once it lasts."""
    h = _h(detection__pollIntervalSeconds=1, remediation__maxActionsPerHour=500)
    h.fail_kinds = {ActionKind.SET_RATE_LIMIT}
    h.cluster.rate_limit = 4000
    h.cluster.lags["node2"] = 25.0
    h.run(900)
    per_minute = _calls_per_minute(h, "SetRateLimit")
    assert sum(per_minute) <= 10, per_minute  # was one a poll: hundreds
    assert max(per_minute[8:], default=0) <= 1, per_minute
    assert h.cond("RemediationAllowed") == (False, "AdminApiBackingOff")
    allowed = next(c for c in h.plans[-1].conditions if c.type.value == "RemediationAllowed")
    assert "next attempt at" in allowed.message
    assert h.cond("Escalated") == (True, "AdminApiFailing")
    assert [b.kind for b in h.memory.backoffs] == ["SetRateLimit"]

    h.fail_kinds = set()  # the API is fixed: the next attempt succeeds, the backoff ends
    h.run(400)
    assert h.memory.backoffs == ()


def test_a_failed_breaker_reset_waits_before_its_second_attempt() -> None:
    h = _h(detection__pollIntervalSeconds=1, remediation__maxActionsPerHour=500)
    h.fail_kinds = {ActionKind.RESET_BREAKER}
    h.cluster.tripped = {"agent-node2"}
    h.cluster.lags["node2"] = 25.0
    h.run(400)
    resets = [at for at, a in h.log if a.kind is ActionKind.RESET_BREAKER]
    assert len(resets) == 2, "breakerReset.maxAttempts, then the next step"
    assert resets[1] - resets[0] >= 2.5, "not on the very next poll"


def test_the_backoff_survives_a_restart() -> None:
    h = _h(detection__pollIntervalSeconds=1, remediation__maxActionsPerHour=500)
    h.fail_kinds = {ActionKind.SET_RATE_LIMIT}
    h.cluster.rate_limit = 4000
    h.cluster.lags["node2"] = 75.0
    h.run(120)
    before = len(h.log)
    h.memory = Memory.from_json(json.loads(json.dumps(h.memory.to_json())))  # a restart
    h.poll()
    assert len(h.log) == before, "a restarted operator keeps waiting"


@pytest.mark.parametrize(("first_look", "stalled_at_once"), [
    (True, False), (False, True),
], ids=["a new leader or a restart: the unobserved gap is no stall",
        "the same process after a slow poll: it is"])
def test_an_unobserved_gap_is_not_a_sync_stall(first_look: bool, stalled_at_once: bool) -> None:
    """Issue 16's failover test found a forced sync retried by the new leader: the
    ~16 s nobody polled counted as a stall of the sync the old leader started."""
    h = _h(remediation__breakerReset__enabled=False, remediation__throttle__enabled=False)
    h.cluster.lags["node2"] = 25.0
    while "ForceSync:node2" not in h.kinds():
        h.poll()
    h.cluster.sync_progress.pop("node2", None)  # the sync has reported no progress yet
    stall = h.spec.remediation.merkle_sync.stall_timeout_seconds
    h.now += stall + 5  # nobody polls; the sync reports no progress yet
    h.cluster.first_look = first_look
    h.poll()
    h.cluster.first_look = False
    stalled = [e for p in h.plans[-1:] for e in p.events if e.reason.value == "SyncStalled"]
    assert bool(stalled) is stalled_at_once
    if not stalled_at_once:  # still no progress after a stall window that was watched
        h.run(stall + 10)
        assert any(e.reason.value == "SyncStalled" for p in h.plans for e in p.events)


def test_a_sync_started_by_hand_is_adopted_not_requested_again() -> None:
    """Issue 14, item 1: a sync a human started made steady progress while the
    operator sent its own requests (409, the same sync) and counted them as failures."""
    h = _h(remediation__breakerReset__enabled=False, remediation__throttle__enabled=False)
    h.cluster.lags["node2"] = 25.0
    h.cluster.sync_running["node2"] = True  # a human started it
    progress = 0.001
    for _ in range(60):  # ten minutes of steady progress
        h.cluster.sync_progress["node2"] = progress
        progress = min(0.998, progress + 0.016)
        h.poll()
    assert [k for k in h.kinds() if k.startswith("ForceSync")] == []
    assert "SyncAdopted" in h.events()
    assert not {"SyncFailed", "SyncAttemptsExhausted", "SyncStalled"} & set(h.events())
    assert not [k for k in h.kinds() if k.startswith("MarkRebuild")]
