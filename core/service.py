"""`RetouchService`: the one entry point the chat adapters call.

It admits requests (allow-lists, per-user in-flight and burst limits, an atomic quota reservation),
runs them on a bounded worker pool, keeps each result on disk until the adapter has delivered it,
settles the reservation, and resumes unfinished jobs after a restart. It knows no chat library:
each platform plugs in through `PlatformHooks`.

Several services (replicas) may share one store. Each has a replica id (`REPLICA_ID`, else the
host name): a job it admits is born claimed by it and runs in its own pool; it moves a job only
while it holds the claim (`expect_owner`), heartbeats every job it holds, and gives back what is
left when it stops. Every heartbeat it also adopts jobs whose replica went silent for
`JOBS_STALE_AFTER_SECONDS` (re-run, or re-delivered from the stored result), exactly as a
restart resumes its own. With one replica every claim succeeds and nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
import uuid
from collections import OrderedDict, defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from core.backend import RetouchBackend
from core.errors import (
    AccessDeniedError,
    CancelledJobError,
    DeliveryError,
    InputGoneError,
    RateLimitedError,
    RetouchError,
    ShuttingDownError,
    TooManyInFlightError,
)
from core.formats import EXTENSIONS, sniff_format
from core.imaging import ImageLimits
from core.jobs import UNFINISHED_STATES, Job, JobState, NewJob, Platform
from core.logs import current_job
from core.pipeline import retouch_photo
from core.quota import QuotaPolicy, QuotaStatus
from core.settings import Settings
from core.store import JobStore, QuotaExceededError, Stats, UserSettings

log = logging.getLogger("retouch.service")

EventKind = Literal["queued", "running", "delivering", "done", "failed", "cancelled"]
UPLOAD_DRAIN_SECONDS = 30.0
"""How long shutdown waits, past the grace period, for uploads already under way."""
POSITION_UPDATES = 10
"""How many jobs at the head of the queue hear about their new position when it moves."""

_QUEUED: tuple[JobState, ...] = ("queued",)
_RUNNING: tuple[JobState, ...] = ("running",)
_DELIVERING: tuple[JobState, ...] = ("delivering",)
_WAITING: tuple[JobState, ...] = ("queued", "running")


@dataclass(frozen=True, slots=True)
class RetouchRequest:
    """One photo to retouch: who asked, where, from what, and how strongly."""

    platform: Platform
    user_id: str
    chat_id: str
    reply_target: dict[str, Any]
    """Where the adapter answers; opaque to the core, stored as JSON."""
    input_ref: dict[str, Any]
    """How the adapter fetches the input again after a restart (a file id, an attachment URL)."""
    fidelity: float | None = None
    """None: the user's saved default, else the configured default."""
    image: bytes | None = None
    """The input when the adapter already has it; otherwise fetched through the hooks."""
    is_group: bool = False


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A step of a job the adapter may show: queue position, progress, outcome."""

    kind: EventKind
    job: Job
    position: int | None = None
    error: RetouchError | None = None


class PlatformHooks(Protocol):
    """What an adapter supplies so the core can fetch inputs, deliver results and report."""

    async def fetch_input(self, job: Job) -> bytes:
        """The job's input from its `input_ref`; `InputGoneError` when it cannot be had."""
        ...

    async def deliver(self, job: Job, result: bytes) -> None:
        """Send the result to `job.reply_target`; raise `DeliveryError` (or anything) on failure."""
        ...

    async def on_event(self, event: JobEvent) -> None:
        """Show the job's progress; failures here are logged and never fail the job."""
        ...


@dataclass
class _Local:
    """What this process holds for a job besides its row: the input and the task running it.

    A job is in `_local` exactly while this replica holds it and counts it as in flight.
    """

    user: tuple[str, str]
    attempts: int = 0
    """Runs the job had before it was queued here (0 for a new one)."""
    image: bytes | None = None
    task: asyncio.Task[None] | None = None
    cancelled: bool = False
    lost: bool = False
    """Another replica took the job over (this one stalled past the stale limit)."""
    uploading: bool = False
    """The result is being handed to the chat: shutdown lets that finish."""


def default_replica_id() -> str:
    """The host name: unique per container or machine, and the same after a restart."""
    return socket.gethostname() or uuid.uuid4().hex


@dataclass
class _UserLoad:
    in_flight: int = 0
    recent: deque[float] = field(default_factory=deque)


Sleep = Callable[[float], Awaitable[None]]


class RetouchService:
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
        self.settings = settings
        self.store = store
        self.backend = backend
        self.policy = QuotaPolicy(
            settings.quota_per_user_per_day,
            settings.quota_per_chat_per_day,
            settings.admin_ids,
            settings.quota_timezone,
        )
        self.limits = ImageLimits.from_settings(settings)
        self.results_dir = settings.results_dir
        self._clock = clock
        self._sleep = sleep
        self._hooks: dict[str, PlatformHooks] = {}
        self._queue: OrderedDict[str, None] = OrderedDict()
        self._ready = asyncio.Condition()
        self._local: dict[str, _Local] = {}
        self._users: defaultdict[tuple[str, str], _UserLoad] = defaultdict(_UserLoad)
        self._workers: list[asyncio.Task[None]] = []
        self._idle = 0
        """Workers waiting for a job: that many queued jobs start without waiting."""
        self._keeper: asyncio.Task[None] | None = None
        self._accepting = False
        self._stopping = False
        self.on_rejected: Callable[[str, RetouchError], None] | None = None
        """Called with the platform and the error when `submit` turns a request away."""
        self.replica_id = settings.replica_id or default_replica_id()
        """This replica's name in the store's `owner` column."""
        self._stale_after = settings.jobs_stale_after_seconds

    # --- life cycle -----------------------------------------------------------------------

    def register(self, platform: Platform, hooks: PlatformHooks) -> None:
        """Plug in an adapter; its unfinished jobs are resumed by `start`."""
        self._hooks[platform] = hooks

    async def start(self) -> None:
        """Sweep stale files, resume unfinished jobs, then start the workers and admit requests."""
        self.results_dir.mkdir(parents=True, exist_ok=True)
        await self.sweep_results()
        await self._recover()
        self._workers = [
            asyncio.create_task(self._worker(), name=f"retouch-worker-{n}")
            for n in range(self.settings.max_concurrent_jobs)
        ]
        self._keeper = asyncio.create_task(self._keep_claims(), name="retouch-heartbeat")
        self._accepting = True

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop admitting, let running jobs finish for `grace` seconds, leave the rest queued.

        What is left is given back (unclaimed), for the next start or another replica.
        """
        self._accepting = False
        self._stopping = True
        grace = self.settings.jobs_shutdown_grace_seconds if grace is None else grace
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        running = [local.task for local in self._local.values() if local.task is not None]
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            # An upload cut off midway may still reach the chat, and would then be sent again
            # by whoever resumes the job: let uploads under way finish.
            uploading = [
                local.task
                for local in self._local.values()
                if local.uploading and local.task in pending
            ]
            if uploading:
                await asyncio.wait(uploading, timeout=UPLOAD_DRAIN_SECONDS)
                pending = {task for task in pending if not task.done()}
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
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
            return await self._admit(request)
        except RetouchError as exc:
            if self.on_rejected is not None:
                self.on_rejected(request.platform, exc)
            raise

    async def _admit(self, request: RetouchRequest) -> tuple[Job, int]:
        if not self._accepting:
            raise ShuttingDownError("The bot is restarting; please send the photo again shortly.")
        self._check_access(request)
        key = (request.platform, request.user_id)
        load = self._users[key]
        self._check_rate(request, load)
        fidelity = await self._fidelity_for(request)
        now = self._clock()
        user_limit, chat_limit = self.policy.limits_for(
            request.platform, request.user_id, request.chat_id, request.is_group
        )
        new = NewJob(
            platform=request.platform,
            user_id=request.user_id,
            chat_id=request.chat_id,
            reply_target=request.reply_target,
            input_ref=request.input_ref,
            fidelity=fidelity,
        )
        load.in_flight += 1  # before the await, so concurrent submits see it
        try:
            job = await self.store.reserve(
                new,
                day=self.policy.day_key(now),
                user_limit=user_limit,
                chat_limit=chat_limit,
                owner=self.replica_id,
            )
        except QuotaExceededError as exc:
            load.in_flight -= 1
            exc.params["resets_at"] = self.policy.next_reset(now)
            raise
        except BaseException:
            load.in_flight -= 1
            raise
        load.recent.append(now)
        self._local[job.id] = _Local(key, image=request.image)
        position = await self._enqueue(job.id)
        await self._emit(JobEvent("queued", job, position=position))
        return job, position

    def position(self, job_id: str) -> int | None:
        """The job's place in the queue (1 = next), or None when it is not waiting."""
        for index, queued in enumerate(self._queue, start=1):
            if queued == job_id:
                return index
        return None

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def running_count(self) -> int:
        return sum(1 for local in self._local.values() if local.task is not None)

    async def cancel(self, job_id: str, platform: str, user_id: str) -> bool:
        """Cancel a queued or running job of this user: refunded, and its result never delivered."""
        job = await self.store.get_job(job_id)
        if job is None or (job.platform, job.user_id) != (platform, user_id):
            return False
        cancelled = await self.store.transition(
            job_id, "cancelled", expect=_WAITING, error_code=CancelledJobError.code
        )
        if cancelled is None:
            return False
        self._queue.pop(job_id, None)
        local = self._local.get(job_id)
        if local is not None:
            local.cancelled = True
            if local.task is not None:
                local.task.cancel()
        await self.store.refund(job_id)
        self._finish(cancelled)
        await self._emit(JobEvent("cancelled", cancelled))
        return True

    # --- what the adapters ask ------------------------------------------------------------

    async def job_of(self, platform: str, job_id: str) -> Job | None:
        """The job `job_id` if it belongs to `platform` (a button's payload names it)."""
        job = await self.store.get_job(job_id)
        return job if job is not None and job.platform == platform else None

    async def unfinished_jobs_where(
        self, platform: str, reply_key: str, reply_value: object
    ) -> list[Job]:
        """The platform's unfinished jobs whose reply target has `reply_key == reply_value`.

        For example the jobs of one Discord interaction, which a Cancel button stops together.
        """
        return [
            job
            for job in await self.store.unfinished_jobs()
            if job.platform == platform and job.reply_target.get(reply_key) == reply_value
        ]

    async def quota_left(self, platform: str, user_id: str) -> int | None:
        """Jobs the user has left today, or None when no limit applies (no store read then)."""
        user_limit, _ = self.policy.limits_for(platform, user_id, "", False)
        if user_limit is None:
            return None
        return (await self.quota_status(platform, user_id)).left

    # --- per-user data --------------------------------------------------------------------

    async def quota_status(self, platform: str, user_id: str) -> QuotaStatus:
        now = self._clock()
        usage = await self.store.usage(platform, user_id, self.policy.day_key(now))
        return self.policy.status(usage, now, platform=platform, user_id=user_id)

    async def user_settings(self, platform: str, user_id: str) -> UserSettings:
        return await self.store.get_user_settings(platform, user_id)

    async def set_default_fidelity(
        self, platform: str, user_id: str, fidelity: float | None
    ) -> None:
        await self.store.set_default_fidelity(platform, user_id, fidelity)

    async def grant(self, platform: str, user_id: str, credits: int) -> int:
        return await self.store.grant(platform, user_id, credits)

    async def stats(self) -> Stats:
        return await self.store.stats(self.policy.day_key(self._clock()))

    def is_admin(self, platform: str, user_id: str) -> bool:
        """Checked on every admin command: `ADMIN_IDS` holds `platform:id`."""
        return self.policy.is_admin(platform, user_id)

    async def forget(self, platform: str, user_id: str) -> int:
        """Cancel the user's jobs, then delete their settings, history and files.

        Today's usage counter stays, so forgetting is not a quota reset. Returns jobs deleted.
        """
        for job in await self.store.unfinished_jobs():
            if (job.platform, job.user_id) == (platform, user_id):
                await self.cancel(job.id, platform, user_id)
        paths = await self.store.forget(platform, user_id, today=self.policy.day_key(self._clock()))
        await asyncio.to_thread(_unlink_all, [Path(p) for p in paths])
        return len(paths)

    async def sweep_results(self) -> int:
        """Delete stored results older than `JOBS_RESULT_MAX_AGE_HOURS` that no job still needs."""
        keep = {
            Path(job.result_path).name
            for job in await self.store.unfinished_jobs()
            if job.result_path
        }
        cutoff = self._clock() - self.settings.jobs_result_max_age_hours * 3600
        return await asyncio.to_thread(_sweep, self.results_dir, keep, cutoff)

    # --- admission helpers ----------------------------------------------------------------

    def _check_access(self, request: RetouchRequest) -> None:
        users = self.settings.access_allowed_users
        chats = self.settings.access_allowed_chats
        if self.is_admin(request.platform, request.user_id) or not (users or chats):
            return
        if f"{request.platform}:{request.user_id}" in users:
            return
        if f"{request.platform}:{request.chat_id}" in chats:
            return
        raise AccessDeniedError("This bot is private; ask its operator for access.")

    def _check_rate(self, request: RetouchRequest, load: _UserLoad) -> None:
        if self.is_admin(request.platform, request.user_id):
            return
        limit = self.settings.quota_max_in_flight_per_user
        if load.in_flight >= limit:
            raise TooManyInFlightError(
                f"You already have {load.in_flight} photos in progress; wait for them to finish.",
                limit=limit,
            )
        burst = self.settings.quota_burst_per_minute
        if not burst:
            return
        now = self._clock()
        while load.recent and load.recent[0] <= now - 60:
            load.recent.popleft()
        if len(load.recent) >= burst:
            retry_after = max(1, round(load.recent[0] + 60 - now))
            raise RateLimitedError(
                f"Too many photos in a minute; try again in {retry_after} s.",
                retry_after=retry_after,
                limit=burst,
            )

    async def _fidelity_for(self, request: RetouchRequest) -> float:
        if request.fidelity is not None:
            return request.fidelity
        saved = await self.store.get_user_settings(request.platform, request.user_id)
        if saved.default_fidelity is not None:
            return saved.default_fidelity
        return self.settings.retouch_default_fidelity

    # --- the worker pool ------------------------------------------------------------------

    async def _enqueue(self, job_id: str) -> int:
        async with self._ready:
            self._queue[job_id] = None
            self._ready.notify()
            return len(self._queue)

    async def _worker(self) -> None:
        while True:
            async with self._ready:
                self._idle += 1
                try:
                    await self._ready.wait_for(lambda: bool(self._queue) and not self._stopping)
                finally:
                    self._idle -= 1
                job_id, _ = self._queue.popitem(last=False)
            if len(self._queue) > self._idle:  # some jobs really wait for a worker
                await self._announce_positions()
            local = self._local.get(job_id)
            if local is None:
                continue  # settled (cancelled) or taken over while it waited
            task = local.task = asyncio.create_task(
                self._guarded(job_id, local), name=f"job-{job_id}"
            )
            try:
                # wait() rather than await: stopping the worker must not cancel the job itself.
                await asyncio.wait([task])
            finally:
                local.task = None
            if not task.cancelled() and task.exception() is not None:
                # The store failed under it. Dropped here, its claim goes stale and the job is
                # adopted again (by this replica or another) once the store answers.
                log.error("job %s stopped on an error", job_id, exc_info=task.exception())
                self._drop(job_id)

    async def _guarded(self, job_id: str, local: _Local) -> None:
        """Run one job; a cancel by its requester or a shutdown past the deadline ends it."""
        current_job.set(job_id)  # this task's log lines carry the job id
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
        await self._emit(JobEvent("running", job))
        try:
            image = local.image or await self._hooks_for(job).fetch_input(job)
            local.image = None  # the input is not kept once the backend has it
            result = await retouch_photo(self.backend, image, job.fidelity, self.limits)
        except RetouchError as exc:
            await self._fail(job, exc)
            return
        except Exception as exc:
            log.exception("job %s failed unexpectedly", job.id)
            await self._fail(job, RetouchError(f"internal error ({type(exc).__name__})"))
            return
        path = await asyncio.to_thread(self._store_result, job, result)
        delivering = await self.store.transition(
            job_id,
            "delivering",
            expect=_RUNNING,
            expect_owner=self.replica_id,
            result_path=str(path),
        )
        if delivering is None:  # cancelled (or taken over) while the backend worked
            await asyncio.to_thread(_unlink_all, [path])
            self._drop(job_id)
            return
        await self._deliver(delivering, result)

    async def _deliver(self, job: Job, result: bytes | None = None) -> None:
        """Hand the result to the adapter (from memory, or from disk when resuming), then settle."""
        assert job.result_path is not None
        path = Path(job.result_path)
        if result is None:
            try:
                result = await asyncio.to_thread(path.read_bytes)
            except OSError:
                await self._fail(job, RetouchError("the stored result was lost"))
                return
        await self._emit(JobEvent("delivering", job))
        local = self._local.get(job.id)
        if local is not None:
            local.uploading = True
        hooks = self._hooks_for(job)
        attempts = self.settings.jobs_delivery_attempts
        for attempt in range(1, attempts + 1):
            try:
                await hooks.deliver(job, result)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                permanent = isinstance(exc, DeliveryError) and exc.permanent
                log.warning(
                    "job %s: delivery attempt %d/%d failed: %s", job.id, attempt, attempts, exc
                )
                if permanent or attempt == attempts:
                    error = exc if isinstance(exc, RetouchError) else DeliveryError(str(exc))
                    await self._fail(job, error)
                    return
                await self._sleep(min(30.0, 2.0 ** (attempt - 1)))
        done = await self.store.transition(
            job.id, "done", expect=_DELIVERING, expect_owner=self.replica_id
        )
        await asyncio.to_thread(_unlink_all, [path])
        self._finish(job)
        if done is not None:
            await self._emit(JobEvent("done", done))

    async def _fail(self, job: Job, error: RetouchError) -> None:
        """Every failure is refunded: a photo that could not be retouched costs nothing."""
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
        await self.store.refund(job.id)
        if failed.result_path:
            await asyncio.to_thread(_unlink_all, [Path(failed.result_path)])
        self._finish(failed)
        log.info("job %s failed: %s (%s)", job.id, error.code, error)
        await self._emit(JobEvent("failed", failed, error=error))

    def _finish(self, job: Job) -> None:
        self._drop(job.id)

    def _drop(self, job_id: str) -> None:
        """Forget a job here (settled, or no longer ours); no-op when already forgotten."""
        local = self._local.pop(job_id, None)
        if local is None:
            return
        load = self._users.get(local.user)
        if load is not None and load.in_flight > 0:
            load.in_flight -= 1

    def _store_result(self, job: Job, result: bytes) -> Path:
        fmt = sniff_format(result) or "jpeg"
        path = self.results_dir / f"{job.id}{EXTENSIONS[fmt]}"
        partial = path.with_suffix(".part")
        partial.write_bytes(result)
        partial.replace(path)
        return path

    def _hooks_for(self, job: Job) -> PlatformHooks:
        hooks = self._hooks.get(job.platform)
        if hooks is None:
            raise InputGoneError(f"no {job.platform} adapter is running")
        return hooks

    async def _emit(self, event: JobEvent) -> None:
        hooks = self._hooks.get(event.job.platform)
        if hooks is None:
            return
        try:
            await hooks.on_event(event)
        except Exception:
            log.exception("job %s: showing %s failed", event.job.id, event.kind)

    async def _announce_positions(self) -> None:
        """Tell the jobs at the head of the queue their new place.

        Read back from the store: another replica may have cancelled a job still queued here.
        """
        head = list(itertools.islice(self._queue, POSITION_UPDATES))
        for position, job_id in enumerate(head, start=1):
            job = await self.store.get_job(job_id)
            if job is not None and job.state == "queued":
                await self._emit(JobEvent("queued", job, position=position))

    # --- recovery and adoption ------------------------------------------------------------

    async def _recover(self) -> None:
        """Resume what a previous run left: re-run queued/running jobs, re-deliver the rest.

        That is every unfinished job of a registered platform that no live replica holds: this
        replica's own (a restart under the same id), unclaimed ones, and those of replicas
        silent for `JOBS_STALE_AFTER_SECONDS`.
        """
        for job in await self.store.claim_stale(
            self.replica_id,
            stale_after=self._stale_after,
            platforms=list(self._hooks),
            include_own=True,
            limit=1_000_000,
        ):
            await self._resume(job)

    async def _adopt(self) -> int:
        """Take over jobs whose replica went silent (or gave them back); how many."""
        limit = max(1, 4 * self.settings.max_concurrent_jobs - len(self._queue))
        adopted = await self.store.claim_stale(
            self.replica_id, stale_after=self._stale_after, platforms=list(self._hooks), limit=limit
        )
        for job in adopted:
            log.info("adopting job %s (%s) from %s", job.id, job.state, job.owner or "nobody")
            await self._resume(job)
        return len(adopted)

    async def _resume(self, job: Job) -> None:
        """Continue a job this replica has just claimed, from the state it was left in."""
        if job.id in self._local:
            return
        local = self._local[job.id] = _Local((job.platform, job.user_id), job.attempts)
        self._users[local.user].in_flight += 1
        if job.attempts >= self.settings.jobs_max_attempts and job.state != "delivering":
            await self._fail(job, RetouchError("the job failed too many times"))
            return
        # A job cut off while running, or whose stored result is gone, is run again.
        rerun = job.state == "running" or (
            job.state == "delivering"
            and not (
                job.result_path is not None
                and await asyncio.to_thread(Path(job.result_path).exists)
            )
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
            await self._enqueue(job.id)

    async def _redeliver(self, job: Job) -> None:
        current_job.set(job.id)
        try:
            await self._deliver(job)
        finally:
            local = self._local.get(job.id)
            if local is not None:
                local.task = None

    async def _keep_claims(self) -> None:
        """Every `JOBS_HEARTBEAT_SECONDS`: heartbeat the jobs held here, then adopt orphans."""
        while True:
            await asyncio.sleep(self.settings.jobs_heartbeat_seconds)
            try:
                await self._heartbeat()
                await self._adopt()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "heartbeat failed; retrying in %gs", self.settings.jobs_heartbeat_seconds
                )

    async def _heartbeat(self) -> None:
        ids = list(self._local)
        if not ids:
            return
        held = set(await self.store.heartbeat(self.replica_id, ids))
        for job_id in ids:
            if job_id in held or job_id not in self._local:
                continue
            job = await self.store.get_job(job_id)
            if job is None or job.owner == self.replica_id:
                continue  # settling right now; its own task finishes the bookkeeping
            local = self._local.get(job_id)
            if local is None:
                continue
            log.warning("job %s was taken over by %s; dropping it here", job_id, job.owner)
            self._queue.pop(job_id, None)
            local.lost = True
            if local.task is not None:
                local.task.cancel()
            self._drop(job_id)


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _sweep(folder: Path, keep: set[str], cutoff: float) -> int:
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.iterdir():
        if path.name in keep or not path.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed
