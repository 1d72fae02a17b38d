"""Fuzzing the /metrics reader with text the prometheus_client generator never writes.

A StemeDB, or whoever answers at the URL a tenant put in the spec, can send anything.
Beyond the cases of test_metrics_text.py: any text gives samples the reference agrees
with or a MetricsParseError, and no line, however long, is read in more than linear time.
"""

from __future__ import annotations

import contextlib
import math
import re
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from controller.adapters.metrics_text import MetricsParseError, Sample, parse_samples
from controller.adapters.stemedb import (
    StemeDBError,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# =========================================================================== /metrics
LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

FRAGMENTS = [
    "stemedb_replication_lag_seconds", "stemedb_replica_up", "m", "m_total", "{", "}", '"',
    "=", ",", " ", "\t", "\\", '\\"', "\\n", "\\\\", "\\t", "replica", '"node2"', "le",
    "__x", "#", "# HELP ", "# TYPE ", " gauge", " counter", "NaN", "+Inf", "-Inf", "inf",
    "1", "-1", "0", "1e400", "-0", "0x1F", "1_000", ".5", "5.", "1e", "e5", "+", "-",
    "\x00", "\r", "\n", "\u2028", "\u0085", "\u00a0", "\ufeff", "\u00e9", "\U0001f642",
]

NUMBERS = st.one_of(
    st.floats().map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["NaN", "nan", "+Inf", "-Inf", "Inf", "infinity", "-0", "1e400",
                     "-1e400", "1e-400", ".5", "5.", "1E+3", "0.0"]),
    st.integers(300, 2000).map(lambda n: "9" * n),
)
LABEL_VALUE = st.lists(
    st.sampled_from(["a", "n", "o", "d", "e", "2", " ", ",", "{", "}", "=", "\\\\", '\\"',
                     "\\n", "\\t", "\u00e9", "\u2028", "#"]),
    max_size=10,
).map("".join)


@st.composite
def sample_line(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(["stemedb_replication_lag_seconds", "stemedb_replica_up",
                                 "m", "m_total", "ns:m", "stemedb_node_info"]))
    labels = ""
    if draw(st.booleans()):
        pairs = draw(st.lists(
            st.tuples(st.sampled_from(["replica", "a", "le", "agent_id"]), LABEL_VALUE),
            max_size=3))
        sep = draw(st.sampled_from([",", ", ", " , "]))
        labels = "{" + sep.join(f'{k}="{v}"' for k, v in pairs) + \
            draw(st.sampled_from(["", ","])) + "}"
    value = draw(NUMBERS)
    ts = draw(st.none() | NUMBERS)
    gap = draw(st.sampled_from([" ", "\t", "  "]))
    return f"{name}{labels}{gap}{value}" + ("" if ts is None else f" {ts}")


@st.composite
def near_exposition(draw: st.DrawFn) -> str:
    """Hand-rolled lines (escapes, timestamps, duplicates, huge numbers), then garbled."""
    lines = draw(st.lists(
        sample_line()
        | st.sampled_from(["# HELP m some help", "# TYPE m gauge", "# TYPE m_total counter",
                           "# TYPE m counter", "", "# a comment"]),
        min_size=1, max_size=8))
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "\r\n", "", "\n\n"]))
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 2))
        text = text[:pos] + draw(st.sampled_from(FRAGMENTS)) + text[pos + cut:]
    return text


fragment_soup = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join)


def check_samples(samples: list[Sample]) -> None:
    for s in samples:
        assert isinstance(s, Sample)
        assert LEGACY_NAME.fullmatch(s.name)
        assert all(LABEL_NAME.fullmatch(k) and not k.startswith("__") for k in s.labels)
        assert all(isinstance(v, str) for v in s.labels.values())
        assert isinstance(s.value, float)
        assert s.timestamp is None or isinstance(s.timestamp, float)


def as_float(v: float | int) -> float:
    """The reference keeps integers as ints; beyond float range they are infinite."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


class ReferenceCrashed(Exception):
    """The reference failed on its own arithmetic, not on the text's syntax."""


def reference(text: str) -> list[tuple[str, dict[str, str], float, float | None]]:
    try:
        return [
            (s.name, dict(s.labels), as_float(s.value), s.timestamp)
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        ]
    except OverflowError as err:
        # An integer timestamp of 300+ digits: the reference divides it by 1000 and
        # overflows; this reader reports an infinite timestamp (never used).
        raise ReferenceCrashed from err


def same_number(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=1e-12)


def same_timestamp(mine: float | None, ref: float | None) -> bool:
    """Known divergence, harmless since the operator never reads timestamps: an integer
    timestamp past float range (~1.8e308 ms) is infinite here, while the reference
    divides the integer by 1000 first (and overflows from ~1.8e311 on)."""
    if mine is not None and ref is not None and math.isinf(mine) and abs(ref) > 1e305:
        return math.copysign(1, mine) == math.copysign(1, ref)
    return same_number(mine, ref)


@FAST
@given(st.one_of(near_exposition(), fragment_soup, st.text(max_size=200)))
@example("m 1\n\x00\n")
@example('m{a="x\\')
@example('stemedb_replication_lag_seconds{replica="node2"} 12')  # cut mid-number
@example('m{a="1"} 1\nm{a="1"} 2\n')  # duplicate series
@example("m " + "9" * 400 + "\n")  # beyond float range: inf, like the reference
def test_any_text_gives_samples_or_a_parse_error_that_the_reference_agrees_with(
    text: str,
) -> None:
    """The module's contract, on text the prometheus_client generator never writes."""
    try:
        mine = parse_samples(text)
    except MetricsParseError as err:
        assert isinstance(err, StemeDBError) and isinstance(err.line, int)
        return
    check_samples(mine)
    try:
        ref = reference(text)  # we accepted it: the reference must too, with the same samples
    except ReferenceCrashed:
        assert any(s.timestamp is not None and math.isinf(s.timestamp) for s in mine)
        return
    assert len(mine) == len(ref), (mine, ref)
    for m, (name, labels, value, ts) in zip(mine, ref, strict=True):
        assert name in (m.name, m.name + "_total") and labels == m.labels, (m, name, labels)
        assert same_number(m.value, value) and same_timestamp(m.timestamp, ts), (m, value, ts)


@FAST
@given(st.one_of(near_exposition(), fragment_soup))
@example("## TYPE  HELP m some help\n")  # found by this test: "##" was taken for a comment
@example("#x TYPE m bogus\nm 1\n")
@example("#x HELP 1bad\n")
def test_whenever_the_reference_refuses_the_reader_refuses(text: str) -> None:
    try:
        reference(text)
    except ReferenceCrashed:
        return
    except Exception:
        with pytest.raises(MetricsParseError):
            parse_samples(text)


# One pathological line each; a reader with backtracking would take minutes on these
# (quadratic: 4,000 digits took 0.6 s, 100,000 would take ~6 minutes, blocking the
# event loop and with it every cluster's poll). Linear time parses each in milliseconds.
N = 100_000
LONG_LINES = [
    pytest.param("m " + "1" * N + "x\n", id="a long number followed by junk"),
    pytest.param("m 1 " + "1" * N + "x\n", id="a long timestamp followed by junk"),
    pytest.param("m " + "1" * N + "." + "1" * N + "x\n", id="a long decimal followed by junk"),
    pytest.param('m{a="1"' + " " * N + "x} 1\n", id="spaces after the last label then junk"),
    pytest.param('m{a="1" ,' + " " * N + "x} 1\n", id="spaces after a trailing comma then junk"),
    pytest.param("m{" + 'a="1",' * (N // 6) + "x} 1\n", id="many labels then junk"),
    pytest.param('m{a="' + "\\\\" * N + "} 1\n", id="an unterminated value of escapes"),
    pytest.param("m" * N + "\n", id="a name without a value"),
    pytest.param("m" + " " * N + "x\n", id="spaces between name and junk"),
    pytest.param("# TYPE " + "m" * N + " x\n", id="a long TYPE line with a bad type"),
    pytest.param("m 1\n" * (N // 4) + "m\n", id="many good lines then a bad one"),
    pytest.param("m " + "1" * N + "\n", id="a long valid number (infinite, not an error)"),
]


@pytest.mark.parametrize("text", LONG_LINES)
def test_a_long_hostile_line_is_read_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    with contextlib.suppress(MetricsParseError):
        parse_samples(text)
    assert time.perf_counter() - started < 2.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FRAGMENTS), st.sampled_from(FRAGMENTS), st.integers(5_000, 20_000))
def test_any_fragment_repeated_is_read_quickly(prefix: str, repeated: str, n: int) -> None:
    """Pumping any fragment thousands of times stays fast (no super-linear blow-up)."""
    text = 'stemedb_replication_lag_seconds{replica="node2"' + prefix + repeated * n + "\n"
    started = time.perf_counter()
    with pytest.raises(MetricsParseError):
        parse_samples(text + "}}\n")
    assert time.perf_counter() - started < 1.0


