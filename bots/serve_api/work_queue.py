"""serve-api's bounded work queue: a few jobs run, a few wait, the rest are refused at once."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Iterator

from bots.serve_api.errors import busy_error


class WorkQueue:
    """At most `workers` jobs run and at most `capacity` wait; beyond that, refuse at once."""

    def __init__(self, workers: int, capacity: int) -> None:
        self.workers = workers
        self.capacity = capacity
        self.admitted = 0
        self.running = 0
        self._slots = asyncio.Semaphore(workers)
        self._average_seconds = 5.0

    @property
    def waiting(self) -> int:
        return self.admitted - self.running

    def snapshot(self) -> dict[str, int]:
        return {
            "workers": self.workers,
            "capacity": self.capacity,
            "running": self.running,
            "waiting": self.waiting,
        }

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the first of `workers` running jobs to end."""
        return max(1, min(60, math.ceil(self._average_seconds / self.workers)))

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place in the queue; raises a 429 `ApiError` when every place is taken."""
        if self.admitted >= self.workers + self.capacity:
            seconds = self.retry_after()
            raise busy_error(
                f"The server is busy ({self.running} jobs running, {self.waiting} waiting). "
                f"Retry after {seconds} s.",
                seconds,
            )
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for one of the `workers` slots, then run."""
        async with self._slots:
            self.running += 1
            started = time.monotonic()
            try:
                yield
            finally:
                self.running -= 1
                elapsed = time.monotonic() - started
                self._average_seconds = 0.8 * self._average_seconds + 0.2 * elapsed
