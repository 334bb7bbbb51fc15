"""Refuse URLs that point at loopback, private or otherwise non-public addresses (SSRF guard).

serve-api fetches images by URL on behalf of callers, and the bots fetch the result URLs the
upstream answers with; without this guard either could be made to read cloud metadata
(169.254.169.254) or services on the operator's network. `PinningResolver` checks the addresses
a connection is about to use, at the moment it connects: there is no second lookup for DNS
rebinding to answer differently. `AddressPolicy` names the hosts the operator configured (the
retouch API's), which may be private.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from core.errors import ForbiddenUrlError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ALLOWED_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# IPv6 prefixes that embed an IPv4 address the packet may end up at.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def is_public_address(address: IPAddress) -> bool:
    """True only for a globally routable unicast address, also inside IPv6 forms wrapping IPv4."""
    if (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    ):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local or address.teredo is not None:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
    return True


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _NAT64) or address in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Where a fetch of an untrusted URL may connect: public addresses only, but for `trusted`
    `(host, port)` pairs (the configured retouch API's), which may be anywhere."""

    trusted: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def trusting(cls, base_url: str) -> AddressPolicy:
        """Public addresses, and the host and port of `base_url` (an operator's setting)."""
        parts = urlsplit(base_url)
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
        return cls(frozenset({(host, port)}) if host else frozenset())

    def trusts(self, host: str, port: int) -> bool:
        return (host.rstrip(".").lower(), port) in self.trusted

    def check_address(self, host: str, port: int, address: str) -> None:
        """Raise `ForbiddenUrlError` unless a connection to `host` may go to `address`."""
        if self.trusts(host, port):
            return
        parsed = _literal_ip(address)
        if parsed is None or not is_public_address(parsed):
            raise ForbiddenUrlError(
                "the URL points at a private or reserved network address", host=host
            )


PUBLIC_ONLY = AddressPolicy()
"""Public addresses and nothing else: for URLs that callers give."""


def check_url(url: str, policy: AddressPolicy = PUBLIC_ONLY) -> tuple[str, int]:
    """The host and port of an http(s) URL without user-info, its address checked when it is
    a literal; raises `ForbiddenUrlError`. Names are checked when connecting (`PinningResolver`).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ForbiddenUrlError("the URL is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _ALLOWED_SCHEMES:
        raise ForbiddenUrlError("only http and https URLs are allowed", scheme=scheme)
    if "@" in parts.netloc:
        raise ForbiddenUrlError("URLs with a user name or password are not fetched")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ForbiddenUrlError("the URL has no host")
    port = port or _DEFAULT_PORTS[scheme]
    if policy.trusts(host, port):
        return host, port
    if _literal_ip(host) is not None:
        policy.check_address(host, port, host)
    elif host == "localhost" or host.endswith(".localhost"):
        raise ForbiddenUrlError("the URL points at this machine", host=host)
    return host, port


async def ensure_public_url(url: str, *, resolve_timeout: float = 10.0) -> None:
    """Raise `ForbiddenUrlError` unless `url` is http(s) and every address of its host is public.

    A check ahead of time; fetches connect through `PinningResolver`, which checks again.
    """
    host, port = check_url(url)
    if _literal_ip(host) is None:
        for address in await _resolve(host, port, resolve_timeout):
            PUBLIC_ONLY.check_address(host, port, str(address))


class PinningResolver(AbstractResolver):
    """aiohttp's resolver with its answers checked against a policy: a connection goes only to
    addresses that passed (every address of a host must pass, or none is used)."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            self.policy.check_address(host, port, answer["host"])
        return answers

    async def close(self) -> None:
        await self._inner.close()


async def _resolve(host: str, port: int, seconds: float) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, TimeoutError):
        raise ForbiddenUrlError("the image URL's host cannot be resolved", host=host) from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        # IPv6 sockaddrs may carry a "%scope" suffix; ip_address accepts that form.
        address = _literal_ip(str(sockaddr[0]))
        if address is None:
            raise ForbiddenUrlError(
                "the image URL's host resolved to an unknown address", host=host
            )
        addresses.append(address)
    if not addresses:
        raise ForbiddenUrlError("the image URL's host cannot be resolved", host=host)
    return addresses
