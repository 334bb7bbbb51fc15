"""Flood control: a Bot API call that hits `RetryAfter` waits as told and tries again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram.error import RetryAfter

T = TypeVar("T")
log = logging.getLogger("retouch.telegram")

MAX_FLOOD_WAITS = 5
MAX_WAIT_SECONDS = 120.0


async def patiently(call: Callable[[], Awaitable[T]]) -> T:
    """Run `call`, waiting out flood control (429 with retry_after) a few times."""
    for attempt in range(MAX_FLOOD_WAITS + 1):
        try:
            return await call()
        except RetryAfter as exc:
            if attempt == MAX_FLOOD_WAITS:
                raise
            delay = exc.retry_after
            seconds = delay if isinstance(delay, int | float) else delay.total_seconds()
            log.warning("flood control: waiting %.1f s as Telegram asks", seconds)
            await asyncio.sleep(min(float(seconds), MAX_WAIT_SECONDS))
    raise AssertionError("unreachable")
