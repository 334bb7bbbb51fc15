"""The one protocol every retouch backend implements, so nothing downstream knows which one ran."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.formats import PreparedImage


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
