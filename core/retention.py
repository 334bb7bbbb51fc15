"""What the bot keeps, and for how long: the retention sweep, at start and then every hour.

- Result files: kept after delivery for the Compare button, swept once older than
  `JOBS_RESULT_MAX_AGE_HOURS` (unless an unfinished job still needs them).
- Job rows: kept for quotas and statistics, but their platform references (file ids, CDN URLs,
  interaction tokens, message ids) are erased `JOBS_RETENTION_DAYS` after the job was created;
  the buttons under such an old result then answer that the photo is gone.

Every replica may sweep: each step is idempotent and done in bounded batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from core.results import ResultFiles
from core.store import JobStore

log = logging.getLogger("retouch.retention")

SWEEP_EVERY = 3600.0
"""Seconds between sweeps after the first one at start."""
BATCH = 1000
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep removed."""

    results: int
    erased_jobs: int


class RetentionSweeper:
    """Runs `sweep` at `start` and every `interval` seconds until `stop`."""

    def __init__(
        self,
        store: JobStore,
        results: ResultFiles,
        *,
        result_max_age_hours: float,
        retention_days: float,
        clock: Callable[[], float],
        interval: float = SWEEP_EVERY,
    ) -> None:
        self._store = store
        self._results = results
        self._result_max_age = result_max_age_hours * 3600
        self._days = retention_days
        self._clock = clock
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def sweep_results(self) -> int:
        """Delete stored results older than `JOBS_RESULT_MAX_AGE_HOURS` that no job still needs."""
        keep = [job.result_path for job in await self._store.unfinished_jobs() if job.result_path]
        return await self._results.sweep(keep, self._clock() - self._result_max_age)

    async def sweep(self) -> Swept:
        """One pass: stale result files, then platform references of jobs past retention."""
        results = await self.sweep_results()
        erased = 0
        if self._days > 0:
            before = self._clock() - self._days * DAY
            while (batch := await self._store.erase_platform_refs(before, BATCH)) > 0:
                erased += batch
                if batch < BATCH:
                    break
        if results or erased:
            log.info("retention: %d results deleted, %d jobs' references erased", results, erased)
        return Swept(results, erased)

    async def start(self) -> Swept:
        """Sweep now, then keep sweeping in the background."""
        swept = await self.sweep()
        self._task = asyncio.create_task(self._repeat(), name="retention-sweep")
        return swept

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _repeat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("the retention sweep failed; trying again in %.0f s", self._interval)
