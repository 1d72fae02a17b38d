"""The ladder's one declaration drives the docs' diagram and the step shown in status."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from controller.domain import Memory, ReplicaMemory, Step
from controller.domain.policy import current_step
from controller.domain.policy.ladder import LADDER, STEP_RANK

DOC = Path(__file__).resolve().parents[3] / "docs" / "remediation-policy.md"
# States of the diagram's Critical block that are not ladder steps.
NOT_STEPS = {"RebuildMarked"}


def _critical_block() -> list[str]:
    """The lines inside `state Critical { ... }` of the state diagram."""
    text = DOC.read_text()
    match = re.search(r"state Critical \{\n(.*?)\n\s*\}", text, re.S)
    assert match, "docs/remediation-policy.md has no `state Critical { ... }` block"
    return [line.strip() for line in match.group(1).splitlines()]


def _transitions() -> set[tuple[str, str]]:
    found = set()
    for line in _critical_block():
        m = re.match(r"(\[\*\]|\w+) --> (\w+)", line)
        if m:
            found.add((m.group(1), m.group(2)))
    return found


@pytest.mark.parametrize(("source", "target"), [
    pytest.param("[*]", LADDER[0].step.value, id="the ladder starts at the first declared step"),
    *(pytest.param(a.value, b.value, id=f"{a.value} hands over to {b.value}")
      for a, b in itertools.pairwise(STEP_RANK)),
])
def test_the_diagram_shows_the_declared_order(source: str, target: str) -> None:
    assert (source, target) in _transitions()


def test_the_diagram_names_no_step_the_ladder_does_not_declare() -> None:
    named = {s for pair in _transitions() for s in pair} - {"[*]"}
    assert named - NOT_STEPS - {s.value for s in STEP_RANK} == set()


@pytest.mark.parametrize(("steps", "expected"), [
    pytest.param({}, ("", Step.NONE), id="no replica on the ladder"),
    pytest.param({"node2": Step.THROTTLE, "node3": Step.RESET_BREAKER}, ("node2", Step.THROTTLE),
                 id="the later declared step wins"),
    pytest.param({"node2": Step.FORCE_SYNC, "node3": Step.REBUILD}, ("node3", Step.REBUILD),
                 id="rebuild is past forced sync"),
    pytest.param({"node2": Step.EXHAUSTED, "node3": Step.REBUILD}, ("node2", Step.EXHAUSTED),
                 id="exhausted is past every step"),
])
def test_status_shows_the_replica_furthest_up_the_ladder(
    steps: dict[str, Step], expected: tuple[str, Step]
) -> None:
    memory = Memory(replicas=tuple(ReplicaMemory(rid, step=step) for rid, step in steps.items()))
    assert current_step(memory) == expected
