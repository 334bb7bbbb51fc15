"""The embedded engine as a `RetouchBackend`: decode, retouch and encode on worker threads.

The image work is CPU-bound and releases the GIL (Pillow, numpy, OpenCV, LiteRT), so it runs on
a thread pool of its own and the event loop stays free for the bots while a photo is being
retouched. Each photo logs one INFO line with the faces found and their boxes (serve-api's log
shows it too), and `retouch_reported` hands that report to callers that show it.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from core.engine import FaceBox, retouch_image
from core.errors import BackendError, RetouchError
from core.fidelity import check_fidelity
from core.formats import PreparedImage

logger = logging.getLogger("retouch.engine")

_JPEG_QUALITY = 95
_WEBP_QUALITY = 95
# The ICC header's colour-space signature a profile needs to describe the pixels we write.
_ICC_SPACE = {"RGB": b"RGB ", "L": b"GRAY"}


@dataclass(frozen=True)
class EngineReport:
    """What the engine did to one photo: its size, the faces it found (largest first), the time."""

    width: int
    height: int
    faces: tuple[FaceBox, ...]
    seconds: float

    def describe(self) -> str:
        """One line for people: "2 faces: 96x108 at (177,67), ..."."""
        count = len(self.faces)
        boxes = ", ".join(f"{b.w}x{b.h} at ({b.x},{b.y})" for b in self.faces)
        return f"{count} face{'s' if count != 1 else ''}: {boxes}"


class LocalBackend:
    """Retouches with the embedded engine on a private pool of `threads` worker threads."""

    name = "local"

    def __init__(self, *, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="retouch")
        self._closed = False

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        """Retouch `image` off the event loop; the result has its format, size and ICC profile."""
        data, _ = await self.retouch_reported(image, fidelity)
        return data

    async def retouch_reported(
        self, image: PreparedImage, fidelity: float
    ) -> tuple[bytes, EngineReport]:
        """`retouch`, with the report of the faces found."""
        value = check_fidelity(fidelity)
        if self._closed:
            raise BackendError("The local retouch engine has been shut down")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, retouch_bytes_reported, image.data, value)
        except RuntimeError as exc:  # closed between the check and here
            raise BackendError("The local retouch engine has been shut down") from exc
        return await future

    async def aclose(self) -> None:
        """Stop the worker threads; queued work is cancelled, running work is waited for."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)


def retouch_bytes(data: bytes, fidelity: float) -> bytes:
    """Decode, retouch and re-encode one image (blocking); see `LocalBackend.retouch`."""
    return retouch_bytes_reported(data, fidelity)[0]


def retouch_bytes_reported(data: bytes, fidelity: float) -> tuple[bytes, EngineReport]:
    """`retouch_bytes` with its report, which is also logged at INFO."""
    started = time.perf_counter()
    try:
        result, (width, height), faces = _retouch_bytes(data, fidelity)
    except RetouchError as exc:
        logger.info("local engine: %s (fidelity %g)", exc, fidelity)
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BackendError(f"The local engine could not process the image: {exc}") from exc
    except Exception as exc:  # an OpenCV or numpy failure is ours, never the user's
        raise BackendError(f"The local engine failed: {type(exc).__name__}") from exc
    report = EngineReport(width, height, faces, time.perf_counter() - started)
    logger.info(
        "local engine: %dx%d, fidelity %g, %s (%.0f ms)",
        width,
        height,
        fidelity,
        report.describe(),
        report.seconds * 1000,
    )
    return result, report


def _retouch_bytes(
    data: bytes, fidelity: float
) -> tuple[bytes, tuple[int, int], tuple[FaceBox, ...]]:
    with Image.open(io.BytesIO(data)) as source:
        source.load()
        # MPO is the JPEG variant some cameras write; anything else we are given becomes PNG.
        kind = {"JPEG": "JPEG", "MPO": "JPEG", "WEBP": "WEBP"}.get(source.format or "", "PNG")
        icc = source.info.get("icc_profile")
        sampling = JpegImagePlugin.get_sampling(source) if kind == "JPEG" else -1
        progressive = bool(source.info.get("progressive"))
        grey = source.mode in ("L", "LA")
        has_alpha = kind != "JPEG" and (
            source.mode in ("RGBA", "LA", "PA") or "transparency" in source.info
        )
        alpha = source.convert("RGBA").getchannel("A") if has_alpha else None
        rgb = np.asarray(source.convert("RGB"))

    retouched = retouch_image(rgb, fidelity)
    result = Image.fromarray(retouched.image)
    if grey:
        result = result.convert("L")
    if alpha is not None:
        result.putalpha(alpha)
    if not (isinstance(icc, bytes) and icc[16:20] == _ICC_SPACE["L" if grey else "RGB"]):
        icc = None  # e.g. a CMYK profile, which would be wrong for RGB pixels

    # Only the ICC profile is written: EXIF, XMP, comments and text chunks are dropped.
    options: dict[str, Any] = {"icc_profile": icc} if icc else {}
    if kind == "JPEG":
        options.update(quality=_JPEG_QUALITY, subsampling=sampling, progressive=progressive)
    elif kind == "WEBP":
        options.update(quality=_WEBP_QUALITY)
    buffer = io.BytesIO()
    result.save(buffer, format=kind, **options)
    faces = tuple(face.box for face in retouched.faces)
    return buffer.getvalue(), (rgb.shape[1], rgb.shape[0]), faces
