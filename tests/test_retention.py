"""The retention sweep: results kept for Compare until they age out, and the platform
references of old jobs erased after `JOBS_RETENTION_DAYS` (at start, and every hour after)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.retention import RetentionSweeper
from core.service import RetouchService
from core.store.sqlite import SqliteStore
from tests.service_fakes import EchoBackend, RecordingHooks, no_sleep, request_for, service_settings

NOW = 1_800_000_000.0
DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Hooks(RecordingHooks):
    async def deliver_one(self, service: RetouchService, user: str, image: bytes) -> str:
        """Submit a photo of `user` and wait until it is delivered; its job id."""
        job, _ = await service.submit(request_for(user, image))
        await self.wait_for("done", len(self.delivered) + 1)
        return job.id


async def run_service(
    tmp_path: Path, clock: Clock, **overrides: Any
) -> tuple[RetouchService, Hooks]:
    settings = service_settings(tmp_path, **overrides)
    store = await SqliteStore.open(settings.database_path, clock=clock)
    service = RetouchService(settings, store, EchoBackend(), clock=clock, sleep=no_sleep)
    hooks = Hooks()
    service.register("telegram", hooks)
    await service.start()
    return service, hooks


async def stop(service: RetouchService) -> None:
    await service.shutdown(grace=0)
    await service.store.close()


async def test_old_jobs_lose_their_platform_references_at_start(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    clock = Clock()
    service, hooks = await run_service(tmp_path, clock)
    old = await hooks.deliver_one(service, "1", portrait_bytes)
    clock.now += 29 * DAY
    recent = await hooks.deliver_one(service, "2", portrait_bytes)
    await stop(service)

    clock.now += 2 * DAY  # the first job is 31 days old, the second 2
    service, hooks = await run_service(tmp_path, clock)
    try:
        erased = await service.store.get_job(old)
        kept = await service.store.get_job(recent)
        assert erased is not None and erased.erased and erased.state == "done"
        assert kept is not None and not kept.erased
        assert kept.input_ref == {"file_id": "file-of-2"}
        assert (await service.retention.sweep()).erased_jobs == 0  # nothing twice
    finally:
        await stop(service)


async def test_results_are_kept_for_compare_until_they_age_out(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    clock = Clock()
    service, hooks = await run_service(tmp_path, clock, jobs_result_max_age_hours=24)
    try:
        job_id = await hooks.deliver_one(service, "1", portrait_bytes)
        job = await service.store.get_job(job_id)
        assert job is not None and job.result_path is not None
        assert await service.results.exists(job.result_path)
        # A day later (by the file's clock) the sweep removes it.
        os.utime(job.result_path, (NOW - 25 * 3600, NOW - 25 * 3600))
        sweeper = RetentionSweeper(
            service.store,
            service.results,
            result_max_age_hours=service.settings.jobs_result_max_age_hours,
            retention_days=30,
            clock=clock,
        )
        assert (await sweeper.sweep()).results == 1
        assert not await service.results.exists(job.result_path)
    finally:
        await stop(service)


async def test_without_compare_results_go_once_delivered(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    service, hooks = await run_service(tmp_path, Clock(), compare_enabled=False)
    try:
        await hooks.deliver_one(service, "1", portrait_bytes)
        assert list(service.results_dir.iterdir()) == []
    finally:
        await stop(service)


async def test_retention_zero_keeps_references(tmp_path: Path, portrait_bytes: bytes) -> None:
    clock = Clock()
    service, hooks = await run_service(tmp_path, clock, jobs_retention_days=0)
    try:
        job_id = await hooks.deliver_one(service, "1", portrait_bytes)
        clock.now += 1000 * DAY
        assert (await service.retention.sweep()).erased_jobs == 0
        job = await service.store.get_job(job_id)
        assert job is not None and not job.erased
    finally:
        await stop(service)
