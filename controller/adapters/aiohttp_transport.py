"""An httpx transport that sends over aiohttp's connection pool and C HTTP parser.

Why: at 1,000 clusters a poll's CPU was mostly httpx's default transport
(httpcore + h11 + anyio: ~600-900 us of CPU per small GET on this machine,
against ~100 us for aiohttp alone; `bench/README.md`), and httpcore walks every
pooled connection of an origin on each request and response, so past ~2,000
clusters sharing one endpoint its cost grew with the backlog. aiohttp (already
loaded for Kopf) keeps a deque of idle connections per (host, port, TLS) and
parses responses in C.

The rest of the adapter keeps httpx's API (requests, responses, timeouts and
``MockTransport`` in unit tests); only the bytes on the wire move here. Errors
are raised as the httpx exceptions the adapter already classifies, with the
same meaning for "may the server have applied this request?":

* nothing sent (refused, DNS, TLS handshake, connect or pool timeout):
  ``ConnectError`` / ``ConnectTimeout``; a TLS failure keeps the
  ``ssl.SSLError`` in the exception chain;
* sent, answer lost (reset, disconnect, truncated or unparsable answer, read
  timeout): ``ReadError`` / ``RemoteProtocolError`` / ``ReadTimeout``.

(``httpx-aiohttp`` on PyPI does the same job but maps any
``ClientConnectionError``, which includes a connection dropped after the request
was sent, to ``ConnectTimeout``, i.e. "not sent": the adapter would then repeat
a force-sync POST that may have run.)
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import aiohttp
import httpx

from controller.adapters.destinations import (
    DestinationDenied,
    Destinations,
    GuardedResolver,
    check_host,
)
from controller.domain.destinations import port_of

# A /metrics page or an admin answer is a few KiB; anything this large is not
# StemeDB talking, and is refused rather than buffered.
MAX_BODY_BYTES = 8 * 1024 * 1024


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp connector for one TLS context (one CA); pools per origin inside.

    ``max_per_origin`` bounds the connections to one ``scheme://host:port``
    (requests beyond it wait for a free one, within the pool timeout);
    idle connections close after ``keepalive_expiry`` seconds.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        max_per_origin: int,
        keepalive_expiry: float,
        destinations: Destinations | None = None,
    ) -> None:
        self._destinations = destinations
        self._ssl_context = ssl_context
        self._max_per_origin = max_per_origin
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop (aiohttp binds to it).
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl_context,
                limit=0,
                limit_per_host=self._max_per_origin,
                keepalive_timeout=self._keepalive_expiry,
                resolver=(None if self._destinations is None
                          else GuardedResolver(self._destinations)),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes Content-Encoding itself
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._get_session()
        timeout = _timeout(request.extensions.get("timeout") or {})
        if self._destinations is not None:
            try:
                check_host(self._destinations, request.url.host,
                           port_of(request.url.scheme, request.url.port))
            except DestinationDenied as exc:
                raise httpx.ConnectError("destination denied", request=request) from exc
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                timeout=timeout,
            ) as resp:
                body = await _read_body(resp, request)
                return httpx.Response(
                    status_code=resp.status,
                    headers=resp.raw_headers,
                    content=body,
                    request=request,
                    extensions={"http_version": b"HTTP/1.1",
                                "reason_phrase": (resp.reason or "").encode("latin-1", "replace")},
                )
        except httpx.HTTPError:
            raise
        except aiohttp.ClientError as exc:
            raise _map(exc, request) from exc
        except TimeoutError as exc:  # a timeout aiohttp did not classify
            raise httpx.ReadTimeout("timed out", request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


async def _read_body(resp: aiohttp.ClientResponse, request: httpx.Request) -> bytes:
    """The whole body, however many reads it takes (one `read(n)` returns only what
    has arrived), refused beyond MAX_BODY_BYTES whether declared or streamed."""
    if resp.content_length is not None and resp.content_length > MAX_BODY_BYTES:
        raise _too_large(request)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(request)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(request: httpx.Request) -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(f"response larger than {MAX_BODY_BYTES} bytes",
                                     request=request)


def _timeout(t: Mapping[str, float | None]) -> aiohttp.ClientTimeout:
    """httpx's four phases in aiohttp's terms: ``connect`` covers waiting for a
    pooled connection and opening one; ``sock_read`` is the gap between reads."""
    pool, connect = t.get("pool"), t.get("connect")
    return aiohttp.ClientTimeout(
        total=None,
        connect=None if pool is None or connect is None else pool + connect,
        sock_connect=connect,
        sock_read=t.get("read"),
    )


def _map(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.HTTPError:
    """aiohttp's error as the httpx error of the same meaning (see the module doc)."""
    msg = type(exc).__name__
    # Not sent: the order matters (the SSL errors are connector errors too).
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(msg, request=request)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(msg, request=request)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(msg, request=request)
    # Sent, and the answer was lost or unreadable.
    if isinstance(exc, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(msg, request=request)
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(msg, request=request)
    return httpx.ReadError(msg, request=request)
