"""The path every photo takes, whoever sent it: preparation off the event loop, then the backend."""

from __future__ import annotations

import asyncio

from core.backend import RetouchBackend
from core.fidelity import check_fidelity
from core.imaging import ImageLimits, prepare_image


async def retouch_photo(
    backend: RetouchBackend, data: bytes, fidelity: float, limits: ImageLimits
) -> bytes:
    """Check and shape `data` for the backend, then retouch it; raises typed `RetouchError`s."""
    fidelity = check_fidelity(fidelity)
    image = await asyncio.to_thread(prepare_image, data, limits)
    return await backend.retouch(image, fidelity)
