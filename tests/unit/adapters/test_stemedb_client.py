"""The StemeDB client under faults injected through httpx.MockTransport.

No real sleeping: tenacity's sleep and the budget's clock are a fake clock.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from controller.adapters.operator_metrics import OperatorMetrics
from controller.adapters.stemedb import (
    USER_AGENT,
    ClientConfig,
    Credentials,
    MetricsParseError,
    RateLimitReading,
    StemeDBClient,
    StemeDBError,
    StemeDBHTTPError,
    StemeDBTimeout,
    StemeDBTLSError,
    StemeDBUnauthorized,
    StemeDBUnreachable,
    SyncAlreadyRunning,
    SyncStarted,
    TrippedBreaker,
)

BASE = "http://stemedb.test/c/demo/node1"
TOKEN = "s3cr3t-token-value"
CREDS = Credentials(token=TOKEN)

PRIMARY_BODY = """\
# HELP stemedb_replication_lag_seconds lag
# TYPE stemedb_replication_lag_seconds gauge
stemedb_replication_lag_seconds{replica="node2"} 12.5
stemedb_replication_lag_seconds{replica="node3"} 0
# TYPE stemedb_replica_up gauge
stemedb_replica_up{replica="node2"} 1
stemedb_replica_up{replica="node3"} 0
# TYPE stemedb_merkle_sync_running gauge
stemedb_merkle_sync_running{replica="node2"} 1
stemedb_merkle_sync_running{replica="node3"} 0
# TYPE stemedb_merkle_sync_progress gauge
stemedb_merkle_sync_progress{replica="node2"} 0.42
stemedb_merkle_sync_progress{replica="node3"} NaN
# TYPE stemedb_merkle_sync_duration_seconds histogram
stemedb_merkle_sync_duration_seconds_bucket{replica="node2",le="+Inf"} 2
stemedb_merkle_sync_duration_seconds_sum{replica="node2"} 30.0
stemedb_merkle_sync_duration_seconds_count{replica="node2"} 2
# TYPE stemedb_assertions_indexed_total counter
stemedb_assertions_indexed_total 123456
# TYPE stemedb_rate_limit_assertions_per_sec gauge
stemedb_rate_limit_assertions_per_sec -1
# TYPE stemedb_node_info gauge
stemedb_node_info{node="node1",role="primary"} 1
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 3.5
"""


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


Step = int | tuple[int, Any] | type[Exception] | Exception | Callable[[httpx.Request], Any]


@dataclass
class Server:
    """Answers each request with the next scripted step (the last one repeats)."""

    script: list[Step]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        if isinstance(step, type) and issubclass(step, Exception):
            raise (
                step("injected", request=request)
                if issubclass(step, httpx.RequestError)
                else step("injected")
            )
        if isinstance(step, Exception):
            raise step
        if callable(step):
            return step(request)
        status, body = step if isinstance(step, tuple) else (step, None)
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        if body is None and status >= 400:
            body = {"error": {"code": f"e{status}", "message": f"status {status}"}}
        return httpx.Response(status, json=body)


def make(
    script: list[Step], config: ClientConfig | None = None
) -> tuple[StemeDBClient, Server, FakeTime, OperatorMetrics]:
    server = Server(script)
    fake = FakeTime()
    metrics = OperatorMetrics(CollectorRegistry())
    client = StemeDBClient(
        config or ClientConfig(),
        metrics=metrics,
        transport=httpx.MockTransport(server),
        sleep=fake.sleep,
        clock=fake.clock,
    )
    return client, server, fake, metrics


def count(metrics: OperatorMetrics, endpoint: str, code: str) -> float:
    value = metrics.registry.get_sample_value(
        "stemedb_operator_stemedb_requests_total", {"endpoint": endpoint, "code": code}
    )
    return value or 0.0


# --------------------------------------------------------------------------- scrapes
SCRAPE_CASES = [
    pytest.param([(200, PRIMARY_BODY)], None, 1, id="a healthy scrape takes one request"),
    pytest.param([503, (200, PRIMARY_BODY)], None, 2, id="a scrape is retried after a 503"),
    pytest.param([500, 502, (200, PRIMARY_BODY)], None, 3, id="a scrape rides out 500 and 502"),
    pytest.param(
        [httpx.ReadTimeout, (200, PRIMARY_BODY)], None, 2, id="a scrape is retried on read timeout"
    ),
    pytest.param(
        [httpx.ConnectError, (200, PRIMARY_BODY)], None, 2, id="a scrape is retried on refusal"
    ),
    pytest.param([httpx.ConnectError], StemeDBUnreachable, 4, id="a dead node gives up after 4"),
    pytest.param([httpx.ReadTimeout], StemeDBTimeout, 4, id="a hung node gives up as a timeout"),
    pytest.param([500], StemeDBHTTPError, 4, id="a persistent 500 ends as an HTTP error"),
    pytest.param([401], StemeDBUnauthorized, 1, id="a 401 is not retried"),
    pytest.param([404], StemeDBHTTPError, 1, id="a 404 is not retried"),
    pytest.param([(200, "garbage {{{ \n")], MetricsParseError, 1, id="garbled metrics not retried"),
    pytest.param(
        [(200, PRIMARY_BODY[:-2])], MetricsParseError, 1, id="a truncated body is an error"
    ),
    pytest.param([(200, "")], MetricsParseError, 1, id="an empty body is an error"),
    pytest.param(
        [lambda r: httpx.Response(200, content=b"\xff\xfe m 1\n")],
        MetricsParseError,
        1,
        id="a body that is not UTF-8 is an error",
    ),
    pytest.param(
        [httpx.RemoteProtocolError, (200, PRIMARY_BODY)], None, 2, id="a reset is retried"
    ),
]


@pytest.mark.parametrize(("script", "error", "calls"), SCRAPE_CASES)
async def test_scrape_primary(
    script: list[Step], error: type[Exception] | None, calls: int
) -> None:
    client, server, fake, _ = make(script)
    async with client:
        if error is None:
            scrape = await client.scrape_primary(BASE, CREDS)
            assert scrape.replicas["node2"].lag_seconds == 12.5
        else:
            with pytest.raises(error) as info:
                await client.scrape_primary(BASE, CREDS)
            assert isinstance(info.value, StemeDBError)
            assert TOKEN not in str(info.value)
    assert len(server.requests) == calls
    assert sum(fake.sleeps) < ClientConfig().retry_budget


async def test_a_primary_scrape_maps_every_series() -> None:
    client, server, _, _ = make([(200, PRIMARY_BODY)])
    async with client:
        s = await client.scrape_primary(BASE, CREDS)
    n2, n3 = s.replicas["node2"], s.replicas["node3"]
    assert (n2.lag_seconds, n2.up, n2.sync_running, n2.sync_progress) == (12.5, True, True, 0.42)
    assert (n2.sync_duration_sum, n2.sync_duration_count) == (30.0, 2.0)
    assert (n3.lag_seconds, n3.up, n3.sync_running, n3.sync_progress) == (0.0, False, False, None)
    assert n3.sync_errors_total is None  # series absent: unknown, not zero
    assert s.assertions_indexed_total == 123456
    assert (s.rate_limit, s.rate_limit_reported) == (None, True)  # -1 = unlimited
    assert (s.node, s.role) == ("node1", "primary")
    assert str(server.requests[0].url) == BASE + "/metrics"


async def test_a_node_scrape_reads_its_own_counters() -> None:
    body = (
        "# TYPE stemedb_assertions_indexed_total counter\nstemedb_assertions_indexed_total 99\n"
        "# TYPE stemedb_disk_io_utilization gauge\nstemedb_disk_io_utilization 0.97\n"
    )
    client, _, _, _ = make([(200, body)])
    async with client:
        n = await client.scrape_node("http://stemedb.test/c/demo/node2", CREDS)
    assert (n.assertions_indexed_total, n.disk_io_utilization) == (99, 0.97)


# --------------------------------------------------------------------------- admin calls
SYNC_OK = (202, {"sync_id": "sync-7", "replica_id": "node2", "state": "running"})
SYNC_409 = (
    409,
    {"error": {"code": "sync_already_running", "message": "running", "sync_id": "sync-7"}},
)

SYNC_CASES = [
    pytest.param([SYNC_OK], SyncStarted("node2", "sync-7"), 1, id="a 202 starts a sync"),
    pytest.param(
        [SYNC_409], SyncAlreadyRunning("node2", "sync-7"), 1, id="a 409 is success: already running"
    ),
    pytest.param([httpx.ReadTimeout], StemeDBTimeout, 1, id="a read timeout is never retried"),
    pytest.param([httpx.WriteTimeout], StemeDBTimeout, 1, id="a write timeout is never retried"),
    pytest.param([httpx.ReadError], StemeDBUnreachable, 1, id="a reset after sending is final"),
    pytest.param([500], StemeDBHTTPError, 1, id="a 500 is not retried"),
    pytest.param([503], StemeDBHTTPError, 1, id="a 503 replica_unavailable is not retried"),
    pytest.param(
        [httpx.ConnectError, SYNC_OK],
        SyncStarted("node2", "sync-7"),
        2,
        id="a refused connection is retried since nothing was sent",
    ),
    pytest.param(
        [httpx.ConnectTimeout, SYNC_OK],
        SyncStarted("node2", "sync-7"),
        2,
        id="a connect timeout is retried since nothing was sent",
    ),
    pytest.param(
        [httpx.PoolTimeout, SYNC_OK],
        SyncStarted("node2", "sync-7"),
        2,
        id="a pool timeout is retried since nothing was sent",
    ),
    pytest.param([(202, {"nope": 1})], StemeDBError, 1, id="a 202 without sync_id is bad"),
]


@pytest.mark.parametrize(("script", "expected", "calls"), SYNC_CASES)
async def test_force_sync(script: list[Step], expected: Any, calls: int) -> None:
    client, server, _, _ = make(script)
    async with client:
        if isinstance(expected, type):
            with pytest.raises(expected) as info:
                await client.force_sync(BASE, "node2", CREDS)
            if isinstance(info.value, StemeDBTimeout):
                assert info.value.may_have_applied
        else:
            got = await client.force_sync(BASE, "node2", CREDS)
            assert got == expected
    assert len(server.requests) == calls
    assert json.loads(server.requests[0].content) == {"replica_id": "node2", "force": True}


async def test_a_409_of_another_kind_is_an_error() -> None:
    client, _, _, _ = make([(409, {"error": {"code": "conflict", "message": "x"}})])
    async with client:
        with pytest.raises(StemeDBHTTPError) as info:
            await client.force_sync(BASE, "node2", CREDS)
    assert info.value.status == 409 and info.value.code == "conflict"


ADMIN_CASES = [
    pytest.param(
        "set_rate_limit",
        (1000,),
        [500, (200, {"max_assertions_per_sec": 1000, "previous_max_assertions_per_sec": None})],
        StemeDBHTTPError,
        1,
        {"max_assertions_per_sec": 1000},
        id="setting the rate limit is not retried after a 500: the attempt reached StemeDB",
    ),
    pytest.param(
        "set_rate_limit",
        (1000,),
        [httpx.ConnectError, (200, {"max_assertions_per_sec": 1000})],
        RateLimitReading(1000.0, None),
        2,
        {"max_assertions_per_sec": 1000},
        id="setting the rate limit is retried when the connection was refused (never sent)",
    ),
    pytest.param(
        "set_rate_limit",
        (None,),
        [(200, {"max_assertions_per_sec": None})],
        RateLimitReading(None),
        1,
        {"max_assertions_per_sec": None},
        id="removing the rate limit sends null",
    ),
    pytest.param(
        "set_rate_limit",
        (0,),
        [(400, {"error": {"code": "invalid_body", "message": "no"}})],
        StemeDBHTTPError,
        1,
        {"max_assertions_per_sec": 0},
        id="a 400 on the rate limit is not retried",
    ),
    pytest.param(
        "get_rate_limit",
        (),
        [httpx.ReadTimeout, (200, {"max_assertions_per_sec": 250})],
        RateLimitReading(250.0),
        2,
        None,
        id="reading the rate limit is retried on timeout",
    ),
    pytest.param(
        "get_rate_limit",
        (),
        [(200, {"max_assertions_per_sec": "x"})],
        StemeDBError,
        1,
        None,
        id="a rate limit that is not a number is a bad response",
    ),
    pytest.param(
        "tripped_breakers",
        (),
        [
            503,
            (
                200,
                [
                    {
                        "agent_id": "agent-node2",
                        "replica_id": "node2",
                        "tripped_at": "t",
                        "reason": "r",
                    }
                ],
            ),
        ],
        [TrippedBreaker("agent-node2", "node2", "t", "r")],
        2,
        None,
        id="listing tripped breakers is retried after a 503",
    ),
    pytest.param(
        "tripped_breakers",
        (),
        [(200, [])],
        [],
        1,
        None,
        id="no tripped breakers is an empty list",
    ),
    pytest.param(
        "tripped_breakers",
        (),
        [(200, "not json")],
        StemeDBError,
        1,
        None,
        id="a tripped list that is not JSON is a bad response",
    ),
    pytest.param(
        "reset_breaker",
        ("agent-node2",),
        [
            httpx.ReadTimeout,
            (200, {"agent_id": "agent-node2", "replica_id": "node2", "was_tripped": True}),
        ],
        StemeDBTimeout,
        1,
        {"agent_id": "agent-node2"},
        id="a breaker reset is not retried after a read timeout: it may have reached StemeDB",
    ),
    pytest.param(
        "reset_breaker",
        ("agent-node9",),
        [404],
        StemeDBHTTPError,
        1,
        {"agent_id": "agent-node9"},
        id="resetting an unknown agent is a 404 error",
    ),
]


@pytest.mark.parametrize(("method", "args", "script", "expected", "calls", "sent"), ADMIN_CASES)
async def test_admin_calls(
    method: str, args: tuple[Any, ...], script: list[Step], expected: Any, calls: int, sent: Any
) -> None:
    client, server, _, _ = make(script)
    async with client:
        call = getattr(client, method)
        if isinstance(expected, type):
            with pytest.raises(expected):
                await call(BASE, *args, CREDS)
        else:
            assert await call(BASE, *args, CREDS) == expected
    assert len(server.requests) == calls
    if sent is not None:
        assert json.loads(server.requests[-1].content) == sent


# ------------------------------------------------------- retries per endpoint (a class)
# Every public call of the client, with arguments. A write (POST) that reached StemeDB
# is an attempt maxActionsPerHour counts: the client never repeats it on its own
# (issue 14, item 4: 4 attempts per reset or rate-limit call made 7 writes an hour
# under maxActionsPerHour 6). Reads repeat, within the retry budget.
CALLS: dict[str, tuple[Any, ...]] = {
    "scrape_samples": (), "scrape_primary": (), "scrape_node": (), "get_rate_limit": (),
    "tripped_breakers": (), "set_rate_limit": (500,), "force_sync": ("node2",),
    "reset_breaker": ("agent-node2",),
}
REACHED_SERVER: list[Step] = [500, 502, 503, 504, 429, httpx.ReadTimeout, httpx.WriteTimeout,
                              httpx.ReadError, httpx.RemoteProtocolError]
NEVER_SENT: list[Step] = [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout]


def test_every_public_call_is_in_the_retry_table() -> None:
    public = {name for name in dir(StemeDBClient)
              if not name.startswith("_") and asyncio.iscoroutinefunction(
                  getattr(StemeDBClient, name)) and name not in ("aclose", "__aenter__")}
    assert public == set(CALLS)


@pytest.mark.parametrize("failure", REACHED_SERVER + NEVER_SENT, ids=repr)
@pytest.mark.parametrize("method", sorted(CALLS))
async def test_a_write_that_reached_stemedb_is_sent_once_and_reads_are_retried(
    method: str, failure: Step
) -> None:
    client, server, _, _ = make([failure])
    async with client:
        with pytest.raises(StemeDBError):
            await getattr(client, method)(BASE, *CALLS[method], CREDS)
    sent = {r.method for r in server.requests}
    assert len(sent) == 1
    attempts = ClientConfig().max_attempts
    if sent == {"GET"} or failure in NEVER_SENT:
        assert len(server.requests) == attempts  # bounded by max_attempts and the budget
    else:
        assert len(server.requests) == 1


# --------------------------------------------------------------------------- budgets
async def test_retries_stop_within_the_retry_budget_however_many_attempts_are_allowed() -> None:
    cfg = ClientConfig(max_attempts=1000, retry_budget=2.0, backoff_max=0.5)
    client, server, fake, _ = make([503], cfg)
    async with client:
        with pytest.raises(StemeDBHTTPError):
            await client.get_rate_limit(BASE, CREDS)
    assert sum(fake.sleeps) < 2.0
    assert 3 <= len(server.requests) < 1000
    assert all(0 < s <= 0.5 for s in fake.sleeps)


async def test_a_slow_answer_hits_the_per_attempt_deadline() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={"max_assertions_per_sec": None})

    cfg = ClientConfig(request_timeout=0.05, max_attempts=2)
    fake = FakeTime()
    client = StemeDBClient(
        cfg, transport=httpx.MockTransport(slow), sleep=fake.sleep, clock=fake.clock
    )
    async with client:
        with pytest.raises(StemeDBTimeout) as info:
            await client.get_rate_limit(BASE, CREDS)
    assert info.value.phase == "deadline"


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"read_timeout": 10.0}, id="a read timeout at the poll interval is refused"),
        pytest.param(
            {"retry_budget": 8.0}, id="a budget plus deadline past the interval is refused"
        ),
        pytest.param({"keepalive_expiry": 5.0}, id="keep-alive shorter than the poll is refused"),
    ],
)
def test_config_refuses_timeouts_that_would_overrun_the_poll(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ClientConfig(**overrides)


# --------------------------------------------------------------------------- auth and secrets
async def test_the_token_goes_per_call_so_rotation_is_picked_up() -> None:
    client, server, _, _ = make([(200, {"max_assertions_per_sec": None})])
    async with client:
        await client.get_rate_limit(BASE, Credentials(token="old"))
        await client.get_rate_limit(BASE, Credentials(token="new"))
        await client.get_rate_limit(BASE, Credentials())
    auth = [r.headers.get("authorization") for r in server.requests]
    assert auth == ["Bearer old", "Bearer new", None]
    assert all(r.headers["user-agent"] == USER_AGENT for r in server.requests)
    assert USER_AGENT.startswith("stemedb-operator/")


async def test_the_token_never_reaches_logs_or_errors_even_when_the_server_echoes_it() -> None:
    echo = (401, {"error": {"code": "unauthorized", "message": f"bad token {TOKEN}"}})
    client, _, _, _ = make([httpx.ConnectError, 503, echo])
    with capture_logs() as logs:
        async with client:
            with pytest.raises(StemeDBUnauthorized) as info:
                await client.tripped_breakers(BASE, CREDS)
    assert logs, "retries should be logged"
    assert TOKEN not in repr(logs)
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value.args)
    assert "<redacted>" in str(info.value)


def test_credentials_hide_secrets_in_repr_and_str() -> None:
    creds = Credentials(token=TOKEN, ca_pem=b"-----BEGIN CERTIFICATE-----\nABC\n")
    assert TOKEN not in repr(creds) and TOKEN not in str(creds) and "ABC" not in repr(creds)
    assert "redacted" in repr(creds)
    assert repr(Credentials()) == "Credentials(token=None, ca=None)"


async def test_a_tls_failure_is_a_tls_error_and_not_retried() -> None:
    def handshake(request: httpx.Request) -> httpx.Response:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as exc:
            raise httpx.ConnectError("tls", request=request) from exc

    client, server, _, _ = make([handshake])
    async with client:
        with pytest.raises(StemeDBTLSError):
            await client.scrape_primary(BASE, CREDS)
    assert len(server.requests) == 1


async def test_an_invalid_ca_bundle_is_a_tls_error_before_any_request() -> None:
    client, server, _, metrics = make([200])
    async with client:
        with pytest.raises(StemeDBTLSError):
            await client.scrape_primary(BASE, Credentials(ca_pem=b"not a pem"))
    assert server.requests == []
    assert count(metrics, "GET /metrics", "tls") == 1


def _a_ca_pem() -> bytes:
    """A real CA certificate (the first in certifi's bundle)."""
    import certifi

    text = Path(certifi.where()).read_text(encoding="ascii")
    end = "-----END CERTIFICATE-----"
    start = text.index("-----BEGIN CERTIFICATE-----")
    return text[start : text.index(end) + len(end)].encode("ascii") + b"\n"


async def test_one_transport_per_ca_and_one_default_transport() -> None:
    async with StemeDBClient(ClientConfig(max_ca_clients=1)) as client:
        a = client._transport_for(Credentials(token="x"))
        assert client._transport_for(Credentials(token="y")) is a  # the token is per call
        ca = _a_ca_pem()
        with_ca = client._transport_for(Credentials(ca_pem=ca))
        assert with_ca is not a
        assert client._transport_for(Credentials(token="z", ca_pem=ca)) is with_ca
        other = client._transport_for(Credentials(ca_pem=ca.replace(b"\n", b"\r\n")))
        assert other is not with_ca and len(client._ca_transports) == 1  # LRU of 1
        assert client.config.keepalive_expiry > client.config.poll_interval


# --------------------------------------------------------------------------- metrics
async def test_every_attempt_is_counted_by_endpoint_and_code() -> None:
    client, _, _, metrics = make([httpx.ConnectError, 503, (200, PRIMARY_BODY)])
    async with client:
        await client.scrape_primary(BASE, CREDS)
    assert count(metrics, "GET /metrics", "unreachable") == 1
    assert count(metrics, "GET /metrics", "503") == 1
    assert count(metrics, "GET /metrics", "200") == 1

    client, _, _, metrics = make([(200, "garbage\n")])
    async with client:
        with pytest.raises(MetricsParseError):
            await client.scrape_primary(BASE, CREDS)
    assert count(metrics, "GET /metrics", "parse") == 1

    client, _, _, metrics = make([SYNC_409])
    async with client:
        await client.force_sync(BASE, "node2", CREDS)
    assert count(metrics, "POST /v1/admin/cluster/sync", "409") == 1


async def test_a_closed_client_raises_a_typed_error() -> None:
    client, _, _, _ = make([200])
    await client.aclose()
    with pytest.raises(StemeDBError):
        await client.get_rate_limit(BASE, CREDS)



@pytest.mark.parametrize(("response", "says"), [
    pytest.param(httpx.Response(200, text="<!DOCTYPE html><html><body>Sign in</body></html>",
                                headers={"content-type": "text/html; charset=utf-8"}),
                 "an HTML page", id="a proxy's login page"),
    pytest.param(httpx.Response(200, text="<html>oops</html>"), "an HTML page",
                 id="HTML without a Content-Type"),
    pytest.param(httpx.Response(200, json={"status": "ok"}), "a JSON document",
                 id="a JSON health endpoint"),
])
async def test_a_page_that_is_not_metrics_says_what_it_is(
    response: httpx.Response, says: str
) -> None:
    """Safe either way (nothing is acted on), but the message must point at the
    misconfiguration rather than at "line 1" (issue 14, item 9)."""
    client, server, _, _ = make([lambda r: response])
    async with client:
        with pytest.raises(MetricsParseError) as info:
            await client.scrape_primary(BASE, CREDS)
    assert says in str(info.value) and "not Prometheus text" in str(info.value)
    assert len(server.requests) == 1
