"""The StemeDB adapter: /metrics scrapes and the admin API, over shared aiohttp pools.

Codes against ``docs/stemedb-api.md``. Public surface:

* :class:`Credentials` (token, CA PEM; secrets hidden from repr/str),
* :class:`ClientConfig` (timeouts, retry budget, pool), :class:`StemeDBClient`,
* result dataclasses (:class:`PrimaryScrape`, :class:`ReplicaScrape`,
  :class:`NodeScrape`, :class:`RateLimitReading`, :class:`SyncStarted`,
  :class:`SyncAlreadyRunning`, :class:`TrippedBreaker`, :class:`BreakerReset`),
* the errors of :mod:`controller.adapters.stemedb_errors` (re-exported).

Nothing but a result or a :class:`StemeDBError` leaves a public method.

Retries (tenacity, jittered exponential backoff): a call gives up when the next
attempt would start after ``retry_budget`` seconds or after ``max_attempts``
attempts; each attempt is bounded by ``request_timeout`` (as well as httpx's
connect/read/write/pool timeouts), so a call takes at most about
``retry_budget + request_timeout`` seconds, which ``ClientConfig`` checks is below
the poll interval. What is retried depends on what a repeat costs
(docs/stemedb-api.md, "Retries per endpoint"):

* ``SAFE`` (reads: the scrapes, GET rate-limit, GET tripped breakers): transport
  errors, timeouts, 429, 500, 502, 503, 504. A read changes nothing, and how
  often a cluster's reads go out is bounded by the policy (the breaker list is
  read only when a decision needs it, and backed off while it fails).
* ``NOT_SENT_ONLY`` (every admin write: force_sync, the rate-limit POST, the
  breaker reset): only failures where the request cannot have reached the server
  (connect errors, connect and pool timeouts). A write that reached the server is
  an attempt the spec's ``maxActionsPerHour`` counts (issue 14, item 4: four
  transport attempts per action made more writes per hour than the spec allows),
  even when it is idempotent; a read timeout, a reset connection or a 5xx after
  sending is returned to the caller as an error with ``may_have_applied``
  semantics, the policy's backoff spaces the next action and the next poll
  re-observes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from importlib import metadata
from typing import Any, TypeVar

import httpx
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from controller.adapters.aiohttp_transport import AiohttpTransport
from controller.adapters.destinations import DestinationDenied, Destinations
from controller.adapters.metrics_text import Sample, parse_samples
from controller.adapters.operator_metrics import OperatorMetrics
from controller.adapters.stemedb_errors import (
    MetricsParseError,
    StemeDBBadResponse,
    StemeDBDestinationDenied,
    StemeDBError,
    StemeDBHTTPError,
    StemeDBTimeout,
    StemeDBTLSError,
    StemeDBUnauthorized,
    StemeDBUnreachable,
    scrub,
)

log = structlog.get_logger("controller.adapters.stemedb")

T = TypeVar("T")


def _version() -> str:
    try:
        return metadata.version("stemedb-operator")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0.0.0"


VERSION = _version()
USER_AGENT = f"stemedb-operator/{VERSION}"


# --------------------------------------------------------------------------- credentials
@dataclass(frozen=True, slots=True)
class Credentials:
    """What the handlers read from the Secrets named in ``spec.auth``.

    Passed on every call, so a rotated token is used from the next call on.
    ``repr``/``str`` never show the token or the CA bytes.
    """

    token: str | None = field(default=None, repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)

    @property
    def ca_fingerprint(self) -> str | None:
        if not self.ca_pem:
            return None
        return hashlib.sha256(self.ca_pem).hexdigest()

    def __repr__(self) -> str:
        token = "<redacted>" if self.token else None
        ca = f"sha256:{self.ca_fingerprint[:12]}" if self.ca_fingerprint else None
        return f"Credentials(token={token}, ca={ca})"

    __str__ = __repr__


NO_CREDENTIALS = Credentials()


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Timeouts, retry budget and pool of the shared client (seconds).

    Defaults fit a 10 s poll: a call ends within ``retry_budget + request_timeout``
    (7 s); ``__post_init__`` refuses values that would overrun ``poll_interval``.
    """

    poll_interval: float = 10.0
    connect_timeout: float = 1.0
    read_timeout: float = 2.5
    write_timeout: float = 1.0
    pool_timeout: float = 1.0
    request_timeout: float = 3.0  # whole attempt, headers + body
    retry_budget: float = 4.0  # no attempt starts after this
    max_attempts: int = 4
    backoff_initial: float = 0.1
    backoff_max: float = 1.0
    # Per origin (scheme://host:port). A cluster polls one origin at a time;
    # several connections are only needed when many clusters share one endpoint
    # (a gateway, the simulator). Beyond it requests wait for a free connection.
    max_connections: int = 512
    keepalive_expiry: float = 30.0  # above the poll interval: reuse across polls
    max_ca_clients: int = 256  # distinct custom CAs with a client of their own
    trust_env: bool = False  # ignore HTTP(S)_PROXY / SSL_CERT_FILE from the environment
    user_agent: str = USER_AGENT

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "write_timeout", "pool_timeout"):
            if not 0 < getattr(self, name) < self.poll_interval:
                raise ValueError(f"{name} must be > 0 and below the poll interval")
        if self.retry_budget + self.request_timeout >= self.poll_interval:
            raise ValueError("retry_budget + request_timeout must be below the poll interval")
        if self.keepalive_expiry <= self.poll_interval:
            raise ValueError("keepalive_expiry must be above the poll interval")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.write_timeout,
            pool=self.pool_timeout,
        )



class RetryPolicy(Enum):
    """Which failed attempts a call repeats on its own (see the module docstring)."""

    SAFE = "safe"  # reads
    NOT_SENT_ONLY = "not_sent_only"  # writes: only what never reached the server


RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def _should_retry(policy: RetryPolicy, exc: BaseException) -> bool:
    if isinstance(exc, StemeDBUnreachable | StemeDBTimeout):
        return policy is RetryPolicy.SAFE or not exc.may_have_applied
    if isinstance(exc, StemeDBHTTPError) and not isinstance(exc, StemeDBUnauthorized):
        return policy is RetryPolicy.SAFE and exc.status in RETRYABLE_STATUSES
    return False


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class ReplicaScrape:
    """One replica as seen in its primary's /metrics. ``None`` = unknown: the series is
    missing, or is not a plausible value (NaN, negative, infinite, a 0/1 gauge that is
    neither), or two samples of it disagree."""

    replica: str
    lag_seconds: float | None = None
    up: bool | None = None
    sync_running: bool | None = None
    sync_progress: float | None = None
    sync_errors_total: float | None = None
    sync_corruption_total: float | None = None
    sync_duration_sum: float | None = None
    sync_duration_count: float | None = None
    restarts_total: float | None = None
    network_bytes_sent_total: float | None = None
    breaker_tripped: bool | None = None
    backlog_assertions: float | None = None
    # The agent the primary names for this replica's breaker (label agent_id).
    agent_id: str | None = None
    # Series of DECISION_SERIES with no sample for this replica: the body was cut
    # short (a cut at a line boundary still parses), or this StemeDB lacks them.
    missing: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PrimaryScrape:
    """The primary's /metrics, reduced to what the runbook needs.

    ``rate_limit_reported`` is False when the (assumed) rate-limit gauge is
    absent or not a rate (NaN, infinite, negative other than -1, two values);
    then ``rate_limit`` is None and means "unknown", otherwise None means
    unlimited (the gauge's ``-1``).
    """

    replicas: Mapping[str, ReplicaScrape]
    assertions_indexed_total: float | None
    rate_limit: float | None
    rate_limit_reported: bool
    assertions_rate_limited_total: float | None = None
    node: str | None = None
    role: str | None = None


@dataclass(frozen=True, slots=True)
class NodeScrape:
    """A replica's own /metrics (read only while an episode needs the evidence)."""

    assertions_indexed_total: float | None
    disk_io_utilization: float | None
    node: str | None = None
    role: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimitReading:
    """The rate-limit endpoint's answer (the domain's ``RateLimit`` is the limit as a
    policy input). ``max_assertions_per_sec``: None = unlimited, 0 = ingestion paused."""

    max_assertions_per_sec: float | None
    previous_max_assertions_per_sec: float | None = None


@dataclass(frozen=True, slots=True)
class SyncStarted:
    replica_id: str
    sync_id: str
    state: str = "running"
    started_at: str | None = None


@dataclass(frozen=True, slots=True)
class SyncAlreadyRunning:
    """409 ``sync_already_running``: the goal (a sync is running) already holds."""

    replica_id: str
    sync_id: str | None


@dataclass(frozen=True, slots=True)
class TrippedBreaker:
    agent_id: str
    replica_id: str | None
    tripped_at: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BreakerReset:
    agent_id: str
    replica_id: str | None
    was_tripped: bool | None


# --------------------------------------------------------------------------- scrape mapping
_REPLICA_FIELDS: dict[str, str] = {
    "stemedb_replication_lag_seconds": "lag_seconds",
    "stemedb_replica_up": "up",
    "stemedb_merkle_sync_running": "sync_running",
    "stemedb_merkle_sync_progress": "sync_progress",
    "stemedb_merkle_sync_errors_total": "sync_errors_total",
    "stemedb_merkle_sync_corruption_detected_total": "sync_corruption_total",
    "stemedb_merkle_sync_duration_seconds_sum": "sync_duration_sum",
    "stemedb_merkle_sync_duration_seconds_count": "sync_duration_count",
    "stemedb_replica_restarts_total": "restarts_total",
    "stemedb_network_bytes_sent_total": "network_bytes_sent_total",
    "stemedb_circuit_breaker_tripped": "breaker_tripped",
    "stemedb_replication_backlog_assertions": "backlog_assertions",
}
_BOOL_FIELDS = frozenset({"up", "sync_running", "breaker_tripped"})
# The per-replica series the policy decides on (docs/stemedb-api.md §5.1: every
# per-replica family has a series for every replica, always). A replica without one of
# them makes the scrape incomplete: nothing is acted on (issue 14, item 9's class: a
# body cut at a line boundary parses, and the series after the cut were missing).
DECISION_SERIES = frozenset({
    "stemedb_replication_lag_seconds",
    "stemedb_merkle_sync_running",
    "stemedb_merkle_sync_progress",
    "stemedb_merkle_sync_errors_total",
    "stemedb_merkle_sync_corruption_detected_total",
    "stemedb_replica_restarts_total",
    "stemedb_circuit_breaker_tripped",
})
PRIMARY_METRICS = frozenset(
    {
        *_REPLICA_FIELDS,
        "stemedb_assertions_indexed_total",
        "stemedb_rate_limit_assertions_per_sec",
        "stemedb_assertions_rate_limited_total",
        "stemedb_node_info",
    }
)
NODE_METRICS = frozenset(
    {"stemedb_assertions_indexed_total", "stemedb_disk_io_utilization", "stemedb_node_info"}
)


# A scrape is untrusted input. What cannot be the value it claims to be is unknown
# (None), never a number the runbook could act on: a lag of -5 s looks recovered
# and ends a throttle, a NaN rate limit looked "unlimited" and would have been
# restored as "no limit". Two samples of one series that disagree are unknown too.
_RATE = "stemedb_rate_limit_assertions_per_sec"


def _amount(value: float) -> float | None:
    """A lag, count, duration, progress, utilization or rate: finite and >= 0, else None."""
    return value if math.isfinite(value) and value >= 0 else None


def _flag(value: float) -> bool | None:
    """A 0/1 gauge: anything but 0 or 1 (NaN, 2, -1, inf) is unknown."""
    return True if value == 1 else False if value == 0 else None


class _Scalars:
    """Unlabelled series by name; a name seen with two different values has none."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.conflicting: set[str] = set()

    def add(self, name: str, value: float) -> None:
        old = self.values.setdefault(name, value)
        if old != value and not (old != old and value != value):  # NaN twice agrees
            self.conflicting.add(name)

    def get(self, name: str) -> float | None:
        return None if name in self.conflicting else self.values.get(name)

    def amount(self, name: str) -> float | None:
        v = self.get(name)
        return None if v is None else _amount(v)


def primary_from_samples(samples: Iterable[Sample]) -> PrimaryScrape:
    per_replica: dict[str, dict[str, Any]] = {}
    present: dict[str, set[str]] = {}
    conflicting: set[tuple[str, str]] = set()
    scalars = _Scalars()
    info: dict[str, str] = {}
    for s in samples:
        attr = _REPLICA_FIELDS.get(s.name)
        if attr is not None:
            replica = s.labels.get("replica")
            if replica is None:
                continue
            v = _flag(s.value) if attr in _BOOL_FIELDS else _amount(s.value)
            present.setdefault(replica, set()).add(s.name)
            fields = per_replica.setdefault(replica, {})
            if attr == "breaker_tripped" and s.labels.get("agent_id"):
                fields["agent_id"] = s.labels["agent_id"]
            if attr in fields and fields[attr] != v:
                conflicting.add((replica, attr))
            fields[attr] = None if (replica, attr) in conflicting else v
        elif s.name == "stemedb_node_info":
            info = s.labels
        else:
            scalars.add(s.name, s.value)
    # -1 is the gauge's "unlimited"; anything else that is not a rate is unknown, so
    # the limit is read back from the admin API instead of being taken as unlimited.
    rate = scalars.amount(_RATE)
    return PrimaryScrape(
        replicas={r: ReplicaScrape(replica=r, missing=DECISION_SERIES - present[r], **f)
                  for r, f in sorted(per_replica.items())},
        assertions_indexed_total=scalars.amount("stemedb_assertions_indexed_total"),
        rate_limit=rate,
        rate_limit_reported=rate is not None or scalars.get(_RATE) == -1,
        assertions_rate_limited_total=scalars.amount("stemedb_assertions_rate_limited_total"),
        node=info.get("node"),
        role=info.get("role"),
    )


def node_from_samples(samples: Iterable[Sample]) -> NodeScrape:
    scalars = _Scalars()
    info: dict[str, str] = {}
    for s in samples:
        if s.name == "stemedb_node_info":
            info = s.labels
        elif not s.labels:
            scalars.add(s.name, s.value)
    return NodeScrape(
        assertions_indexed_total=scalars.amount("stemedb_assertions_indexed_total"),
        disk_io_utilization=scalars.amount("stemedb_disk_io_utilization"),
        node=info.get("node"),
        role=info.get("role"),
    )


# --------------------------------------------------------------------------- the client
def _not_metrics(resp: httpx.Response, text: str) -> str | None:
    """What an unparsable /metrics answer is instead, when it says so: a proxy's
    HTML or JSON page is a misconfiguration, not a garbled exposition."""
    ctype = resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    start = text.lstrip()[:15].lower()
    if ctype == "text/html" or start.startswith(("<!doctype html", "<html")):
        kind = "an HTML page"
    elif ctype == "application/json" or start.startswith(("{", "[")):
        kind = "a JSON document"
    else:
        return None
    return (f"the answer is {kind} (Content-Type {ctype or 'none'!r}), not Prometheus text; "
            "does the URL point at a proxy or a login page instead of StemeDB?")


def _endpoint_url(base: str, path: str) -> str:
    return base.rstrip("/") + path


def _safe_url(url: str) -> str:
    """The URL without userinfo or query, for logs."""
    try:
        u = httpx.URL(url)
        return str(u.copy_with(userinfo=b"", query=None))
    except Exception:
        return "<invalid url>"


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _map_transport_error(exc: httpx.TransportError, what: str) -> StemeDBError:
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        phase = {
            httpx.ConnectTimeout: "connect",
            httpx.ReadTimeout: "read",
            httpx.WriteTimeout: "write",
            httpx.PoolTimeout: "pool",
        }.get(type(exc), "read")
        return StemeDBTimeout(
            f"{what}: {phase} timeout",
            phase=phase,
            may_have_applied=phase not in ("connect", "pool"),
        )
    denied = next((e for e in _chain(exc) if isinstance(e, DestinationDenied)), None)
    if denied is not None:
        return StemeDBDestinationDenied(f"{what}: destination denied ({denied})")
    if any(isinstance(e, ssl.SSLError) for e in _chain(exc)):
        cert = any(isinstance(e, ssl.SSLCertVerificationError) for e in _chain(exc))
        return StemeDBTLSError(
            f"{what}: TLS handshake failed ({'certificate not trusted' if cert else 'TLS error'})"
        )
    if isinstance(exc, httpx.ConnectError):
        return StemeDBUnreachable(f"{what}: cannot connect", may_have_applied=False)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return StemeDBUnreachable(f"{what}: bad URL or request ({name})", may_have_applied=False)
    return StemeDBUnreachable(f"{what}: connection failed ({name})", may_have_applied=True)


def _error_from_response(resp: httpx.Response, what: str, token: str | None) -> StemeDBHTTPError:
    code: str | None = None
    message: str | None = None
    try:
        body = resp.json()
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            code = str(err["code"]) if err.get("code") is not None else None
            message = str(err["message"]) if err.get("message") is not None else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # not JSON, or nested too deep
        pass
    if code is not None:
        code = scrub(code, token)[:64]
    if message is not None:
        message = scrub(message, token)
    cls = StemeDBUnauthorized if resp.status_code in (401, 403) else StemeDBHTTPError
    err_obj = cls(resp.status_code, code, message)
    err_obj.message = f"{what}: {err_obj.message}"
    return err_obj


def _json_object(resp: httpx.Response, what: str) -> Any:
    try:
        return resp.json()
    except (ValueError, UnicodeDecodeError, RecursionError):  # not JSON, or nested too deep
        raise StemeDBBadResponse(f"{what}: response is not JSON") from None


# Answers are untrusted: a field of the wrong type is refused, never coerced (a list
# is not an id, "1000" or true is not a rate, -5 or NaN is not a rate or a progress).
_MAX_ID = 256


def _opt_float(body: Mapping[str, Any], key: str, what: str) -> float | None:
    """A number >= 0 (rates, progress) or None; NaN, infinities and ints beyond float
    range (JSON allows all of them) are refused."""
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise StemeDBBadResponse(f"{what}: {key} is not a number")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not (math.isfinite(f) and f >= 0):
        raise StemeDBBadResponse(f"{what}: {key} is not a finite number >= 0")
    return f


def _opt_str(body: Mapping[str, Any], key: str, what: str) -> str | None:
    v = body.get(key)
    if v is not None and not isinstance(v, str):
        raise StemeDBBadResponse(f"{what}: {key} is not a string")
    return v


def _opt_id(body: Mapping[str, Any], key: str, what: str) -> str | None:
    """An id (sync, replica, agent): a printable string of at most 256 characters;
    None when absent or empty."""
    v = _opt_str(body, key, what)
    if v and (len(v) > _MAX_ID or not v.isprintable()):
        raise StemeDBBadResponse(f"{what}: {key} is not an id")
    return v or None


class _Budget:
    """tenacity stop: no attempt starts after ``budget`` seconds or ``max_attempts``.

    Elapsed time is the larger of the injected clock's reading and the sleeps
    tenacity made, so tests with a fake sleep see the budget honoured too.
    """

    def __init__(self, budget: float, max_attempts: int, clock: Callable[[], float]) -> None:
        self.budget = budget
        self.max_attempts = max_attempts
        self.clock = clock
        self.start = clock()

    def __call__(self, rs: RetryCallState) -> bool:
        if rs.attempt_number >= self.max_attempts:
            return True
        elapsed = max(self.clock() - self.start, rs.idle_for)
        return elapsed + rs.upcoming_sleep >= self.budget


class StemeDBClient:
    """One per process. Sends through one transport for the system CAs and a
    small LRU of transports for custom CAs (a TLS context is fixed per
    transport); each is an :class:`AiohttpTransport` (one connector per CA, a
    pool per origin inside).

    Requests are ``httpx.Request`` objects handed straight to the transport:
    ``httpx.AsyncClient`` adds nothing this adapter uses (no redirects, cookies,
    auth flows or base URL) and cost about a third of a poll's CPU (building
    the request and extracting cookies from every response).

    ``transport`` (tests: ``httpx.MockTransport``), ``sleep``, ``clock`` and
    ``rng`` are injection seams; production passes none of them.
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        metrics: OperatorMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        destinations: Destinations | None = None,
    ) -> None:
        self.config = config or ClientConfig()
        self._destinations = destinations
        self.metrics = metrics
        self._injected = transport
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._timeouts = self.config.timeout().as_dict()
        self._default: httpx.AsyncBaseTransport | None = None
        self._ca_transports: OrderedDict[str, httpx.AsyncBaseTransport] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------
    async def __aenter__(self) -> StemeDBClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        transports = list(self._ca_transports.values())
        if self._default is not None:
            transports.append(self._default)
        if self._injected is not None:
            transports = [self._injected]
        self._default = None
        self._ca_transports.clear()
        for t in transports:
            await t.aclose()
        for task in list(self._closing):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _new_transport(self, ctx: ssl.SSLContext) -> httpx.AsyncBaseTransport:
        if self._injected is not None:
            return self._injected
        cfg = self.config
        return AiohttpTransport(ctx, max_per_origin=cfg.max_connections,
                                keepalive_expiry=cfg.keepalive_expiry,
                                destinations=self._destinations)

    def _transport_for(self, creds: Credentials) -> httpx.AsyncBaseTransport:
        if self._closed:
            raise StemeDBUnreachable("StemeDB client is closed")
        fp = creds.ca_fingerprint
        if fp is None:
            if self._default is None:
                self._default = self._new_transport(
                    httpx.create_ssl_context(verify=True, trust_env=self.config.trust_env))
            return self._default
        transport = self._ca_transports.get(fp)
        if transport is not None:
            self._ca_transports.move_to_end(fp)
            return transport
        assert creds.ca_pem is not None
        try:
            ctx = ssl.create_default_context(cadata=creds.ca_pem.decode("ascii"))
        except (ssl.SSLError, ValueError, UnicodeDecodeError):
            raise StemeDBTLSError("CA bundle is not a valid PEM certificate") from None
        transport = self._new_transport(ctx)
        self._ca_transports[fp] = transport
        while len(self._ca_transports) > self.config.max_ca_clients:
            _, old = self._ca_transports.popitem(last=False)
            if old is not self._injected:
                self._close_later(old)
        return transport

    def _close_later(self, transport: httpx.AsyncBaseTransport) -> None:
        # In-flight requests may still use an evicted transport: close after they end.
        grace = self.config.retry_budget + self.config.request_timeout

        async def close() -> None:
            await asyncio.sleep(grace)
            await transport.aclose()

        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- the request engine ----------------------------------------------------
    async def _call(
        self,
        method: str,
        base: str,
        path: str,
        endpoint: str,
        creds: Credentials,
        policy: RetryPolicy,
        handle: Callable[[httpx.Response], T],
        *,
        body: Mapping[str, Any] | None = None,
        accept: Collection[int] = (),
    ) -> T:
        """Send with retries; ``handle`` maps a 2xx (or ``accept``ed) response."""
        what = f"{method} {path}"
        try:
            transport = self._transport_for(creds)
            url = _endpoint_url(base, path)
            headers = {"User-Agent": self.config.user_agent, "Accept": "*/*"}
            if creds.token:
                headers["Authorization"] = f"Bearer {creds.token}"
        except StemeDBError:
            if self.metrics is not None:
                self.metrics.count_request(endpoint, "tls")
            raise
        cfg = self.config
        budget = _Budget(cfg.retry_budget, cfg.max_attempts, self._clock)
        args = (transport, method, url, endpoint, what, headers, body, accept, creds, handle)
        # The first attempt runs outside tenacity: nearly every call succeeds at
        # once, and building the retry machinery per call cost ~10 % of a poll.
        try:
            try:
                return await self._attempt(*args)
            except StemeDBError as exc:
                if not _should_retry(policy, exc):
                    raise
                first_failure = exc
            retrying = AsyncRetrying(
                stop=budget,
                wait=self._wait,
                retry=retry_if_exception(lambda e: _should_retry(policy, e)),
                sleep=self._sleep,
                before_sleep=lambda rs: self._log_retry(rs, endpoint, url),
                reraise=True,
            )
            replayed = False
            async for attempt in retrying:
                with attempt:
                    if not replayed:  # tenacity's attempt 1 is the one already made
                        replayed = True
                        raise first_failure
                    return await self._attempt(*args)
        except StemeDBError:
            raise
        except Exception as exc:  # a bug or an unexpected library error: still typed
            raise StemeDBError(f"{what}: unexpected {type(exc).__name__}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, rs: RetryCallState) -> float:
        """Jittered exponential backoff ("equal jitter"): uniform(cap / 2, cap)."""
        cfg = self.config
        cap = min(cfg.backoff_max, cfg.backoff_initial * 2 ** (rs.attempt_number - 1))
        return self._rng.uniform(cap / 2, cap)

    def _log_retry(self, rs: RetryCallState, endpoint: str, url: str) -> None:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        log.info(
            "stemedb.retry",
            endpoint=endpoint,
            url=_safe_url(url),
            attempt=rs.attempt_number,
            error=str(exc) if exc is not None else None,
            sleep=round(rs.upcoming_sleep, 3),
        )

    async def _attempt(
        self,
        transport: httpx.AsyncBaseTransport,
        method: str,
        url: str,
        endpoint: str,
        what: str,
        headers: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
        accept: Collection[int],
        creds: Credentials,
        handle: Callable[[httpx.Response], T],
    ) -> T:
        started = self._clock()
        code: str = "error"
        try:
            try:
                async with asyncio.timeout(self.config.request_timeout):
                    request = httpx.Request(method, url, headers=headers, json=body,
                                            extensions={"timeout": self._timeouts})
                    resp = await transport.handle_async_request(request)
                    resp.request = request
                    await resp.aread()
            except TimeoutError:
                raise StemeDBTimeout(
                    f"{what}: no complete answer within {self.config.request_timeout:g}s",
                    phase="deadline",
                    may_have_applied=True,
                ) from None
            except httpx.TransportError as exc:
                raise _map_transport_error(exc, what) from None
            except httpx.InvalidURL:
                raise StemeDBUnreachable(f"{what}: invalid URL", may_have_applied=False) from None
            code = str(resp.status_code)
            if not (200 <= resp.status_code < 300 or resp.status_code in accept):
                raise _error_from_response(resp, what, creds.token)
            try:
                return handle(resp)
            except StemeDBBadResponse as exc:
                code = exc.kind
                raise
        except StemeDBError as exc:
            if code == "error":
                code = exc.kind
            log.debug("stemedb.request_failed", endpoint=endpoint, url=_safe_url(url), code=code)
            raise
        finally:
            if self.metrics is not None:
                self.metrics.count_request(endpoint, code, self._clock() - started)

    # -- scrapes ------------------------------------------------------------------
    async def scrape_samples(
        self, base: str, creds: Credentials, wanted: Collection[str] | None = None
    ) -> list[Sample]:
        """GET {base}/metrics and return the wanted samples (all if None)."""
        want = None if wanted is None else frozenset(wanted)

        def handle(resp: httpx.Response) -> list[Sample]:
            try:
                text = resp.content.decode("utf-8")
            except UnicodeDecodeError:
                raise MetricsParseError("GET /metrics: body is not UTF-8") from None
            try:
                return parse_samples(text, want)
            except MetricsParseError as exc:
                what = _not_metrics(resp, text)
                if what is not None:
                    raise MetricsParseError(f"GET /metrics: {what}", line=exc.line) from None
                raise MetricsParseError(f"GET /metrics: {exc}", line=exc.line) from None

        return await self._call(
            "GET", base, "/metrics", "GET /metrics", creds, RetryPolicy.SAFE, handle
        )

    async def scrape_primary(self, base: str, creds: Credentials = NO_CREDENTIALS) -> PrimaryScrape:
        return primary_from_samples(await self.scrape_samples(base, creds, PRIMARY_METRICS))

    async def scrape_node(self, base: str, creds: Credentials = NO_CREDENTIALS) -> NodeScrape:
        return node_from_samples(await self.scrape_samples(base, creds, NODE_METRICS))

    # -- admin: rate limit ---------------------------------------------------------
    @staticmethod
    def _rate_limit(resp: httpx.Response, what: str) -> RateLimitReading:
        body = _json_object(resp, what)
        if not isinstance(body, dict) or "max_assertions_per_sec" not in body:
            raise StemeDBBadResponse(f"{what}: no max_assertions_per_sec in response")
        return RateLimitReading(
            _opt_float(body, "max_assertions_per_sec", what),
            _opt_float(body, "previous_max_assertions_per_sec", what),
        )

    async def get_rate_limit(
        self, base: str, creds: Credentials = NO_CREDENTIALS
    ) -> RateLimitReading:
        path = "/v1/admin/rate-limit"
        return await self._call(
            "GET",
            base,
            path,
            f"GET {path}",
            creds,
            RetryPolicy.SAFE,
            lambda r: self._rate_limit(r, f"GET {path}"),
        )

    async def set_rate_limit(
        self, base: str, rate: float | None, creds: Credentials = NO_CREDENTIALS
    ) -> RateLimitReading:
        """Set (None = remove) the ingestion limit. Idempotent, but a write: repeated
        only when the request cannot have reached the server (each attempt that did
        counts against maxActionsPerHour)."""
        if rate is not None and (rate != rate or rate < 0 or rate == float("inf")):
            raise ValueError("rate must be a finite number >= 0 or None")
        path = "/v1/admin/rate-limit"
        value: float | int | None = rate
        if rate is not None and float(rate).is_integer():
            value = int(rate)
        return await self._call(
            "POST",
            base,
            path,
            f"POST {path}",
            creds,
            RetryPolicy.NOT_SENT_ONLY,
            lambda r: self._rate_limit(r, f"POST {path}"),
            body={"max_assertions_per_sec": value},
        )

    # -- admin: Merkle sync ----------------------------------------------------------
    async def force_sync(
        self, base: str, replica_id: str, creds: Credentials = NO_CREDENTIALS
    ) -> SyncStarted | SyncAlreadyRunning:
        """Start a forced Merkle sync. 409 is :class:`SyncAlreadyRunning`, not an error.

        Not idempotent: retried only when the request cannot have been sent.
        """
        path = "/v1/admin/cluster/sync"
        what = f"POST {path}"

        def handle(resp: httpx.Response) -> SyncStarted | SyncAlreadyRunning:
            if resp.status_code == 409:
                try:
                    body = _json_object(resp, what)
                except StemeDBBadResponse:  # an error status without an envelope
                    raise _error_from_response(resp, what, creds.token) from None
                err = body.get("error") if isinstance(body, dict) else None
                code = err.get("code") if isinstance(err, dict) else "?"
                if not isinstance(err, dict) or code not in (None, "sync_already_running"):
                    raise _error_from_response(resp, what, creds.token)
                return SyncAlreadyRunning(replica_id, _opt_id(err, "sync_id", what))
            body = _json_object(resp, what)
            if not isinstance(body, dict):
                raise StemeDBBadResponse(f"{what}: no sync_id in response")
            sync_id = _opt_id(body, "sync_id", what)
            if sync_id is None:
                raise StemeDBBadResponse(f"{what}: no sync_id in response")
            return SyncStarted(
                replica_id=_opt_id(body, "replica_id", what) or replica_id,
                sync_id=sync_id,
                state=_opt_str(body, "state", what) or "running",
                started_at=_opt_str(body, "started_at", what),
            )

        return await self._call(
            "POST",
            base,
            path,
            what,
            creds,
            RetryPolicy.NOT_SENT_ONLY,
            handle,
            body={"replica_id": replica_id, "force": True},
            accept=(409,),
        )

    # -- admin: circuit breakers -------------------------------------------------------
    async def tripped_breakers(
        self, base: str, creds: Credentials = NO_CREDENTIALS
    ) -> list[TrippedBreaker]:
        path = "/v1/admin/circuit-breakers/tripped"
        what = f"GET {path}"

        def handle(resp: httpx.Response) -> list[TrippedBreaker]:
            body = _json_object(resp, what)
            if isinstance(body, dict):  # tolerate a wrapped list
                body = body.get("tripped", body.get("breakers"))
            if not isinstance(body, list):
                raise StemeDBBadResponse(f"{what}: response is not a list")
            out = []
            for item in body:
                agent = _opt_id(item, "agent_id", what) if isinstance(item, dict) else None
                if agent is None:
                    raise StemeDBBadResponse(f"{what}: entry without agent_id")
                out.append(
                    TrippedBreaker(
                        agent_id=agent,
                        replica_id=_opt_id(item, "replica_id", what),
                        tripped_at=_opt_str(item, "tripped_at", what),
                        reason=_opt_str(item, "reason", what),
                    )
                )
            return out

        return await self._call("GET", base, path, what, creds, RetryPolicy.SAFE, handle)

    async def reset_breaker(
        self, base: str, agent_id: str, creds: Credentials = NO_CREDENTIALS
    ) -> BreakerReset:
        """Reset one breaker (a no-op when not tripped). A write: repeated only when
        the request cannot have reached the server."""
        path = "/v1/admin/circuit-breaker/reset"
        what = f"POST {path}"

        def handle(resp: httpx.Response) -> BreakerReset:
            body = _json_object(resp, what)
            if not isinstance(body, dict):
                raise StemeDBBadResponse(f"{what}: response is not an object")
            tripped = body.get("was_tripped")
            return BreakerReset(
                agent_id=_opt_id(body, "agent_id", what) or agent_id,
                replica_id=_opt_id(body, "replica_id", what),
                was_tripped=tripped if isinstance(tripped, bool) else None,
            )

        return await self._call(
            "POST", base, path, what, creds, RetryPolicy.NOT_SENT_ONLY, handle,
            body={"agent_id": agent_id},
        )


__all__ = [
    "DECISION_SERIES",
    "NODE_METRICS",
    "NO_CREDENTIALS",
    "PRIMARY_METRICS",
    "USER_AGENT",
    "BreakerReset",
    "ClientConfig",
    "Credentials",
    "MetricsParseError",
    "NodeScrape",
    "PrimaryScrape",
    "RateLimitReading",
    "ReplicaScrape",
    "RetryPolicy",
    "StemeDBBadResponse",
    "StemeDBClient",
    "StemeDBError",
    "StemeDBHTTPError",
    "StemeDBTLSError",
    "StemeDBTimeout",
    "StemeDBUnauthorized",
    "StemeDBUnreachable",
    "SyncAlreadyRunning",
    "SyncStarted",
    "TrippedBreaker",
    "node_from_samples",
    "primary_from_samples",
]
