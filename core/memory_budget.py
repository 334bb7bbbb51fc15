"""Memory budgets: semaphores weighted by bytes, above all the process's one for decoded pixels.

Every image decode (input preparation, the local engine, fitting a result for upload) reserves
what it will cost before it starts, so N concurrent decompression bombs cost no more than the
budget: the rest wait their turn. One reservation larger than the whole budget runs alone. Async
callers wait without holding a thread; threads wait blocking. A decode that fails lets go of its
pixels at once: the frames of its traceback are cleared (an exception and its frames form a cycle
that only the garbage collector would break, seconds and many megabytes later). When the last
reservation ends after large decodes, freed memory is handed back to the operating system (glibc
keeps it otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import threading
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

log = logging.getLogger("retouch.memory")

TRIM_AFTER_BYTES: Final = 32 * 1024 * 1024
"""Bytes reserved since the last trim past which the last release trims the heap."""
_MMAP_THRESHOLD: Final = 4 * 1024 * 1024
_M_MMAP_THRESHOLD: Final = -3  # glibc's mallopt parameter number


@dataclass(eq=False)
class _Waiter:
    weight: int
    wake: Callable[[], None]
    granted: bool = False
    cancelled: bool = False


@dataclass(eq=False)
class MemoryBudget:
    """A weighted semaphore of `capacity` bytes, fair (first come, first served)."""

    capacity: int
    used: int = 0
    peak: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _waiters: deque[_Waiter] = field(default_factory=deque, repr=False)
    _since_trim: int = 0

    def weight_of(self, cost: int) -> int:
        """What a decode costing `cost` bytes reserves: at least 1, at most the whole budget."""
        return max(1, min(int(cost), self.capacity))

    @contextlib.contextmanager
    def hold(self, cost: int) -> Iterator[None]:
        """Reserve `cost` bytes for the block, waiting (blocking this thread) until they fit."""
        weight = self.weight_of(cost)
        event = threading.Event()
        waiter = self._enter(weight, event.set)
        if waiter is not None:
            event.wait()
        with self._holding(weight):
            yield

    @contextlib.asynccontextmanager
    async def hold_async(self, cost: int) -> AsyncIterator[None]:
        """`hold` for the event loop: waits without blocking it; cancelling gives the place up."""
        weight = self.weight_of(cost)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(_resolve, future)

        waiter = self._enter(weight, wake)
        if waiter is not None:
            try:
                await future
            except BaseException:
                if self._abandon(waiter):
                    raise
                self._release(weight)  # granted while being cancelled: give it back
                raise
        with self._holding(weight):
            yield

    @contextlib.contextmanager
    def _holding(self, weight: int) -> Iterator[None]:
        """The block's reservation, given back at its end; a failure's frames cleared first."""
        try:
            yield
        except BaseException as exc:
            traceback.clear_frames(exc.__traceback__)
            raise
        finally:
            self._release(weight)

    def _enter(self, weight: int, wake: Callable[[], None]) -> _Waiter | None:
        """Take `weight` now (None), or queue a waiter that `wake` will be called for."""
        with self._lock:
            if not self._waiters and self.used + weight <= self.capacity:
                self._take(weight)
                return None
            waiter = _Waiter(weight, wake)
            self._waiters.append(waiter)
            return waiter

    def _abandon(self, waiter: _Waiter) -> bool:
        """Withdraw a waiter; False when it had already been granted its weight."""
        with self._lock:
            if waiter.granted:
                return False
            waiter.cancelled = True
            self._waiters.remove(waiter)
            woken = self._grant()
        for wake in woken:
            wake()
        return True

    def _release(self, weight: int) -> None:
        with self._lock:
            self.used -= weight
            woken = self._grant()
            trim = self.used == 0 and self._since_trim >= TRIM_AFTER_BYTES
            if trim:
                self._since_trim = 0
        for wake in woken:
            wake()
        if trim:
            release_freed_memory()

    def _grant(self) -> list[Callable[[], None]]:
        """Grant waiters in order while they fit (the lock is held)."""
        woken = []
        while self._waiters and self.used + self._waiters[0].weight <= self.capacity:
            waiter = self._waiters.popleft()
            waiter.granted = True
            self._take(waiter.weight)
            woken.append(waiter.wake)
        return woken

    def _take(self, weight: int) -> None:
        self.used += weight
        self.peak = max(self.peak, self.used)
        self._since_trim += weight


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_budgets: dict[int, MemoryBudget] = {}
_budgets_lock = threading.Lock()


def decode_budget(capacity: int) -> MemoryBudget:
    """The process's decode budget of `capacity` bytes: every caller configured alike shares it
    (the bots' service, their uploads, the command line, serve-api)."""
    with _budgets_lock:
        budget = _budgets.get(capacity)
        if budget is None:
            budget = _budgets[capacity] = MemoryBudget(capacity)
            _tune_allocator()
        return budget


# --- handing memory back ------------------------------------------------------------------

_libc: ctypes.CDLL | None = None
_tuned = False


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name or "libc.so.6")
            libc.malloc_trim  # noqa: B018 - glibc only: musl and others have none
            libc.mallopt  # noqa: B018
        except (OSError, AttributeError):
            return None
        _libc = libc
    return _libc


def _tune_allocator() -> None:
    """Serve large blocks (Pillow's, numpy's) by mmap, so that freeing one returns it at once.

    glibc raises its mmap threshold each time such a block is freed, up to 32 MB, after which
    image buffers come from the heap and stay there: a burst of decodes would keep its peak.
    """
    global _tuned
    libc = _glibc()
    if _tuned or libc is None:
        return
    _tuned = True
    libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


def release_freed_memory() -> None:
    """Return freed heap pages to the operating system (glibc's `malloc_trim`); else nothing."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
