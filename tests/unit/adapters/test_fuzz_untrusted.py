"""Fuzzing the /metrics reader and what a scrape is turned into.

A StemeDB, or whoever answers at the URL a tenant put in the spec, can send anything.
What a user relies on, checked here beyond the cases of test_metrics_text.py and
test_stemedb_client.py:

* any text gives samples the reference agrees with or a MetricsParseError, and no
  line, however long, is read in more than linear time;
* any bytes scraped give a scrape or a *specific* StemeDBError subclass (never the
  client's catch-all ``StemeDBError("... unexpected ...")``, which would mean a
  parser crashed);
* a garbled scrape never yields a lag, counter or rate that could drive an action:
  what cannot be a value is unknown (None), and unknown lag means no action.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from controller.adapters.metrics_text import MetricsParseError, Sample, parse_samples
from controller.adapters.stemedb import (
    PRIMARY_METRICS,
    ClientConfig,
    Credentials,
    PrimaryScrape,
    ReplicaScrape,
    StemeDBClient,
    StemeDBError,
    StemeDBHTTPError,
    node_from_samples,
    primary_from_samples,
)

BASE = "http://stemedb.test/c/demo/node1"
TOKEN = "fz-T0ken.value~with/b64+chars="
CREDS = Credentials(token=TOKEN)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def run_against(
    handler: Callable[[httpx.Request], httpx.Response],
    call: Callable[[StemeDBClient], Any],
) -> tuple[Any, list[httpx.Request]]:
    """Run one client call against ``handler``; return (result or raised error, requests)."""
    requests: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return handler(request)

    async def go() -> Any:
        fake = FakeTime()
        client = StemeDBClient(
            ClientConfig(),
            transport=httpx.MockTransport(recording),
            sleep=fake.sleep,
            clock=fake.clock,
        )
        async with client:
            try:
                return await call(client)
            except StemeDBError as err:
                return err

    return asyncio.run(go()), requests


def assert_specific(err: StemeDBError) -> None:
    """A subclass, not the client's catch-all for an unexpected exception in a parser."""
    assert type(err) is not StemeDBError, f"a parser crashed: {err}"
    assert "unexpected" not in str(err), str(err)


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


# --------------------------------------------------------------------------- bytes via HTTP
@st.composite
def metrics_bytes(draw: st.DrawFn) -> bytes:
    how = draw(st.sampled_from(["binary", "text", "latin-1", "utf-16", "bad-utf8-inside"]))
    if how == "binary":
        return draw(st.binary(max_size=300))
    text = draw(near_exposition())
    if how == "text":
        return text.encode("utf-8")
    if how == "latin-1":
        return text.encode("latin-1", errors="replace") + b"\xe9\n"
    if how == "utf-16":
        return text.encode("utf-16")
    raw = text.encode("utf-8")
    pos = draw(st.integers(0, len(raw)))
    return raw[:pos] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"])) + \
        raw[pos:]


STATUSES = st.sampled_from([200, 200, 200, 203, 204, 301, 400, 401, 404, 409, 429, 500, 503])


@FAST
@given(metrics_bytes(), STATUSES)
def test_a_scrape_of_any_bytes_gives_a_scrape_or_a_specific_error(body: bytes, status: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body,
                              headers={"Content-Type": "text/plain; version=0.0.4"})

    got, _ = run_against(answer, lambda c: c.scrape_primary(BASE, CREDS))
    if isinstance(got, StemeDBError):
        assert_specific(got)
        if 200 <= status < 300:
            assert isinstance(got, MetricsParseError)
        else:
            assert isinstance(got, StemeDBHTTPError) and got.status == status
        return
    assert 200 <= status < 300 and isinstance(got, PrimaryScrape)
    assert_safe_scrape(got)


# --------------------------------------------------------------------------- samples -> scrape
REPLICA_NUMBER_FIELDS = [
    "lag_seconds", "sync_progress", "sync_errors_total", "sync_corruption_total",
    "sync_duration_sum", "sync_duration_count", "restarts_total", "network_bytes_sent_total",
    "backlog_assertions",
]
BOOL_FIELDS = ["up", "sync_running", "breaker_tripped"]


def plausible(v: float | None) -> bool:
    return v is None or (isinstance(v, float) and math.isfinite(v) and v >= 0)


def assert_safe_scrape(s: PrimaryScrape) -> None:
    """Nothing in a scrape can drive an action unless it is a plausible value."""
    for rid, r in s.replicas.items():
        assert isinstance(r, ReplicaScrape) and r.replica == rid
        for f in REPLICA_NUMBER_FIELDS:
            assert plausible(getattr(r, f)), (f, r)
        for f in BOOL_FIELDS:
            assert getattr(r, f) in (None, True, False), (f, r)
    assert plausible(s.assertions_indexed_total)
    assert plausible(s.assertions_rate_limited_total)
    assert plausible(s.rate_limit)
    if not s.rate_limit_reported:
        assert s.rate_limit is None


HOSTILE_FLOATS = st.one_of(
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -0.0, 0.0, 1.0, 2.0, 1e308, -5.0]),
)
PRIMARY_NAMES = [*sorted(PRIMARY_METRICS), "stemedb_merkle_sync_duration_seconds_bucket",
                 "process_cpu_seconds_total"]


@st.composite
def samples(draw: st.DrawFn) -> list[Sample]:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        labels: dict[str, str] = {}
        if draw(st.booleans()):
            labels["replica"] = draw(st.sampled_from(["node2", "node3", "", "node2\n"]))
        if draw(st.integers(0, 3)) == 0:
            labels["agent_id"] = draw(st.sampled_from(["agent-node2", "x"]))
        out.append(Sample(draw(st.sampled_from(PRIMARY_NAMES)), labels,
                          draw(HOSTILE_FLOATS), None))
    return out


def values_of(ss: Iterable[Sample], name: str, replica: str | None = None) -> list[float]:
    return [s.value for s in ss
            if s.name == name and (replica is None or s.labels.get("replica") == replica)]


def single_plausible(values: list[float]) -> float | None:
    """What a reader may report for one series: its value only when every sample of it
    says the same plausible thing."""
    if not values:
        return None
    first = values[0]
    if not (math.isfinite(first) and first >= 0) or any(v != first for v in values):
        return None
    return first


@settings(max_examples=300, deadline=None)
@given(samples())
@example([Sample("stemedb_replication_lag_seconds", {"replica": "node2"}, -5.0, None)])
@example([Sample("stemedb_replication_lag_seconds", {"replica": "node2"}, math.inf, None)])
@example([Sample("stemedb_rate_limit_assertions_per_sec", {}, math.nan, None)])
def test_a_scrape_reports_only_plausible_values_and_unknown_otherwise(ss: list[Sample]) -> None:
    s = primary_from_samples(ss)
    assert_safe_scrape(s)
    for rid, r in s.replicas.items():
        lag = values_of(ss, "stemedb_replication_lag_seconds", rid)
        assert r.lag_seconds == single_plausible(lag), (lag, r.lag_seconds)
    rate = values_of(ss, "stemedb_rate_limit_assertions_per_sec")
    if not rate:
        assert (s.rate_limit, s.rate_limit_reported) == (None, False)
    elif all(v == -1 for v in rate):
        assert (s.rate_limit, s.rate_limit_reported) == (None, True)  # -1: unlimited
    elif single_plausible(rate) is not None:
        assert (s.rate_limit, s.rate_limit_reported) == (rate[0], True)
    else:  # NaN, inf, -5, conflicting duplicates: unknown, so the limit is read back
        assert (s.rate_limit, s.rate_limit_reported) == (None, False)
    n = node_from_samples(ss)
    assert plausible(n.assertions_indexed_total) and plausible(n.disk_io_utilization)


LAG = "stemedb_replication_lag_seconds"
GARBLED_SERIES = [
    pytest.param([(LAG, "node2", -5.0)], id="a negative lag"),
    pytest.param([(LAG, "node2", math.inf)], id="an infinite lag"),
    pytest.param([(LAG, "node2", -math.inf)], id="a minus infinite lag"),
    pytest.param([(LAG, "node2", math.nan)], id="a NaN lag"),
    pytest.param([(LAG, "node2", 100.0), (LAG, "node2", 0.0)], id="conflicting duplicates"),
    pytest.param([(LAG, "node2", 0.0), (LAG, "node2", 100.0)], id="conflicting in other order"),
    pytest.param([(LAG, "node2", 1.0), (LAG, "node2", 2.0), (LAG, "node2", 1.0)],
                 id="a conflict is not undone by a third sample"),
    pytest.param([(LAG, "node2", 5.0), (LAG, "node2", math.nan)], id="a duplicate that is NaN"),
]


@pytest.mark.parametrize("series", GARBLED_SERIES)
def test_a_garbled_lag_is_unknown(series: list[tuple[str, str, float]]) -> None:
    s = primary_from_samples([Sample(n, {"replica": r}, v, None) for n, r, v in series])
    assert s.replicas["node2"].lag_seconds is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(-1.0, (None, True), id="-1 is unlimited"),
        pytest.param(0.0, (0.0, True), id="0 is paused"),
        pytest.param(250.0, (250.0, True), id="a limit"),
        pytest.param(math.nan, (None, False), id="NaN is unknown, not unlimited"),
        pytest.param(-5.0, (None, False), id="another negative is unknown, not unlimited"),
        pytest.param(math.inf, (None, False), id="infinity is unknown"),
        pytest.param(-math.inf, (None, False), id="minus infinity is unknown"),
    ],
)
def test_the_rate_limit_gauge(value: float, expected: tuple[float | None, bool]) -> None:
    s = primary_from_samples([Sample("stemedb_rate_limit_assertions_per_sec", {}, value, None)])
    assert (s.rate_limit, s.rate_limit_reported) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0, False), (1.0, True), (math.nan, None), (2.0, None), (-1.0, None), (math.inf, None),
     (0.5, None)],
)
def test_a_zero_one_gauge_is_true_false_or_unknown(value: float, expected: bool | None) -> None:
    s = primary_from_samples([Sample("stemedb_replica_up", {"replica": "node2"}, value, None)])
    assert s.replicas["node2"].up is expected


# --------------------------------------------------------------------------- end to end
def _garbled_lag_scenario(garbled_body: str) -> list[str]:
    """Throttle node2 for a real lag, then serve ``garbled_body``: the actions taken then."""
    from controller.domain import ActionOutcome, Memory, decide, parse_spec, record_outcome
    from controller.reconcile import _primary_observation

    spec = parse_spec({
        "primary": {"adminUrl": BASE},
        "replicas": [{"id": "node2", "agentId": "agent-node2"},
                     {"id": "node3", "agentId": "agent-node3"}],
    })
    memory = Memory.empty()
    rate = 4000.0
    now = 1_700_000_000.0
    healthy_lag = "20"
    actions: list[str] = []
    for poll in range(60):
        garbled = poll >= 25
        if poll == 25:
            assert memory.throttle.active, "node2 should be throttled before the garbling"
        body = garbled_body if garbled else (
            f'{LAG}{{replica="node2"}} {healthy_lag}\n{LAG}{{replica="node3"}} 0.2\n'
            f"stemedb_rate_limit_assertions_per_sec {rate:g}\n"
        )
        scrape = primary_from_samples(parse_samples(body, PRIMARY_METRICS))
        obs = _primary_observation(spec, scrape, now, frozenset())
        plan = decide(obs, spec, memory, now, operator_budget_remaining=100)
        memory = plan.memory
        for a in plan.actions:
            if garbled:
                actions.append(f"{a.kind.value}:{a.replica_id or a.rate}")
            if a.rate is not None:
                rate = float(a.rate)
            memory = record_outcome(memory, a.idempotency_key, ActionOutcome(True, ""), now)
        now += spec.detection.poll_interval_seconds
    return actions


@pytest.mark.parametrize(
    "lag",
    ["-5", "-Inf", "+Inf", "NaN", "-0.0001"],
)
def test_a_garbled_lag_during_a_throttle_takes_no_action(lag: str) -> None:
    body = (f'{LAG}{{replica="node2"}} {lag}\n{LAG}{{replica="node3"}} 0.2\n'
            "stemedb_rate_limit_assertions_per_sec 3000\n")
    assert _garbled_lag_scenario(body) == []


def test_conflicting_lag_series_during_a_throttle_take_no_action() -> None:
    body = (f'{LAG}{{replica="node2"}} 20\n{LAG}{{replica="node2"}} 0\n'
            f'{LAG}{{replica="node3"}} 0.2\nstemedb_rate_limit_assertions_per_sec 3000\n')
    assert _garbled_lag_scenario(body) == []
