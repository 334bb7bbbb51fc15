"""Hostile input, fuzzed: serve-api's request JSON over real HTTP, and image preparation of
mutated real images. Whatever arrives, no 5xx and no exception but the typed user errors."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bots.serve_api import create_app
from core.errors import UserInputError
from core.formats import sniff_format
from core.imaging import ImageLimits, prepare_image
from tests.test_serve_api import FakeBackend, FakeClock, data_url, make_settings, png

EXAMPLES = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class ServerThread:
    """serve-api with a fake backend on its own event loop in a thread, for sync fuzzing."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.url = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        settings_, serve = make_settings(
            self.tmp_path, image_max_input_bytes=200_000, serve_api_queue_size=64
        )
        app = create_app(settings_, serve, FakeBackend(), clock=FakeClock())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self._loop.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with (
        ServerThread(tmp_path_factory.mktemp("fuzz")) as running,
        httpx.Client(base_url=running.url, timeout=30) as client,
    ):
        yield client


KEYS = st.sampled_from(
    [
        "model",
        "messages",
        "role",
        "content",
        "type",
        "text",
        "image_url",
        "url",
        "extra_body",
        "codeformer_fidelity",
        "stream",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["retouch", "user", "image_url", "text", "data:", "http://127.0.0.1:9/x"]),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=25,
)
SMALL_IMAGE = data_url(png(8, 8), "image/png")


def valid_request() -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": "a person"}]
    content.append({"type": "image_url", "image_url": {"url": SMALL_IMAGE}})
    return {"model": "retouch", "messages": [{"role": "user", "content": content}]}


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}


@EXAMPLES
@given(payload=JSON_VALUES)
def test_any_json_gets_an_answer_in_the_contract_shape(server: httpx.Client, payload: Any) -> None:
    check(server.post("/v1/chat/completions", content=json.dumps(payload).encode()))


@EXAMPLES
@given(
    path=st.lists(st.sampled_from(["messages", 0, "content", 1, "image_url"]), max_size=5),
    value=JSON_VALUES,
)
def test_a_valid_request_with_any_part_replaced_gets_an_answer(
    server: httpx.Client, path: list[Any], value: Any
) -> None:
    request: Any = valid_request()
    node = request
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
    else:
        if path and isinstance(node, dict | list):
            with contextlib.suppress(IndexError, TypeError):
                node[path[-1]] = value
    check(server.post("/v1/chat/completions", json=request))


@EXAMPLES
@given(
    cuts=st.lists(
        st.tuples(st.integers(0, 400), st.binary(max_size=4), st.integers(0, 3)), max_size=6
    )
)
def test_a_mangled_request_body_gets_an_answer(
    server: httpx.Client, cuts: list[tuple[int, bytes, int]]
) -> None:
    body = bytearray(json.dumps(valid_request()).encode())
    for position, insert, drop in cuts:
        at = position % (len(body) + 1)
        body[at : at + drop] = insert
    check(
        server.post(
            "/v1/chat/completions",
            content=bytes(body),
            headers={"Content-Type": "application/json"},
        )
    )


# --- image preparation ------------------------------------------------------------------


def encoded(rgb_image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    rgb_image.save(buffer, fmt, **options)
    return buffer.getvalue()


@functools.cache
def real_images() -> tuple[bytes, ...]:
    """The sample portrait, small, in every format and mode preparation meets."""
    source = Path(__file__).resolve().parent.parent / "examples" / "portrait.jpg"
    with Image.open(source) as portrait:
        small = portrait.convert("RGB").resize((96, 96))
    return (
        encoded(small, "JPEG", quality=80),
        encoded(small, "JPEG", quality=80, progressive=True),
        encoded(small, "PNG"),
        encoded(small.convert("P"), "PNG"),
        encoded(small.convert("RGBA"), "WEBP"),
        encoded(small, "GIF"),
        encoded(small, "TIFF"),
        encoded(small, "BMP"),
    )


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate", "big"]),
        st.integers(0, 10_000),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=5,
)


def mutate(data: bytes, mutations: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, position, payload in mutations:
        if not out:
            break
        at = position % len(out)
        if kind == "flip":
            out[at] ^= payload[0] or 0xFF
        elif kind == "insert":
            out[at:at] = payload
        elif kind == "delete":
            del out[at : at + len(payload)]
        elif kind == "truncate":
            del out[max(1, at) :]
        else:  # a header field turned huge: widths, lengths, counts
            out[at : at + 2] = b"\xff\xff"
    return bytes(out)


@EXAMPLES
@given(which=st.integers(0, 7), mutations=MUTATIONS)
def test_mutated_real_images_are_prepared_or_refused_as_the_users_fault(
    which: int, mutations: list[tuple[str, int, bytes]]
) -> None:
    data = mutate(real_images()[which], mutations)
    limits = ImageLimits(max_input_pixels=4_000_000, max_pixels=20_000, max_upload_bytes=200_000)
    try:
        prepared = prepare_image(data, limits)
    except UserInputError:
        return
    assert sniff_format(prepared.data) in ("jpeg", "png", "webp")
    assert prepared.width * prepared.height <= 20_000
    assert len(prepared.data) <= 200_000
