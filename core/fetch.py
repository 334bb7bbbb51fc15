"""Download an image from an untrusted URL: http(s) only, size-capped, type- and magic-checked.

Used for the upstream's result URLs (valid for one hour, possibly signed) and by the local API
server for image URLs given by callers, both under an `AddressPolicy` that every hop and every
connection passes (`core.netguard`). Error messages name at most the scheme and host.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from core.errors import (
    BackendError,
    ResultExpiredError,
    ResultInvalidError,
    ResultTooLargeError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from core.formats import sniff_format
from core.http import parse_retry_after, url_origin
from core.netguard import AddressPolicy, check_url
from core.transport import ADDRESS_POLICY

logger = logging.getLogger("retouch.fetch")

_ACCEPTED_TYPES = ("application/octet-stream",)


async def download_image(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    timeout: float | None = None,  # noqa: ASYNC109 - a whole-download deadline, part of the API
    max_redirects: int = 3,
    policy: AddressPolicy | None = None,
) -> bytes:
    """The image at `url`, never reading more than `max_bytes` of it; raises typed `BackendError`s.

    `timeout` bounds the whole download (all redirects and the body), which the client's per-read
    timeouts alone do not: a server dripping one byte at a time would never trip them.
    `policy` vets the URL, every redirect target and every address connected to; a refusal
    raises `ForbiddenUrlError`. URLs with a user name or password are refused either way.
    """
    try:
        async with asyncio.timeout(timeout):
            return await _download(client, url, max_bytes, max_redirects, policy)
    except TimeoutError:
        raise UpstreamTimeoutError(
            f"downloading the image from {url_origin(url)} took too long", origin=url_origin(url)
        ) from None


async def _download(
    client: httpx.AsyncClient,
    url: str,
    max_bytes: int,
    max_redirects: int,
    policy: AddressPolicy | None,
) -> bytes:
    target = _http_url(url)
    extensions = {} if policy is None else {ADDRESS_POLICY: policy}
    for _hop in range(max_redirects + 1):
        origin = url_origin(target)
        if policy is not None:
            check_url(str(target), policy)
        try:
            async with client.stream(
                "GET",
                target,
                headers={"Accept": "image/*"},
                follow_redirects=False,
                extensions=extensions,
            ) as response:
                if response.is_redirect:
                    target = _http_url(response.headers["location"], base=target)
                    logger.debug("redirect from %s to %s", origin, url_origin(target))
                    continue
                _check_response(response, origin, max_bytes)
                data = await read_capped(
                    response,
                    max_bytes,
                    ResultTooLargeError(
                        f"the image from {origin} is larger than {max_bytes} bytes",
                        origin=origin,
                        max_bytes=max_bytes,
                    ),
                )
        except httpx.TimeoutException as exc:
            raise UpstreamTimeoutError(
                f"timed out downloading the image from {origin}", origin=origin
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailableError(
                f"could not download the image from {origin} ({type(exc).__name__})", origin=origin
            ) from exc
        if sniff_format(data) is None:
            raise ResultInvalidError(f"the file from {origin} is not an image", origin=origin)
        return data
    raise ResultInvalidError(
        f"too many redirects downloading the image from {url_origin(url)}", origin=url_origin(url)
    )


def _http_url(url: str, *, base: httpx.URL | None = None) -> httpx.URL:
    """`url` (resolved against `base`) as an absolute http(s) URL, else `ResultInvalidError`."""
    try:
        parsed = base.join(url) if base is not None else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ResultInvalidError("the image URL is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ResultInvalidError(
            "only http and https image URLs can be downloaded", scheme=parsed.scheme
        )
    if parsed.userinfo:
        raise ResultInvalidError("image URLs with a user name or password are not downloaded")
    return parsed


def _check_response(response: httpx.Response, origin: str, max_bytes: int) -> None:
    """Reject by status, declared length and content type before reading any of the body."""
    status = response.status_code
    # Signed object-store URLs answer 403, not 404, once their signature has expired.
    if status in (403, 404, 410):
        raise ResultExpiredError(
            f"the image at {origin} is gone (HTTP {status}); it may have expired",
            origin=origin,
            status=status,
        )
    if status == 429:
        raise UpstreamRateLimitedError(
            f"{origin} is rate-limiting downloads (HTTP 429)",
            origin=origin,
            status=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status >= 500:
        raise UpstreamUnavailableError(
            f"{origin} failed to serve the image (HTTP {status})", origin=origin, status=status
        )
    if not response.is_success:
        raise ResultInvalidError(
            f"{origin} refused to serve the image (HTTP {status})", origin=origin, status=status
        )

    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise ResultTooLargeError(
            f"the image from {origin} is {int(declared)} bytes, over the {max_bytes} byte limit",
            origin=origin,
            max_bytes=max_bytes,
        )

    media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not (media_type.startswith("image/") or media_type in _ACCEPTED_TYPES):
        raise ResultInvalidError(
            f"the file from {origin} is not an image (content type {media_type or 'missing'!r})",
            origin=origin,
            content_type=media_type,
        )


async def read_capped(response: httpx.Response, max_bytes: int, too_large: BackendError) -> bytes:
    """Read a streamed body, raising `too_large` the moment it grows past `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
