"""Give memory back to the system once a burst of jobs is over.

Every job passes a few large buffers (the photo, its base64 request body, the result, the
upload) through the allocator, many of them on worker threads. glibc keeps freed memory in its
arenas and, after the first large free, stops giving such buffers their own mappings, so a
process that served 200 jobs at once stays at its peak size long after. `malloc_trim(0)` hands
the free pages back; it is cheap (milliseconds), and run once the bot has been idle a moment.
Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from functools import cache

log = logging.getLogger("retouch.telegram")

IDLE_SECONDS = 2.0
"""How long no job may have ended, with none running, before memory is trimmed."""


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def trim_memory() -> bool:
    """Return freed heap memory to the system (blocking, a few ms); False where unsupported."""
    function = _malloc_trim()
    return bool(function(0)) if function is not None else False


class IdleTrimmer:
    """Calls `trim_memory` (on a thread) once `busy()` is false `delay` seconds after a job."""

    def __init__(self, busy: Callable[[], bool], delay: float = IDLE_SECONDS) -> None:
        self._busy = busy
        self._delay = delay
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def job_ended(self) -> None:
        """(Re)start the countdown: a job just finished, failed or was cancelled."""
        if _malloc_trim() is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._busy() or (self._task is not None and not self._task.done()):
            return  # the next job to end starts a new countdown
        self._task = asyncio.get_running_loop().create_task(self._trim())

    async def _trim(self) -> None:
        released = await asyncio.to_thread(trim_memory)
        log.debug("idle: returned free memory to the system (%s)", released)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
