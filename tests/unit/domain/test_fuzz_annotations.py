"""Fuzzing the approve-rebuild annotation, the one annotation the operator reads.

Anyone who can edit the StemeDBCluster can write anything there (1 MB of text,
control characters, bidi overrides, a lookalike of a replica id). What a user relies
on: no crash; only what can be a replica id (the spec's rule: at most 63 of
[A-Za-z0-9._-], starting and ending alphanumeric) is read as an approval; the result
is bounded by the number of replicas a cluster can have; nothing is invented.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from controller.domain import APPROVE_REBUILD_ANNOTATION, parse_approvals
from controller.domain.spec import MAX_REPLICAS
from controller.domain.validation import NODE_ID, node_id_problem

KEY = APPROVE_REBUILD_ANNOTATION
REPLICA_ID = re.compile(NODE_ID)

ids = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?\Z")
junk_chars = st.sampled_from(
    [",", " ", "\t", "\n", "\r", "\x00", "\x1b", "\x7f", "\u0085", "\u00a0", "\u200b",
     "\u202e", "\u2028", "\ufeff", "\U000e0041", "\u00e9", "\u0430", ";", "=", "/", "*",
     "-", ".", "_", "\\", '"']
)
# Replica ids, junk characters and separators in any mix.
annotation_text = st.lists(
    st.one_of(ids, junk_chars, st.text(max_size=8)), max_size=40
).map("".join)


def check(result: Any) -> None:
    assert isinstance(result, frozenset)
    assert len(result) <= MAX_REPLICAS
    for rid in result:
        assert isinstance(rid, str)
        assert REPLICA_ID.fullmatch(rid) and node_id_problem(rid) is None, repr(rid)


def items(raw: str) -> set[str]:
    return {x.strip() for x in raw.split(",")}


@settings(max_examples=500, deadline=None)
@given(annotation_text)
@example("node2\x00,node3")
@example("node2\nnode3")
@example("x" * 1_000_000)
@example("\u202enode2")
def test_only_plausible_replica_ids_named_in_the_annotation_are_approvals(raw: str) -> None:
    got = parse_approvals({KEY: raw})
    check(got)
    assert got <= items(raw)  # nothing invented: each is one comma-separated item
    plausible = [x for x in items(raw) if REPLICA_ID.fullmatch(x)]
    if len(plausible) <= MAX_REPLICAS:
        assert got == set(plausible)  # and none that could be an id is lost


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=5), ids)
def test_only_the_approve_rebuild_key_is_read(other: dict[str, str], rid: str) -> None:
    other = {k: v for k, v in other.items() if k != KEY}
    lookalikes = {KEY.upper(): rid, KEY + " ": rid, "stemedb.io/approve-rebuilds": rid,
                  "approve-rebuild": rid, KEY.replace("/", "\u2215"): rid}
    assert parse_approvals({**other, **lookalikes}) == frozenset()
    assert parse_approvals({**other, **lookalikes, KEY: rid}) == {rid}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=MAX_REPLICAS + 1, max_size=3 * MAX_REPLICAS,
                unique=True).map(lambda ns: [f"node{n}" for n in ns]))
def test_the_result_is_bounded_by_the_number_of_replicas_a_cluster_can_have(
    many: list[str],
) -> None:
    got = parse_approvals({KEY: ",".join(many)})
    check(got)
    assert got == set(many[:MAX_REPLICAS])  # the first ones, in the order written


MB = 1_000_000
CASES = [
    pytest.param(None, set(), id="no annotations"),
    pytest.param({}, set(), id="no approve-rebuild annotation"),
    pytest.param({KEY: ""}, set(), id="an empty value"),
    pytest.param({KEY: "node2, node3,"}, {"node2", "node3"}, id="a list with a trailing comma"),
    pytest.param({KEY: " node2 ,\tnode3\n"}, {"node2", "node3"}, id="whitespace around ids"),
    pytest.param({KEY: "node2,,, ,node2"}, {"node2"}, id="empty items and repeats"),
    pytest.param({KEY: "node2\x00"}, set(), id="a NUL inside an item"),
    pytest.param({KEY: "node2\x00,node3"}, {"node3"}, id="a bad item does not spoil the rest"),
    pytest.param({KEY: "node2\nnode3"}, set(), id="newline is not a separator"),
    pytest.param({KEY: "node2 node3"}, set(), id="space is not a separator"),
    pytest.param({KEY: "node2;node3"}, set(), id="semicolon is not a separator"),
    pytest.param({KEY: "\u202enode2"}, set(), id="a bidi override"),
    pytest.param({KEY: "node2\u200b"}, set(), id="a zero-width space"),
    pytest.param({KEY: "n\u043ede2"}, set(), id="a Cyrillic lookalike"),
    pytest.param({KEY: "\x1b[31mnode2"}, set(), id="an ANSI escape"),
    pytest.param({KEY: "-node2,node2-,.node2"}, set(), id="not starting and ending alnum"),
    pytest.param({KEY: "a" * 63}, {"a" * 63}, id="63 characters is an id"),
    pytest.param({KEY: "a" * 64}, set(), id="64 characters is not"),
    pytest.param({KEY: "node-2.a_b"}, {"node-2.a_b"}, id="dots dashes underscores inside"),
    pytest.param({KEY: "x" * MB}, set(), id="one 1 MB item"),
    pytest.param({KEY: "node2," * (MB // 6)}, {"node2"}, id="1 MB of one id repeated"),
    pytest.param({KEY: "," * MB + "node2"}, {"node2"}, id="1 MB of commas then an id"),
    pytest.param({KEY: "\x00" * MB}, set(), id="1 MB of NUL"),
    pytest.param({KEY: None}, set(), id="a null value"),
    pytest.param({KEY: ["node2"]}, set(), id="a list value"),
    pytest.param({KEY: 2}, set(), id="a number value"),
]


@pytest.mark.parametrize(("annotations", "expected"), CASES)
def test_approval_annotation_cases(annotations: Any, expected: set[str]) -> None:
    started = time.perf_counter()
    got = parse_approvals(annotations)
    assert time.perf_counter() - started < 3.0  # 1 MB takes ~0.1 s
    check(got)
    assert got == expected
