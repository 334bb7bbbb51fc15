"""The one protocol every retouch backend implements, so nothing downstream knows which one ran."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from core.formats import PreparedImage

if TYPE_CHECKING:
    import httpx

    from core.settings import Settings


@runtime_checkable
class RetouchBackend(Protocol):
    """Turns a prepared portrait into retouched image bytes (JPEG, PNG or WebP)."""

    name: str

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        """Retouch `image`; lower fidelity means a stronger retouch. Raises `RetouchError`s."""
        ...

    async def aclose(self) -> None:
        """Release what the backend holds (threads, connections it owns)."""
        ...


def create_backend(
    settings: Settings,
    client: httpx.AsyncClient,
    *,
    on_retry: Callable[[], None] | None = None,
) -> RetouchBackend:
    """The hosted API when a key is configured (or `RETOUCH_BACKEND=api`), else the local engine.

    `on_retry` is called each time the API client retries a request (for metrics).
    """
    if settings.effective_backend == "api":
        from core.api_backend import ApiBackend

        return ApiBackend.from_settings(settings, client, on_retry=on_retry)
    from core.local_backend import LocalBackend

    return LocalBackend(threads=settings.engine_thread_count)


@asynccontextmanager
async def open_backend(
    settings: Settings, *, on_retry: Callable[[], None] | None = None
) -> AsyncIterator[RetouchBackend]:
    """A backend with its shared HTTP client, both closed on exit."""
    from core.http import create_http_client

    async with create_http_client(settings) as client:
        backend = create_backend(settings, client, on_retry=on_retry)
        try:
            yield backend
        finally:
            await backend.aclose()
