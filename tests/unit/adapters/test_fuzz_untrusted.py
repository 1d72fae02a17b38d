"""Fuzzing the readers of untrusted bytes: the /metrics reader and the admin API's answers.

A StemeDB, or whoever answers at the URL a tenant put in the spec, can send anything.
What a user relies on, checked here beyond the cases of test_metrics_text.py and
test_stemedb_client.py:

* every public call returns a well-typed result or raises a *specific* StemeDBError
  subclass (never the client's catch-all ``StemeDBError("... unexpected ...")``,
  which would mean a parser crashed), and never hangs;
* a garbled scrape never yields a lag, counter or rate that could drive an action:
  what cannot be a value is unknown (None), and unknown lag means no action;
* wrong JSON types are refused, not coerced;
* the bearer token never appears in an error, whatever the server echoes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from controller.adapters.metrics_text import MetricsParseError, Sample, parse_samples
from controller.adapters.stemedb import (
    DECISION_SERIES,
    PRIMARY_METRICS,
    BreakerReset,
    ClientConfig,
    Credentials,
    PrimaryScrape,
    RateLimitReading,
    ReplicaScrape,
    StemeDBBadResponse,
    StemeDBClient,
    StemeDBError,
    StemeDBHTTPError,
    StemeDBUnauthorized,
    SyncAlreadyRunning,
    SyncStarted,
    TrippedBreaker,
    node_from_samples,
    primary_from_samples,
)
from tests.unit.adapters._numbers import same_number

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


class _Scripted:
    """One client for the whole module (building one loads the system CA bundle, ~20 ms);
    each call installs the handler its example answers with."""

    def __init__(self) -> None:
        self.handler: Callable[[httpx.Request], httpx.Response] | None = None
        self.requests: list[httpx.Request] = []
        fake = FakeTime()
        self.client = StemeDBClient(ClientConfig(), transport=httpx.MockTransport(self),
                                    sleep=fake.sleep, clock=fake.clock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert self.handler is not None
        self.requests.append(request)
        return self.handler(request)


_SCRIPTED: list[_Scripted] = []


def run_against(
    handler: Callable[[httpx.Request], httpx.Response],
    call: Callable[[StemeDBClient], Any],
) -> tuple[Any, list[httpx.Request]]:
    """Run one client call against ``handler``; return (result or raised error, requests)."""
    if not _SCRIPTED:
        _SCRIPTED.append(_Scripted())
    scripted = _SCRIPTED[0]
    scripted.handler, scripted.requests = handler, []

    async def go() -> Any:
        try:
            return await call(scripted.client)
        except StemeDBError as err:
            return err

    return asyncio.run(go()), scripted.requests


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
# event loop and with it every cluster's poll). Linear time parses each in milliseconds,
# so the bounds below leave a wide margin for a loaded machine.
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
    pytest.param("m 1\n" * 10_000 + "m\n", id="many good lines then a bad one"),
    pytest.param("m " + "1" * N + "\n", id="a long valid number (infinite, not an error)"),
]


@pytest.mark.parametrize("text", LONG_LINES)
def test_a_long_hostile_line_is_read_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    with contextlib.suppress(MetricsParseError):
        parse_samples(text)
    assert time.perf_counter() - started < 5.0  # ~0.05 s; generous for a loaded CI box


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FRAGMENTS), st.sampled_from(FRAGMENTS), st.integers(5_000, 20_000))
def test_any_fragment_repeated_is_read_quickly(prefix: str, repeated: str, n: int) -> None:
    """Pumping any fragment thousands of times stays fast (no super-linear blow-up)."""
    text = 'stemedb_replication_lag_seconds{replica="node2"' + prefix + repeated * n + "\n"
    started = time.perf_counter()
    with pytest.raises(MetricsParseError):
        parse_samples(text + "}}\n")
    assert time.perf_counter() - started < 3.0  # milliseconds; quadratic took ~15 s


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
# The decision series other than the lag, for both replicas: a scrape without them is
# incomplete and taken as blind whatever its lag says (test_scrape_completeness.py).
_REST = "".join(
    f'stemedb_circuit_breaker_tripped{{replica="{r}",agent_id="agent-{r}"}} 0\n'
    if name == "stemedb_circuit_breaker_tripped" else f'{name}{{replica="{r}"}} 0\n'
    for r in ("node2", "node3") for name in sorted(DECISION_SERIES - {LAG}))


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
        body = _REST + (garbled_body if garbled else (
            f'{LAG}{{replica="node2"}} {healthy_lag}\n{LAG}{{replica="node3"}} 0.2\n'
            f"stemedb_rate_limit_assertions_per_sec {rate:g}\n"
        ))
        scrape = primary_from_samples(parse_samples(body, PRIMARY_METRICS))
        # No breaker tripped (the list, read when the breaker step asks, is empty).
        obs = replace(_primary_observation(spec, scrape, now, frozenset()),
                      tripped_agents=frozenset())
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


# =========================================================================== admin JSON
KEYS = ["max_assertions_per_sec", "previous_max_assertions_per_sec", "sync_id", "replica_id",
        "state", "started_at", "finished_at", "progress", "agent_id", "was_tripped", "error",
        "code", "message", "tripped", "breakers", "reason", "tripped_at"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from([-1, -5, 0, 1000, 10**400, 2**63, math.nan, math.inf, -math.inf, "1000",
                     "sync-7", "agent-node2", "node2", "sync_already_running", TOKEN,
                     f"Bearer {TOKEN}", "x" * 300]),
)


JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


def _dumps(value: Any) -> bytes:
    try:
        return json.dumps(value).encode()  # NaN and Infinity literals included
    except ValueError:  # an int beyond str()'s digit limit
        return b'{"max_assertions_per_sec": ' + b"9" * 5000 + b"}"


BODIES = st.one_of(
    JSON_VALUES.map(_dumps),
    st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=5).map(_dumps),
    st.lists(st.dictionaries(st.sampled_from(KEYS), SCALARS, max_size=4), max_size=3).map(_dumps),
    st.builds(lambda v: _dumps({"error": v}), st.dictionaries(st.sampled_from(KEYS), SCALARS)),
    st.binary(max_size=64),
    st.sampled_from([b"", b"null", b"[", b"\xff\xfe{", b"{}" + b"\x00", b"[" * 100_000,
                     b'{"error": ' * 50_000, "{\"sync_id\": \"\u00e9\"}".encode("utf-16")]),
)
ADMIN_STATUSES = st.one_of(
    st.sampled_from([200, 201, 202, 204, 400, 401, 403, 404, 409, 429, 500, 503]),
    st.integers(100, 599),
)

CALLS: dict[str, Callable[[StemeDBClient], Any]] = {
    "get_rate_limit": lambda c: c.get_rate_limit(BASE, CREDS),
    "set_rate_limit": lambda c: c.set_rate_limit(BASE, 1000, CREDS),
    "force_sync": lambda c: c.force_sync(BASE, "node2", CREDS),
    "tripped_breakers": lambda c: c.tripped_breakers(BASE, CREDS),
    "reset_breaker": lambda c: c.reset_breaker(BASE, "agent-node2", CREDS),
}


def opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def assert_well_typed(method: str, got: Any) -> None:
    if method in ("get_rate_limit", "set_rate_limit"):
        assert isinstance(got, RateLimitReading)
        assert plausible(got.max_assertions_per_sec), got
        assert plausible(got.previous_max_assertions_per_sec), got
    elif method == "force_sync":
        assert isinstance(got, SyncStarted | SyncAlreadyRunning)
        assert got.replica_id == "node2" or isinstance(got, SyncStarted)
        assert isinstance(got.replica_id, str) and opt_str(got.sync_id)
        if isinstance(got, SyncStarted):
            assert isinstance(got.sync_id, str) and got.sync_id
            assert isinstance(got.state, str) and opt_str(got.started_at)
    elif method == "tripped_breakers":
        assert isinstance(got, list)
        for b in got:
            assert isinstance(b, TrippedBreaker) and isinstance(b.agent_id, str) and b.agent_id
            assert opt_str(b.replica_id) and opt_str(b.tripped_at) and opt_str(b.reason)
    else:
        assert isinstance(got, BreakerReset) and isinstance(got.agent_id, str)
        assert opt_str(got.replica_id) and got.was_tripped in (None, True, False)


def assert_no_token(err: StemeDBError) -> None:
    texts = [str(err), repr(err), repr(err.args), err.message]
    if isinstance(err, StemeDBHTTPError):
        texts += [str(err.code), str(err.server_message)]
    assert not any(TOKEN in t for t in texts), texts


VALID_ANSWERS: dict[str, tuple[int, Any]] = {
    "get_rate_limit": (200, {"max_assertions_per_sec": 1000,
                             "previous_max_assertions_per_sec": None}),
    "set_rate_limit": (200, {"max_assertions_per_sec": 1000,
                             "previous_max_assertions_per_sec": 250}),
    "force_sync": (202, {"sync_id": "sync-7", "replica_id": "node2", "state": "running",
                         "started_at": "2025-11-25T18:55:00Z"}),
    "tripped_breakers": (200, [{"agent_id": "agent-node2", "replica_id": "node2",
                                "tripped_at": "t", "reason": "r"}]),
    "reset_breaker": (200, {"agent_id": "agent-node2", "replica_id": "node2",
                            "was_tripped": True}),
}
SYNC_ALREADY_RUNNING = {"error": {"code": "sync_already_running", "message": "m",
                                  "sync_id": "sync-7"}}


@st.composite
def near_valid(draw: st.DrawFn, method: str) -> tuple[int, bytes]:
    """The documented answer with one to three fields deleted or replaced by any JSON."""
    status, body = VALID_ANSWERS[method]
    if method == "force_sync" and draw(st.booleans()):
        status, body = 409, SYNC_ALREADY_RUNNING
    body = json.loads(json.dumps(body))
    for _ in range(draw(st.integers(1, 3))):
        target = body
        if isinstance(target, list):
            if not target or draw(st.integers(0, 3)) == 0:
                target.append(draw(JSON_VALUES))
                continue
            target = target[draw(st.integers(0, len(target) - 1))]
        if isinstance(target, dict) and isinstance(target.get("error"), dict):
            target = target["error"] if draw(st.booleans()) else target
        if not isinstance(target, dict):
            continue
        key = draw(st.sampled_from(sorted(set(target) | set(KEYS))))
        if key in target and draw(st.integers(0, 4)) == 0:
            del target[key]
        else:
            target[key] = draw(JSON_VALUES)
    status = draw(st.sampled_from([status, status, status, 200, 204, 409]))
    return status, _dumps(body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(CALLS)), st.booleans(), st.data())
def test_any_admin_answer_gives_a_typed_result_or_a_specific_error(
    method: str, echo_headers: bool, data: st.DataObject
) -> None:
    status, body = data.draw(st.one_of(near_valid(method), st.tuples(ADMIN_STATUSES, BODIES)))
    headers = {"Content-Type": "application/json"}
    if echo_headers:
        headers |= {"WWW-Authenticate": f'Bearer error="invalid_token" token="{TOKEN}"',
                    "X-Echo-Authorization": f"Bearer {TOKEN}"}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    with capture_logs() as logs:
        got, _ = run_against(answer, CALLS[method])
    assert TOKEN not in repr(logs)
    if isinstance(got, StemeDBError):
        assert_specific(got)
        assert_no_token(got)
        if not 200 <= status < 300 and not (method == "force_sync" and status == 409):
            assert isinstance(got, StemeDBHTTPError) and got.status == status
            assert isinstance(got, StemeDBUnauthorized) == (status in (401, 403))
        elif 200 <= status < 300:
            assert isinstance(got, StemeDBBadResponse)
        return
    assert 200 <= status < 300 or (method == "force_sync" and status == 409), (status, got)
    assert_well_typed(method, got)


def J(value: Any) -> bytes:
    return json.dumps(value).encode()


REFUSED = [
    # (method, status, body): each must be a StemeDBBadResponse, never a coerced result
    ("get_rate_limit", 200, J({"max_assertions_per_sec": "1000"})),
    ("get_rate_limit", 200, J({"max_assertions_per_sec": True})),
    ("get_rate_limit", 200, J({"max_assertions_per_sec": [1000]})),
    ("get_rate_limit", 200, J({"max_assertions_per_sec": {"value": 1000}})),
    ("get_rate_limit", 200, J({"max_assertions_per_sec": -5})),
    ("get_rate_limit", 200, J({"max_assertions_per_sec": -1})),
    ("get_rate_limit", 200, b'{"max_assertions_per_sec": NaN}'),
    ("get_rate_limit", 200, b'{"max_assertions_per_sec": Infinity}'),
    ("get_rate_limit", 200, b'{"max_assertions_per_sec": -Infinity}'),
    ("get_rate_limit", 200, b'{"max_assertions_per_sec": 1' + b"0" * 400 + b"}"),
    ("get_rate_limit", 200, b'{"max_assertions_per_sec": 1e400}'),
    ("get_rate_limit", 200, b'{"max_assertions_per_sec": ' + b"9" * 5000 + b"}"),
    ("get_rate_limit", 200, J({"max_assertions_per_sec": 5, "previous_max_assertions_per_sec":
                               -3})),
    ("get_rate_limit", 200, J([{"max_assertions_per_sec": 5}])),
    ("get_rate_limit", 200, J({})),
    ("set_rate_limit", 200, J({"max_assertions_per_sec": "unlimited"})),
    ("set_rate_limit", 200, b'{"max_assertions_per_sec": NaN}'),
    ("force_sync", 202, J({"sync_id": ["sync-7"]})),
    ("force_sync", 202, J({"sync_id": 7})),
    ("force_sync", 202, J({"sync_id": {"id": "sync-7"}})),
    ("force_sync", 202, J({"sync_id": "x" * 100_000})),
    ("force_sync", 202, J({"sync_id": "sync-7", "state": ["running"]})),
    ("force_sync", 202, J({"sync_id": "sync-7", "replica_id": 2})),
    ("force_sync", 202, J(["sync-7"])),
    ("force_sync", 409, J({"error": {"code": "sync_already_running", "sync_id": ["s"]}})),
    ("tripped_breakers", 200, J({"tripped": "agent-node2"})),
    ("tripped_breakers", 200, J(["agent-node2"])),
    ("tripped_breakers", 200, J([{"agent_id": 2}])),
    ("tripped_breakers", 200, J([{"agent_id": ["agent-node2"]}])),
    ("tripped_breakers", 200, J([{"agent_id": {"id": "agent-node2"}}])),
    ("tripped_breakers", 200, J([{"agent_id": "agent-node2", "replica_id": ["node2"]}])),
    ("tripped_breakers", 200, J([{"agent_id": "a" * 100_000}])),
    ("tripped_breakers", 200, b"[" * 100_000),
    ("tripped_breakers", 200, b"[" * 100_000 + b"]" * 100_000),
    ("reset_breaker", 200, J({"agent_id": 7, "was_tripped": True})),
    ("reset_breaker", 200, J({"agent_id": "agent-node2", "replica_id": {"x": 1}})),
    ("reset_breaker", 200, J([{"agent_id": "agent-node2", "was_tripped": True}])),
]


@pytest.mark.parametrize(("method", "status", "body"), REFUSED,
                         ids=[f"{m} {s} {b[:50]!r}" for m, s, b in REFUSED])
def test_wrong_types_are_refused_not_coerced(method: str, status: int, body: bytes) -> None:
    got, _ = run_against(lambda r: httpx.Response(status, content=body), CALLS[method])
    assert isinstance(got, StemeDBBadResponse), got
    assert_specific(got)


ACCEPTED = [
    ("get_rate_limit", 200, J({"max_assertions_per_sec": None}), RateLimitReading(None)),
    ("get_rate_limit", 200, J({"max_assertions_per_sec": 0}), RateLimitReading(0.0)),
    ("get_rate_limit", 200, J({"max_assertions_per_sec": 2.5}), RateLimitReading(2.5)),
    ("force_sync", 409, J({"error": {"code": "sync_already_running"}}),
     SyncAlreadyRunning("node2", None)),
    ("reset_breaker", 200, J({"was_tripped": "true"}), BreakerReset("agent-node2", None, None)),
    ("reset_breaker", 200, J({"was_tripped": 1}), BreakerReset("agent-node2", None, None)),
    ("tripped_breakers", 200, J({"breakers": []}), []),
]


@pytest.mark.parametrize(("method", "status", "body", "expected"), ACCEPTED,
                         ids=[f"{m} {s} {b[:50]!r}" for m, s, b, _ in ACCEPTED])
def test_what_is_accepted_is_never_coerced_into_more(
    method: str, status: int, body: bytes, expected: Any
) -> None:
    """A "true" string or a 1 is not a boolean: was_tripped stays unknown."""
    got, _ = run_against(lambda r: httpx.Response(status, content=body), CALLS[method])
    assert got == expected


ERROR_ANSWERS = [
    pytest.param(409, b"<html>conflict</html>", id="a 409 that is not JSON"),
    pytest.param(409, b"[" * 100_000, id="a 409 nested too deep"),
    pytest.param(409, J({"error": "sync_already_running"}), id="a 409 whose error is a string"),
    pytest.param(409, J({"error": {"code": "other"}}), id="a 409 of another code"),
    pytest.param(401, b"[" * 100_000, id="a 401 nested too deep"),
    pytest.param(503, b'{"error": ' * 50_000, id="a 503 nested too deep"),
    pytest.param(500, J({"error": {"code": 10**100, "message": ["x"]}}), id="odd envelope types"),
    pytest.param(500, b'{"error": {"code": ' + b"9" * 5000 + b"}}", id="a code too long for str"),
]


@pytest.mark.parametrize(("status", "body"), ERROR_ANSWERS)
def test_an_error_status_is_an_http_error_with_its_status(status: int, body: bytes) -> None:
    got, requests = run_against(lambda r: httpx.Response(status, content=body),
                                CALLS["force_sync"])
    assert isinstance(got, StemeDBHTTPError) and got.status == status, got
    assert_specific(got)
    assert isinstance(got, StemeDBUnauthorized) == (status == 401)
    assert len(requests) == 1  # force_sync is never retried after sending


def test_a_retryable_status_with_a_deep_body_is_still_retried() -> None:
    got, requests = run_against(lambda r: httpx.Response(503, content=b"[" * 100_000),
                                CALLS["get_rate_limit"])
    assert isinstance(got, StemeDBHTTPError) and got.status == 503
    assert len(requests) > 1


# --------------------------------------------------------------------------- the token
tokens = st.from_regex(r"\A[A-Za-z0-9\-._~+/]{6,40}=*\Z")  # RFC 6750 b64token


@st.composite
def echoing_body(draw: st.DrawFn, token: str) -> bytes:
    where = draw(st.sampled_from(["code", "message", "both", "nested", "long", "raw", "key"]))
    pad = draw(st.text(max_size=250))
    if where == "raw":
        return f"{pad}{token}{pad}".encode()
    if where == "nested":
        return J({"error": {"code": {"t": token}, "message": [pad, token]}})
    if where == "key":
        return J({"error": {"code": {token: 1}, "message": {token: pad}}})
    if where == "long":
        return J({"error": {"code": "x" * 60 + token, "message": pad + token + pad}})
    code = f"{pad[:20]}{token}" if where in ("code", "both") else "bad_token"
    message = f"{pad} Bearer {token} {pad}" if where in ("message", "both") else pad
    return J({"error": {"code": code, "message": message}})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens, st.sampled_from(sorted(CALLS)),
       st.sampled_from([400, 401, 403, 404, 409, 500, 503]), st.data())
def test_the_token_never_appears_in_an_error(
    token: str, method: str, status: int, data: st.DataObject
) -> None:
    body = data.draw(echoing_body(token))
    creds = Credentials(token=token)
    calls: dict[str, Callable[[StemeDBClient], Any]] = {
        "get_rate_limit": lambda c: c.get_rate_limit(BASE, creds),
        "set_rate_limit": lambda c: c.set_rate_limit(BASE, 1000, creds),
        "force_sync": lambda c: c.force_sync(BASE, "node2", creds),
        "tripped_breakers": lambda c: c.tripped_breakers(BASE, creds),
        "reset_breaker": lambda c: c.reset_breaker(BASE, "agent-node2", creds),
    }

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {token}"
        return httpx.Response(status, content=body,
                              headers={"WWW-Authenticate": f"Bearer {token}", "X-Token": token})

    with capture_logs() as logs:
        got, _ = run_against(answer, calls[method])
    assert isinstance(got, StemeDBError)
    texts = [str(got), repr(got), repr(got.args), got.message, repr(logs)]
    if isinstance(got, StemeDBHTTPError):
        texts += [str(got.code), str(got.server_message)]
    assert not any(token in t for t in texts), texts


def test_a_metrics_error_never_carries_the_bad_line() -> None:
    body = f'stemedb_replication_lag_seconds{{replica="{TOKEN}"}} oops\n'.encode()
    got, _ = run_against(lambda r: httpx.Response(200, content=body),
                         lambda c: c.scrape_primary(BASE, CREDS))
    assert isinstance(got, MetricsParseError) and TOKEN not in str(got)
