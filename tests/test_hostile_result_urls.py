"""Hostile input, item 3: nothing an upstream answers with is fetched unguarded.

A result URL passes the same address guard as serve-api's image URLs, with the configured API's
own host and port allowed; connections go only to the addresses that were checked (a pinning
resolver: no second lookup for DNS rebinding to answer); URLs with credentials are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import SecretStr

from core.api_backend import ApiBackend
from core.errors import ForbiddenUrlError, ResultInvalidError, UpstreamBadResponseError
from core.fetch import download_image
from core.formats import PreparedImage
from core.http import http_client
from core.netguard import PUBLIC_ONLY, AddressPolicy, PinningResolver
from core.transport import ADDRESS_POLICY
from tests.upstream_fakes import Content, FakeFile, FakeUpstream, ResultFile, sample_png

ROOT = Path(__file__).resolve().parent.parent
IMAGE = PreparedImage(sample_png(), "png", 32, 24)


@contextlib.asynccontextmanager
async def internal_service(host: str = "127.0.0.2") -> AsyncIterator[tuple[str, list[str]]]:
    """A service on a loopback address other than the API's, serving a "secret" image; yields
    its root URL and the paths asked of it."""
    asked: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(body=sample_png(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://{host}:{port}", asked
    finally:
        await runner.cleanup()


def backend_for(upstream: FakeUpstream, client: httpx.AsyncClient) -> ApiBackend:
    return ApiBackend(
        client, base_url=upstream.base_url, api_key=SecretStr("sk-test"), max_retries=0
    )


async def test_a_result_url_on_another_loopback_address_is_not_fetched(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    async with internal_service() as (internal, asked):
        upstream.script(Content(f"{internal}/internal/secret.png"))
        with pytest.raises(UpstreamBadResponseError):
            await backend_for(upstream, client).retouch(IMAGE, 0.3)
    assert asked == []


async def test_a_redirect_from_the_api_to_another_address_is_not_followed(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    async with internal_service() as (internal, asked):
        upstream.script(ResultFile(FakeFile(status=302, location=f"{internal}/internal/x.png")))
        with pytest.raises(UpstreamBadResponseError):
            await backend_for(upstream, client).retouch(IMAGE, 0.3)
    assert asked == []


async def test_a_result_on_the_apis_own_host_and_port_is_fetched(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.script(ResultFile(FakeFile(sample_png())))
    assert await backend_for(upstream, client).retouch(IMAGE, 0.3) == sample_png()


async def test_a_result_url_with_credentials_is_not_fetched(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    host = httpx.URL(upstream.base_url)
    upstream.script(Content(f"http://user:pw@{host.host}:{host.port}/files/x"))
    with pytest.raises(ResultInvalidError) as caught:
        await backend_for(upstream, client).retouch(IMAGE, 0.3)
    assert "pw" not in str(caught.value)
    assert upstream.file_requests == []


async def test_the_command_line_does_not_fetch_an_internal_result(tmp_path: Path) -> None:
    source = tmp_path / "me.png"
    source.write_bytes(sample_png(64, 64))
    async with FakeUpstream() as upstream, internal_service() as (internal, asked):
        upstream.script(Content(f"{internal}/internal/secret.png"))
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))}
        env.update(
            RETOUCH_API_KEY="sk-test",
            RETOUCH_API_BASE_URL=upstream.base_url,
            RETOUCH_MAX_RETRIES="0",
            PYTHONPATH=str(ROOT),
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots.cli",
            "retouch",
            str(source),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 1, stderr.decode()
    assert asked == []
    assert not (tmp_path / "me-retouched.png").exists()


class ScriptedResolver(AbstractResolver):
    """DNS answers from a table, counting the lookups (a rebinding server would change them)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        address = self.answers[host]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def pinned_session(
    policy: AddressPolicy, answers: dict[str, str]
) -> AsyncIterator[tuple[aiohttp.ClientSession, ScriptedResolver]]:
    resolver = ScriptedResolver(answers)
    connector = aiohttp.TCPConnector(resolver=PinningResolver(policy, resolver))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session, resolver


async def test_a_name_that_resolves_to_loopback_is_refused_at_connect_time() -> None:
    async with internal_service("127.0.0.1") as (internal, asked):
        port = httpx.URL(internal).port
        async with pinned_session(PUBLIC_ONLY, {"rebind.test": "127.0.0.1"}) as (session, dns):
            with pytest.raises(ForbiddenUrlError):
                await session.get(f"http://rebind.test:{port}/x.png")
    assert dns.lookups == ["rebind.test"]  # one lookup, checked, and no connection made
    assert asked == []


async def test_the_configured_api_host_may_resolve_to_a_private_address() -> None:
    async with internal_service("127.0.0.1") as (internal, asked):
        port = httpx.URL(internal).port
        assert port is not None
        policy = AddressPolicy.trusting(f"http://serve-api:{port}/v1")
        async with (
            pinned_session(policy, {"serve-api": "127.0.0.1"}) as (session, _),
            session.get(f"http://serve-api:{port}/v1/files/x.png") as response,
        ):
            assert response.status == 200
        async with pinned_session(policy, {"serve-api": "127.0.0.1"}) as (session, _):
            with pytest.raises(ForbiddenUrlError):
                await session.get(f"http://serve-api:{port + 1 if port < 65535 else 1}/x")
    assert asked == ["/v1/files/x.png"]


@pytest.mark.parametrize("host", ["127.0.0.2", "[::1]", "169.254.169.254", "10.0.0.1"])
async def test_the_transport_checks_literal_addresses_itself(host: str) -> None:
    async with http_client(5.0) as client:
        with pytest.raises(ForbiddenUrlError):
            await client.get(f"http://{host}:9/x", extensions={ADDRESS_POLICY: PUBLIC_ONLY})


async def test_download_refuses_localhost_names_and_credentials() -> None:
    async with http_client(5.0) as client:
        for url in ("http://localhost:9/x.png", "http://app.localhost:9/x.png"):
            with pytest.raises(ForbiddenUrlError):
                await download_image(client, url, max_bytes=1000, policy=PUBLIC_ONLY)
        with pytest.raises(ResultInvalidError):
            await download_image(client, "http://u:p@127.0.0.1:9/x.png", max_bytes=1000)
