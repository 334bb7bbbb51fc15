"""Decoded pixels made 8-bit RGB(A) and shrunk, a band of rows at a time.

A whole-image resize holds the decoded image, an intermediate as wide as the output and as tall
as the input, and the output: for a 67 MP input shrunk to 24 MP that is 270 + 160 + 100 MB.
Shrinking band by band keeps only the decoded image and the output, and converts modes (palette,
16-bit grey, float) band by band too, so a 1-byte-per-pixel input never exists as 4 bytes per
pixel at full size. Synchronous and CPU-bound, like `core.imaging`.
"""

from __future__ import annotations

import io
import math
from typing import Final

import numpy as np
from PIL import Image, ImageCms

BAND_PIXELS: Final = 2_000_000
"""Output pixels per band: small beside the image, large enough that the per-band cost vanishes."""
HIGH_BIT_MODES: Final = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_WORKING_MODES: Final = {"1": "L", "PA": "RGBA", "RGBX": "RGB", "LAB": "RGB", "HSV": "RGB"}
_LANCZOS_RADIUS: Final = 3
_SRGB: Final = ImageCms.createProfile("sRGB")
_ORIENTATIONS: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def pixel_bytes(mode: str) -> int:
    """Bytes Pillow keeps per pixel in `mode`: one for 8-bit single bands, two for 16-bit grey,
    four for everything else (it stores RGB as four bytes)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def shrink(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` in a mode Pillow resizes well (8-bit), Lanczos-shrunk to `size`, band by band."""
    convert = _converter(image)
    width, height = image.size
    if (width, height) == size:
        return convert(image)
    out_width, out_height = size
    scale = height / out_height
    margin = math.ceil((_LANCZOS_RADIUS + 1) * max(1.0, scale)) + 2
    rows = max(1, BAND_PIXELS // out_width)
    output: Image.Image | None = None
    for top in range(0, out_height, rows):
        bottom = min(out_height, top + rows)
        first = max(0, math.floor(top * scale) - margin)
        last = min(height, math.ceil(bottom * scale) + margin)
        piece = convert(image.crop((0, first, width, last)))
        band = piece.resize(
            (out_width, bottom - top),
            Image.Resampling.LANCZOS,
            box=(0, top * scale - first, width, bottom * scale - first),
            reducing_gap=3.0,
        )
        if output is None:
            output = Image.new(band.mode, size)
        output.paste(band, (0, top))
    assert output is not None
    return output


def _converter(image: Image.Image) -> _Convert:
    """How each band becomes 8-bit: high bit depths scaled (never clipped), palettes expanded."""
    mode = image.mode
    if mode in HIGH_BIT_MODES:
        return _Convert(scale=_eight_bit_scale(image))
    if mode == "P":
        return _Convert(mode="RGBA" if image.has_transparency_data else "RGB")
    return _Convert(mode=_WORKING_MODES.get(mode))


class _Convert:
    """One band's conversion; the same for every band of an image."""

    def __init__(self, *, mode: str | None = None, scale: float | None = None) -> None:
        self.mode = mode
        self.scale = scale

    def __call__(self, piece: Image.Image) -> Image.Image:
        if self.scale is not None:
            values = np.asarray(piece, dtype=np.float32) * self.scale
            return Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), "L")
        return piece.convert(self.mode) if self.mode and piece.mode != self.mode else piece


def _eight_bit_scale(image: Image.Image) -> float:
    """The factor onto 0..255: 16-bit integers span 0..65535; floats 0..1, else they are kept."""
    if image.mode != "F":
        return 255 / 65535
    low, high = (float(v) for v in image.getextrema() if isinstance(v, int | float))
    return 255.0 if low >= 0.0 and high <= 1.0 else 1.0


def to_rgb(image: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None, bool]:
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


def flatten(image: Image.Image) -> Image.Image:
    """Lay an RGBA image on white, the background a JPEG viewer would most likely show."""
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


def upright(image: Image.Image, orientation: object) -> Image.Image:
    """Turn the pixels as the EXIF orientation says (pillow_heif has already done so for HEIF).

    The same table as `ImageOps.exif_transpose`; the tag itself goes with the rest of the EXIF.
    """
    method = _ORIENTATIONS.get(orientation) if isinstance(orientation, int) else None
    return image if method is None else image.transpose(method)


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A plain Lanczos resize, for images already small (JPEG size steps)."""
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def fit_size(
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
