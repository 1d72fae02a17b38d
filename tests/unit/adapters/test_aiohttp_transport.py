"""The aiohttp transport reads whole bodies over a real socket, and refuses huge ones.

A server on loopback (aiohttp, port 0) answers with bodies larger than one socket
read, with and without Content-Length; the transport must return every byte, or
refuse a body beyond its limit whichever way the size shows.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from controller.adapters import aiohttp_transport
from controller.adapters.aiohttp_transport import AiohttpTransport

LIMIT = 200_000  # patched in for the refusal cases, so they need not send 8 MiB


async def _fixed(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * int(request.query["n"]))  # with Content-Length


async def _streamed(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()  # chunked: no Content-Length
    await resp.prepare(request)
    left = int(request.query["n"])
    while left:
        part = min(left, 16_384)
        await resp.write(b"x" * part)
        left -= part
    await resp.write_eof()
    return resp


@pytest.fixture
async def base() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/fixed", _fixed)
    app.router.add_get("/streamed", _streamed)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    t = AiohttpTransport(ssl.create_default_context(), max_per_origin=4, keepalive_expiry=30)
    yield t
    await t.aclose()


@pytest.mark.parametrize("path", ["fixed", "streamed"])
@pytest.mark.parametrize("size", [0, 900, 1_000_000])
async def test_the_whole_body_arrives_however_many_reads_it_takes(
    base: str, transport: AiohttpTransport, path: str, size: int
) -> None:
    resp = await transport.handle_async_request(
        httpx.Request("GET", f"{base}/{path}?n={size}"))
    assert resp.status_code == 200
    assert resp.content == b"x" * size


@pytest.mark.parametrize("path", ["fixed", "streamed"])
async def test_a_body_beyond_the_limit_is_refused(
    base: str, transport: AiohttpTransport, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aiohttp_transport, "MAX_BODY_BYTES", LIMIT)
    ok = await transport.handle_async_request(httpx.Request("GET", f"{base}/{path}?n={LIMIT}"))
    assert len(ok.content) == LIMIT
    with pytest.raises(httpx.RemoteProtocolError, match="larger than"):
        await transport.handle_async_request(
            httpx.Request("GET", f"{base}/{path}?n={LIMIT + 1}"))
