"""serve-api over real HTTP on 127.0.0.1: the contract's JSON, errors, keys, queue, result files."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from bots.serve_api import ResultStore, ServeApiSettings, create_app, run_server
from core.backend import RetouchBackend
from core.errors import BusyError, ConfigError, NoFaceError
from core.formats import PreparedImage
from core.settings import Settings
from tests.test_cli import run_cli
from tests.test_settings import missing_from_env_example

ROOT = Path(__file__).resolve().parent.parent

NO_IMAGE = {
    "error": {
        "message": "retouch模型需要图片,请在请求中包含图片",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
}
NO_FACE = {
    "error": {
        "message": "未检测到人脸,请上传包含清晰正脸的图片 (no face found in the image)",
        "type": "invalid_request_error",
        "param": None,
        "code": "no_face",
    }
}
BAD_KEY = {
    "error": {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
START = 1_704_067_200.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


class FakeBackend:
    """Records what reached it; optionally holds every job on `gate` or fails with `error`."""

    name = "fake"

    def __init__(
        self, *, gate: asyncio.Event | None = None, error: BaseException | None = None
    ) -> None:
        self.calls: list[tuple[PreparedImage, float]] = []
        self.gate = gate
        self.error = error

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        self.calls.append((image, fidelity))
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return png(image.width, image.height)

    async def aclose(self) -> None:
        pass


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 150, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def body(url: str | None, **extra: Any) -> dict[str, Any]:
    """The contract's request body, with the image part only when `url` is given."""
    content: list[dict[str, Any]] = [{"type": "text", "text": "a person"}]
    if url is not None:
        content.append({"type": "image_url", "image_url": {"url": url}})
    return {"model": "retouch", "messages": [{"role": "user", "content": content}], **extra}


def make_settings(tmp_path: Path, **overrides: Any) -> tuple[Settings, ServeApiSettings]:
    """The core's settings and serve-api's, each taking the overrides that name its fields."""
    values: dict[str, Any] = {
        "serve_api_results_dir": tmp_path / "results",
        "serve_api_workers": 2,
        "serve_api_queue_size": 2,
    }
    values.update(overrides)
    serve = {k: v for k, v in values.items() if k in ServeApiSettings.model_fields}
    core = {k: v for k, v in values.items() if k not in serve}
    return Settings(**core), ServeApiSettings(**serve)


def raw_body(url: str, fidelity_json: bytes, *, in_extra_body: bool) -> bytes:
    """The contract's body with `fidelity_json` written verbatim (`1e309`, `NaN`, ...)."""
    slot = "@@fidelity@@"
    place: dict[str, Any] = {"codeformer_fidelity": slot}
    text = json.dumps(body(url, **({"extra_body": place} if in_extra_body else place)))
    return text.replace(f'"{slot}"', fidelity_json.decode()).encode()


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[httpx.AsyncClient]:
    """`app` on a free port of 127.0.0.1, and an httpx client pointed at it."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def serve(
    tmp_path: Path,
    backend: RetouchBackend,
    *,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    settings, serve_settings = make_settings(tmp_path, **overrides)
    app = create_app(settings, serve_settings, backend, clock=clock or FakeClock())
    async with serving(app) as client:
        yield client


@contextlib.asynccontextmanager
async def image_host(data: bytes) -> AsyncIterator[str]:
    """A local web server that serves `data` as a JPEG; yields its URL."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=data, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/portrait.jpg", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/portrait.jpg"))
    finally:
        await server.close()


def result_files(tmp_path: Path) -> list[str]:
    directory = tmp_path / "results"
    return sorted(os.listdir(directory)) if directory.exists() else []


# --- success ----------------------------------------------------------------------------------


async def test_success_has_the_contract_shape_and_the_file_downloads(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    backend = FakeBackend()
    async with serve(tmp_path, backend) as client:
        response = await client.post("/v1/chat/completions", json=body(data_url(portrait_bytes)))
        assert response.status_code == 200
        answer = response.json()
        url = answer["choices"][0]["message"]["content"]
        assert answer == {
            "id": f"xty-{int(START * 1000)}",
            "object": "chat.completion",
            "created": int(START),
            "model": "retouch",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": url},
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        assert url.startswith(f"{client.base_url}/v1/files/")
        name = url.rsplit("/", 1)[1]
        assert name.endswith(".png") and len(name) >= 36

        result = await client.get(url)
        assert result.status_code == 200
        assert result.headers["content-type"] == "image/png"
        assert result.content == png(512, 512)
    assert backend.calls[0][0].width == 512


async def test_image_url_may_be_a_bare_string(tmp_path: Path, portrait_bytes: bytes) -> None:
    request = body(None)
    request["messages"][0]["content"].append(
        {"type": "image_url", "image_url": data_url(portrait_bytes)}
    )
    backend = FakeBackend()
    async with serve(tmp_path, backend) as client:
        response = await client.post("/v1/chat/completions", json=request)
    assert response.status_code == 200
    assert len(backend.calls) == 1


async def test_public_url_setting_is_the_base_of_result_urls(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    async with serve(
        tmp_path, FakeBackend(), serve_api_public_url="https://retouch.example.com/"
    ) as client:
        response = await client.post("/v1/chat/completions", json=body(data_url(portrait_bytes)))
    url = response.json()["choices"][0]["message"]["content"]
    assert url.startswith("https://retouch.example.com/v1/files/")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"extra_body": {"codeformer_fidelity": 0.3}}, 0.3),
        ({"codeformer_fidelity": 0.5}, 0.5),
        ({"extra_body": {"codeformer_fidelity": 0.7}, "codeformer_fidelity": 0.7}, 0.7),
        ({"extra_body": {"codeformer_fidelity": 1}}, 1.0),
        ({"codeformer_fidelity": 0}, 0.0),
        ({"extra_body": {}}, 0.1),
        ({}, 0.1),
    ],
)
async def test_fidelity_in_either_place_reaches_the_backend_as_a_float(
    tmp_path: Path, portrait_bytes: bytes, extra: dict[str, Any], expected: float
) -> None:
    backend = FakeBackend()
    async with serve(tmp_path, backend) as client:
        response = await client.post(
            "/v1/chat/completions", json=body(data_url(portrait_bytes), **extra)
        )
    assert response.status_code == 200, response.text
    [(_, fidelity)] = backend.calls
    assert type(fidelity) is float
    assert fidelity == expected


# --- request errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_body",
    [
        body(None),
        {"model": "retouch", "messages": [{"role": "user", "content": "retouch me"}]},
        {"model": "retouch", "messages": []},
        {"model": "retouch"},
        {
            "model": "retouch",
            "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": "x"}]}],
        },
    ],
)
async def test_missing_image_gives_the_contract_message(
    tmp_path: Path, request_body: dict[str, Any]
) -> None:
    backend = FakeBackend()
    async with serve(tmp_path, backend) as client:
        response = await client.post("/v1/chat/completions", json=request_body)
    assert response.status_code == 400
    assert response.json() == NO_IMAGE
    assert backend.calls == []


@pytest.mark.parametrize(
    "extra",
    [
        {"extra_body": {"codeformer_fidelity": "0.3"}},
        {"codeformer_fidelity": "0.3"},
        {"codeformer_fidelity": 1.5},
        {"extra_body": {"codeformer_fidelity": -0.1}},
        {"codeformer_fidelity": True},
        {"codeformer_fidelity": [0.3]},
    ],
)
async def test_bad_fidelity_is_a_400_naming_the_parameter(
    tmp_path: Path, portrait_bytes: bytes, extra: dict[str, Any]
) -> None:
    backend = FakeBackend()
    async with serve(tmp_path, backend) as client:
        response = await client.post(
            "/v1/chat/completions", json=body(data_url(portrait_bytes), **extra)
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "codeformer_fidelity"
    assert backend.calls == []


@pytest.mark.parametrize(
    ("fidelity_json", "shown"),
    [
        (b"1e309", "Infinity"),  # a JSON number too large for a double parses as infinity
        (b"-1e309", "-Infinity"),
        (b"true", "true"),
        (b"false", "false"),
        (b'"0.3"', '"0.3"'),
        (b"1.0001", "1.0001"),
    ],
)
@pytest.mark.parametrize("where", ["extra_body", "top level"])
async def test_the_core_fidelity_rule_refuses_what_json_can_carry(
    tmp_path: Path, portrait_bytes: bytes, fidelity_json: bytes, shown: str, where: str
) -> None:
    """Checked by `core.fidelity`, answered as today: a 400 naming `codeformer_fidelity`."""
    raw = raw_body(data_url(portrait_bytes), fidelity_json, in_extra_body=where == "extra_body")
    backend = FakeBackend()
    async with serve(tmp_path, backend) as client:
        response = await client.post(
            "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "codeformer_fidelity must be a JSON number between 0.0 and 1.0 "
            f"(got {shown}).",
            "type": "invalid_request_error",
            "param": "codeformer_fidelity",
            "code": "bad_fidelity",
        }
    }
    assert backend.calls == []


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
async def test_json_constants_that_are_not_json_are_refused_as_malformed(
    tmp_path: Path, portrait_bytes: bytes, constant: bytes
) -> None:
    """Python's parser would read `NaN`; JSON has no such number, so the body is not JSON."""
    raw = raw_body(data_url(portrait_bytes), constant, in_extra_body=False)
    backend = FakeBackend()
    async with serve(tmp_path, backend) as client:
        response = await client.post(
            "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "The request body is not valid JSON."
    assert backend.calls == []


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"model": "retouch", "codeformer_fidelity": NaN}',
        b"\xff\xfe\x00",
        b'["retouch"]',
    ],
)
async def test_malformed_json_is_a_400(tmp_path: Path, raw: bytes) -> None:
    async with serve(tmp_path, FakeBackend()) as client:
        response = await client.post(
            "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_unknown_model_is_refused(tmp_path: Path, portrait_bytes: bytes) -> None:
    request = body(data_url(portrait_bytes))
    request["model"] = "gpt-4o"
    async with serve(tmp_path, FakeBackend()) as client:
        response = await client.post("/v1/chat/completions", json=request)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "model"
    assert error["code"] == "model_not_found"
    assert "retouch" in error["message"]


async def test_no_face_from_the_backend_is_a_400_no_face(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    backend = FakeBackend(error=NoFaceError("no face found"))
    async with serve(tmp_path, backend) as client:
        response = await client.post("/v1/chat/completions", json=body(data_url(portrait_bytes)))
    assert response.status_code == 400
    assert response.json() == NO_FACE


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (data_url(b"this is not an image at all, just text"), "not_an_image"),
        ("data:image/jpeg;base64,!!!not base64!!!", "invalid_image_url"),
        ("data:image/jpeg,rawbytes", "invalid_image_url"),
        ("file:///etc/passwd", "forbidden_url"),
        ("ftp://example.com/a.jpg", "forbidden_url"),
    ],
)
async def test_bad_images_are_a_400_with_a_code(tmp_path: Path, url: str, code: str) -> None:
    backend = FakeBackend()
    async with serve(tmp_path, backend) as client:
        response = await client.post("/v1/chat/completions", json=body(url))
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", code)
    assert backend.calls == []


async def test_unexpected_errors_are_a_500_without_internals(
    tmp_path: Path, portrait_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend(error=RuntimeError("/srv/secret/internal/path exploded"))
    async with serve(tmp_path, backend) as client:
        response = await client.post("/v1/chat/completions", json=body(data_url(portrait_bytes)))
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "secret" not in response.text
    assert result_files(tmp_path) == []


async def test_streaming_is_refused(tmp_path: Path, portrait_bytes: bytes) -> None:
    async with serve(tmp_path, FakeBackend()) as client:
        response = await client.post(
            "/v1/chat/completions", json=body(data_url(portrait_bytes), stream=True)
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream"


async def test_a_busy_engine_is_a_429_with_retry_after(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    async with serve(tmp_path, FakeBackend(error=BusyError("the engine is busy"))) as client:
        response = await client.post("/v1/chat/completions", json=body(data_url(portrait_bytes)))
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


# --- keys ---------------------------------------------------------------------------------------


async def test_bearer_keys_are_required_when_configured(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    request = body(data_url(portrait_bytes))
    async with serve(tmp_path, FakeBackend(), serve_api_keys="sk-good,sk-other") as client:
        for headers in (
            {},
            {"Authorization": "Bearer sk-bad"},
            {"Authorization": "Bearer sk-goo"},
            {"Authorization": "Basic sk-good"},
            {"Authorization": "sk-good"},
        ):
            response = await client.post("/v1/chat/completions", json=request, headers=headers)
            assert response.status_code == 401, headers
            assert response.json() == BAD_KEY
        denied = await client.get("/v1/models")
        assert denied.status_code == 401

        for key in ("sk-good", "sk-other"):
            response = await client.post(
                "/v1/chat/completions", json=request, headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 200
        # The result URL is the capability: it opens without a key, like the hosted API's.
        result = await client.get(response.json()["choices"][0]["message"]["content"])
        assert result.status_code == 200
        assert (await client.get("/healthz")).status_code == 200


# --- the queue ----------------------------------------------------------------------------------


async def test_a_full_queue_answers_429_at_once_with_retry_after(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    workers, waiting = 2, 3
    gate = asyncio.Event()
    backend = FakeBackend(gate=gate)
    request = body(data_url(portrait_bytes))
    async with serve(
        tmp_path, backend, serve_api_workers=workers, serve_api_queue_size=waiting
    ) as client:
        jobs = [
            asyncio.create_task(client.post("/v1/chat/completions", json=request))
            for _ in range(workers + waiting)
        ]
        try:
            queue: dict[str, int] = {}
            for _ in range(2000):  # each probe is an HTTP round trip: the jobs move meanwhile
                queue = (await client.get("/healthz")).json()["queue"]
                if len(backend.calls) == workers and queue["waiting"] == waiting:
                    break
            assert queue == {"workers": 2, "capacity": 3, "running": 2, "waiting": 3}
            assert len(backend.calls) == workers

            refused = await client.post("/v1/chat/completions", json=request)
            assert refused.status_code == 429
            assert int(refused.headers["Retry-After"]) >= 1
            error = refused.json()["error"]
            assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        finally:
            gate.set()
            answers = await asyncio.gather(*jobs)
        assert [a.status_code for a in answers] == [200] * (workers + waiting)
        assert (await client.post("/v1/chat/completions", json=request)).status_code == 200
        assert (await client.get("/healthz")).json()["queue"]["waiting"] == 0
    assert len(backend.calls) == workers + waiting + 1


# --- result files -------------------------------------------------------------------------------


async def test_results_expire_and_are_deleted(tmp_path: Path, portrait_bytes: bytes) -> None:
    clock = FakeClock()
    async with serve(
        tmp_path, FakeBackend(), clock=clock, serve_api_result_ttl_seconds=3600
    ) as client:
        response = await client.post("/v1/chat/completions", json=body(data_url(portrait_bytes)))
        url = response.json()["choices"][0]["message"]["content"]
        assert len(result_files(tmp_path)) == 1

        clock.now += 3599
        fresh = await client.get(url)
        assert fresh.status_code == 200
        assert fresh.headers["cache-control"] == "private, max-age=1"

        clock.now += 1
        expired = await client.get(url)
        assert expired.status_code == 404
        assert expired.json()["error"]["type"] == "invalid_request_error"
        assert result_files(tmp_path) == []


def test_the_sweeper_deletes_only_expired_results(tmp_path: Path) -> None:
    clock = FakeClock()
    store = ResultStore(tmp_path / "results", 100, clock)
    old = store.save(png(4, 4))
    clock.now += 50
    young = store.save(png(4, 4))
    (tmp_path / "results" / "operator-notes.txt").write_text("not ours")
    clock.now += 50
    assert store.sweep() == 1
    assert result_files(tmp_path) == sorted([young, "operator-notes.txt"])
    assert old not in result_files(tmp_path)


async def test_expired_results_are_swept_at_start_up(tmp_path: Path) -> None:
    clock = FakeClock()
    stale = ResultStore(tmp_path / "results", 3600, clock).save(png(4, 4))
    clock.now += 3600
    async with serve(tmp_path, FakeBackend(), clock=clock):
        assert stale not in result_files(tmp_path)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files/..%2F..%2Fsecret.jpg",
        "/v1/files/%2e%2e%2fsecret.jpg",
        "/v1/files/..%5Csecret.jpg",
        "/v1/files/secret.jpg",
        "/v1/files/operator-notes.txt",
        "/v1/files/",
        "/v1/files/.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.png.tmp",
    ],
)
async def test_files_outside_the_results_are_never_served(tmp_path: Path, path: str) -> None:
    (tmp_path / "secret.jpg").write_bytes(b"\xff\xd8\xff secret")
    results = tmp_path / "results"
    results.mkdir()
    (results / "secret.jpg").write_bytes(b"\xff\xd8\xff secret")
    (results / "operator-notes.txt").write_text("secret")
    (results / ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.png.tmp").write_text("secret")
    async with serve(tmp_path, FakeBackend()) as client:
        response = await client.get(httpx.URL(client.base_url, raw_path=path.encode()))
    assert response.status_code == 404
    assert "secret" not in response.text
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- image URLs ---------------------------------------------------------------------------------


async def test_private_image_urls_are_refused_by_default(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    backend = FakeBackend()
    async with image_host(portrait_bytes) as url, serve(tmp_path, backend) as client:
        response = await client.post("/v1/chat/completions", json=body(url))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "forbidden_url"
    assert backend.calls == []


async def test_private_image_urls_work_when_allowed(tmp_path: Path, portrait_bytes: bytes) -> None:
    backend = FakeBackend()
    async with (
        image_host(portrait_bytes) as url,
        serve(tmp_path, backend, serve_api_allow_private_urls=True) as client,
    ):
        response = await client.post("/v1/chat/completions", json=body(url))
        missing = await client.post(
            "/v1/chat/completions", json=body(url.replace("portrait", "missing"))
        )
    assert response.status_code == 200
    assert (backend.calls[0][0].width, backend.calls[0][0].height) == (512, 512)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "invalid_image_url"


# --- sizes --------------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_a_413(tmp_path: Path) -> None:
    cap = 30_000  # the body limit is then 4/3 of it plus 64 KiB of JSON
    request = body(data_url(b"\xff\xd8\xff" + bytes(200_000)))
    async with serve(tmp_path, FakeBackend(), image_max_input_bytes=cap) as client:
        response = await client.post("/v1/chat/completions", json=request)
    assert response.status_code == 413
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")


async def test_an_image_over_the_cap_is_a_400_before_decoding(tmp_path: Path) -> None:
    cap = 30_000
    request = body(data_url(b"\xff\xd8\xff" + bytes(cap)))
    async with serve(tmp_path, FakeBackend(), image_max_input_bytes=cap) as client:
        response = await client.post("/v1/chat/completions", json=request)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "image_too_large"


# --- probes and odds ----------------------------------------------------------------------------


async def test_healthz_and_models(tmp_path: Path) -> None:
    async with serve(tmp_path, FakeBackend(), serve_api_workers=3) as client:
        health = await client.get("/healthz")
        models = await client.get("/v1/models")
        one = await client.get("/v1/models/retouch")
        other = await client.get("/v1/models/gpt-4o")
    assert health.json() == {
        "status": "ok",
        "backend": "fake",
        "queue": {"workers": 3, "capacity": 2, "running": 0, "waiting": 0},
    }
    assert models.json()["object"] == "list"
    assert [m["id"] for m in models.json()["data"]] == ["retouch"]
    assert one.json()["id"] == "retouch"
    assert other.status_code == 404


async def test_unknown_paths_and_methods_answer_in_the_error_shape(tmp_path: Path) -> None:
    async with serve(tmp_path, FakeBackend()) as client:
        unknown = await client.get("/v1/embeddings")
        wrong_method = await client.get("/v1/chat/completions")
    assert unknown.status_code == 404
    assert wrong_method.status_code == 405
    assert "POST" in wrong_method.headers["Allow"]
    for response in (unknown, wrong_method):
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_log_lines_hold_neither_keys_nor_images(
    tmp_path: Path, portrait_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve(tmp_path, FakeBackend(), serve_api_keys="sk-secret-key-1") as client:
        response = await client.post(
            "/v1/chat/completions",
            json=body(data_url(portrait_bytes), codeformer_fidelity=0.3),
            headers={"Authorization": "Bearer sk-secret-key-1"},
        )
        name = response.json()["choices"][0]["message"]["content"].rsplit("/", 1)[1]
        await client.get(f"/v1/files/{name}")
    lines = [r.getMessage() for r in caplog.records if r.name == "retouch.server"]
    assert any("/v1/chat/completions -> 200" in line and "fidelity=0.3" in line for line in lines)
    assert any("/v1/files/{name} -> 200" in line for line in lines)
    assert "sk-secret-key-1" not in caplog.text
    assert "base64" not in caplog.text
    assert name not in "\n".join(lines)


# --- settings -----------------------------------------------------------------------------------


def test_settings_defaults_and_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = ServeApiSettings.load()
    assert (defaults.serve_api_host, defaults.serve_api_port) == ("127.0.0.1", 8000)
    assert (defaults.serve_api_result_ttl_seconds, defaults.serve_api_queue_size) == (3600, 16)
    assert defaults.serve_api_results_dir == Path("data/serve-api-results")
    assert defaults.serve_api_keys == [] and not defaults.serve_api_allow_private_urls
    assert defaults.serve_api_worker_count == max(1, os.cpu_count() or 1)
    monkeypatch.setenv("SERVE_API_KEYS", "key-one, key-two,")
    monkeypatch.setenv("SERVE_API_WORKERS", "3")
    configured = ServeApiSettings.load()
    assert [k.get_secret_value() for k in configured.serve_api_keys] == ["key-one", "key-two"]
    assert configured.serve_api_worker_count == 3
    assert "key-one" not in repr(configured)


def test_settings_are_read_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SERVE_API_PORT=8123\nSERVE_API_PUBLIC_URL=https://x.example\n")
    configured = ServeApiSettings.load()
    assert (configured.serve_api_port, configured.serve_api_public_url) == (
        8123,
        "https://x.example",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("SERVE_API_PORT", "70000"), ("SERVE_API_QUEUE_SIZE", "0"), ("SERVE_API_WORKERS", "many")],
)
def test_a_bad_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        ServeApiSettings.load()
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and message.endswith(f"(got {value!r})")
    assert "\n" not in message


def test_the_command_names_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SERVE_API_PORT=70000\n")
    done = run_cli("serve-api", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("retouch-bot: configuration error: SERVE_API_PORT: ")
    assert done.stderr.count("\n") == 1


async def test_the_command_serves_with_its_settings_until_terminated(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SERVE_API_KEYS=sk-cli-key-0123\nSERVE_API_QUEUE_SIZE=3\n")
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        "serve-api",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = (await server.stdout.readline()).decode()
        assert line.startswith("serving the local retouch engine at http://127.0.0.1:"), line
        base = line.split(" at ", 1)[1].split()[0]
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            denied = await client.get("/models")
            allowed = await client.get(
                "/models", headers={"Authorization": "Bearer sk-cli-key-0123"}
            )
            health = (await client.get(base.removesuffix("/v1") + "/healthz")).json()
        assert (denied.status_code, allowed.status_code) == (401, 200)
        assert (health["backend"], health["queue"]["capacity"]) == ("local", 3)
    finally:
        server.terminate()
        await server.wait()


def test_env_example_lists_every_serve_api_setting() -> None:
    missing = missing_from_env_example(ServeApiSettings)
    assert not missing, f".env.example lacks {sorted(missing)}"
    assert not set(ServeApiSettings.model_fields) & set(Settings.model_fields)


# --- the real engine ----------------------------------------------------------------------------


async def test_round_trip_through_the_local_engine(
    tmp_path: Path, portrait_bytes: bytes, portrait_rgb: np.ndarray, no_face_bytes: bytes
) -> None:
    from core.local_backend import LocalBackend

    backend = LocalBackend(threads=1)
    try:
        async with serve(tmp_path, backend) as client:
            response = await client.post(
                "/v1/chat/completions",
                json=body(data_url(portrait_bytes), extra_body={"codeformer_fidelity": 0.1}),
            )
            assert response.status_code == 200, response.text
            result = await client.get(response.json()["choices"][0]["message"]["content"])
            no_face = await client.post("/v1/chat/completions", json=body(data_url(no_face_bytes)))
    finally:
        await backend.aclose()
    with Image.open(io.BytesIO(result.content)) as image:
        assert result.headers["content-type"] == Image.MIME[image.format or ""]
        retouched = np.asarray(image.convert("RGB"))
    assert retouched.shape == portrait_rgb.shape
    assert np.abs(retouched.astype(int) - portrait_rgb.astype(int)).mean() > 0.1
    assert no_face.status_code == 400
    assert no_face.json() == NO_FACE


async def test_run_server_listens_reports_its_url_and_stops_cleanly(tmp_path: Path) -> None:
    settings, serve_settings = make_settings(tmp_path)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_server(settings, serve_settings, host="127.0.0.1", port=0, ready=ready.set_result)
    )
    url = await asyncio.wait_for(ready, 30)
    assert url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient() as client:
        health = await client.get(f"{url}/healthz")
    assert health.json()["backend"] == "local"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
