"""Hostile input, item 4: RETOUCH_TIMEOUT_SECONDS is the limit of one upstream attempt, however
the upstream answers (a byte at a time, never finishing), and a job has one deadline in all."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from core.api_backend import ApiBackend
from core.errors import UpstreamTimeoutError
from core.formats import PreparedImage
from core.http import create_http_client
from core.settings import Settings
from tests.upstream_fakes import completion, sample_png

IMAGE = PreparedImage(sample_png(), "png", 32, 24)


@contextlib.asynccontextmanager
async def dripping_api(
    *, answer_drip: bool = True, status: int = 200
) -> AsyncIterator[tuple[str, list[float]]]:
    """An upstream that drips its answer (or its result file) a byte every 50 ms for a minute;
    yields its base URL and when each request started."""
    started: list[float] = []

    async def drip(request: web.Request, payload: bytes, content_type: str) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
        response.content_length = len(payload) + 10_000
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for byte in (payload + b" " * 10_000)[:1200]:
                await response.write(bytes([byte]))
                await asyncio.sleep(0.05)
        return response

    async def completions(request: web.Request) -> web.StreamResponse:
        started.append(time.monotonic())
        await request.read()
        if not answer_drip:
            url = f"http://{request.host}/files/result.png"
            return web.json_response(completion(url))
        return await drip(request, b'{"choices": [', "application/json")

    async def files(request: web.Request) -> web.StreamResponse:
        started.append(time.monotonic())
        return await drip(request, sample_png(), "image/png")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/files/{name}", files)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/v1", started
    finally:
        await runner.cleanup()


def settings_for(base: str, **overrides: float) -> Settings:
    return Settings.load(retouch_api_key="sk-test", retouch_api_base_url=base, **overrides)


def backend(client: httpx.AsyncClient, settings: Settings) -> ApiBackend:
    return ApiBackend.from_settings(settings, client)


async def test_an_answer_dripped_a_byte_at_a_time_ends_at_the_timeout() -> None:
    async with dripping_api() as (base, _):
        settings = settings_for(base, retouch_timeout_seconds=0.5, retouch_max_retries=0)
        async with create_http_client(settings) as client:
            started = time.monotonic()
            with pytest.raises(UpstreamTimeoutError):
                await backend(client, settings).retouch(IMAGE, 0.3)
            took = time.monotonic() - started
    assert took < 0.5 + 1.0


async def test_a_result_dripped_a_byte_at_a_time_ends_at_the_timeout() -> None:
    async with dripping_api(answer_drip=False) as (base, _):
        settings = settings_for(base, retouch_timeout_seconds=0.5)
        async with create_http_client(settings) as client:
            api = ApiBackend(
                client,
                base_url=base,
                api_key=settings.retouch_api_key,
                download_timeout=0.5,
                attempt_timeout=0.5,
                backoff_base=0.01,
                backoff_max=0.01,
            )
            started = time.monotonic()
            with pytest.raises(UpstreamTimeoutError):
                await api.retouch(IMAGE, 0.3)
            took = time.monotonic() - started
    assert took < 3 * (0.5 + 1.0)  # three download attempts at most


async def test_every_retry_counts_against_the_job_deadline() -> None:
    async with dripping_api() as (base, started):
        settings = settings_for(
            base,
            retouch_timeout_seconds=0.4,
            retouch_total_timeout_seconds=1.0,
            retouch_max_retries=10,
        )
        async with create_http_client(settings) as client:
            begun = time.monotonic()
            with pytest.raises(UpstreamTimeoutError) as caught:
                await backend(client, settings).retouch(IMAGE, 0.3)
            took = time.monotonic() - begun
    assert took < 1.0 + 1.0
    assert "in all" in caught.value.message
    assert 1 <= len(started) < 11
