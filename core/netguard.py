"""Refuse URLs that point at loopback, private or otherwise non-public addresses (SSRF guard).

The local API server fetches images by URL on behalf of callers; without this check a caller could
make it read cloud metadata (169.254.169.254) or services on the operator's private network.
The check resolves the host itself, so a later connection could in theory reach another address
(DNS rebinding); callers that need more should also check the peer address they connected to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

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


async def ensure_public_url(url: str, *, resolve_timeout: float = 10.0) -> None:
    """Raise `ForbiddenUrlError` unless `url` is http(s) and every address of its host is public."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ForbiddenUrlError("the image URL is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _ALLOWED_SCHEMES:
        raise ForbiddenUrlError("only http and https image URLs are allowed", scheme=scheme)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ForbiddenUrlError("the image URL has no host")

    literal = _literal_ip(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    elif host == "localhost" or host.endswith(".localhost"):
        raise ForbiddenUrlError("the image URL points at this machine", host=host)
    else:
        addresses = await _resolve(host, port or _DEFAULT_PORTS[scheme], resolve_timeout)

    for address in addresses:
        if not is_public_address(address):
            raise ForbiddenUrlError(
                "the image URL points at a private or reserved network address", host=host
            )


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
