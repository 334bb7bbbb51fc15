"""The path every photo takes, whoever sent it: preparation off the event loop, then the backend."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from core.backend import RetouchBackend
from core.fidelity import check_fidelity
from core.formats import PreparedImage
from core.imaging import ImageLimits, prepare_image

if TYPE_CHECKING:
    from core.local_backend import EngineReport


@runtime_checkable
class ReportingBackend(Protocol):
    """A backend that can say what it found in a photo (the local engine: faces and boxes)."""

    async def retouch_reported(
        self, image: PreparedImage, fidelity: float
    ) -> tuple[bytes, EngineReport]: ...


async def retouch_photo(
    backend: RetouchBackend, data: bytes, fidelity: float, limits: ImageLimits
) -> bytes:
    """Check and shape `data` for the backend, then retouch it; raises typed `RetouchError`s."""
    fidelity = check_fidelity(fidelity)
    image = await _prepared(data, limits)
    return await backend.retouch(image, fidelity)


async def retouch_photo_reported(
    backend: RetouchBackend, data: bytes, fidelity: float, limits: ImageLimits
) -> tuple[bytes, EngineReport | None]:
    """`retouch_photo`, with the backend's report when it gives one (None for the hosted API)."""
    fidelity = check_fidelity(fidelity)
    image = await _prepared(data, limits)
    if isinstance(backend, ReportingBackend):
        return await backend.retouch_reported(image, fidelity)
    return await backend.retouch(image, fidelity), None


async def _prepared(data: bytes, limits: ImageLimits) -> PreparedImage:
    return await asyncio.to_thread(prepare_image, data, limits)
