"""Image formats told apart by their magic bytes, never by file names or MIME types."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal

ImageFormat = Literal["jpeg", "png", "webp", "gif", "heif", "bmp", "tiff"]

MIME_TYPES: dict[ImageFormat, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "heif": "image/heif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
}

EXTENSIONS: dict[ImageFormat, str] = {
    "jpeg": ".jpg",
    "png": ".png",
    "webp": ".webp",
    "gif": ".gif",
    "heif": ".heic",
    "bmp": ".bmp",
    "tiff": ".tif",
}

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif"}


def sniff_format(data: bytes) -> ImageFormat | None:
    """The image format the first bytes announce, or None when they announce no image we know."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "heif"
    if head[:2] == b"BM" and len(head) >= 26:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image checked and shaped for a backend: a format the upstream takes, within its limits."""

    data: bytes
    format: ImageFormat
    width: int
    height: int

    @property
    def mime(self) -> str:
        return MIME_TYPES[self.format]

    def data_url(self) -> str:
        """The image as a base64 `data:` URL, the form the upstream accepts inline."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"
