"""The destination policy (controller/domain/destinations.py) at connect time.

Checked on the addresses a connection is about to use, not on the URL's text:
a tenant's DNS name that resolves to 169.254.169.254 is refused like the
literal address. aiohttp hands literal IP hosts straight to the socket without
asking the resolver, so `AiohttpTransport` checks those itself (`check_host`).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from controller.domain.destinations import DestinationPolicy, port_of


class DestinationDenied(OSError):
    """The policy refuses this destination; nothing was sent to it."""


class Destinations:
    """The policy in force, shared by every client: login adds the API server's
    own address once it is known (after the clients were made)."""

    def __init__(self, policy: DestinationPolicy | None = None) -> None:
        self.policy = policy or DestinationPolicy.default()

    def refusal(self, address: str, port: int) -> str | None:
        return self.policy.refusal(address, port)

    async def deny_api_server(self, server: str) -> None:
        """Deny the (address, port) pairs the API server URL resolves to."""
        url = urlsplit(server)
        host = (url.hostname or "").strip("[]")
        port = port_of(url.scheme, url.port)
        if not host:
            return
        if _is_literal(host):
            addresses = {host}
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM)
            except OSError:
                return
            addresses = {str(i[4][0]) for i in infos}
        self.policy = self.policy.with_denied_endpoints((a, port) for a in addresses)


@functools.lru_cache(maxsize=4096)
def _is_literal(host: str) -> bool:
    """Whether the URL's host is an IP address (cached: it runs on every request,
    and a host name's answer is a raised and caught ValueError)."""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def check_host(policy: Destinations | DestinationPolicy, host: str, port: int) -> None:
    """Refuse a literal IP host the policy denies (names go through the resolver)."""
    if _is_literal(host):
        why = policy.refusal(host.strip("[]"), port)
        if why is not None:
            raise DestinationDenied(why)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a name if any address it resolves to is denied.

    All or nothing: a name that resolves to a good and a denied address is
    refused, not narrowed, since an attacker controls which answer comes first.
    """

    def __init__(
        self, policy: Destinations | DestinationPolicy, inner: AbstractResolver | None = None
    ) -> None:
        self._policy = policy
        self._inner = inner or aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for r in results:
            why = self._policy.refusal(r["host"], r["port"] or port)
            if why is not None:
                raise DestinationDenied(f"{host} resolves to a denied address: {why}")
        return results

    async def close(self) -> None:
        await self._inner.close()


async def check_url_host(policy: Destinations | DestinationPolicy, host: str, port: int) -> None:
    """Resolve `host` and refuse it if any address is denied (for clients that do
    not connect through `GuardedResolver`, such as the webhook notifier)."""
    if _is_literal(host):
        check_host(policy, host, port)
        return
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for info in infos:
        address = str(info[4][0])
        why = policy.refusal(address, port)
        if why is not None:
            raise DestinationDenied(f"{host} resolves to a denied address: {why}")
