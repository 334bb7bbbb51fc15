"""Telling users their job failed or was cancelled, at least once whatever kill comes between.

The ending and its refund commit first (one transaction), then the user is told, then the store
notes that they were (`record_told`). A process killed between the commit and the note tells
them at its next start (`tell_untold`): perhaps twice, never not at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from core.errors import recalled_failure
from core.platform import JobEvent
from core.store import JobStore


class Endings:
    """The failures and cancels one replica tells its users."""

    def __init__(
        self,
        store: JobStore,
        emit: Callable[[JobEvent], Awaitable[None]],
        *,
        replica_id: str,
        platforms: Callable[[], Collection[str]],
    ) -> None:
        self._store = store
        self._emit = emit
        self._replica_id = replica_id
        self._platforms = platforms

    async def tell(self, event: JobEvent) -> None:
        """Tell the user the job (already committed `failed` or `cancelled`) ended, then note it."""
        await self._emit(event)
        await self._store.record_told(event.job.id)

    async def tell_untold(self) -> int:
        """Tell the endings this replica committed but did not get to tell before it stopped
        (an adapter not running here now is left for later); how many there were."""
        untold = await self._store.untold_endings(self._replica_id)
        running = self._platforms()
        for job in untold:
            if job.platform in running:
                failed = job.state == "failed"
                error = recalled_failure(job.error_code or "internal") if failed else None
                await self.tell(JobEvent(job.state, job, error=error))
        return len(untold)
