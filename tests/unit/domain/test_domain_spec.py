"""parse_spec: defaults, and every problem reported at once with its path and a sentence."""

from __future__ import annotations

from typing import Any

import pytest
from _domain_fixtures import set_path

from controller.domain import Mode, RebuildPolicy, SpecError, parse_spec
from controller.domain.spec import Spec, spec_to_raw
from controller.domain.spec_schema import Meta, numeric_fields

BASE: dict[str, Any] = {
    "primary": {"adminUrl": "http://p:18180"},
    "replicas": [{"id": "node2", "agentId": "agent-node2"}],
}


def _with(path: str, value: Any) -> dict[str, Any]:
    import copy

    raw = copy.deepcopy(BASE)
    set_path(raw, path.split("."), value)
    return raw


def test_minimal_spec_takes_the_runbook_defaults() -> None:
    spec = parse_spec(BASE)
    assert spec.detection.warning.lag_seconds == 5 and spec.detection.warning.for_seconds == 300
    assert spec.detection.critical.lag_seconds == 10 and spec.detection.critical.for_seconds == 180
    assert spec.detection.escalation_lag_seconds == 60
    assert spec.remediation.mode is Mode.AUTO
    assert spec.remediation.rebuild.policy is RebuildPolicy.MANUAL
    assert spec.primary.id == "node1"
    assert parse_spec(spec_to_raw(spec)) == spec


INVALID = [
    ("critical below warning is refused with both numbers",
     _with("detection.critical", {"lagSeconds": 3}),
     "spec.detection.critical.lagSeconds",
     "spec.detection.critical.lagSeconds (3) must be greater than "
     "spec.detection.warning.lagSeconds (5)"),
    ("escalation not above critical is refused",
     _with("detection.escalation", {"lagSeconds": 10}),
     "spec.detection.escalation.lagSeconds",
     "spec.detection.escalation.lagSeconds (10) must be greater than "
     "spec.detection.critical.lagSeconds (10)"),
    ("recovery threshold at or above warning is refused",
     _with("detection.recovery", {"lagSeconds": 5}),
     "spec.detection.recovery.lagSeconds",
     "spec.detection.recovery.lagSeconds (5) must be less than "
     "spec.detection.warning.lagSeconds (5)"),
    ("a non-decreasing ladder is refused",
     _with("remediation.throttle", {"ladder": [0.5, 0.75]}),
     "spec.remediation.throttle.ladder",
     "spec.remediation.throttle.ladder must be strictly decreasing (0.5 is followed by 0.75)"),
    ("a ladder fraction outside 0..1 is refused",
     _with("remediation.throttle", {"ladder": [1.5]}),
     "spec.remediation.throttle.ladder[0]",
     "spec.remediation.throttle.ladder[0] (1.5) must be between 0 and 1"),
    ("an empty ladder is refused",
     _with("remediation.throttle", {"ladder": []}),
     "spec.remediation.throttle.ladder",
     "spec.remediation.throttle.ladder must list at least one step"),
    ("a floor not below the ladder is refused",
     _with("remediation.throttle", {"floorAssertionsPerSec": 600}),
     "spec.remediation.throttle.floorAssertionsPerSec",
     "spec.remediation.throttle.floorAssertionsPerSec (600) must be below the ladder's last step "
     "(0.25 x spec.remediation.throttle.unlimitedBaselineAssertionsPerSec 2000 = 500)"),
    ("a decreasing restore ramp is refused",
     _with("remediation.throttle", {"restoreRamp": [0.75, 0.5]}),
     "spec.remediation.throttle.restoreRamp",
     "spec.remediation.throttle.restoreRamp must be strictly increasing"),
    ("duplicate replica ids are refused",
     _with("replicas", [{"id": "node2", "agentId": "a"}, {"id": "node2", "agentId": "b"}]),
     "spec.replicas[1].id", "spec.replicas[1].id (node2) repeats spec.replicas[0].id"),
    ("an empty replica id is refused",
     _with("replicas", [{"id": "", "agentId": "a"}]),
     "spec.replicas[0].id", "spec.replicas[0].id must not be empty"),
    ("the primary listed as a replica is refused",
     _with("replicas", [{"id": "node1", "agentId": "a"}]),
     "spec.replicas[0].id", "spec.replicas[0].id (node1) must not be the primary's id"),
    ("an empty replica list is refused",
     _with("replicas", []), "spec.replicas", "spec.replicas must list at least one replica"),
    ("a replica list that is not a list is refused",
     _with("replicas", "node2"), "spec.replicas", "spec.replicas must be a list"),
    ("a replica that is not an object is refused",
     _with("replicas", ["node2"]), "spec.replicas[0]", "spec.replicas[0] must be an object"),
    ("an unknown mode is refused",
     _with("remediation.mode", "Yolo"), "spec.remediation.mode",
     "spec.remediation.mode (Yolo) must be one of Auto, DryRun, Observe"),
    ("an unknown rebuild policy is refused",
     _with("remediation.rebuild", {"policy": "Sometimes"}), "spec.remediation.rebuild.policy",
     "spec.remediation.rebuild.policy (Sometimes) must be one of Manual, Automatic"),
    ("a zero poll interval is refused",
     _with("detection.pollIntervalSeconds", 0), "spec.detection.pollIntervalSeconds",
     "spec.detection.pollIntervalSeconds (0) must be at least 1"),
    ("a negative window is refused",
     _with("detection.warning", {"forSeconds": -1}), "spec.detection.warning.forSeconds",
     "spec.detection.warning.forSeconds (-1) must be at least 0"),
    ("a text threshold is refused",
     _with("detection.warning", {"lagSeconds": "five"}), "spec.detection.warning.lagSeconds",
     "spec.detection.warning.lagSeconds must be a number, not 'five'"),
    ("an infinite threshold is refused",
     _with("detection.warning", {"lagSeconds": float("inf")}),
     "spec.detection.warning.lagSeconds",
     "spec.detection.warning.lagSeconds must be a finite number"),
    ("a fractional attempt limit is refused",
     _with("remediation.merkleSync", {"maxAttempts": 1.5}),
     "spec.remediation.merkleSync.maxAttempts",
     "spec.remediation.merkleSync.maxAttempts must be a whole number, not 1.5"),
    ("a zero attempt limit is refused",
     _with("remediation.merkleSync", {"maxAttempts": 0}), "spec.remediation.merkleSync.maxAttempts",
     "spec.remediation.merkleSync.maxAttempts (0) must be at least 1"),
    ("a stall timeout longer than the sync timeout is refused",
     _with("remediation.merkleSync", {"stallTimeoutSeconds": 900}),
     "spec.remediation.merkleSync.stallTimeoutSeconds",
     "spec.remediation.merkleSync.stallTimeoutSeconds (900) must not exceed "
     "spec.remediation.merkleSync.timeoutSeconds (600)"),
    ("a non-boolean paused is refused",
     _with("remediation.paused", "yes"), "spec.remediation.paused",
     "spec.remediation.paused must be true or false, not 'yes'"),
    ("a drain fraction of 1 is refused",
     _with("remediation.drainFraction", 1), "spec.remediation.drainFraction",
     "spec.remediation.drainFraction (1) must be less than 1"),
    ("a detection block that is not an object is refused",
     _with("detection", 5), "spec.detection",
     "spec.detection must be an object"),
    ("a non-string admin URL is refused",
     _with("primary.adminUrl", 5), "spec.primary.adminUrl",
     "spec.primary.adminUrl must be a string, not 5"),
    ("a ladder that is not a list is refused",
     _with("remediation.throttle", {"ladder": 0.5}), "spec.remediation.throttle.ladder",
     "spec.remediation.throttle.ladder must be a list of fractions"),
    ("a text ladder step is refused",
     _with("remediation.throttle", {"ladder": ["half"]}), "spec.remediation.throttle.ladder[0]",
     "spec.remediation.throttle.ladder[0] must be a number, not 'half'"),
    ("a secret reference without a key is refused",
     _with("auth", {"tokenSecretRef": {"name": "tok"}}), "spec.auth.tokenSecretRef.key",
     "spec.auth.tokenSecretRef.key is required"),
]


@pytest.mark.parametrize(("raw", "path", "message"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_spec(raw: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert (path, message) in [(p.path, p.message) for p in err.value.problems]


def test_every_problem_is_reported_at_once() -> None:
    raw = _with("detection.critical", {"lagSeconds": 3})
    raw["remediation"] = {"mode": "Nope", "throttle": {"ladder": [0.5, 0.6]}}
    raw["replicas"].append({"id": "node2", "agentId": "x"})
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    paths = [p.path for p in err.value.problems]
    assert paths == ["spec.replicas[1].id", "spec.detection.critical.lagSeconds",
                     "spec.remediation.mode", "spec.remediation.throttle.ladder"]
    assert "must be greater than" in str(err.value)
    assert str(err.value.problems[0]).startswith("spec.replicas[1].id: ")


def test_missing_primary_and_replicas_are_both_reported() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({})
    assert [p.path for p in err.value.problems] == [
        "spec.primary", "spec.primary.adminUrl", "spec.replicas"]


def test_a_spec_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(SpecError):
        parse_spec("nope")  # type: ignore[arg-type]


def test_optional_fields_round_trip() -> None:
    raw = _with("auth", {"tokenSecretRef": {"name": "t", "key": "token"},
                         "caSecretRef": {"name": "c", "key": "ca.crt"}})
    raw["replicas"] = [{"id": "node2", "agentId": "agent-node2", "metricsUrl": "http://n2",
                        "podRef": {"name": "stemedb-1"}}, {"id": "node3"}]
    raw["escalation"] = {"webhookUrl": "http://hook", "clusterSre": "sre@example"}
    spec = parse_spec(raw)
    assert spec.replicas[1].agent_id == "agent-node3"
    assert spec.replica("node2").pod_name == "stemedb-1"  # type: ignore[union-attr]
    assert spec.replica("node9") is None
    assert spec.escalation.contact(1) == "sre@example"
    assert spec.escalation.contact(3) == "Principal engineer"
    assert spec.escalation.contact(0) == ""
    assert parse_spec(spec_to_raw(spec)) == spec


def _just_outside(meta: Meta) -> list[float]:
    """The nearest values each declared bound refuses."""
    values: list[float] = []
    if meta.minimum is not None:
        values.append(meta.minimum if meta.exclusive_minimum else meta.minimum - 1)
    if meta.maximum is not None:
        values.append(meta.maximum if meta.exclusive_maximum else meta.maximum + 1)
    return values


OUT_OF_BOUNDS = [(path, value) for path, meta in numeric_fields(Spec, "spec")
                 for value in _just_outside(meta)]


@pytest.mark.parametrize(("path", "value"), OUT_OF_BOUNDS,
                         ids=[f"{p}={v}" for p, v in OUT_OF_BOUNDS])
def test_the_parser_refuses_every_number_the_crd_bounds_refuse(path: str, value: float) -> None:
    """One declaration gives the CRD its bounds and the parser its checks (a spec
    admitted by an older CRD is still refused), so each bound is enforced here too."""
    with pytest.raises(SpecError) as err:
        parse_spec(_with(path.removeprefix("spec."), value))
    assert path in [p.path for p in err.value.problems]


def test_a_poll_interval_below_one_second_is_refused_as_at_admission() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_with("detection.pollIntervalSeconds", 0.5))
    assert [str(p) for p in err.value.problems] == [
        "spec.detection.pollIntervalSeconds: spec.detection.pollIntervalSeconds (0.5) must be "
        "at least 1"]


@pytest.mark.parametrize(("steps", "refused"), [(10, False), (11, True)])
def test_a_throttle_ladder_has_at_most_ten_steps(steps: int, refused: bool) -> None:
    ladder = [round(0.99 - i * 0.05, 2) for i in range(steps)]
    raw = _with("remediation.throttle", {"ladder": ladder, "floorAssertionsPerSec": 1})
    if not refused:
        assert parse_spec(raw).remediation.throttle.ladder == tuple(ladder)
        return
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert "spec.remediation.throttle.ladder lists 11 steps; at most 10" in str(err.value)
