"""The fast /metrics reader agrees with prometheus_client's parser (the reference)."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.adapters.metrics_text import MetricsParseError, Sample, parse_samples
from controller.adapters.stemedb_errors import StemeDBError
from tests.unit.adapters._numbers import same_number

Flat = list[tuple[str, dict[str, str], float, float | None]]


def reference(text: str) -> Flat:
    return [
        (s.name, dict(s.labels), float(s.value), s.timestamp)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def agrees(mine: list[Sample], ref: Flat) -> bool:
    """Same samples in the same order. The reference renames samples of a counter
    family without ``_total`` to ``<name>_total``; that munging is tolerated."""
    if len(mine) != len(ref):
        return False
    for m, (name, labels, value, ts) in zip(mine, ref, strict=True):
        if name not in (m.name, m.name + "_total") or labels != m.labels:
            return False
        if not same_number(m.value, value) or not same_number(m.timestamp, ts):
            return False
    return True


def assert_agrees(text: str, wanted: set[str] | None = None) -> list[Sample]:
    mine = parse_samples(text, wanted)
    ref = reference(text)
    if wanted is not None:
        ref = [r for r in ref if r[0] in wanted]
    assert agrees(mine, ref), (mine, ref)
    return mine


PRIMARY = """\
# HELP stemedb_replication_lag_seconds Replication lag.
# TYPE stemedb_replication_lag_seconds gauge
stemedb_replication_lag_seconds{replica="node2"} 12.5
stemedb_replication_lag_seconds{replica="node3"} 0
# HELP stemedb_assertions_indexed_total Assertions.
# TYPE stemedb_assertions_indexed_total counter
stemedb_assertions_indexed_total 1.234e+06
# TYPE stemedb_merkle_sync_duration_seconds histogram
stemedb_merkle_sync_duration_seconds_bucket{replica="node2",le="1.0"} 0
stemedb_merkle_sync_duration_seconds_bucket{replica="node2",le="+Inf"} 3
stemedb_merkle_sync_duration_seconds_sum{replica="node2"} 42.0
stemedb_merkle_sync_duration_seconds_count{replica="node2"} 3
"""

VALID = [
    pytest.param(PRIMARY, id="a realistic primary body agrees"),
    pytest.param('m{a="x\\\\y\\"z\\nw"} 1\n', id="escapes are unescaped"),
    pytest.param('m{a="\\t"} 1\n', id="an unknown escape is kept verbatim like the reference"),
    pytest.param('m{b="2",a="1"} 1\n', id="labels in any order"),
    pytest.param('m{a="}{,=\\""} 1\n', id="braces commas and equals inside a label value"),
    pytest.param("m NaN\nn +Inf\no -Inf\np nan\nq Inf\n", id="NaN and infinities"),
    pytest.param("m 1 1700000000000\n", id="a timestamp in milliseconds becomes seconds"),
    pytest.param("m -3.5e-3\n", id="a negative exponent value"),
    pytest.param('   m{ a = "1" , b="2", }   7  \n', id="loose whitespace, trailing comma"),
    pytest.param("m\t7\t1000\n", id="tabs as separators"),
    pytest.param("m{} 1\n", id="empty braces"),
    pytest.param('m {a="1"} 1\n', id="a space between name and labels"),
    pytest.param('m{a="1"}1\n', id="no space between labels and value"),
    pytest.param("m 1\r\n", id="a CRLF line ending"),
    pytest.param("\n\n# a comment\n#no space\n# HELP\nm 1\n", id="comments and blanks"),
    pytest.param("# HELP m help with \\\\ and \\n escapes\nm 1\n", id="help escapes"),
    pytest.param("# TYPE m summary\nm_count 1\nm 2\n", id="a summary family"),
    pytest.param('m{a="\u00e9\u2028\u0085x"} 1\n', id="unicode label values with line separators"),
    pytest.param("ns:sub_m 1\n", id="colons in metric names"),
]


@pytest.mark.parametrize("text", VALID)
def test_valid_text_agrees_with_the_reference(text: str) -> None:
    assert_agrees(text)


def test_wanted_filter_returns_only_those_series() -> None:
    got = assert_agrees(PRIMARY, {"stemedb_replication_lag_seconds"})
    assert [(s.labels["replica"], s.value) for s in got] == [("node2", 12.5), ("node3", 0.0)]


GARBAGE = [
    pytest.param("", id="an empty body"),
    pytest.param("m 1", id="no final newline means truncated"),
    pytest.param('stemedb_replication_lag_seconds{replica="node2"} 12', id="cut mid-number"),
    pytest.param('m{replica="node2} 1\n', id="an unterminated label value"),
    pytest.param('m{replica="node2"\n', id="a line cut inside the labels"),
    pytest.param("m\n", id="a name without a value"),
    pytest.param("m abc\n", id="a value that is not a number"),
    pytest.param("m 1_000\n", id="underscores in the value"),
    pytest.param("m1\n", id="a name glued to its value"),
    pytest.param("m{a=b} 1\n", id="an unquoted label value"),
    pytest.param('m{a="1",a="2"} 1\n', id="a duplicate label name"),
    pytest.param('m{__x="1"} 1\n', id="a reserved label name"),
    pytest.param('m{a="1",,b="2"} 1\n', id="two commas between labels"),
    pytest.param("m 1 2 3\n", id="extra tokens after the value"),
    pytest.param('m{a="1"} 1 # {trace="x"} 2\n', id="an exemplar in text format"),
    pytest.param("1m 1\n", id="a name starting with a digit"),
    pytest.param("# TYPE m\nm 1\n", id="a TYPE line without a type"),
    pytest.param("# TYPE m counter extra\nm 1\n", id="a TYPE line with an unknown type"),
    pytest.param("# HELP 1bad help\n", id="a HELP line with a bad name"),
    pytest.param("<html><body>502 Bad Gateway</body></html>\n", id="an HTML error page"),
    pytest.param('{"error": {"code": "x"}}\n', id="a JSON body"),
    pytest.param("m 1\n\x00\x00\x00\n", id="NUL bytes"),
]


@pytest.mark.parametrize("text", GARBAGE)
def test_garbage_raises_a_typed_error(text: str) -> None:
    with pytest.raises(MetricsParseError) as info:
        parse_samples(text)
    assert isinstance(info.value, StemeDBError)
    with pytest.raises(MetricsParseError):
        parse_samples(text, {"m"})


def test_a_bad_line_is_named_by_number_not_content() -> None:
    with pytest.raises(MetricsParseError) as info:
        parse_samples("a 1\nb 2\nsecret-token-xyz\n")
    assert info.value.line == 3
    assert "secret-token-xyz" not in str(info.value)


# --------------------------------------------------------------------------- properties
label_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12
)
names = st.from_regex(r"\A[a-z][a-z0-9_]{0,10}\Z")


@st.composite
def exposition(draw: st.DrawFn) -> str:
    reg = CollectorRegistry()
    metric_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    for i, name in enumerate(metric_names):
        labelnames = draw(st.lists(st.sampled_from(["replica", "a", "le_x", "b"]), unique=True))
        kind = draw(st.sampled_from(["gauge", "counter", "histogram"]))
        doc = draw(st.text(max_size=20)) or "doc"
        full = f"m{i}_{name}"
        if kind == "gauge":
            metric: Gauge | Counter | Histogram = Gauge(full, doc, labelnames, registry=reg)
        elif kind == "counter":
            metric = Counter(full, doc, labelnames, registry=reg)
        else:
            metric = Histogram(full, doc, labelnames, registry=reg, buckets=(0.5, 1.0))
        for _ in range(draw(st.integers(0, 3))):
            values = [draw(label_values) for _ in labelnames]
            child = metric.labels(*values) if labelnames else metric
            number = draw(
                st.floats(allow_nan=True, allow_infinity=True)
                if kind == "gauge"
                else st.floats(min_value=0, max_value=1e12)
            )
            if isinstance(child, Gauge):
                child.set(number)
            elif isinstance(child, Counter):
                child.inc(number)
            else:
                child.observe(number)
    text = generate_latest(reg).decode("utf-8")
    # _created carries the wall clock: drop it so examples replay deterministically.
    lines = text.split("\n")
    return "\n".join(ln for ln in lines if not ln.split("{")[0].split(" ")[0].endswith("_created"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exposition())
def test_generated_exposition_agrees_with_the_reference(text: str) -> None:
    assert_agrees(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exposition(), st.data())
def test_a_subset_of_names_agrees_with_the_filtered_reference(
    text: str, data: st.DataObject
) -> None:
    all_names = sorted({r[0] for r in reference(text)})
    wanted: set[str] = set()
    if all_names:
        wanted = set(data.draw(st.lists(st.sampled_from(all_names), unique=True)))
    assert_agrees(text, wanted)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(exposition())
    if not text:
        return text
    pos = draw(st.integers(0, len(text) - 1))
    how = draw(st.sampled_from(["truncate", "insert", "delete", "replace"]))
    junk = draw(st.sampled_from(list('{}"=,\\ \t#\n') + list(string.ascii_letters[:6]) + ["\x00"]))
    if how == "truncate":
        return text[:pos]
    if how == "insert":
        return text[:pos] + junk + text[pos:]
    if how == "delete":
        return text[:pos] + text[pos + 1 :]
    return text[:pos] + junk + text[pos + 1 :]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_garbled_text_raises_whenever_the_reference_does_and_never_disagrees(text: str) -> None:
    try:
        ref = reference(text)
    except Exception:
        with pytest.raises(MetricsParseError):
            parse_samples(text)
        return
    try:
        mine = parse_samples(text)
    except MetricsParseError:
        return  # stricter than the reference on purpose (see the module docstring)
    assert agrees(mine, ref), (mine, ref)
