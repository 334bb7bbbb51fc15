"""`core.transport.AiohttpTransport`: httpx requests over aiohttp, with httpx's errors."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trustme
from aiohttp import web

from core.http import http_client
from core.transport import AiohttpTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A TCP server on 127.0.0.1 that answers however `handler` likes; yields its base URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def web_server(app: web.Application, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    try:
        # The certificate names localhost, which resolves to 127.0.0.1 here.
        yield f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def test_request_and_response_pass_through_unchanged() -> None:
    seen: list[web.Request] = []
    bodies: list[bytes] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request)
        bodies.append(await request.read())
        response = web.Response(body=gzip.compress(b"hello " * 100), status=201, reason="Made")
        response.headers["Content-Encoding"] = "gzip"
        response.headers.add("X-Many", "a")
        response.headers.add("X-Many", "b")
        return response

    app = web.Application()
    app.router.add_post("/echo", echo)
    async with web_server(app) as base, http_client(5.0) as client:
        response = await client.post(
            f"{base}/echo?q=1", content=b"payload", headers={"Authorization": "Bearer t"}
        )
    assert response.status_code == 201
    assert response.reason_phrase == "Made"
    assert response.content == b"hello " * 100  # httpx decoded the gzip body
    assert response.headers.get_list("x-many") == ["a", "b"]
    assert bodies == [b"payload"]
    assert seen[0].query_string == "q=1"
    assert seen[0].headers["Authorization"] == "Bearer t"
    assert seen[0].headers["User-Agent"].startswith("retouch-bot/")


async def test_streamed_request_body() -> None:
    bodies: list[bytes] = []

    async def take(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(text="ok")

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            yield part

    app = web.Application()
    app.router.add_put("/take", take)
    async with web_server(app) as base, http_client(5.0) as client:
        response = await client.put(f"{base}/take", content=chunks())
    assert response.text == "ok"
    assert bodies == [b"one two three"]


async def test_redirects_are_left_to_httpx() -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    app = web.Application()
    app.router.add_get("/old", moved)
    async with web_server(app) as base, http_client(5.0) as client:
        response = await client.get(f"{base}/old")
    assert response.status_code == 302
    assert response.headers["location"] == "/elsewhere"


async def test_a_connection_is_reused_once_its_body_is_read() -> None:
    peers: list[object] = []

    async def who(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(body=b"x" * 100_000)

    app = web.Application()
    app.router.add_get("/who", who)
    async with web_server(app) as base, http_client(5.0) as client:
        for _ in range(3):
            assert len((await client.get(f"{base}/who")).content) == 100_000
    assert len(set(peers)) == 1


async def test_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with http_client(5.0) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get(f"http://127.0.0.1:{port}/")
    # aiohttp did the work; its exception is named, not chained (it may quote a signed URL).
    assert str(caught.value).startswith("ClientConnectorError: ")
    assert caught.value.__cause__ is None


async def test_server_closing_without_an_answer_is_a_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.close()

    async with raw_server(hang_up) as base, http_client(5.0) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(base)


async def test_body_cut_short_is_a_protocol_error() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()

    async with raw_server(half) as base, http_client(5.0) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(base)


async def test_silent_server_is_a_read_timeout() -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await release.wait()
        writer.close()

    async with raw_server(silent) as base, http_client(0.2) as client:
        try:
            with pytest.raises(httpx.ReadTimeout) as caught:
                await client.get(base)
        finally:
            release.set()
    assert isinstance(caught.value, httpx.TimeoutException)


async def test_closing_the_client_closes_the_pool() -> None:
    app = web.Application()
    app.router.add_get("/", ok)
    client = http_client(5.0)
    async with web_server(app) as base:
        assert (await client.get(base)).status_code == 200
        await client.aclose()
    assert client.is_closed
    with pytest.raises(RuntimeError):
        await client.get(base)


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def tls_app(authority: trustme.CA) -> tuple[web.Application, ssl.SSLContext]:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server)
    app = web.Application()
    app.router.add_get("/", ok)
    return app, server


async def test_https_with_a_trusted_certificate(authority: trustme.CA) -> None:
    app, server = tls_app(authority)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    transport = AiohttpTransport(ssl_context=trusting)
    async with web_server(app, server) as base, httpx.AsyncClient(transport=transport) as client:
        response = await client.get(base)
    assert base.startswith("https://localhost:")
    assert response.text == "ok"


async def test_https_with_an_unknown_authority_is_refused(authority: trustme.CA) -> None:
    app, server = tls_app(authority)
    async with web_server(app, server) as base, http_client(5.0) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get(base)
    assert "certificate" in str(caught.value).lower()


async def test_an_upload_the_server_stops_reading_times_out() -> None:
    release = asyncio.Event()

    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await release.wait()  # never reads the body: the client's send buffers fill up
        writer.close()

    body = b"x" * 64_000_000
    async with raw_server(deaf) as base, http_client(0.3) as client:
        try:
            async with asyncio.timeout(10):  # a hang fails the test rather than stalling it
                with pytest.raises(httpx.TimeoutException):
                    await client.post(base, content=body)
        finally:
            release.set()
