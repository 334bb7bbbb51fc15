"""Hostile input, item 2: serve-api under hostile clients, over real HTTP on 127.0.0.1.

A body is read only after the request has a queue place and a share of the body budget; a
too-large one is refused by its Content-Length; junk and over-deep JSON are refused before they
are parsed; every client error is the contract's error JSON with a 4xx; slow headers and stalled
or dripping bodies are let go; result URLs never come from the Host header.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import bots.serve_api.request as request_module
from core.formats import PreparedImage
from tests.hostile_inputs import exchange, post_head, raw_connection
from tests.test_serve_api import FakeBackend, body, data_url, png, serve


async def _queued(client: httpx.AsyncClient, waiting: int) -> None:
    """Wait until serve-api's health report shows `waiting` jobs queued."""
    async with asyncio.timeout(10):
        while (await client.get("/healthz")).json()["queue"]["waiting"] < waiting:
            pass


def address(client: httpx.AsyncClient) -> tuple[str, int]:
    url = client.base_url
    assert url.host and url.port
    return url.host, url.port


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The contract's error object, checked to have exactly its four fields."""
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


class EnteredBackend(FakeBackend):
    """A `FakeBackend` that says when a job has reached it."""

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__(gate=gate)
        self.entered = asyncio.Event()

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        self.entered.set()
        return await super().retouch(image, fidelity)


async def test_a_full_queue_refuses_before_reading_the_body(tmp_path: Path) -> None:
    gate = asyncio.Event()
    backend = EnteredBackend(gate)
    async with serve(tmp_path, backend, serve_api_workers=1, serve_api_queue_size=1) as client:
        busy = [
            asyncio.create_task(
                client.post("/v1/chat/completions", json=body(data_url(png(8, 8), "image/png")))
            )
        ]
        await asyncio.wait_for(backend.entered.wait(), 10)
        busy.append(
            asyncio.create_task(
                client.post("/v1/chat/completions", json=body(data_url(png(8, 8), "image/png")))
            )
        )
        await _queued(client, waiting=1)
        host, port = address(client)
        # Announces 40 MB and sends none of it: only an answer before reading can come back.
        async with raw_connection(host, port) as (reader, writer):
            writer.write(post_head(40_000_000))
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 429")
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*busy)] == [200, 200]


async def test_a_body_over_the_limit_is_refused_by_its_length(tmp_path: Path) -> None:
    async with serve(tmp_path, FakeBackend(), image_max_input_bytes=1000) as client:
        head, payload = await exchange(*address(client), post_head(999_999_999), within=10)
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(payload)["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    "junk",
    [
        b"[" + b"{}," * 200_000 + b"{}]",
        b"[" + b"0," * 300_000 + b"0]",
        b'["' + b'","' * 200_000 + b'"]',
        b'{"model": "retouch", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=["objects", "numbers", "strings", "nested"],
)
async def test_junk_json_is_refused_before_it_is_parsed(
    tmp_path: Path, junk: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[int] = []
    real = request_module._loads

    def loads(data: bytes | bytearray) -> Any:
        parsed.append(len(data))
        return real(data)

    monkeypatch.setattr(request_module, "_loads", loads)
    async with serve(tmp_path, FakeBackend()) as client:
        response = await client.post(
            "/v1/chat/completions", content=junk, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert error_of(response)["code"] == "request_too_complex"
    assert parsed == []


async def test_json_nested_deeper_than_the_parser_goes_is_a_400(tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    async with serve(tmp_path, FakeBackend()) as client:
        response = await client.post(
            "/v1/chat/completions", content=deep, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    error_of(response)


async def test_an_image_url_with_credentials_is_a_400(tmp_path: Path) -> None:
    backend = FakeBackend()
    async with serve(tmp_path, backend, serve_api_allow_private_urls=True) as client:
        host, port = address(client)
        url = f"http://user:secret@{host}:{port}/v1/models"
        response = await client.post("/v1/chat/completions", json=body(url))
    assert response.status_code == 400
    assert "secret" not in response.text
    assert error_of(response)["code"] == "invalid_image_url"
    assert backend.calls == []


async def test_an_image_url_with_credentials_is_refused_by_the_guard(tmp_path: Path) -> None:
    async with serve(tmp_path, FakeBackend()) as client:
        response = await client.post(
            "/v1/chat/completions", json=body("http://user:secret@127.0.0.1/x.jpg")
        )
    assert response.status_code == 400
    assert "secret" not in response.text
    error_of(response)


@pytest.mark.parametrize(
    ("method", "path", "content", "status"),
    [
        ("GET", "/v1/chat/completions", None, 405),
        ("POST", "/v1/nowhere", b"{}", 404),
        ("POST", "/v1/chat/completions", b"{", 400),
        ("POST", "/v1/chat/completions", b"\xff\xfe", 400),
        ("POST", "/v1/chat/completions", b"[]", 400),
        ("POST", "/v1/chat/completions", b'{"model": 1}', 400),
        ("POST", "/v1/chat/completions", b'{"model": "retouch", "messages": {}}', 400),
        ("POST", "/v1/chat/completions", b'{"model": "retouch", "extra_body": 3}', 400),
    ],
)
async def test_every_client_error_is_the_contract_json_with_a_4xx(
    tmp_path: Path, method: str, path: str, content: bytes | None, status: int
) -> None:
    async with serve(tmp_path, FakeBackend()) as client:
        response = await client.request(method, path, content=content)
    assert response.status_code == status
    error_of(response)


async def test_slow_headers_are_let_go(tmp_path: Path) -> None:
    async with serve(tmp_path, FakeBackend(), serve_api_header_timeout_seconds=0.5) as client:
        assert await exchange(*address(client), post_head(), within=10) == (b"", b"")


async def test_a_body_that_never_comes_is_let_go(tmp_path: Path) -> None:
    async with serve(tmp_path, FakeBackend(), serve_api_body_idle_seconds=0.5) as client:
        head, payload = await exchange(*address(client), post_head(1000) + b"{", within=15)
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(payload)["error"]["code"] == "request_timeout"


async def test_a_dripping_body_meets_its_deadline(tmp_path: Path) -> None:
    async with serve(
        tmp_path,
        FakeBackend(),
        serve_api_body_idle_seconds=5,
        serve_api_body_timeout_seconds=0.5,
    ) as client:
        host, port = address(client)
        async with raw_connection(host, port) as (reader, writer):
            writer.write(post_head(1000))

            async def drip() -> None:
                for _ in range(1000):
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.05)

            dripping = asyncio.create_task(drip())
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
            finally:
                dripping.cancel()
    assert head.startswith(b"HTTP/1.1 408")


async def test_result_urls_never_come_from_the_host_header(tmp_path: Path) -> None:
    async with serve(tmp_path, FakeBackend()) as client:
        response = await client.post(
            "/v1/chat/completions",
            json=body(data_url(png(8, 8), "image/png")),
            headers={"Host": "attacker.example:666"},
        )
        host, port = address(client)
    assert response.status_code == 200
    url = response.json()["choices"][0]["message"]["content"]
    assert url.startswith(f"http://{host}:{port}/v1/files/")


async def test_result_urls_use_the_public_url_when_set(tmp_path: Path) -> None:
    public = "https://retouch.example.com"
    async with serve(tmp_path, FakeBackend(), serve_api_public_url=public) as client:
        response = await client.post(
            "/v1/chat/completions",
            json=body(data_url(png(8, 8), "image/png")),
            headers={"Host": "attacker.example"},
        )
    assert response.json()["choices"][0]["message"]["content"].startswith(f"{public}/v1/files/")
