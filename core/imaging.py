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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from core.errors import (
    AnimatedImageError,
    ImageTooLargeError,
    NotAnImageError,
    ResultInvalidError,
    ResultTooLargeError,
)
from core.formats import ImageFormat, PreparedImage, sniff_format

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = ["DEFAULT_LIMITS", "ImageLimits", "fit_for_upload", "prepare_image"]


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What `prepare_image` accepts (input caps) and produces (upload caps).

    Pillow keeps its own bomb guard (`Image.MAX_IMAGE_PIXELS`, refusing above twice its ~89
    megapixels); raise that too before setting `max_input_pixels` above 178 megapixels.
    """

    max_input_bytes: int = 50_000_000
    max_input_pixels: int = 100_000_000
    max_upload_bytes: int = 10_000_000
    max_pixels: int = 40_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        """The limits configured by the `IMAGE_MAX_*` settings."""
        return cls(
            max_input_bytes=settings.image_max_input_bytes,
            max_input_pixels=settings.image_max_input_pixels,
            max_upload_bytes=settings.image_max_upload_bytes,
            max_pixels=settings.image_max_pixels,
        )


DEFAULT_LIMITS: Final = ImageLimits()

_UNREADABLE: Final = "That file is not an image I can read (JPEG, PNG, WebP or HEIC)."
_DAMAGED: Final = "That image file is damaged or incomplete; please send it again."
_ANIMATED: Final = "Animated images can't be retouched; send a still photo."
_RESULT_UNREADABLE: Final = "The retouched image could not be read."
_RESULT_TOO_LARGE: Final = "The retouched image is too large to send."

_ORIENTATION: Final = 0x0112
_JPEG_QUALITIES: Final = (92, 85, 75)
_TRANSPOSES: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

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

_SRGB: Final = ImageCms.createProfile("sRGB")
_heif_lock = threading.Lock()
_heif_registered = False


def prepare_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> PreparedImage:
    """Check an input image and shape it for a backend: JPEG, PNG or WebP within `limits`.

    Raises `NotAnImageError`, `AnimatedImageError` or `ImageTooLargeError`, with messages fit to
    show the user.
    """
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
    with _decoding(for_result=False, max_pixels=limits.max_input_pixels), _open(data, fmt) as image:
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
        if _passes_as_is(data, fmt, image, limits.max_upload_bytes, limits.max_pixels, None):
            stripped = _strip_metadata(data, fmt)
            # None: a structure we can't walk; decoding will tell whether it's damaged.
            if stripped is not None:
                return PreparedImage(stripped, fmt, width, height)
        prepared = _reencode(image, limits.max_upload_bytes, limits.max_pixels, None)
    if prepared is None:
        raise ImageTooLargeError(
            "That image can't be made small enough to send; try a smaller one.",
            limit_bytes=limits.max_upload_bytes,
        )
    return prepared


def fit_for_upload(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int | None = None,
    max_side_sum: int | None = None,
    max_ratio: float | None = None,
) -> PreparedImage:
    """Shrink or re-encode a result so a chat platform takes it as a photo; unchanged if it fits.

    No scaling fixes an aspect ratio, so an image longer than `max_ratio` (long side / short side)
    comes back unchanged and the caller decides, e.g. sends it as a file: compare the returned
    width and height with its limit. Errors are the backend's (`ResultInvalidError`,
    `ResultTooLargeError`), since a bad result is never the user's fault.
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise ResultInvalidError(_RESULT_UNREADABLE)
    max_input = DEFAULT_LIMITS.max_input_pixels
    with _decoding(for_result=True, max_pixels=max_input), _open(data, fmt) as image:
        width, height = image.size
        if width * height > max_input:
            raise ResultTooLargeError(_RESULT_TOO_LARGE, pixels=width * height)
        too_long = max_ratio is not None and max(width, height) > max_ratio * min(width, height)
        if too_long or _passes_as_is(data, fmt, image, max_bytes, max_pixels, max_side_sum):
            return PreparedImage(data, fmt, width, height)
        prepared = _reencode(image, max_bytes, max_pixels, max_side_sum)
    if prepared is None:
        raise ResultTooLargeError(_RESULT_TOO_LARGE, limit_bytes=max_bytes)
    return prepared


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
    """Open lazily: Pillow reads the header now and decodes pixels only on `load()`."""
    if fmt == "heif":
        _register_heif()
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


def _passes_as_is(
    data: bytes,
    fmt: ImageFormat,
    image: ImageFile.ImageFile,
    max_bytes: int,
    max_pixels: int | None,
    max_side_sum: int | None,
) -> bool:
    """Whether the bytes can go as they are: within limits, complete, upright; headers only."""
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


def _reencode(
    image: ImageFile.ImageFile,
    max_bytes: int,
    max_pixels: int | None,
    max_side_sum: int | None,
) -> PreparedImage | None:
    """Decode, convert to RGB(A), shrink, turn upright, and encode small enough for `max_bytes`.

    The result is a JPEG, or a PNG when real transparency fits. None when nothing fits.
    """
    if image.format in ("JPEG", "MPO"):
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when we shrink that much anyway (as
        # `thumbnail()` does): less work, less memory, and Lanczos still makes the final step.
        width, height = _fit_size(image.size, max_pixels, max_side_sum)
        image.draft(None, (width * 2, height * 2))
    image.load()
    icc = image.info.get("icc_profile") or None
    orientation = image.getexif().get(_ORIENTATION, 1)
    rgb, icc, alpha = _to_rgb(image, icc)
    # The limits hold whichever way up: shrink first, so that turning copies fewer pixels.
    rgb = _resize(rgb, _fit_size(rgb.size, max_pixels, max_side_sum))
    rgb = _upright(rgb, orientation)
    if alpha:
        png = _encode(rgb, "png", icc)
        if len(png) <= max_bytes:
            return PreparedImage(png, "png", rgb.width, rgb.height)
        rgb = _flatten(rgb)
    return _jpeg_to_fit(rgb, icc, max_bytes)


def _upright(image: Image.Image, orientation: object) -> Image.Image:
    """Turn the pixels as the EXIF orientation says (pillow_heif has already done so for HEIF).

    The same table as `ImageOps.exif_transpose`; the tag itself goes with the rest of the EXIF.
    """
    method = _TRANSPOSES.get(orientation) if isinstance(orientation, int) else None
    return image if method is None else image.transpose(method)


def _to_rgb(image: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None, bool]:
    """The image as RGB, or RGBA when it has real transparency; the profile that still applies."""
    if icc is not None and icc[16:20] != b"RGB ":
        # A CMYK or grey profile can't describe RGB pixels: convert the colours to sRGB instead.
        converted = _cms_to_srgb(image, icc)
        image = image if converted is None else converted
        icc = None
    alpha = image.has_transparency_data
    if alpha:
        image = image if image.mode == "RGBA" else image.convert("RGBA")
        alpha = image.getchannel("A").getextrema()[0] != 255
    if not alpha and image.mode != "RGB":
        image = image.convert("RGB")
    return image, icc, alpha


def _cms_to_srgb(image: Image.Image, icc: bytes) -> Image.Image | None:
    if image.mode not in ("CMYK", "L"):
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def _flatten(image: Image.Image) -> Image.Image:
    """Lay an RGBA image on white, the background a JPEG viewer would most likely show."""
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


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
        image = _resize(image, size)


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


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _fit_size(
    size: tuple[int, int], max_pixels: int | None, max_side_sum: int | None
) -> tuple[int, int]:
    """The largest size of the same aspect within both limits (each side at least 1)."""
    width, height = size
    scale = 1.0
    if max_pixels is not None and width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
    if max_side_sum is not None and width + height > max_side_sum:
        scale = min(scale, max_side_sum / (width + height))
    if scale >= 1.0:
        return size
    new_width, new_height = max(1, int(width * scale)), max(1, int(height * scale))
    # Float rounding, or a side held at 1 pixel, can leave us a little over: trim the long side.
    if max_pixels is not None and new_width * new_height > max_pixels:
        if new_width >= new_height:
            new_width = max(1, max_pixels // new_height)
        else:
            new_height = max(1, max_pixels // new_width)
    if max_side_sum is not None and new_width + new_height > max_side_sum:
        if new_width >= new_height:
            new_width = max(1, max_side_sum - new_height)
        else:
            new_height = max(1, max_side_sum - new_width)
    return new_width, new_height


def _millions(count: int) -> str:
    """120_000_000 -> "120", 1_250_000 -> "1.2", 20_000 -> "0.02": megapixels or megabytes."""
    value = count / 1_000_000
    return f"{value:.1f}".removesuffix(".0") if value >= 1 else f"{value:.2g}"
