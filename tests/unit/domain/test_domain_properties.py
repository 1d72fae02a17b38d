"""Hypothesis properties of decide() over random timelines."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from _domain_fixtures import T0, FakeCluster, make_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.domain import (
    ActionKind,
    ActionOutcome,
    HistoryEntry,
    Memory,
    MemoryFormatError,
    Observation,
    SourceStatus,
    decide,
    record_outcome,
)
from controller.domain.memory import history_from_json, history_to_json
from controller.domain.policy import is_in_sync

REPLICAS = ["node2", "node3", "node4"]
lag = st.one_of(st.floats(0, 90, allow_nan=False), st.none()).filter(lambda x: True)
poll = st.fixed_dictionaries({
    "lags": st.fixed_dictionaries({r: st.one_of(st.floats(0, 90), st.just(0.2), st.none())
                                   for r in REPLICAS}),
    "tripped": st.sets(st.sampled_from([f"agent-{r}" for r in REPLICAS])),
    "primary_ok": st.booleans(),
    "advance": st.sampled_from([10.0, 10.0, 60.0, 200.0]),
    "ok": st.booleans(),
    "progress": st.one_of(st.none(), st.floats(0, 1)),
    "restarts": st.integers(0, 5),
    "corruption": st.sampled_from([0.0, 0.0, 0.0, 1.0]),
    "approved": st.booleans(),
})
specs = st.fixed_dictionaries({
    "remediation__mode": st.sampled_from(["Auto", "Auto", "DryRun", "Observe"]),
    "remediation__paused": st.sampled_from([False, False, True]),
    "remediation__rebuild__policy": st.sampled_from(["Manual", "Automatic"]),
    "remediation__maxConcurrentRebuilds": st.integers(0, 2),
    "remediation__minInSyncReplicas": st.integers(0, 2),
    "remediation__backpressure__enabled": st.booleans(),
    "detection__stormReplicas": st.integers(2, 4),
})

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _run(spec_kw: dict[str, Any], polls: list[dict[str, Any]], check: Any) -> None:
    spec = make_spec(3, **spec_kw)
    mem = Memory.empty()
    now = T0
    rate: int | None = 2000
    for p in polls:
        cluster = FakeCluster(lags=dict(p["lags"]), tripped=set(p["tripped"]), rate_limit=rate,
                              primary=SourceStatus.ok() if p["primary_ok"] else
                              SourceStatus.failed("timeout"),
                              sync_progress={r: p["progress"] for r in REPLICAS
                                             if p["progress"] is not None},
                              restarts={r: float(p["restarts"]) for r in REPLICAS},
                              corruption={"node3": p["corruption"]},
                              approved=frozenset(REPLICAS) if p["approved"] else frozenset())
        obs = cluster.observe(now)
        plan = decide(obs, spec, mem, now, operator_budget_remaining=50)
        check(spec, obs, mem, plan, now)
        mem = plan.memory
        for a in plan.actions:
            if a.kind is ActionKind.SET_RATE_LIMIT and p["ok"]:
                rate = a.rate
            mem = record_outcome(mem, a.idempotency_key, ActionOutcome(p["ok"]), now)
        now += p["advance"]


@SETTINGS
@given(specs, st.lists(poll, min_size=1, max_size=60))
def test_never_below_the_floor(spec_kw: dict[str, Any], polls: list[dict[str, Any]]) -> None:
    def check(spec, obs, mem, plan, now):  # type: ignore[no-untyped-def]
        for a in plan.actions:
            if a.kind is ActionKind.SET_RATE_LIMIT and a.rate is not None:
                assert a.rate >= spec.remediation.throttle.floor_assertions_per_sec
    _run(spec_kw, polls, check)


@SETTINGS
@given(specs, st.lists(poll, min_size=1, max_size=60))
def test_never_more_than_max_concurrent_rebuilds_and_never_the_last_in_sync(
    spec_kw: dict[str, Any], polls: list[dict[str, Any]]
) -> None:
    def check(spec, obs, mem, plan, now):  # type: ignore[no-untyped-def]
        marked = sum(1 for r in plan.memory.replicas if r.rebuild_marked)
        assert marked <= spec.remediation.max_concurrent_rebuilds
        for a in plan.actions:
            assert a.replica_id != spec.primary.id
            if a.kind is ActionKind.MARK_REBUILD:
                others = sum(
                    1 for r in plan.memory.replicas
                    if r.replica_id != a.replica_id
                    and is_in_sync(spec, r, obs.replica(r.replica_id).lag_seconds))
                assert others >= spec.remediation.min_in_sync_replicas
    _run(spec_kw, polls, check)


@SETTINGS
@given(specs, st.lists(poll, min_size=1, max_size=60))
def test_no_action_on_stale_or_missing_data(
    spec_kw: dict[str, Any], polls: list[dict[str, Any]]
) -> None:
    def check(spec, obs: Observation, mem, plan, now):  # type: ignore[no-untyped-def]
        missing = not obs.primary.is_ok or any(r.lag_seconds is None for r in obs.replicas)
        if missing:
            assert plan.actions == ()
            assert not plan.metrics_available
    _run(spec_kw, polls, check)


@SETTINGS
@given(specs, st.lists(poll, min_size=1, max_size=60))
def test_replay_never_repeats_and_equal_inputs_give_equal_plans(
    spec_kw: dict[str, Any], polls: list[dict[str, Any]]
) -> None:
    def check(spec, obs, mem, plan, now):  # type: ignore[no-untyped-def]
        assert decide(obs, spec, mem, now, operator_budget_remaining=50) == plan
        again = decide(obs, spec, plan.memory, now, operator_budget_remaining=50)
        assert again.actions == ()
    _run(spec_kw, polls, check)


@SETTINGS
@given(specs, st.lists(poll, min_size=1, max_size=40))
def test_memory_round_trips_through_json(
    spec_kw: dict[str, Any], polls: list[dict[str, Any]]
) -> None:
    def check(spec, obs, mem, plan, now):  # type: ignore[no-untyped-def]
        # status.memory holds all but the history; status.history holds that (whole
        # seconds: the read-back history is compared at that precision).
        text = json.dumps(plan.memory.to_json())
        history = history_from_json(json.loads(json.dumps(history_to_json(
            plan.memory.history))))
        expected = replace(plan.memory, history=tuple(
            replace(h, at=float(int(h.at))) for h in plan.memory.history))
        assert replace(Memory.from_json(json.loads(text)), history=history) == expected
        # What the API server stores after a JSON merge patch: nulls are deleted.
        stored = _without_nulls(json.loads(text))
        assert replace(Memory.from_json(stored), history=history) == expected
    _run(spec_kw, polls, check)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@SETTINGS
@given(specs, st.lists(poll, min_size=1, max_size=40))
def test_dry_run_observe_and_paused_never_act(
    spec_kw: dict[str, Any], polls: list[dict[str, Any]]
) -> None:
    def check(spec, obs, mem, plan, now):  # type: ignore[no-untyped-def]
        if spec.remediation.mode.value != "Auto" or spec.remediation.paused:
            assert plan.actions == ()
    _run(spec_kw, polls, check)


@pytest.mark.parametrize("stored, problem", [
    ("{not json", "memory is not JSON"),
    ('{"version": 99}', "unsupported memory version 99"),
    (42, "memory must be an object"),
], ids=["garbled text", "a future version", "a number"])
def test_unreadable_memory_is_a_format_error_not_a_crash(stored: Any, problem: str) -> None:
    with pytest.raises(MemoryFormatError, match=problem):
        Memory.from_text(stored)


def test_memory_text_is_compact_json_that_reads_back_and_accepts_the_object_form() -> None:
    mem = Memory(seq=3, blind_since=5.0).with_history(
        HistoryEntry(1.0, "Note", "node2", "LagWarning", "m", "Note"))
    text = mem.to_text()
    assert "\n" not in text and ": " not in text
    assert "history" not in text, "status.history holds it; the memory does not repeat it"
    bare = replace(mem, history=())
    assert Memory.from_text(text) == bare
    assert Memory.from_text(json.loads(text)) == bare


def _entry(n: int, reason: str = "ActionConfirmed", key: str | None = None) -> HistoryEntry:
    return HistoryEntry(float(n), "ResetBreaker", "node2", reason, f"entry {n}", "Ok", key)


def test_an_action_is_one_history_entry_with_its_outcome() -> None:
    pending = replace(_entry(1, "BreakerReset", "k1"), outcome="Pending")
    mem = Memory().with_history(_entry(0, "LagCritical"), pending)
    mem = mem.with_history(replace(_entry(2, "ActionConfirmed", "k1"), outcome="Ok"))
    assert [(h.reason, h.outcome) for h in mem.history] == [
        ("LagCritical", "Ok"), ("ActionConfirmed", "Ok")]


def test_a_long_incident_keeps_its_opening_entry() -> None:
    mem = Memory().with_history(_entry(0, "Recovered"), _entry(1, "LagWarning"))
    for n in range(2, 60):
        mem = mem.with_history(_entry(n))
    assert len(mem.history) == 20
    assert mem.history[0].reason == "LagWarning", "how the incident began"
    assert [h.at for h in mem.history[1:]] == [float(n) for n in range(41, 60)]


@pytest.mark.parametrize("stored", [
    None, "nope", [1, "x", {"time": "garbage"}, {"time": "2026-11-29T21:00:00Z"}],
], ids=["absent", "not a list", "entries that are not the operator's"])
def test_a_garbled_status_history_reads_back_as_what_can_be_kept(stored: Any) -> None:
    assert history_from_json(stored) == ()


def test_status_history_reads_back_to_the_same_entries_at_whole_seconds() -> None:
    entries = (_entry(1_700_000_000, "LagWarning"), _entry(1_700_000_005, "BreakerReset", "k"))
    assert history_from_json(json.loads(json.dumps(history_to_json(entries)))) == entries
