"""Benchmark photos made from the committed sample portrait: a 4:3 crop around the face, scaled up,
with film-grain noise so the JPEG carries as much detail (and as many bytes) as a real photo.

    photo = portrait_jpeg(1280, 960)              # ~200 KB: what Telegram delivers for a photo
    original = portrait_jpeg(4000, 3000, quality=93)  # ~4 MB: a 12 MP photo sent as a file
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

PORTRAIT = Path(__file__).resolve().parent.parent / "examples" / "portrait.jpg"
# The portrait is 512x512 with its face near the top; a 4:3 crop from the top keeps all of it.
_CROP = (0, 0, 512, 384)
_NOISE_SEED = 7


@cache
def portrait_jpeg(width: int, height: int, *, quality: int = 80, noise: float = 6.0) -> bytes:
    """The portrait's 4:3 crop at `width` x `height`, with Gaussian noise of `noise` levels."""
    with Image.open(PORTRAIT) as source:
        rgb = source.convert("RGB").crop(_CROP).resize((width, height), Image.Resampling.LANCZOS)
    pixels = np.asarray(rgb, dtype=np.float32)
    grain = np.random.default_rng(_NOISE_SEED).normal(0.0, noise, pixels.shape[:2])
    pixels = np.clip(pixels + grain[:, :, None].astype(np.float32), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def telegram_photo() -> bytes:
    """1280x960, about 200 KB: the largest size Telegram keeps of a photo sent as a photo."""
    return portrait_jpeg(1280, 960, quality=80, noise=5.5)


def camera_file() -> bytes:
    """4000x3000 (12 MP), about 4 MB: a phone photo sent as a file (uncompressed by Telegram)."""
    return portrait_jpeg(4000, 3000, quality=93, noise=6.0)


def megapixels(mp: float) -> bytes:
    """A 4:3 portrait of about `mp` megapixels (quality 90, as a camera would write)."""
    height = round((mp * 1e6 * 3 / 4) ** 0.5)
    width = round(height * 4 / 3)
    return portrait_jpeg(width, height, quality=90, noise=5.0)
