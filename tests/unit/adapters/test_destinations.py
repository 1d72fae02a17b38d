"""The destination policy at connect time, over real sockets: a denied address
gets no connection at all, whether named literally or through DNS, and the
error says why (issue 11: a tenant's URL must not reach what the operator can)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from controller.adapters.destinations import Destinations
from controller.adapters.notify import Escalated, NotificationError, Notifier
from controller.adapters.stemedb import ClientConfig, StemeDBClient
from controller.adapters.stemedb_errors import StemeDBDestinationDenied
from controller.domain.destinations import LOOPBACK, DestinationPolicy, parse_networks
from tests.unit.adapters._http_server import serving

METRICS = 'stemedb_node_info{node="node1",role="primary"} 1\n'


class Server:
    def __init__(self) -> None:
        self.requests: list[str] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        return web.Response(text=METRICS, content_type="text/plain")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    async with serving(srv.handle) as srv.port:
        yield srv


DENY_LOOPBACK = DestinationPolicy(deny=parse_networks(LOOPBACK))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_denied_address_gets_no_request_and_a_clear_error(
    server: Server, host: str
) -> None:
    client = StemeDBClient(ClientConfig(), destinations=Destinations(DENY_LOOPBACK))
    try:
        with pytest.raises(StemeDBDestinationDenied, match=re.escape("127.0.0.0/8")):
            await client.scrape_primary(f"http://{host}:{server.port}")
    finally:
        await client.aclose()
    assert server.requests == []


async def test_an_allowed_address_is_reached(server: Server) -> None:
    client = StemeDBClient(ClientConfig(), destinations=Destinations())
    try:
        scrape = await client.scrape_primary(f"http://127.0.0.1:{server.port}")
    finally:
        await client.aclose()
    assert scrape.role == "primary"
    assert server.requests == ["GET /metrics"]


async def test_the_api_server_the_operator_uses_is_denied_on_its_port_only(
    server: Server,
) -> None:
    destinations = Destinations()
    await destinations.deny_api_server(f"https://127.0.0.1:{server.port}")
    client = StemeDBClient(ClientConfig(), destinations=destinations)
    try:
        with pytest.raises(StemeDBDestinationDenied, match="Kubernetes API server"):
            await client.scrape_primary(f"http://localhost:{server.port}")
    finally:
        await client.aclose()
    assert server.requests == []
    assert destinations.refusal("127.0.0.1", server.port + 1) is None


async def test_the_escalation_webhook_obeys_the_policy(server: Server) -> None:
    event = Escalated("ns", "db", 1, "SRE", "LagCritical", "lag")
    denied = Notifier(destinations=Destinations(DENY_LOOPBACK), attempts=1)
    try:
        with pytest.raises(NotificationError, match=re.escape("spec.escalation.webhookUrl")):
            await denied.escalated(f"http://localhost:{server.port}/hook", event)
    finally:
        await denied.aclose()
    assert server.requests == []
    allowed = Notifier(destinations=Destinations(), attempts=1)
    try:
        await allowed.escalated(f"http://127.0.0.1:{server.port}/hook", event)
    finally:
        await allowed.aclose()
    assert server.requests == ["POST /hook"]
