"""The SSRF guard: only public http(s) addresses pass, literal IPs are judged without DNS."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest

from core.errors import ForbiddenUrlError
from core.netguard import ensure_public_url, is_public_address


def _addrinfo(*addresses: str) -> list[tuple[Any, ...]]:
    infos: list[tuple[Any, ...]] = []
    for address in addresses:
        if ":" in address:
            infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, 80, 0, 0)))
        else:
            infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 80)))
    return infos


@pytest.fixture
async def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the running loop's getaddrinfo; by default any lookup fails the test."""
    table: dict[str, Any] = {}
    lookups: list[str] = []

    async def fake_getaddrinfo(host: str, port: Any, **_: Any) -> list[tuple[Any, ...]]:
        lookups.append(host)
        if host not in table:
            pytest.fail(f"unexpected DNS lookup of {host!r}")
        answer = table[host]
        if isinstance(answer, BaseException):
            raise answer
        return _addrinfo(*answer)

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
    return {"table": table, "lookups": lookups}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/x.png",
        "http://[::1]/",
        "http://10.0.0.1/",
        "http://192.168.1.1/image.jpg",
        "http://172.16.5.4/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a00:1]/",
        "http://[::a9fe:a9fe]/",
        "http://[2001:db8::1]/",
        "http://localhost/",
        "https://LOCALHOST:8443/",
        "http://api.localhost/",
        "ftp://93.184.216.34/x.png",
        "file:///etc/passwd",
        "gopher://93.184.216.34/",
        "data:image/png;base64,AAAA",
        "http:///no-host",
        "http://93.184.216.34:99999/",
        "not a url",
    ],
)
async def test_refused_without_dns(url: str, resolver: dict[str, Any]) -> None:
    with pytest.raises(ForbiddenUrlError):
        await ensure_public_url(url)
    assert resolver["lookups"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/",
        "https://93.184.216.34:8443/a/b.jpg?sig=1",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/portrait.png",
    ],
)
async def test_public_literal_ip_accepted_without_dns(url: str, resolver: dict[str, Any]) -> None:
    await ensure_public_url(url)
    assert resolver["lookups"] == []


async def test_hostname_resolving_to_public_addresses_is_accepted(
    resolver: dict[str, Any],
) -> None:
    resolver["table"]["images.example.com"] = ["93.184.216.34", "2606:2800:220:1::1"]
    await ensure_public_url("https://images.example.com/a.jpg")
    assert resolver["lookups"] == ["images.example.com"]


@pytest.mark.parametrize("private", ["10.1.2.3", "127.0.0.1", "::1", "169.254.169.254"])
async def test_hostname_with_any_private_address_is_refused(
    private: str, resolver: dict[str, Any]
) -> None:
    resolver["table"]["rebind.example.com"] = ["93.184.216.34", private]
    with pytest.raises(ForbiddenUrlError) as caught:
        await ensure_public_url("http://rebind.example.com/")
    assert caught.value.user_fault


async def test_unresolvable_host_is_refused(resolver: dict[str, Any]) -> None:
    resolver["table"]["nowhere.invalid"] = socket.gaierror(socket.EAI_NONAME, "not known")
    with pytest.raises(ForbiddenUrlError, match="cannot be resolved"):
        await ensure_public_url("http://nowhere.invalid/")


async def test_slow_resolver_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*_: Any, **__: Any) -> list[Any]:
        await asyncio.Event().wait()
        return []

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", never)
    with pytest.raises(ForbiddenUrlError):
        await ensure_public_url("http://slow.example.com/", resolve_timeout=0.05)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("192.0.2.1", False),
        ("198.18.0.1", False),
        ("::ffff:8.8.8.8", False),
        ("::ffff:192.168.0.1", False),
        ("2002:c0a8:0101::", False),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
        ("ff02::1", False),
        ("fec0::1", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public
