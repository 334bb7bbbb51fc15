"""Result files as their names ask: JPEG, PNG or WebP, a quality, and the capture date if wanted.

A result already in the asked format is written as the backend made it (no second lossy
encoding). Re-encoded, it keeps its ICC colour profile and, when asked, the photo's EXIF
DateTimeOriginal: no other metadata, GPS least of all.
"""

from __future__ import annotations

import io
from typing import Final, Literal

import pillow_heif
from PIL import ExifTags, Image, UnidentifiedImageError

from core.errors import ResultInvalidError
from core.formats import sniff_format

OutputFormat = Literal["jpeg", "png", "webp"]

SUFFIX_FORMATS: Final[dict[str, OutputFormat]] = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".png": "png",
    ".webp": "webp",
}
"""The file name endings a result can be written as, and the format each one means."""
DEFAULT_QUALITY: Final = 95
"""JPEG and WebP quality when re-encoding, the local engine's own."""

_PILLOW_NAMES: Final[dict[OutputFormat, str]] = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_KEEPS_ALPHA: Final = frozenset({"png", "webp"})


def output_format(suffix: str) -> OutputFormat | None:
    """The format a file name ending asks for (`.JPG` like `.jpg`), None for one we can't write."""
    return SUFFIX_FORMATS.get(suffix.lower())


def encode_result(
    result: bytes, fmt: OutputFormat, *, quality: int | None = None, taken: str | None = None
) -> bytes:
    """`result` as `fmt`; `quality` for JPEG and WebP, `taken` written as DateTimeOriginal."""
    if sniff_format(result) == fmt and quality is None and taken is None:
        return result
    try:
        with Image.open(io.BytesIO(result)) as image:
            image.load()
            icc = image.info.get("icc_profile")
            pixels = _in_mode_for(image, fmt)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ResultInvalidError("The retouched image could not be read.") from exc
    pixels.info.clear()  # Pillow's writers fall back on it for EXIF, comments and more
    options: dict[str, object] = {"icc_profile": icc} if icc else {}
    if fmt != "png":
        options["quality"] = quality or DEFAULT_QUALITY
    if taken is not None:
        exif = Image.Exif()
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    pixels.save(buffer, format=_PILLOW_NAMES[fmt], **options)
    return buffer.getvalue()


def capture_date(photo: bytes) -> str | None:
    """The photo's EXIF DateTimeOriginal ("2024:05:06 07:08:09"), None when it has none."""
    if sniff_format(photo) == "heif":
        pillow_heif.register_heif_opener()
    try:
        with Image.open(io.BytesIO(photo)) as image:
            value = image.getexif().get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.DateTimeOriginal)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    text = value.strip("\x00 ") if isinstance(value, str) else ""
    return text or None


def _in_mode_for(image: Image.Image, fmt: OutputFormat) -> Image.Image:
    """A copy in a mode `fmt` stores; transparency laid on white where it has none."""
    alpha = image.has_transparency_data
    if alpha and fmt in _KEEPS_ALPHA:
        return image.convert("RGBA")
    if alpha:
        white = Image.new("RGBA", image.size, "white")
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("L" if image.mode == "L" and fmt != "webp" else "RGB")
