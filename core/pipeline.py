"""The path every photo takes, whoever sent it: preparation off the event loop, then the backend."""

from __future__ import annotations

import asyncio

from core.backend import RetouchBackend
from core.errors import FidelityError
from core.imaging import ImageLimits, prepare_image


async def retouch_photo(
    backend: RetouchBackend, data: bytes, fidelity: float, limits: ImageLimits
) -> bytes:
    """Check and shape `data` for the backend, then retouch it; raises typed `RetouchError`s."""
    if not 0.0 <= fidelity <= 1.0:
        raise FidelityError(f"Fidelity {fidelity:g} is out of range (0 to 1).", value=fidelity)
    image = await asyncio.to_thread(prepare_image, data, limits)
    return await backend.retouch(image, fidelity)
