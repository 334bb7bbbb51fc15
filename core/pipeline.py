"""The path every photo takes, whoever sent it: preparation off the event loop, then the backend.

Decoding waits for its share of the process's decode budget (`core.memory_budget`): the image's
own cost, and with the local engine, which decodes the prepared image again and works on it, the
engine's cost too, held until the engine is done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from core.backend import RetouchBackend
from core.fidelity import check_fidelity
from core.formats import PreparedImage
from core.imaging import ImageLimits, ImagePlan, plan_image
from core.memory_budget import decode_budget

if TYPE_CHECKING:
    from core.local_backend import EngineReport

ENGINE_BYTES_PER_PIXEL: Final = 16
"""What the local engine holds per pixel of the prepared image (measured: 14 to 15 bytes)."""
ENGINES: Final = frozenset({"local"})
"""Backends that decode and work on the pixels in this process."""


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
    async with _prepared(backend, data, limits) as image:
        return await backend.retouch(image, fidelity)


async def retouch_photo_reported(
    backend: RetouchBackend, data: bytes, fidelity: float, limits: ImageLimits
) -> tuple[bytes, EngineReport | None]:
    """`retouch_photo`, with the backend's report when it gives one (None for the hosted API)."""
    fidelity = check_fidelity(fidelity)
    async with _prepared(backend, data, limits) as image:
        if isinstance(backend, ReportingBackend):
            return await backend.retouch_reported(image, fidelity)
        return await backend.retouch(image, fidelity), None


@contextlib.asynccontextmanager
async def _prepared(
    backend: RetouchBackend, data: bytes, limits: ImageLimits
) -> AsyncIterator[PreparedImage]:
    """The prepared image, its decode budget held for the block when a local engine works on it."""
    plan = await asyncio.to_thread(plan_image, data, limits)
    budget = decode_budget(limits.decode_budget_bytes)
    if backend.name not in ENGINES:
        async with budget.hold_async(plan.cost):
            image = await asyncio.to_thread(plan.run)
        yield image
        return
    async with budget.hold_async(max(plan.cost, engine_cost(plan))):
        yield await asyncio.to_thread(plan.run)


def engine_cost(plan: ImagePlan) -> int:
    """What the local engine holds while it retouches the prepared image of `plan`."""
    width, height = plan.output_size
    return ENGINE_BYTES_PER_PIXEL * width * height
