"""The jobs waiting for one of this replica's workers, first come first served."""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict


class RunQueue:
    """Job ids in order, and how many workers wait idle for one.

    Knowing the idle workers tells whether jobs really wait: only then are positions worth
    announcing. Once closed (shutdown), workers take nothing more.
    """

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, None] = OrderedDict()
        self._ready = asyncio.Condition()
        self._idle = 0
        self._closed = False

    def __len__(self) -> int:
        return len(self._jobs)

    async def put(self, job_id: str) -> int:
        """Queue `job_id` last; returns its position (1 = next)."""
        async with self._ready:
            self._jobs[job_id] = None
            self._ready.notify()
            return len(self._jobs)

    async def take(self) -> str:
        """The next job id, once there is one (and the queue is open)."""
        async with self._ready:
            self._idle += 1
            try:
                await self._ready.wait_for(lambda: bool(self._jobs) and not self._closed)
            finally:
                self._idle -= 1
            job_id, _ = self._jobs.popitem(last=False)
            return job_id

    def discard(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)

    def close(self) -> None:
        self._closed = True

    def position(self, job_id: str) -> int | None:
        """The job's place (1 = next), or None when it is not waiting."""
        for index, queued in enumerate(self._jobs, start=1):
            if queued == job_id:
                return index
        return None

    def head(self, count: int) -> list[str]:
        return list(itertools.islice(self._jobs, count))

    @property
    def backlog(self) -> bool:
        """Whether some jobs wait for a worker, rather than for an idle one to pick them up."""
        return len(self._jobs) > self._idle
