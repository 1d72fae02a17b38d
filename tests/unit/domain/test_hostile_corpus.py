"""The operator's own parser refuses every hostile spec of tests/hostile_corpus.py.

Admission (the CRD schema) is the first line; `parse_spec` is the second: a spec
stored before the schema was tightened, or a CRD installed without the new
patterns, must still never reach a Kubernetes or StemeDB call. Every case refused
at admission must be refused here with a problem whose path equals (or starts
with) the case's field path; the tricky-but-valid specs must parse.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hostile_corpus import (
    CASES,
    UNIT_VALUES,
    VALID,
    Case,
    Valid,
    base_spec,
    case_spec,
    filled,
    summary,
)

from controller.domain import SpecError, parse_spec

REFUSED = [c for c in CASES if c.outcome == "refused" and not c.unknown_field]
UNKNOWN_FIELDS = [c for c in CASES if c.unknown_field]
REPORTED = [c for c in CASES if c.outcome == "reported"]


def _problems(case: Case) -> list[tuple[str, str]]:
    try:
        parse_spec(case_spec(case.ops, UNIT_VALUES))
    except SpecError as err:
        return [(p.path, p.message) for p in err.problems]
    return []


def _names_path(problems: list[tuple[str, str]], case: Case) -> bool:
    return any(path == want or path.startswith(want)
               for path, _ in problems for want in case.paths)


def test_the_corpus_is_big_enough_and_every_case_has_a_path() -> None:
    counts = summary()
    assert sum(counts["outcome"].values()) >= 150
    assert len(VALID) >= 10
    assert all(c.path.startswith("spec") for c in CASES)
    print({k: dict(v) for k, v in counts.items()})


def test_the_base_spec_is_valid() -> None:
    spec = parse_spec(filled(base_spec(), UNIT_VALUES))
    assert spec.auth.token_secret_ref is not None
    assert [r.id for r in spec.replicas] == ["node2", "node3"]


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_parse_spec_refuses_the_hostile_spec_naming_the_field(case: Case) -> None:
    problems = _problems(case)
    assert problems, f"{case.id}: parse_spec accepted it"
    assert _names_path(problems, case), (
        f"{case.id}: no problem at {' or '.join(case.paths)}; got {problems}")
    if case.mention:
        assert any(case.mention in m for _, m in problems), problems


@pytest.mark.parametrize("case", UNKNOWN_FIELDS, ids=[c.id for c in UNKNOWN_FIELDS])
def test_a_field_naming_another_namespace_is_refused_or_ignored(case: Case) -> None:
    """The API server prunes undeclared fields; if one got through anyway, the parser
    either refuses it or reads the spec exactly as without it (the tenant's own
    namespace: there is no field through which another one can be named)."""
    problems = _problems(case)
    if problems:
        assert _names_path(problems, case), problems
        return
    raw = case_spec(case.ops, UNIT_VALUES)
    assert parse_spec(raw) == parse_spec(_without_namespaces(raw))


def _without_namespaces(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_namespaces(v) for k, v in value.items() if k != "namespace"}
    if isinstance(value, list):
        return [_without_namespaces(v) for v in value]
    return value


@pytest.mark.parametrize("case", REPORTED, ids=[c.id for c in REPORTED])
def test_a_destination_only_the_operator_can_judge_is_never_misfiled(case: Case) -> None:
    """Well-formed URLs to a denied destination: the parser may accept them (the
    operator then reports DestinationDenied) or refuse them, but only at that field."""
    problems = _problems(case)
    assert not problems or _names_path(problems, case), problems


@pytest.mark.parametrize("valid", VALID, ids=[v.id for v in VALID])
def test_a_tricky_but_valid_spec_parses(valid: Valid) -> None:
    try:
        parse_spec(case_spec(valid.ops, UNIT_VALUES))
    except SpecError as err:
        pytest.fail(f"{valid.id} ({valid.why}) refused: {[str(p) for p in err.problems]}")
