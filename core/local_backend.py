"""The embedded engine as a `RetouchBackend`: decode, retouch and encode on worker threads.

The image work is CPU-bound and releases the GIL (Pillow, numpy, OpenCV), so it runs on a thread
pool of its own and the event loop stays free for the bots while a photo is being retouched.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from core.engine import retouch_image
from core.errors import BackendError, RetouchError
from core.fidelity import check_fidelity
from core.formats import PreparedImage

_JPEG_QUALITY = 95
_WEBP_QUALITY = 95
# The ICC header's colour-space signature a profile needs to describe the pixels we write.
_ICC_SPACE = {"RGB": b"RGB ", "L": b"GRAY"}


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
        value = check_fidelity(fidelity)
        if self._closed:
            raise BackendError("The local retouch engine has been shut down")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, retouch_bytes, image.data, value)
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
    try:
        return _retouch_bytes(data, fidelity)
    except RetouchError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BackendError(f"The local engine could not process the image: {exc}") from exc
    except Exception as exc:  # an OpenCV or numpy failure is ours, never the user's
        raise BackendError(f"The local engine failed: {type(exc).__name__}") from exc


def _retouch_bytes(data: bytes, fidelity: float) -> bytes:
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

    result = Image.fromarray(retouch_image(rgb, fidelity))
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
    return buffer.getvalue()
