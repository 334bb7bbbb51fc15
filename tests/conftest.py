"""Fixtures shared by the whole suite: sample images, the fake upstream, the HTTP client."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from core.http import http_client
from tests.pg import PgServer
from tests.upstream_fakes import FakeUpstream

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PORTRAIT_PATH = EXAMPLES / "portrait.jpg"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's `.env` or real tokens, and data goes to a temporary folder."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "RETOUCH_API_KEY",
        "TELEGRAM_BOT_TOKEN",
        "DISCORD_BOT_TOKEN",
        "DATABASE_URL",
        "REPLICA_ID",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A fake retouch API and file server on 127.0.0.1."""
    async with FakeUpstream() as fake:
        yield fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client production uses (`core.http`), with short timeouts."""
    async with http_client(2.0) as http:
        yield http


@pytest.fixture(scope="session")
def portrait_bytes() -> bytes:
    """The public-domain sample portrait (512x512 JPEG, one face)."""
    return PORTRAIT_PATH.read_bytes()


@pytest.fixture(scope="session")
def portrait_rgb(portrait_bytes: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(portrait_bytes)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="session")
def no_face_bytes() -> bytes:
    """A smooth landscape-like gradient with no face in it, as JPEG."""
    y, x = np.mgrid[0:240, 0:320]
    rgb = np.stack([x * 255 // 320, y * 255 // 240, (x + y) * 255 // 560], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the session (pgserver, or `RETOUCH_TEST_DATABASE_URL`)."""
    server = PgServer.start()
    yield server
    server.stop()


@pytest.fixture
async def postgres_url(postgres_server: PgServer) -> AsyncIterator[str]:
    """The URL of a fresh, empty database on the session's server, dropped after the test."""
    url = await postgres_server.create_database()
    yield url
    await postgres_server.drop_database(url)
