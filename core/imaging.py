"""Image preparation: every input image passes here before a backend, every result before an upload.

All bytes are untrusted. The real format is sniffed from the bytes, only headers are read before the
size checks, and an image that already suits the upstream goes through undecoded: its segments or
chunks are copied byte-for-byte, less the metadata. Everything else is decoded, turned upright,
converted to RGB and re-encoded small enough. Either way the ICC colour profile stays and every
other piece of metadata goes (GPS above all), so none reaches the third-party upstream.

Synchronous and CPU-bound: callers run these functions with `asyncio.to_thread`.
"""

from __future__ import annotations

import io
import math
import re
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from core import pixels
from core.errors import (
    AnimatedImageError,
    ImageTooLargeError,
    NotAnImageError,
    ResultInvalidError,
    ResultTooLargeError,
)
from core.formats import ImageFormat, PreparedImage, sniff_format
from core.memory_budget import decode_budget

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = [
    "DEFAULT_LIMITS",
    "ImageLimits",
    "ImagePlan",
    "decode_cost",
    "fit_for_upload",
    "plan_image",
    "prepare_image",
]


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What `prepare_image` accepts (input caps) and produces (upload caps), and the decode budget.

    The input pixel cap is below Pillow's own bomb warning (`Image.MAX_IMAGE_PIXELS`, ~89
    megapixels, refusing above twice that); raise that too before going above 178 megapixels.
    """

    max_input_bytes: int = 50_000_000
    max_input_pixels: int = 67_108_864
    max_upload_bytes: int = 10_000_000
    max_pixels: int = 24_000_000
    decode_budget_bytes: int = 400_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        """The limits configured by the `IMAGE_MAX_*` settings."""
        return cls(
            max_input_bytes=settings.image_max_input_bytes,
            max_input_pixels=settings.image_max_input_pixels,
            max_upload_bytes=settings.image_max_upload_bytes,
            max_pixels=settings.image_max_pixels,
            decode_budget_bytes=settings.image_decode_budget_bytes,
        )


DEFAULT_LIMITS: Final = ImageLimits()

_UNREADABLE: Final = "That file is not an image I can read (JPEG, PNG, WebP or HEIC)."
_DAMAGED: Final = "That image file is damaged or incomplete; please send it again."
_ANIMATED: Final = "Animated images can't be retouched; send a still photo."
_RESULT_UNREADABLE: Final = "The retouched image could not be read."
_RESULT_TOO_LARGE: Final = "The retouched image is too large to send."

_ORIENTATION: Final = 0x0112
_JPEG_QUALITIES: Final = (92, 85, 75)

# What Pillow may parse each sniffed format as: nothing else, so a sniff can't be talked around.
_PILLOW_FORMATS: Final[dict[ImageFormat, tuple[str, ...]]] = {
    "jpeg": ("JPEG", "MPO"),
    "png": ("PNG",),
    "webp": ("WEBP",),
    "gif": ("GIF",),
    "heif": ("HEIF", "AVIF"),
    "bmp": ("BMP",),
    "tiff": ("TIFF",),
}
# Formats the upstream takes as they are, in the modes they may pass through in.
_PASS_MODES: Final[dict[ImageFormat, frozenset[str]]] = {
    "jpeg": frozenset({"RGB", "L"}),
    "png": frozenset({"RGB", "RGBA", "L", "LA", "P"}),
    "webp": frozenset({"RGB", "RGBA"}),
}
# Only in these are extra frames an animation. HEIF's are other pictures (we take the primary),
# MPO's are depth or HDR gain maps behind the main JPEG, TIFF's are pages (we take the first).
_ANIMATION_FORMATS: Final = frozenset({"GIF", "PNG", "WEBP", "AVIF"})
# What Pillow and its plugins raise on hostile or broken bytes.
_DECODE_ERRORS: Final = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    RuntimeError,
    struct.error,
    ImageCms.PyCMSError,
)

# What the fast path drops. JPEG: every APPn segment but these (JFIF, the ICC profile in as many
# chunks as it takes, Adobe's colour transform), and comments; PNG and WebP: these chunks.
_JPEG_KEPT_APPS: Final = {0xE0: b"", 0xE2: b"ICC_PROFILE\x00", 0xEE: b"Adobe"}
_PNG_DROPPED: Final = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"})
_WEBP_DROPPED: Final = frozenset({b"EXIF", b"XMP "})
_WEBP_METADATA_FLAGS: Final = 0x08 | 0x04  # VP8X: EXIF and XMP present
# A JPEG marker: 0xFF, any fill bytes 0xFF, its code. And the end of entropy-coded data: the next
# 0xFF followed by neither a stuffed zero, a restart code, nor a fill byte.
_JPEG_MARKER: Final = re.compile(rb"\xff+([^\xff])")
_JPEG_SCAN_END: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")

_heif_lock = threading.Lock()
_heif_registered = False


def prepare_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> PreparedImage:
    """Check an input image and shape it for a backend: JPEG, PNG or WebP within `limits`.

    Raises `NotAnImageError`, `AnimatedImageError` or `ImageTooLargeError`, with messages fit to
    show the user. Decoding waits for its share of the process's decode budget (blocking this
    thread); async callers use `plan_image`, reserve `plan.cost` without a thread, then `run`.
    """
    plan = plan_image(data, limits)
    with decode_budget(limits.decode_budget_bytes).hold(plan.cost):
        return plan.run()


def plan_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> ImagePlan:
    """Check an input image from its headers alone, and say what preparing it will cost."""
    if len(data) > limits.max_input_bytes:
        raise ImageTooLargeError(
            f"That file is too large ({_millions(len(data))} MB); "
            f"the limit is {_millions(limits.max_input_bytes)} MB.",
            size_bytes=len(data),
            limit_bytes=limits.max_input_bytes,
        )
    fmt = sniff_format(data)
    if fmt is None:
        raise NotAnImageError(_UNREADABLE)
    goal = _Goal(limits.max_upload_bytes, limits.max_pixels, None)
    with _decoding(for_result=False, max_pixels=limits.max_input_pixels):
        image = _open(data, fmt)
        try:
            width, height = image.size
            if width * height > limits.max_input_pixels:
                raise ImageTooLargeError(
                    f"That image is too large ({_millions(width * height)} megapixels); "
                    f"the limit is {_millions(limits.max_input_pixels)}.",
                    pixels=width * height,
                    limit_pixels=limits.max_input_pixels,
                )
            if image.format in _ANIMATION_FORMATS and _is_animated(image):
                raise AnimatedImageError(_ANIMATED)
            ready = None
            if _passes_as_is(data, fmt, image, goal):
                stripped = _strip_metadata(data, fmt)
                # None: a structure we can't walk; decoding will tell whether it's damaged.
                if stripped is not None:
                    ready = PreparedImage(stripped, fmt, width, height)
            return ImagePlan(image, goal, ready, for_result=False, limits=limits)
        except BaseException:
            image.close()
            raise


@dataclass(frozen=True, slots=True)
class _Goal:
    """What re-encoding must reach: at most these bytes, pixels and width + height."""

    max_bytes: int
    max_pixels: int | None
    max_side_sum: int | None


class ImagePlan:
    """An image checked from its headers: what it will become, and what decoding it costs.

    `cost` (bytes) is an upper bound of the memory `run` takes; zero when the bytes pass as they
    are. `output_size` is the size of the result. Run it once, in a thread.
    """

    def __init__(
        self,
        image: ImageFile.ImageFile,
        goal: _Goal,
        ready: PreparedImage | None,
        *,
        for_result: bool,
        limits: ImageLimits,
    ) -> None:
        self._image = image
        self._goal = goal
        self._for_result = for_result
        self._limits = limits
        self.ready = ready
        if ready is not None:
            image.close()
            self.output_size = (ready.width, ready.height)
            self.cost = 0
            return
        self.output_size = pixels.fit_size(image.size, goal.max_pixels, goal.max_side_sum)
        if image.format in ("JPEG", "MPO"):
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when we shrink that much anyway (as
            # `thumbnail()` does): less work, less memory, and Lanczos still makes the final step.
            width, height = self.output_size
            image.draft(None, (width * 2, height * 2))
        self.cost = decode_cost(image.size, image.mode, self.output_size, goal.max_bytes)

    def run(self) -> PreparedImage:
        """Decode and re-encode (or hand back the bytes that pass as they are)."""
        if self.ready is not None:
            return self.ready
        limits = self._limits
        try:
            with _decoding(for_result=self._for_result, max_pixels=limits.max_input_pixels):
                prepared = _reencode(self._image, self._goal)
        finally:
            self._image.close()
        if prepared is None:
            if self._for_result:
                raise ResultTooLargeError(_RESULT_TOO_LARGE, limit_bytes=self._goal.max_bytes)
            raise ImageTooLargeError(
                "That image can't be made small enough to send; try a smaller one.",
                limit_bytes=self._goal.max_bytes,
            )
        return prepared


def decode_cost(
    size: tuple[int, int], mode: str, output_size: tuple[int, int], max_bytes: int
) -> int:
    """Bytes that decoding an image of `size` in `mode` and re-encoding it at `output_size` hold
    at most: the decoded pixels, the output and one copy of it (RGB(A) at four bytes a pixel),
    and the encoder's buffers."""
    decoded = size[0] * size[1] * pixels.pixel_bytes(mode)
    output = output_size[0] * output_size[1]
    return decoded + 8 * output + min(2 * max_bytes, 3 * output) + 2 * pixels.BAND_PIXELS * 4


def fit_for_upload(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int | None = None,
    max_side_sum: int | None = None,
    max_ratio: float | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> PreparedImage:
    """Shrink or re-encode a result so a chat platform takes it as a photo; unchanged if it fits.

    No scaling fixes an aspect ratio, so an image longer than `max_ratio` (long side / short side)
    comes back unchanged and the caller decides, e.g. sends it as a file: compare the returned
    width and height with its limit. Errors are the backend's (`ResultInvalidError`,
    `ResultTooLargeError`), since a bad result is never the user's fault. Decoding waits for its
    share of the decode budget of `limits`, blocking this thread.
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise ResultInvalidError(_RESULT_UNREADABLE)
    max_input = limits.max_input_pixels
    goal = _Goal(max_bytes, max_pixels, max_side_sum)
    with _decoding(for_result=True, max_pixels=max_input):
        image = _open(data, fmt)
        try:
            width, height = image.size
            if width * height > max_input:
                raise ResultTooLargeError(_RESULT_TOO_LARGE, pixels=width * height)
            too_long = max_ratio is not None and max(width, height) > max_ratio * min(width, height)
            if too_long or _passes_as_is(data, fmt, image, goal):
                image.close()
                return PreparedImage(data, fmt, width, height)
        except BaseException:
            image.close()
            raise
    plan = ImagePlan(image, goal, None, for_result=True, limits=limits)
    with decode_budget(limits.decode_budget_bytes).hold(plan.cost):
        return plan.run()


# --- reading ------------------------------------------------------------------------------


@contextmanager
def _decoding(*, for_result: bool, max_pixels: int) -> Iterator[None]:
    """Turn what Pillow raises on bad bytes into our errors, with messages safe to show."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if for_result:
            raise ResultTooLargeError(_RESULT_TOO_LARGE) from exc
        raise ImageTooLargeError(
            f"That image is too large; the limit is {_millions(max_pixels)} megapixels.",
            limit_pixels=max_pixels,
        ) from exc
    except UnidentifiedImageError as exc:
        raise (
            ResultInvalidError(_RESULT_UNREADABLE) if for_result else NotAnImageError(_UNREADABLE)
        ) from exc
    except _DECODE_ERRORS as exc:
        raise (
            ResultInvalidError(_RESULT_UNREADABLE) if for_result else NotAnImageError(_DAMAGED)
        ) from exc


def _open(data: bytes, fmt: ImageFormat) -> ImageFile.ImageFile:
    """Open lazily: Pillow reads the header now and decodes pixels only on `load()`.

    Pillow's bomb warning is silenced: our own pixel cap, below it, refuses those images anyway.
    """
    if fmt == "heif":
        _register_heif()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS[fmt])


def _register_heif() -> None:
    global _heif_registered
    with _heif_lock:
        if not _heif_registered:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _heif_registered = True


def _is_animated(image: Image.Image) -> bool:
    return bool(getattr(image, "is_animated", False)) or int(getattr(image, "n_frames", 1)) > 1


def _passes_as_is(data: bytes, fmt: ImageFormat, image: ImageFile.ImageFile, goal: _Goal) -> bool:
    """Whether the bytes can go as they are: within limits, complete, upright; headers only."""
    max_bytes, max_pixels, max_side_sum = goal.max_bytes, goal.max_pixels, goal.max_side_sum
    width, height = image.size
    if fmt not in _PASS_MODES or image.mode not in _PASS_MODES[fmt] or len(data) > max_bytes:
        return False
    if max_pixels is not None and width * height > max_pixels:
        return False
    if max_side_sum is not None and width + height > max_side_sum:
        return False
    if fmt == "png":
        complete, exif_payload = _walk_png(data)
        exif = Image.Exif()
        if exif_payload is not None:
            exif.load(exif_payload)
    else:
        # A cut-off file still has its header; its end marker (or RIFF length) shows the cut.
        if fmt == "jpeg":
            complete = data.endswith(b"\xff\xd9")
        else:
            complete = int.from_bytes(data[4:8], "little") + 8 == len(data)
        exif = image.getexif()
    return complete and exif.get(_ORIENTATION, 1) == 1


def _walk_png(data: bytes) -> tuple[bool, bytes | None]:
    """Whether the chunks run intact up to IEND, and the eXIf payload, reading chunk headers only.

    Pillow's `getexif()` on a PNG decodes the whole image to find an eXIf chunk after the pixels.
    """
    exif = None
    for kind, start, end in _png_chunks(data):
        if kind == b"eXIf":
            exif = data[start + 8 : end - 4]
        elif kind == b"IEND":
            return True, exif
    return False, exif


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """Each chunk's type, start and end (past its CRC), up to IEND or the first cut-off chunk."""
    position = 8
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            return
        yield kind, position, end
        if kind == b"IEND":
            return
        position = end


# --- stripping metadata without decoding --------------------------------------------------


def _strip_metadata(data: bytes, fmt: ImageFormat) -> bytes | None:
    """`data` without its metadata (bar the colour profile), the rest copied as it is.

    The same object when there is nothing to drop; None when the structure can't be walked.
    """
    if fmt == "jpeg":
        return _strip_jpeg(data)
    if fmt == "png":
        return _strip_png(data)
    if fmt == "webp":
        return _strip_webp(data)
    return None


def _strip_jpeg(data: bytes) -> bytes | None:
    """Drop APPn segments but JFIF, ICC and Adobe, and comments; stop at the first image's end.

    Segment lengths are big-endian and count themselves. Each scan's entropy-coded data runs to
    the next marker; a progressive JPEG has several scans, and an MPO's other pictures (depth,
    gain maps, with EXIF of their own) follow the first one's EOI: they are left off.
    """
    kept, position = [(0, 2)], 2
    while True:
        found = _JPEG_MARKER.match(data, position)
        if found is None:
            return None
        position = found.start(1)
        marker = data[position]
        if marker == 0xD9:  # EOI
            kept.append((position - 1, position + 1))
            return _join(data, kept)
        length = int.from_bytes(data[position + 1 : position + 3], "big")
        end = position + 1 + length
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD8 or length < 2 or end > len(data):
            return None
        if marker == 0xDA:  # SOS
            found = _JPEG_SCAN_END.search(data, end)
            if found is None:
                return None
            end = found.start()
        if 0xE0 <= marker <= 0xEF:
            signature = _JPEG_KEPT_APPS.get(marker)
            keep = signature is not None and data.startswith(signature, position + 3, end)
        else:
            keep = marker != 0xFE  # COM
        if keep:
            kept.append((position - 1, end))
        position = end


def _strip_png(data: bytes) -> bytes | None:
    """Drop the EXIF, text and timestamp chunks; the rest, CRCs and all, is copied as it is."""
    chunks = list(_png_chunks(data))
    if not chunks or chunks[-1][0] != b"IEND":
        return None
    return _join(data, [(0, 8)] + [(s, e) for kind, s, e in chunks if kind not in _PNG_DROPPED])


def _strip_webp(data: bytes) -> bytes | None:
    """Drop the EXIF and XMP chunks of an extended WebP, clear their VP8X flags, fix the size.

    A simple WebP (a lone VP8 or VP8L chunk) has no room for metadata.
    """
    if data[12:16] != b"VP8X":
        return data
    kept, position = [(0, 12)], 12
    while position < len(data):
        kind = data[position : position + 4]
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        end = position + 8 + size + size % 2  # chunks are padded to an even length
        if position + 8 > len(data) or end > len(data) or (position == 12 and size < 10):
            return None
        if kind not in _WEBP_DROPPED:
            kept.append((position, end))
        position = end
    stripped = _join(data, kept)
    if stripped is data:
        return data
    riff = bytearray(stripped)
    riff[4:8] = (len(riff) - 8).to_bytes(4, "little")
    riff[20] &= ~_WEBP_METADATA_FLAGS
    return bytes(riff)


def _join(data: bytes, kept: list[tuple[int, int]]) -> bytes:
    """The kept (start, end) spans of `data`, in order; `data` itself when they are all of it."""
    if sum(end - start for start, end in kept) == len(data):
        return data
    view = memoryview(data)
    return b"".join(view[start:end] for start, end in kept)


# --- converting and encoding -------------------------------------------------------------


def _reencode(image: ImageFile.ImageFile, goal: _Goal) -> PreparedImage | None:
    """Decode, shrink, convert to 8-bit RGB(A), turn upright, and encode within `goal.max_bytes`.

    The result is a JPEG, or a PNG when real transparency fits. None when nothing fits.
    """
    image.load()
    icc = image.info.get("icc_profile") or None
    orientation = image.getexif().get(_ORIENTATION, 1)
    # The limits hold whichever way up: shrink first, so that turning copies fewer pixels.
    size = pixels.fit_size(image.size, goal.max_pixels, goal.max_side_sum)
    shrunk = pixels.shrink(image, size)
    if shrunk is not image:
        image.close()  # the decoded pixels go now: only the output is held from here on
    rgb, icc, alpha = pixels.to_rgb(shrunk, icc)
    del shrunk
    rgb = pixels.upright(rgb, orientation)
    if alpha:
        png = _encode(rgb, "png", icc)
        if len(png) <= goal.max_bytes:
            return PreparedImage(png, "png", rgb.width, rgb.height)
        rgb = pixels.flatten(rgb)
    return _jpeg_to_fit(rgb, icc, goal.max_bytes)


def _jpeg_to_fit(image: Image.Image, icc: bytes | None, max_bytes: int) -> PreparedImage | None:
    """Lower the JPEG quality in steps, then the size, until it fits; None if even 1x1 won't."""
    step = 0
    while True:
        data = _encode(image, "jpeg", icc, _JPEG_QUALITIES[step])
        if len(data) <= max_bytes:
            return PreparedImage(data, "jpeg", image.width, image.height)
        if step + 1 < len(_JPEG_QUALITIES):
            step += 1
            continue
        if image.size == (1, 1):
            return None
        # JPEG size grows roughly with the pixel count; aim a little under, in bounded steps.
        factor = min(0.9, max(0.5, math.sqrt(max_bytes / len(data)) * 0.95))
        size = (max(1, int(image.width * factor)), max(1, int(image.height * factor)))
        image = pixels.resize(image, size)


def _encode(
    image: Image.Image, fmt: Literal["jpeg", "png"], icc: bytes | None, quality: int = 0
) -> bytes:
    # Pillow's writers fall back on `info` for the ICC profile, comments and more: clear it so
    # that only what we pass is written.
    image.info.clear()
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, "JPEG", quality=quality, icc_profile=icc)
    else:
        image.save(buffer, "PNG", icc_profile=icc)
    return buffer.getvalue()


def _millions(count: int) -> str:
    """120_000_000 -> "120", 1_250_000 -> "1.2", 20_000 -> "0.02": megapixels or megabytes."""
    value = count / 1_000_000
    return f"{value:.1f}".removesuffix(".0") if value >= 1 else f"{value:.2g}"
