"""Where the operator may send a request on a tenant's behalf.

The URLs in a StemeDBCluster are chosen by whoever may write one. Without a
policy the operator would connect, from its own place in the network, to any
address a tenant names: the cloud's metadata service (169.254.169.254), the
Kubernetes API server, or the operator's own Pod on loopback. `DestinationPolicy`
is the operator-level answer (flags `--deny-destination`, `--allow-destination`
and chart values `destinations.*`); the adapters apply it to every resolved
address just before connecting, so a DNS name cannot be used to slip past it.
See docs/security.md for the defaults and why.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Denied unless an operator explicitly allows them: metadata services and other
# link-local addresses, and "this host" addresses that some stacks route to
# loopback. Loopback itself is denied by the chart (in a Pod it is the operator's
# own Pod) but not by the command's default, which local runs against a
# simulator on 127.0.0.1 need.
DEFAULT_DENY: tuple[str, ...] = (
    "169.254.0.0/16",     # IPv4 link-local: AWS/GCP/Azure/OpenStack metadata
    "fe80::/10",          # IPv6 link-local
    "fd00:ec2::254/128",  # AWS IMDS over IPv6
    "100.100.100.200/32", # Alibaba Cloud metadata
    "0.0.0.0/8",          # "this network"; 0.0.0.0 reaches loopback on Linux
    "::/128",             # IPv6 unspecified
)
LOOPBACK: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


def port_of(scheme: str, port: int | None) -> int:
    """The port a URL connects to: its own, else its scheme's default."""
    return port or (443 if scheme == "https" else 80)


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or bare addresses) as networks; ValueError names the bad one."""
    out: list[IPNetwork] = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address or CIDR") from None
    return tuple(out)


def _plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address (::ffff:169.254.169.254) as its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """Deny first, then allow: an address is refused if it is in `deny`, or if
    `allow` is non-empty and it is in none of them. `denied_endpoints` are exact
    (address, port) pairs, for the API server the operator itself talks to."""

    deny: tuple[IPNetwork, ...] = ()
    allow: tuple[IPNetwork, ...] = ()
    denied_endpoints: frozenset[tuple[IPAddress, int]] = frozenset()

    @classmethod
    def default(cls) -> DestinationPolicy:
        return cls(deny=parse_networks(DEFAULT_DENY))

    def with_denied_endpoints(
        self, endpoints: Iterable[tuple[str, int]]
    ) -> DestinationPolicy:
        extra = {(_plain(ipaddress.ip_address(a)), p) for a, p in endpoints}
        return DestinationPolicy(self.deny, self.allow, self.denied_endpoints | extra)

    def refusal(self, address: str, port: int) -> str | None:
        """Why a connection to address:port is refused, or None if it may go."""
        try:
            ip = _plain(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return f"{address} is not an IP address"
        if (ip, port) in self.denied_endpoints:
            return f"{ip} port {port} is the Kubernetes API server the operator uses"
        for net in self.deny:
            if ip.version == net.version and ip in net:
                return f"{ip} is in {net}, which the operator's destination policy denies"
        if self.allow and not any(ip.version == n.version and ip in n for n in self.allow):
            return (f"{ip} is outside the destinations the operator allows "
                    f"({', '.join(str(n) for n in self.allow)})")
        return None


def literal_destination_problems(
    urls: Iterable[tuple[str, str]], policy: DestinationPolicy
) -> tuple[tuple[str, str], ...]:
    """(field, sentence) for each URL whose host is an IP address the policy denies.

    Names are judged when they resolve, at connect time; an address written in
    the spec is judged at once, so the condition names the field before any
    episode needs that URL.
    """
    out: list[tuple[str, str]] = []
    for field, url in urls:
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            continue  # refused by the spec's own checks
        if not host:
            continue
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue
        why = policy.refusal(host, port_of(parts.scheme, port))
        if why is not None:
            out.append((field, why))
    return tuple(out)
