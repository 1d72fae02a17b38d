"""Table-driven rules of decide(), evidence_needed(), conditions, memory and status."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from _domain_fixtures import T0, FakeCluster, Harness, make_spec

from controller.domain import (
    UNKNOWN,
    ActionKind,
    ActionOutcome,
    Condition,
    ConditionType,
    EventReason,
    Memory,
    MemoryFormatError,
    Observation,
    Reason,
    ReplicaMemory,
    ReplicaObservation,
    Severity,
    SourceStatus,
    Step,
    build_status,
    decide,
    evidence_needed,
    merge_conditions,
    parse_approvals,
    record_outcome,
)
from controller.domain.conditions import _Meaning
from controller.domain.memory import Intent
from controller.domain.observation import NOT_READ
from controller.domain.policy import quantize_lag


def _h(n: int = 2, lag: float = 0.3, **kw: Any) -> Harness:
    lags: dict[str, float | None] = {f"node{k}": lag for k in range(2, n + 2)}
    return Harness(make_spec(n, **kw), FakeCluster(lags=lags))


# ------------------------------------------------------------------ detection windows

DETECTION = [
    ("lag above warning for less than its window is not a warning", 6.0, 290, (False, "NoLag")),
    ("lag above warning for its window is a warning", 6.0, 310, (True, "LagWarning")),
    ("lag above critical for less than its window is only a warning once the warning window passed",
     12.0, 170, (False, "NoLag")),
    ("lag above critical for its window is critical", 12.0, 190, (True, "LagCritical")),
    ("lag above the escalation threshold is critical at once", 61.0, 0, (True, "LagCritical")),
]


@pytest.mark.parametrize(("lag", "seconds", "degraded"), [c[1:] for c in DETECTION],
                         ids=[c[0] for c in DETECTION])
def test_detection_windows(lag: float, seconds: float, degraded: tuple[bool, str]) -> None:
    h = _h()
    h.cluster.lags["node2"] = lag
    h.run(seconds + 10)
    assert h.cond("Degraded") == degraded


def test_recovery_needs_the_recovery_window_below_the_recovery_threshold() -> None:
    h = _h()
    h.cluster.lags["node2"] = 6.0
    h.run(310)
    assert h.cond("Degraded") == (True, "LagWarning")
    h.cluster.lags["node2"] = 4.0  # below warning, above recovery: hysteresis holds
    h.run(300)
    assert h.cond("Degraded") == (True, "LagWarning")
    h.cluster.lags["node2"] = 2.0
    h.run(110)
    assert h.cond("Degraded") == (True, "LagWarning")
    h.run(20)
    assert h.cond("Degraded") == (False, "NoLag")
    assert h.kinds() == []  # warnings never act


# ------------------------------------------------------------------ missing / stale data

STALE = [
    ("a failed primary scrape", {"primary": SourceStatus.failed("connection refused")},
     "PrimaryScrapeFailed"),
    ("a replica missing from the lag series", {"lags": {"node2": None, "node3": 30.0}},
     "ReplicaLagMissing"),
]


@pytest.mark.parametrize(("change", "reason"), [c[1:] for c in STALE], ids=[c[0] for c in STALE])
def test_no_action_on_missing_or_stale_data(change: dict[str, Any], reason: str) -> None:
    h = _h()
    h.cluster.lags["node2"] = 30.0
    h.cluster.tripped = {"agent-node2"}
    h.run(170)
    for k, v in change.items():
        setattr(h.cluster, k, v)
    h.run(300)
    assert h.kinds() == []
    assert h.cond("MetricsAvailable") == (False, reason)
    assert h.cond("RemediationAllowed") == (False, "MetricsUnavailable")
    assert h.cond("Ready") == (False, "MetricsUnavailable")
    assert h.events().count("MetricsUnavailable") == 1


def test_an_old_observation_is_stale() -> None:
    spec = make_spec(1)
    obs = FakeCluster(lags={"node2": 30.0}).observe(T0)
    plan = decide(obs, spec, Memory.empty(), T0 + 31, operator_budget_remaining=10)
    assert not plan.metrics_available
    assert plan.conditions[1].reason is Reason.OBSERVATION_STALE


# ------------------------------------------------------------------ safety gates

def test_cluster_budget_holds_actions_and_says_why() -> None:
    h = _h(remediation__maxActionsPerHour=1)
    h.cluster.lags["node2"] = 30.0
    h.cluster.tripped = {"agent-node2"}
    h.run(400)
    assert h.kinds() == ["ResetBreaker:node2"]
    assert h.cond("RemediationAllowed") == (False, "ClusterBudgetExhausted")
    assert h.events().count("ActionSkipped") == 1


def test_operator_budget_holds_actions() -> None:
    h = _h()
    h.budget = 0
    h.cluster.lags["node2"] = 30.0
    h.run(400)
    assert h.kinds() == []
    assert h.cond("RemediationAllowed") == (False, "OperatorBudgetExhausted")


def test_operator_budget_holds_cluster_wide_throttle_once() -> None:
    h = _h(3)
    h.budget = 0
    for r in ("node2", "node3"):
        h.cluster.lags[r] = 30.0
    h.run(400)
    assert h.kinds() == []
    assert h.events().count("ActionSkipped") == 1


def test_cooldown_holds_a_new_ladder_run_on_the_same_replica() -> None:
    h = _h(remediation__throttle__enabled=False, remediation__cooldownSeconds=3600)
    h.cluster.lags["node2"] = 30.0
    h.cluster.tripped = {"agent-node2"}
    h.run(200)
    h.cluster.lags["node2"] = 0.5
    h.run(200)
    assert h.kinds() == ["ResetBreaker:node2"]
    h.cluster.lags["node2"] = 30.0
    h.cluster.tripped = {"agent-node2"}
    h.run(400)
    assert h.kinds() == ["ResetBreaker:node2"]
    assert "CooldownActive" in h.events()


@pytest.mark.parametrize(("min_in_sync", "marked"), [(1, True), (2, False)],
                         ids=["rebuild allowed while another replica is in sync",
                              "never the last in-sync replica"])
def test_min_in_sync_replicas(min_in_sync: int, marked: bool) -> None:
    h = _h(2, remediation__throttle__enabled=False, remediation__rebuild__policy="Automatic",
           remediation__minInSyncReplicas=min_in_sync)
    h.cluster.lags["node2"] = 30.0
    h.run(800)
    assert ("MarkRebuild:node2" in h.kinds()) is marked


def _awaiting_approval(**kw: Any) -> tuple[Harness, str]:
    """node2's forced syncs all stalled (the fake's sync never moves) and, under
    Manual, its rebuild waits for approval: the harness and the request to approve."""
    h = _h(2, remediation__throttle__enabled=False, remediation__rebuild__policy="Manual",
           remediation__minInSyncReplicas=1, **kw)
    h.cluster.lags["node2"] = 30.0
    while "RebuildNeedsApproval" not in h.events():
        h.poll()
        assert h.now - T0 < 3000, "the rebuild never asked for approval"
    asked = next(e.message for p in h.plans for e in p.events
                 if e.reason.value == "RebuildNeedsApproval")
    return h, asked.rsplit("=", 1)[1].split(";")[0].strip()


@pytest.mark.parametrize(("moves", "marked"), [
    ([0.0] * 6, True),  # the ladder's own stalled sync, still shown running: no reason to wait
    ([0.05, 0.1, 0.2, 0.4, 0.6, 0.8], False),  # a sync a human started keeps moving
    ([0.05, 0.1] + [0.1] * 8, True),  # then it stalls for stallTimeoutSeconds: rebuild
], ids=["own stalled sync", "progressing sync holds the rebuild", "then stalls"])
def test_no_rebuild_mark_while_a_sync_progresses(moves: list[float], marked: bool) -> None:
    h, request = _awaiting_approval(remediation__merkleSync__stallTimeoutSeconds=60)
    h.cluster.sync_running["node2"] = True
    h.cluster.approved = frozenset({request})
    for progress in moves:
        h.cluster.sync_progress["node2"] = progress
        h.poll(advance=10.0)
    assert ("MarkRebuild:node2" in h.kinds()) is marked
    if not marked:
        assert any("a sync of it is running and progressing" in e.message
                   for p in h.plans for e in p.events)


def test_max_concurrent_rebuilds_is_never_exceeded() -> None:
    h = _h(4, remediation__throttle__enabled=False, remediation__rebuild__policy="Automatic",
           detection__stormReplicas=3)
    h.cluster.lags["node2"] = 30.0
    h.run(100)
    h.cluster.lags["node3"] = 30.0
    h.run(1000)
    assert [k for k in h.kinds() if k.startswith("MarkRebuild")] == ["MarkRebuild:node2"]
    assert any("maxConcurrentRebuilds 1" in e.message for p in h.plans for e in p.events)


DISABLED = [
    ("a disabled breaker step is skipped", "remediation__breakerReset__enabled",
     ["SetRateLimit:1500"]),
    ("a disabled throttle step is skipped", "remediation__throttle__enabled",
     ["ResetBreaker:node2", "ForceSync:node2"]),
]


@pytest.mark.parametrize(("flag", "first"), [c[1:] for c in DISABLED], ids=[c[0] for c in DISABLED])
def test_disabled_steps(flag: str, first: list[str]) -> None:
    h = _h(3, **{flag: False})
    h.cluster.lags["node2"] = 30.0
    h.cluster.tripped = {"agent-node2"}
    h.run(250)
    assert h.kinds()[: len(first)] == first
    assert "StepDisabled" in h.events()


def test_every_step_disabled_ends_the_ladder_and_escalates() -> None:
    h = _h(3, remediation__throttle__enabled=False, remediation__breakerReset__enabled=False,
           remediation__merkleSync__enabled=False, remediation__rebuild__enabled=False)
    h.cluster.lags["node2"] = 30.0
    h.run(250)
    assert h.kinds() == []
    assert h.cond("Escalated") == (True, "LadderExhausted")
    assert h.cond("Remediating") == (True, "LadderExhausted")


def test_breaker_list_unreadable_skips_the_breaker_step() -> None:
    h = _h()
    h.cluster.breakers_readable = False
    h.cluster.lags["node2"] = 30.0
    h.run(200)
    assert h.kinds() == ["SetRateLimit:1500"]
    assert "BreakerStateUnknown" in h.events()


def test_a_breaker_reset_that_does_not_help_moves_on() -> None:
    h = _h()
    h.cluster.lags["node2"] = 30.0
    h.cluster.tripped = {"agent-node2"}
    h.run(200)
    h.run(70)  # reset un-trips it but lag does not drain
    assert h.kinds() == ["ResetBreaker:node2", "SetRateLimit:1500"]
    assert "StepTimedOut" in h.events()


def test_backpressure_throttles_straight_to_the_floor() -> None:
    h = _h(remediation__backpressure__enabled=True)
    h.cluster.lags["node2"] = 40.0
    h.run(200)
    assert h.kinds() == ["SetRateLimit:100"]


def test_escalation_is_promoted_when_unresolved() -> None:
    h = _h(escalation__promoteAfterSeconds=300, remediation__mode="Observe")
    h.cluster.lags["node2"] = 70.0
    h.run(290)
    assert h.plans[-1].escalation.level == 1
    h.run(20)
    assert h.plans[-1].escalation.level == 2
    assert h.cond("Escalated") == (True, "EscalationUnresolved")


def test_a_failed_rate_limit_call_is_reissued() -> None:
    h = _h()
    h.cluster.lags["node2"] = 30.0
    h.fail_kinds = {ActionKind.SET_RATE_LIMIT}
    h.run(190)
    h.fail_kinds = set()
    h.run(10)
    assert h.kinds() == ["SetRateLimit:1500", "SetRateLimit:1500"]


def test_a_failed_rebuild_mark_is_retried() -> None:
    h = _h(3, remediation__throttle__enabled=False, remediation__rebuild__policy="Automatic")
    h.fail_kinds = {ActionKind.MARK_REBUILD}
    h.cluster.lags["node2"] = 30.0
    h.run(600)
    h.fail_kinds = set()
    h.run(60)  # the failures backed the mark off by up to 40 s
    marks = [k for k in h.kinds() if k.startswith("MarkRebuild")]
    assert len(marks) >= 2
    assert h.memory.replica("node2").rebuild_marked  # type: ignore[union-attr]


def test_sync_errors_fail_an_attempt() -> None:
    h = _h(3, remediation__throttle__enabled=False)
    h.cluster.lags["node2"] = 30.0
    h.run(190)
    h.cluster.sync_running["node2"] = False
    h.cluster.sync_errors["node2"] = 2.0
    h.run(10)
    assert h.kinds() == ["ForceSync:node2", "ForceSync:node2"]
    assert "SyncFailed" in h.events()


def test_a_completed_sync_with_lag_draining_is_given_time() -> None:
    h = _h(3, remediation__throttle__enabled=False)
    h.cluster.lags["node2"] = 30.0
    h.run(190)
    h.cluster.sync_progress["node2"] = 1.0
    h.cluster.sync_running["node2"] = False
    h.cluster.lags["node2"] = 20.0
    h.run(590)
    h.cluster.lags["node2"] = 15.0
    h.run(200)
    assert h.kinds() == ["ForceSync:node2"]
    assert "StepWorking" in h.events()


# ------------------------------------------------------------------ replay / evidence / requeue

def test_replaying_the_same_observation_never_repeats_an_action() -> None:
    spec = make_spec(2, remediation__rebuild__policy="Automatic")
    cluster = FakeCluster(lags={"node2": 30.0, "node3": 0.2}, tripped={"agent-node2"})
    mem = Memory.empty()
    now = T0
    while now < T0 + 1500:
        obs = cluster.observe(now)
        plan = decide(obs, spec, mem, now, operator_budget_remaining=100)
        again = decide(obs, spec, plan.memory, now, operator_budget_remaining=100)
        assert again.actions == ()
        mem = plan.memory
        now += 10


def _node2(**fields: Any) -> Memory:
    return Memory(replicas=(ReplicaMemory("node2", **fields),))


EVIDENCE = [
    ("a healthy cluster needs nothing beyond the primary scrape",
     0.3, Memory.empty(), False, frozenset()),
    ("lag above warning fetches the replica's own metrics",
     6.0, Memory.empty(), False, frozenset({"node2"})),
    ("a warning episode with lag near critical reads no admin state",
     9.5, _node2(severity=Severity.WARNING), False, frozenset({"node2"})),
    ("a critical crossing inside its forSeconds window reads no admin state yet",
     12.0, _node2(severity=Severity.WARNING, above_critical_since=T0 - 10), False,
     frozenset({"node2"})),
    ("a crossing whose window ends this poll reads the tripped breakers",
     12.0, _node2(severity=Severity.WARNING, above_critical_since=T0 - 180), True,
     frozenset({"node2"})),
    ("lag over the escalation threshold reads them at once",
     70.0, Memory.empty(), True, frozenset({"node2"})),
    ("a critical replica at the start of its ladder reads them",
     8.0, _node2(severity=Severity.CRITICAL), True, frozenset({"node2"})),
    ("a reset waiting out its timeout reads nothing (confirmed from the gauge)",
     30.0, _node2(severity=Severity.CRITICAL, step=Step.RESET_BREAKER, step_attempts=1,
                  step_started_at=T0 - 10, step_baseline_lag=30.0), False, frozenset({"node2"})),
    ("a reset judged at its timeout, lag not draining, reads them to choose again",
     30.0, _node2(severity=Severity.CRITICAL, step=Step.RESET_BREAKER, step_attempts=1,
                  step_started_at=T0 - 61, step_baseline_lag=30.0), True, frozenset({"node2"})),
    ("a reset judged at its timeout, lag draining, is given time without a read",
     20.0, _node2(severity=Severity.CRITICAL, step=Step.RESET_BREAKER, step_attempts=1,
                  step_started_at=T0 - 61, step_baseline_lag=30.0), False, frozenset({"node2"})),
    ("a replica in its cooldown reads nothing",
     30.0, _node2(severity=Severity.CRITICAL, cooldown_until=T0 + 30), False,
     frozenset({"node2"})),
    ("past the breaker step they are not read again",
     12.0, _node2(severity=Severity.CRITICAL, step=Step.THROTTLE), False,
     frozenset({"node2"})),
]


@pytest.mark.parametrize(("lag", "memory", "breakers", "replicas"),
                         [c[1:] for c in EVIDENCE], ids=[c[0] for c in EVIDENCE])
def test_admin_state_is_read_only_when_a_decision_needs_it(
        lag: float, memory: Memory, breakers: bool, replicas: frozenset[str]) -> None:
    """Issue 14, items 4 and 6: the tripped-breakers list is read only in a poll whose
    breaker step chooses what to reset (`decide` asks for it), never on every poll of a
    warning or while a reset waits out its timeout; replicas' own /metrics while they
    lag (`evidence_needed`)."""
    spec = make_spec(2)
    obs = Observation(at=T0, primary=SourceStatus.ok(), tripped_agents=NOT_READ,
                      replicas=(ReplicaObservation("node2", lag, breaker_tripped=True),
                                ReplicaObservation("node3", 0.1, breaker_tripped=False)))
    plan = decide(obs, spec, memory, T0, operator_budget_remaining=100)
    assert plan.wants_tripped_breakers is breakers
    ev = evidence_needed(spec, memory, obs)
    assert ev.replica_metrics == replicas
    assert ev.nothing_extra is not replicas


def test_nothing_is_read_while_remediation_is_paused_or_observing() -> None:
    for spec in (make_spec(2, remediation__paused=True), make_spec(2, remediation__mode="Observe")):
        obs = Observation(at=T0, primary=SourceStatus.ok(), tripped_agents=NOT_READ,
                          replicas=(ReplicaObservation("node2", 70.0),
                                    ReplicaObservation("node3", 0.1)))
        assert not decide(obs, spec, Memory.empty(), T0,
                          operator_budget_remaining=100).wants_tripped_breakers


@pytest.mark.parametrize("scenario", ["breaker", "retrip", "storm", "unreadable"])
def test_a_decision_that_does_not_ask_for_the_list_does_not_depend_on_it(
        scenario: str) -> None:
    """The other half of reading only when needed: in every poll of these incidents
    where `decide` does not ask for the tripped-breakers list, deciding with the list
    gives the same plan as without it, so no decision silently relies on it."""
    h = _h(3)
    polls = 0
    for i in range(120):
        lags = {"node2": 0.2, "node3": 0.3, "node4": 0.2}
        if scenario in ("breaker", "retrip", "unreadable") and 5 <= i < 60:
            lags["node2"] = 5.0 + 3 * (i - 5)
        if scenario == "storm" and 5 <= i < 60:
            lags = {"node2": 40.0, "node3": 45.0, "node4": 0.2}
        h.cluster.lags = dict(lags)
        h.cluster.tripped = {"agent-node2"} if (
            scenario != "storm" and 5 <= i < 60 and (scenario == "retrip" or i < 30)) else set()
        listed = h.cluster.observe(h.now)
        blank = replace(listed, tripped_agents=NOT_READ)
        if scenario == "unreadable":
            listed = replace(listed, tripped_agents=None)
        without = decide(blank, h.spec, h.memory, h.now, operator_budget_remaining=100)
        if not without.wants_tripped_breakers:
            polls += 1
            assert decide(listed, h.spec, h.memory, h.now,
                          operator_budget_remaining=100) == without, f"poll {i}"
        h.poll()
    assert polls > 100


def test_requeue_comes_early_for_a_window_deadline() -> None:
    h = _h()
    h.cluster.lags["node2"] = 6.0
    h.poll(advance=297)
    plan = h.poll()
    assert plan.requeue_after == pytest.approx(3.0)
    assert _h().poll().requeue_after == 10.0


# ------------------------------------------------------------------ conditions / memory / status

def test_every_condition_type_and_reason_has_a_one_line_meaning() -> None:
    for enum_cls in _Meaning.__subclasses__():
        for member in enum_cls:  # type: ignore[var-annotated]
            assert member.meaning and "\n" not in member.meaning, member


def test_merge_conditions_moves_transition_time_only_on_a_flip() -> None:
    c1 = [Condition(ConditionType.READY, True, Reason.ALL_REPLICAS_IN_SYNC, "2 of 2")]
    first = merge_conditions([], c1, T0, generation=1)
    assert first[0]["lastTransitionTime"] == "2023-11-14T22:13:20Z"
    assert first[0]["observedGeneration"] == 1
    same = merge_conditions(first, c1, T0 + 100)
    assert same == first
    msg = [Condition(ConditionType.READY, True, Reason.ALL_REPLICAS_IN_SYNC, "3 of 3")]
    assert merge_conditions(first, msg, T0 + 100)[0]["lastTransitionTime"] == \
        first[0]["lastTransitionTime"]
    flip = [Condition(ConditionType.READY, False, Reason.REPLICAS_LAGGING, "1 of 2")]
    flipped = merge_conditions(first, flip, T0 + 100, generation=2)
    assert flipped[0]["lastTransitionTime"] == "2023-11-14T22:15:00Z"
    assert flipped[0]["observedGeneration"] == 2
    kept = merge_conditions([*first, {"type": "Other", "status": "True"}, "junk"], [], T0)
    assert [c["type"] for c in kept] == ["Ready", "Other"]  # type: ignore[index]


def test_memory_json_rejects_unknown_versions_and_shapes() -> None:
    for bad in ("x", {"version": 99}, {"version": 1, "replicas": "x"},
                {"version": 1, "replicas": [{"replicaId": "a", "severity": "Bogus"}]},
                {"version": 1, "actionTimes": ["x"]}, {"version": 1, "throttle": 3}):
        with pytest.raises(MemoryFormatError):
            Memory.from_json(bad)


def test_record_outcome_for_an_unknown_key_changes_nothing() -> None:
    m = Memory.empty()
    assert record_outcome(m, "nope", ActionOutcome(True), T0) is m


@pytest.mark.parametrize(("outcome", "counted"), [
    (ActionOutcome(True), 1),
    (ActionOutcome(False, "500"), 1),
    (ActionOutcome(True, attempts=2), 2),
    (ActionOutcome(False, "401 twice", may_have_applied=False, attempts=2), 2),
], ids=["one request", "one failed request", "sent again with a rotated token",
        "refused twice"])
def test_every_request_that_reached_stemedb_counts_against_max_actions_per_hour(
    outcome: ActionOutcome, counted: int
) -> None:
    """The proposal counts one action; each further request the adapter made for it
    (a retry with a rotated token) counts too (issue 14, item 4)."""
    intent = Intent("SetRateLimit-cluster-1", ActionKind.SET_RATE_LIMIT, None, None, 500,
                    T0, T0 + 30)
    m = replace(Memory.empty(), pending=(intent,), action_times=(T0,))
    after = record_outcome(m, intent.key, outcome, T0 + 1)
    assert len(after.action_times) == counted
    assert after.pending == ()


def test_healthy_cluster_status_is_identical_poll_after_poll() -> None:
    h = _h()
    statuses = []
    for i in range(30):
        h.cluster.lags["node2"] = 0.2 + (i % 5) * 0.3
        plan = h.poll()
        statuses.append(build_status(h.spec, plan.memory, plan.conditions, 3))
    assert all(s == statuses[1] for s in statuses[1:])
    assert statuses[-1]["summary"] == "2 of 2 replicas in sync"
    assert statuses[-1]["currentStep"] == "None"


def test_status_during_an_episode_names_the_step_throttle_and_contact() -> None:
    h = _h(3, remediation__throttle__enabled=True)
    h.cluster.lags["node2"] = 70.0
    h.run(200)
    plan = h.plans[-1]
    st = build_status(h.spec, plan.memory, plan.conditions, 4)
    assert st["escalation"]["contact"] == "Cluster SRE"
    assert st["throttle"]["phase"] == "Throttling"
    assert st["throttle"]["rateToRestoreSource"] == "Unlimited"
    assert st["replicas"][0]["state"] == "Critical"
    assert st["laggingReplicas"] == 1
    assert st["currentStep"] == "ForceSync(node2)"
    assert "escalated to level 1: call Cluster SRE" in st["summary"]
    assert len(st["history"]) <= 20


def test_quantized_lag_moves_only_by_a_meaningful_step() -> None:
    assert quantize_lag(None, 0.33, False) == 0.3
    assert quantize_lag(0.3, 1.9, False) == 0.3
    assert quantize_lag(0.3, 2.4, False) == 2.4
    assert quantize_lag(40.0, 45.0, False) == 40.0
    assert quantize_lag(40.0, 51.0, False) == 51.0
    assert quantize_lag(0.3, 1.0, True) == 1.0


def test_approval_annotation_lists_replicas() -> None:
    assert parse_approvals(None) == frozenset()
    assert parse_approvals({"stemedb.io/approve-rebuild": "node2, node3,"}) == {"node2", "node3"}


def test_unknown_rate_limit_is_not_unlimited() -> None:
    assert UNKNOWN is not None
    assert repr(UNKNOWN) == "UNKNOWN"
    obs = replace(FakeCluster(lags={"node2": 0.1}).observe(T0), rate_limit=UNKNOWN)
    assert obs.rate_limit is UNKNOWN
    assert obs.replica("node9") is None
    assert EventReason.WOULD_ACT.meaning


def test_the_policy_doc_lists_every_reason_code() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "remediation-policy.md").read_text()
    for enum_cls in _Meaning.__subclasses__():
        for member in enum_cls:  # type: ignore[var-annotated]
            assert f"`{member.value}`" in doc, member


# ------------------------------------------------------------ incomplete primary scrape
INCOMPLETE = [
    ("the breaker series of the critical replica", {"node2": ("stemedb_circuit_breaker_tripped",)},
     "stemedb_circuit_breaker_tripped for node2"),
    ("the sync series of a healthy replica", {"node3": ("stemedb_merkle_sync_running",)},
     "stemedb_merkle_sync_running for node3"),
    ("everything after a cut, for every replica",
     {r: ("stemedb_circuit_breaker_tripped", "stemedb_merkle_sync_corruption_detected_total",
          "stemedb_merkle_sync_errors_total", "stemedb_replica_restarts_total")
      for r in ("node2", "node3")},
     "stemedb_circuit_breaker_tripped for node2, node3; "
     "stemedb_merkle_sync_corruption_detected_total for node2, node3; "
     "stemedb_merkle_sync_errors_total for node2, node3; and 1 more series"),
]


@pytest.mark.parametrize(("missing", "named"), [c[1:] for c in INCOMPLETE],
                         ids=[c[0] for c in INCOMPLETE])
def test_a_scrape_without_a_series_the_decisions_need_is_never_acted_on(
    missing: dict[str, tuple[str, ...]], named: str
) -> None:
    """Issue 14, item 9's class: a body cut at a line boundary parses; the replicas'
    series after the cut are missing, and the policy acted on the rest. Now the poll is
    blind: no action, MetricsAvailable False naming what was missing; the next
    complete scrape acts."""
    h = _h(2)
    h.cluster.lags["node2"] = 20.0
    h.cluster.tripped = {"agent-node2"}
    h.run(170)  # above critical for just under its window
    h.cluster.missing = missing
    h.run(60)
    assert h.log == []
    assert h.cond("MetricsAvailable") == (False, "PrimaryMetricsIncomplete")
    message = next(c.message for c in h.plans[-1].conditions
                   if c.type is ConditionType.METRICS_AVAILABLE)
    assert named in message and "no action" in message
    h.cluster.missing = {}
    h.run(10)
    assert h.kinds() == ["ResetBreaker:node2"]
