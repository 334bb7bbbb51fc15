"""The image a request names: a base64 `data:` URL decoded, or an http(s) URL downloaded."""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
from typing import Final

import httpx

from bots.serve_api.errors import ApiError
from core.errors import BackendError, ForbiddenUrlError, ImageTooLargeError
from core.fetch import download_image
from core.netguard import PUBLIC_ONLY

_MAX_URL_CHARS: Final = 8192
_DOWNLOAD_TIMEOUT: Final = 30.0


def is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


async def load_image(
    url: str, *, client: httpx.AsyncClient, max_bytes: int, allow_private: bool
) -> bytes:
    """The image bytes behind a `data:` URL or an http(s) URL (public only, unless allowed)."""
    if is_data_url(url):
        return await asyncio.to_thread(decode_data_url, url, max_bytes)
    scheme = url.partition(":")[0].lower()
    if scheme not in ("http", "https"):
        raise ForbiddenUrlError("Only http(s) and base64 data: image URLs are accepted.")
    if len(url) > _MAX_URL_CHARS:
        raise ApiError(400, "The image URL is too long.", code="invalid_image_url")
    try:
        # The policy vets the URL, every redirect target and every address connected to.
        return await download_image(
            client,
            url,
            max_bytes=max_bytes,
            timeout=_DOWNLOAD_TIMEOUT,
            policy=None if allow_private else PUBLIC_ONLY,
        )
    except BackendError as exc:
        raise ApiError(
            400, f"The image URL could not be downloaded: {exc.message}", code="invalid_image_url"
        ) from None


def decode_data_url(url: str, max_bytes: int) -> bytes:
    """The bytes of a base64 `data:` URL, its length checked before the base64 is decoded."""
    header, sep, payload = url.partition(",")
    if not sep or not header.lower().endswith(";base64"):
        raise ApiError(400, "An image data: URL must be base64-encoded.", code="invalid_image_url")
    max_chars = 4 * math.ceil(max_bytes / 3)
    if len(payload) > max_chars + max_chars // 38 + 16:  # room for MIME line breaks
        raise ImageTooLargeError(f"The image is larger than {max_bytes} bytes.")
    if re.search(r"\s", payload):
        payload = "".join(payload.split())
    if len(payload) > max_chars:
        raise ImageTooLargeError(f"The image is larger than {max_bytes} bytes.")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            400, "The image data: URL is not valid base64.", code="invalid_image_url"
        ) from None
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"The image is larger than {max_bytes} bytes.")
    return data
