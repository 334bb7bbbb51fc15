"""`RetouchService`: the one entry point the chat adapters call.

It admits requests (`core.admission`), runs them on a bounded worker pool, keeps each result on
disk until the adapter has delivered it (`core.results`), settles the reservation, and resumes
unfinished jobs after a restart. It knows no chat library: each platform plugs in through
`PlatformHooks` (`core.platform`).

Several services (replicas) may share one store. Each has a replica id (`REPLICA_ID`, else the
host name): a job it admits is born claimed by it and runs in its own pool; it moves a job only
while it holds the claim (`expect_owner`), and gives back what is left when it stops. Its
`ClaimKeeper` (`core.claims`) heartbeats the jobs it holds and adopts those of silent replicas,
exactly as a restart resumes its own. With one replica every claim succeeds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core import worker_slot
from core.accounts import UserAccounts
from core.admission import Admission
from core.backend import RetouchBackend
from core.claims import ClaimKeeper
from core.crash import arm, crash_point
from core.delivery import SentResults, deliver_with_retries
from core.endings import Endings
from core.errors import CancelledJobError, RetouchError, ShuttingDownError
from core.imaging import ImageLimits
from core.inbox import Inbox, carrying_update
from core.jobs import UNFINISHED_STATES, Job, JobState, Platform
from core.logs import current_job
from core.pipeline import retouch_photo
from core.platform import Adapters, JobEvent, PlatformHooks, RetouchRequest
from core.quota import QuotaPolicy
from core.results import ResultFiles
from core.retention import RetentionSweeper
from core.run_queue import RunQueue
from core.settings import Settings
from core.store import JobStore

__all__ = ["JobEvent", "PlatformHooks", "RetouchRequest", "RetouchService", "default_replica_id"]

log = logging.getLogger("retouch.service")

UPLOAD_DRAIN_SECONDS = 30.0
"""How long shutdown waits, past the grace period, for uploads already under way."""
POSITION_UPDATES = 10
"""How many jobs at the head of the queue hear about their new position when it moves."""

_QUEUED: tuple[JobState, ...] = ("queued",)
_RUNNING: tuple[JobState, ...] = ("running",)
_DELIVERING: tuple[JobState, ...] = ("delivering",)
_WAITING: tuple[JobState, ...] = ("queued", "running")


@dataclass
class _Local:
    """What this process holds for a job besides its row: the input and the task running it.

    A job is in `_local` exactly while this replica holds it.
    """

    attempts: int = 0
    """Runs the job had before it was queued here (0 for a new one)."""
    image: bytes | None = None
    task: asyncio.Task[None] | None = None
    cancelled: bool = False
    lost: bool = False
    """Another replica took the job over (this one stalled past the stale limit)."""
    uploading: bool = False
    """The result is being handed to the chat: shutdown lets that finish."""


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _set_uploading(local: _Local, uploading: bool) -> None:
    local.uploading = uploading


def _no_worker() -> None:
    """A job resumed to be delivered runs outside the pool: it has no worker to give back."""


def default_replica_id() -> str:
    """The host name: unique per container or machine, and the same after a restart."""
    return socket.gethostname() or uuid.uuid4().hex


Sleep = Callable[[float], Awaitable[None]]


async def _wind_down(held: list[_Local], grace: float) -> None:
    """Let running jobs finish for `grace` seconds (uploads under way a while longer), then
    cancel what is left."""
    running = [local.task for local in held if local.task is not None]
    if not running:
        return
    _, pending = await asyncio.wait(running, timeout=grace)
    # An upload cut off midway may still reach the chat, and would then be sent again by
    # whoever resumes the job: let uploads under way finish.
    uploading = [local.task for local in held if local.uploading and local.task in pending]
    if uploading:
        await asyncio.wait(uploading, timeout=UPLOAD_DRAIN_SECONDS)
        pending = {task for task in pending if not task.done()}
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


class RetouchService(UserAccounts):
    """Admission, the worker pool, delivery with retries, settlement and recovery."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        backend: RetouchBackend,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(store, QuotaPolicy.from_settings(settings), clock)
        self.settings = settings
        self.backend = backend
        self.limits = ImageLimits.from_settings(settings)
        self.results_dir = settings.results_dir
        self.results = ResultFiles(self.results_dir)
        self.admission = Admission(settings, store, self.policy, clock)
        self.replica_id = settings.replica_id or default_replica_id()
        """This replica's name in the store's `owner` column."""
        self.claims = ClaimKeeper(
            store,
            self,
            replica_id=self.replica_id,
            heartbeat_seconds=settings.jobs_heartbeat_seconds,
            stale_after=settings.jobs_stale_after_seconds,
        )
        self.retention = RetentionSweeper(
            store,
            self.results,
            result_max_age_hours=settings.jobs_result_max_age_hours,
            retention_days=settings.jobs_retention_days,
            clock=clock,
        )
        self._sleep = sleep
        arm(settings.jobs_crash_at)
        self.adapters = Adapters()
        self.sent = SentResults(store)
        """Where the adapter records a delivered result's message at once (`record`)."""
        self.endings = Endings(
            store, self.adapters.emit, replica_id=self.replica_id, platforms=self.adapters.names
        )
        self._queue = RunQueue()
        self._local: dict[str, _Local] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._accepting = False
        self.on_rejected: Callable[[str, RetouchError], None] | None = None
        """Called with the platform and the error when `submit` turns a request away."""

    # --- life cycle -----------------------------------------------------------------------

    def register(self, platform: Platform, hooks: PlatformHooks) -> None:
        """Plug in an adapter; its unfinished jobs are resumed by `start`."""
        self.adapters.register(platform, hooks)

    async def start(self) -> None:
        """Sweep stale files, resume unfinished jobs, tell endings left untold, then start the
        workers and admit requests."""
        await self.results.create_folder()
        await self.retention.start()
        await self.claims.recover()
        await self.endings.tell_untold()
        self._workers = [
            asyncio.create_task(self._worker(), name=f"retouch-worker-{n}")
            for n in range(self.settings.max_concurrent_jobs)
        ]
        self.claims.start()
        self._accepting = True

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop admitting, let running jobs finish for `grace` seconds, leave the rest queued.

        What is left is given back (unclaimed), for the next start or another replica.
        """
        self._accepting = False
        self._queue.close()
        grace = self.settings.jobs_shutdown_grace_seconds if grace is None else grace
        await self.retention.stop()
        await self.claims.stop()
        await _wind_down(list(self._local.values()), grace)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._local:
            try:
                await self.store.release(self.replica_id, list(self._local))
            except Exception:
                log.exception("could not give back %d unfinished jobs", len(self._local))

    # --- requests -------------------------------------------------------------------------

    async def submit(self, request: RetouchRequest) -> tuple[Job, int]:
        """Admit and queue a request; returns the job and its queue position (1 = next).

        Raises an `AdmissionError` or `QuotaExceededError` (with `resets_at`) having charged
        nothing; `on_rejected` hears of each such refusal.
        """
        try:
            if not self._accepting:
                raise ShuttingDownError(
                    "The bot is restarting; please send the photo again shortly."
                )
            with carrying_update(request) as request:
                job = await self.admission.admit(request, owner=self.replica_id)
        except RetouchError as exc:
            if self.on_rejected is not None:
                self.on_rejected(request.platform, exc)
            raise
        self._local[job.id] = _Local(image=request.image)
        position = await self._queue.put(job.id)
        await self.adapters.emit(JobEvent("queued", job, position=position))
        return job, position

    def position(self, job_id: str) -> int | None:
        """The job's place in the queue (1 = next), or None when it is not waiting."""
        return self._queue.position(job_id)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def running_count(self) -> int:
        return sum(1 for local in self._local.values() if local.task is not None)

    async def cancel(self, job_id: str, platform: str, user_id: str) -> bool:
        """Cancel a queued or running job of this user: refunded (by the same transaction), and
        its result never delivered."""
        job = await self.store.get_job(job_id)
        if job is None or (job.platform, job.user_id) != (platform, user_id):
            return False
        cancelled = await self.store.transition(
            job_id, "cancelled", expect=_WAITING, error_code=CancelledJobError.code
        )
        if cancelled is None:
            return False
        self._queue.discard(job_id)
        local = self._local.get(job_id)
        if local is not None:
            local.cancelled = True
            if local.task is not None:
                local.task.cancel()
        self._drop(job_id)
        self._log_finished(cancelled)
        await self.endings.tell(JobEvent("cancelled", cancelled))
        return True

    # --- per-user data (the rest is in `UserAccounts`) ------------------------------------

    async def forget(self, platform: str, user_id: str) -> int:
        """Cancel the user's jobs, then delete their settings, history and files.

        Today's usage counter stays, so forgetting is not a quota reset. Returns jobs deleted.
        """
        for job in await self.store.unfinished_jobs():
            if (job.platform, job.user_id) == (platform, user_id):
                await self.cancel(job.id, platform, user_id)
        paths = await self.store.forget(platform, user_id, today=self.policy.day_key(self._clock()))
        await self.results.discard(paths)
        return len(paths)

    # --- the worker pool ------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            job_id = await self._queue.take()
            if self._queue.backlog:
                await self._announce_positions()
            local = self._local.get(job_id)
            if local is None:
                continue  # settled (cancelled) or taken over while it waited
            given_back: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            task = local.task = asyncio.create_task(
                self._guarded(job_id, local, functools.partial(_resolve, given_back)),
                name=f"job-{job_id}",
            )
            # The job ends, or gives its worker back to wait outside the pool (an album photo
            # waiting for its siblings, `core.worker_slot`); then it settles on its own.
            task.add_done_callback(functools.partial(self._ended, job_id, local))
            # wait() rather than await: stopping the worker must not cancel the job itself.
            await asyncio.wait([task, given_back], return_when=asyncio.FIRST_COMPLETED)

    def _ended(self, job_id: str, local: _Local, task: asyncio.Task[None]) -> None:
        """A job's task is over: it no longer runs here, and an error it stopped on is logged."""
        if local.task is task:
            local.task = None
        if not task.cancelled() and task.exception() is not None:
            # The store failed under it. Dropped here, its claim goes stale and the job is
            # adopted again (by this replica or another) once the store answers.
            log.error("job %s stopped on an error", job_id, exc_info=task.exception())
            self._drop(job_id)

    async def _guarded(self, job_id: str, local: _Local, give_back: Callable[[], None]) -> None:
        """Run one job; a cancel by its requester or a shutdown past the deadline ends it."""
        current_job.set(job_id)  # this task's log lines carry the job id
        worker_slot.bind(worker_slot.Hold(give_back, functools.partial(_set_uploading, local)))
        try:
            await self._run(job_id, local)
        except asyncio.CancelledError:
            if local.cancelled or local.lost:
                return  # settled by `cancel`, or another replica has it now
            # Shutdown: the job goes back to the store's queue, for anyone to take at once.
            await self.store.transition(
                job_id,
                "queued",
                expect=_RUNNING,
                expect_owner=self.replica_id,
                owner=None,
                heartbeat_at=None,
            )
            self._local.pop(job_id, None)
            raise

    async def _run(self, job_id: str, local: _Local) -> None:
        # Every queued job is already held by this replica (born claimed, or claimed when
        # resumed), so one compare-and-set starts it: it fails if the job was cancelled, or
        # taken over by another replica while this one stalled.
        job = await self.store.transition(
            job_id,
            "running",
            expect=_QUEUED,
            expect_owner=self.replica_id,
            attempts=local.attempts + 1,
            heartbeat_at=self._clock(),
        )
        if job is None:
            self._drop(job_id)
            return
        await self.adapters.emit(JobEvent("running", job))
        try:
            image = local.image or await self.adapters.for_job(job).fetch_input(job)
            crash_point("input_fetched")
            local.image = None  # the input is not kept once the backend has it
            result = await retouch_photo(self.backend, image, job.fidelity, self.limits)
        except RetouchError as exc:
            await self._fail(job, exc)
            return
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.id)
            await self._fail(job, RetouchError(f"internal error ({type(exc).__name__})"))
            return
        path = await self.results.save(job.id, result)
        delivering = await self.store.transition(
            job_id,
            "delivering",
            expect=_RUNNING,
            expect_owner=self.replica_id,
            result_path=str(path),
        )
        if delivering is None:  # cancelled (or taken over) while the backend worked
            await self.results.discard([path])
            self._drop(job_id)
            return
        await self._deliver(delivering, result)

    async def _deliver(self, job: Job, result: bytes | None = None) -> None:
        """Hand the result to the adapter (from memory, or from disk when resuming), then settle."""
        assert job.result_path is not None
        sent = job.sent_ref is not None  # it went out before a restart: only `done` is left
        if result is None and not sent:
            result = await self.results.load(job.result_path)
            if result is None:
                await self._fail(job, RetouchError("the stored result was lost"))
                return
        await self.adapters.emit(JobEvent("delivering", job))
        local = self._local.get(job.id)
        if local is not None:
            local.uploading = True
        if result is not None and not sent:
            error = await deliver_with_retries(
                self.adapters.for_job(job),
                job,
                result,
                attempts=self.settings.jobs_delivery_attempts,
                sleep=self._sleep,
            )
            if error is not None:
                await self._fail(job, error)
                return
        done = await self.store.transition(
            job.id, "done", expect=_DELIVERING, expect_owner=self.replica_id
        )
        if not self.settings.compare_enabled:  # else kept for Compare, until swept
            await self.results.discard([job.result_path])
        self._drop(job.id)
        if done is not None:
            self._log_finished(done)
            await self.adapters.emit(JobEvent("done", done))

    async def _fail(self, job: Job, error: RetouchError) -> None:
        """Every failure is refunded (by the transition itself): a photo that could not be
        retouched costs nothing."""
        failed = await self.store.transition(
            job.id,
            "failed",
            expect=UNFINISHED_STATES,
            expect_owner=self.replica_id,
            error_code=error.code,
        )
        if failed is None:
            self._drop(job.id)
            return
        if failed.result_path:
            await self.results.discard([failed.result_path])
        self._drop(failed.id)
        self._log_finished(failed, f": {error.code} ({error})")
        await self.endings.tell(JobEvent("failed", failed, error=error))

    def inbox(self, platform: Platform) -> Inbox:
        """The durable inbox the adapter stores `platform`'s updates in (`core.inbox`)."""
        return Inbox(self.store, platform)

    def _log_finished(self, job: Job, detail: str = "") -> None:
        """The one INFO line a finished job leaves: id, outcome, platform, seconds since it was
        accepted; nothing about who sent it."""
        seconds = self._clock() - job.created_at
        log.info("job %s %s on %s in %.1f s%s", job.id, job.state, job.platform, seconds, detail)

    def _drop(self, job_id: str) -> None:
        """Forget a job here (settled, or no longer ours); no-op when already forgotten."""
        self._local.pop(job_id, None)

    async def _announce_positions(self) -> None:
        """Tell the jobs at the head of the queue their new place.

        Read back from the store: another replica may have cancelled a job still queued here.
        """
        for position, job_id in enumerate(self._queue.head(POSITION_UPDATES), start=1):
            job = await self.store.get_job(job_id)
            if job is not None and job.state == "queued":
                await self.adapters.emit(JobEvent("queued", job, position=position))

    # --- what the claim keeper asks (`core.claims.ClaimHolder`) ---------------------------

    def held_jobs(self) -> list[str]:
        return list(self._local)

    def holds(self, job_id: str) -> bool:
        return job_id in self._local

    def platforms(self) -> list[str]:
        return self.adapters.names()

    def room(self) -> int:
        return max(1, 4 * self.settings.max_concurrent_jobs - len(self._queue))

    async def resume(self, job: Job) -> None:
        """Continue a job this replica has just claimed, from the state it was left in."""
        if job.id in self._local:
            return
        local = self._local[job.id] = _Local(job.attempts)
        if job.attempts >= self.settings.jobs_max_attempts and job.state != "delivering":
            await self._fail(job, RetouchError("the job failed too many times"))
            return
        # A job cut off while running, or whose stored result is gone, is run again.
        rerun = job.state == "running" or (
            job.state == "delivering"
            and job.sent_ref is None
            and not await self.results.exists(job.result_path)
        )
        if rerun:
            requeued = await self.store.transition(
                job.id, "queued", expect=(job.state,), expect_owner=self.replica_id
            )
            if requeued is None:
                self._drop(job.id)
                return
            job = requeued
        log.info("resuming job %s (%s)", job.id, job.state)
        if job.state == "delivering":
            local.task = asyncio.create_task(self._redeliver(job))
        else:
            await self._queue.put(job.id)

    def lose(self, job_id: str, owner: str | None) -> None:
        """Another replica has taken the job over: stop it here without settling it."""
        local = self._local.get(job_id)
        if local is None:
            return
        log.warning("job %s was taken over by %s; dropping it here", job_id, owner)
        self._queue.discard(job_id)
        local.lost = True
        if local.task is not None:
            local.task.cancel()
        self._drop(job_id)

    async def _redeliver(self, job: Job) -> None:
        current_job.set(job.id)
        local = self._local.get(job.id)
        if local is not None:  # no worker to give back; an upload it can say it is not
            worker_slot.bind(worker_slot.Hold(_no_worker, functools.partial(_set_uploading, local)))
        try:
            await self._deliver(job)
        finally:
            local = self._local.get(job.id)
            if local is not None:
                local.task = None
