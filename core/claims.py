"""Claims between replicas sharing one store: heartbeat the jobs this replica holds, adopt the
jobs of replicas gone silent for `JOBS_STALE_AFTER_SECONDS`, and resume this replica's own
after a restart. With one replica every claim succeeds and adoption finds nothing."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from core.jobs import Job
from core.store import JobStore

log = logging.getLogger("retouch.service")

_RECOVER_ALL = 1_000_000


class ClaimHolder(Protocol):
    """The replica whose claims are kept (the service): what it holds and how it takes a job."""

    def held_jobs(self) -> list[str]:
        """The ids of the jobs this replica holds now."""
        ...

    def holds(self, job_id: str) -> bool: ...

    def platforms(self) -> list[str]:
        """The platforms whose jobs this replica can run (an adapter is registered)."""
        ...

    def room(self) -> int:
        """How many jobs to adopt at most in one go."""
        ...

    async def resume(self, job: Job) -> None:
        """Continue a job just claimed, from the state it was left in."""
        ...

    def lose(self, job_id: str, owner: str | None) -> None:
        """Let a job go that another replica (`owner`) has taken over."""
        ...


class ClaimKeeper:
    """Heartbeats and adoption for one replica, on a task of its own once started."""

    def __init__(
        self,
        store: JobStore,
        holder: ClaimHolder,
        *,
        replica_id: str,
        heartbeat_seconds: float,
        stale_after: float,
    ) -> None:
        self._store = store
        self._holder = holder
        self._replica_id = replica_id
        self._every = heartbeat_seconds
        self._stale_after = stale_after
        self._task: asyncio.Task[None] | None = None

    async def recover(self) -> None:
        """Resume what a previous run left: every unfinished job of a registered platform that
        no live replica holds (this replica's own, unclaimed ones, and those of silent ones)."""
        for job in await self._store.claim_stale(
            self._replica_id,
            stale_after=self._stale_after,
            platforms=self._holder.platforms(),
            include_own=True,
            limit=_RECOVER_ALL,
        ):
            await self._holder.resume(job)

    async def adopt(self) -> int:
        """Take over jobs whose replica went silent (or gave them back); how many."""
        adopted = await self._store.claim_stale(
            self._replica_id,
            stale_after=self._stale_after,
            platforms=self._holder.platforms(),
            limit=self._holder.room(),
        )
        for job in adopted:
            log.info("adopting job %s (%s) from %s", job.id, job.state, job.owner or "nobody")
            await self._holder.resume(job)
        return len(adopted)

    async def heartbeat(self) -> None:
        """Renew the claims held here; a job another replica has taken is let go."""
        ids = self._holder.held_jobs()
        if not ids:
            return
        held = set(await self._store.heartbeat(self._replica_id, ids))
        for job_id in ids:
            if job_id in held or not self._holder.holds(job_id):
                continue
            job = await self._store.get_job(job_id)
            if job is None or job.owner == self._replica_id:
                continue  # settling right now; its own task finishes the bookkeeping
            self._holder.lose(job_id, job.owner)

    def start(self) -> None:
        """Every `JOBS_HEARTBEAT_SECONDS` from now on: heartbeat, then adopt orphans."""
        self._task = asyncio.create_task(self._keep(), name="retouch-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.heartbeat()
                await self.adopt()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("heartbeat failed; retrying in %gs", self._every)
