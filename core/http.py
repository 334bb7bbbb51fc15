"""The one shared `httpx.AsyncClient` and small helpers every outbound HTTP call uses."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version

import httpx

from core.settings import Settings
from core.transport import AiohttpTransport

try:
    __version__ = version("retouch-bot")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

USER_AGENT = f"retouch-bot/{__version__}"


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client for the whole process; reads may take long because jobs run 10-30 s."""
    return http_client(
        httpx.Timeout(
            connect=settings.retouch_connect_timeout_seconds,
            read=settings.retouch_timeout_seconds,
            write=60.0,
            pool=30.0,
        )
    )


def http_client(timeout: httpx.Timeout | float) -> httpx.AsyncClient:
    """httpx's API over aiohttp's pool (`core.transport`): what every outbound call goes through."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=40)
    return httpx.AsyncClient(
        timeout=timeout,
        limits=limits,  # for proxy routes from the environment, which httpx itself serves
        transport=AiohttpTransport(limits=limits),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


def quiet_http_loggers() -> None:
    """Silence httpx/httpcore below WARNING: they log full URLs; Telegram URLs hold the token."""
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def url_origin(url: str | httpx.URL) -> str:
    """`scheme://host[:port]` of a URL: safe to log, since paths and queries may carry secrets."""
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else url
    except (httpx.InvalidURL, TypeError):
        return "<invalid url>"
    if not parsed.scheme or not parsed.host:
        return f"{parsed.scheme or '?'}://?"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{host}{port}"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait per a `Retry-After` header (seconds or HTTP date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
