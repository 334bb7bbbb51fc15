"""RetouchService: admission, the worker pool, settlement, cancel, forget, shutdown and recovery.

The tests built on `make_service` run on SQLite and on PostgreSQL; the replica tests at the end
run two services on one store, as two processes would.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core import worker_slot
from core.errors import (
    AccessDeniedError,
    FidelityError,
    RateLimitedError,
    RetouchError,
    ShuttingDownError,
    TooManyInFlightError,
)
from core.inbox import Inbox, take_current_update
from core.jobs import Job, JobState, NewJob
from core.quota import day_key
from core.service import RetouchService
from core.settings import Settings
from core.store import JobStore, QuotaExceededError
from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore
from tests.pg import PgServer
from tests.service_fakes import (
    EchoBackend,
    FailingBackend,
    RecordingHooks,
    no_sleep,
    request_for,
    service_settings,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


ServiceFactory = Callable[..., Any]


@pytest.fixture(params=["sqlite", "postgresql"])
async def make_service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ServiceFactory]:
    """Builds started services over one store (SQLite file or PostgreSQL database); everything
    is shut down at the end. Each service has a store of its own, like a process would."""
    made: list[tuple[RetouchService, JobStore]] = []
    server: PgServer | None = None
    url = ""
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        url = await server.create_database()

    async def make(
        backend: Any = None,
        hooks: RecordingHooks | None = None,
        clock: Callable[[], float] | None = None,
        **overrides: Any,
    ) -> tuple[RetouchService, RecordingHooks]:
        settings = service_settings(tmp_path, database_url=url, **overrides)
        store = await open_store_with_clock(settings, clock or Clock())
        service = RetouchService(
            settings, store, backend or EchoBackend(), clock=clock or Clock(), sleep=no_sleep
        )
        hooks = hooks or RecordingHooks()
        service.register("telegram", hooks)
        await service.start()
        made.append((service, store))
        return service, hooks

    yield make
    for service, store in made:
        await service.shutdown(grace=0)
        await store.close()
    if server is not None:
        await server.drop_database(url)


async def open_store_with_clock(settings: Settings, clock: Callable[[], float]) -> JobStore:
    url = settings.database_url.get_secret_value()
    if url:
        return await PostgresStore.open(url, clock=clock)
    return await SqliteStore.open(settings.database_path, clock=clock)


async def used(service: RetouchService, user: str) -> int:
    return (await service.quota_status("telegram", user)).used


async def test_a_job_is_delivered_and_counted(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    service, hooks = await make_service()
    job, position = await service.submit(request_for("1", portrait_bytes, fidelity=0.3))
    assert position == 1
    await hooks.wait_for("done")
    assert [j.id for j, _ in hooks.delivered] == [job.id]
    assert hooks.kinds(job.id) == ["queued", "running", "delivering", "done"]
    stored = await service.store.get_job(job.id)
    assert stored is not None and stored.state == "done" and stored.fidelity == 0.3
    assert await used(service, "1") == 1
    # The result stays for the Compare button, until the retention sweep removes it.
    assert stored.result_path is not None and await service.results.exists(stored.result_path)


async def test_saved_default_then_configured_default(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    service, hooks = await make_service(retouch_default_fidelity=0.2)
    first, _ = await service.submit(request_for("1", portrait_bytes))
    await service.set_default_fidelity("telegram", "1", 0.6)
    second, _ = await service.submit(request_for("1", portrait_bytes))
    assert (first.fidelity, second.fidelity) == (0.2, 0.6)
    await hooks.wait_for("done", 2)


@pytest.mark.parametrize("fidelity", [math.nan, math.inf, 1.5, True])
async def test_a_fidelity_outside_the_rule_is_refused_at_the_door(
    make_service: ServiceFactory, portrait_bytes: bytes, fidelity: Any
) -> None:
    """`core.fidelity`'s rule at admission: nothing is charged, queued or saved as a default."""
    rejected: list[str] = []
    service, hooks = await make_service()
    service.on_rejected = lambda platform, error: rejected.append(error.code)
    with pytest.raises(FidelityError):
        await service.submit(request_for("1", portrait_bytes, fidelity=fidelity))
    with pytest.raises(FidelityError):
        await service.set_default_fidelity("telegram", "1", fidelity)
    assert rejected == ["bad_fidelity"]
    assert (await used(service, "1"), service.queue_depth, hooks.events) == (0, 0, [])
    assert (await service.user_settings("telegram", "1")).default_fidelity is None


async def test_backend_failure_is_refunded(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    service, hooks = await make_service(backend=FailingBackend())
    job, _ = await service.submit(request_for("1", portrait_bytes))
    await hooks.wait_for("failed")
    event = hooks.events[-1]
    assert event.error is not None and event.error.code == "backend"
    assert hooks.delivered == []
    assert await used(service, "1") == 0
    stored = await service.store.get_job(job.id)
    assert stored is not None and stored.state == "failed" and stored.paid is None


async def test_bad_image_is_answered_and_costs_nothing(
    make_service: ServiceFactory, no_face_bytes: bytes
) -> None:
    from core.local_backend import LocalBackend

    backend = LocalBackend(threads=1)
    service, hooks = await make_service(backend=backend)
    await service.submit(request_for("1", b"not an image"))
    await service.submit(request_for("1", no_face_bytes))
    await hooks.wait_for("failed", 2)
    codes = sorted(e.error.code for e in hooks.events if e.error is not None)
    assert codes == ["no_face", "not_an_image"]
    assert await used(service, "1") == 0
    await backend.aclose()


async def test_delivery_failing_once_is_retried_then_committed(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    service, hooks = await make_service(hooks=RecordingHooks(fail_deliveries=1))
    await service.submit(request_for("1", portrait_bytes))
    await hooks.wait_for("done")
    assert hooks.delivery_attempts == 2 and len(hooks.delivered) == 1
    assert await used(service, "1") == 1


async def test_delivery_failing_for_good_is_refunded(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    hooks = RecordingHooks(fail_deliveries=1, permanent_failure=True)
    service, hooks = await make_service(hooks=hooks)
    await service.submit(request_for("1", portrait_bytes))
    await hooks.wait_for("failed")
    assert hooks.delivery_attempts == 1
    assert await used(service, "1") == 0
    assert list(service.results_dir.iterdir()) == []


async def test_quota_exhausted_is_rejected_with_reset_time(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    service, hooks = await make_service(quota_per_user_per_day=2)
    for _ in range(2):
        await service.submit(request_for("1", portrait_bytes))
    with pytest.raises(QuotaExceededError) as caught:
        await service.submit(request_for("1", portrait_bytes))
    assert caught.value.params["resets_at"] == NOW - NOW % 86400 + 86400
    await hooks.wait_for("done", 2)
    status = await service.quota_status("telegram", "1")
    assert (status.used, status.left, status.limit) == (2, 0, 2)
    # Another user is not affected, and a grant lets this one go on.
    await service.submit(request_for("2", portrait_bytes))
    assert await service.grant("telegram", "1", 1) == 1
    await service.submit(request_for("1", portrait_bytes))
    await hooks.wait_for("done", 4)
    assert (await service.quota_status("telegram", "1")).credits == 0


async def test_quota_resets_at_the_day_boundary(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    clock = Clock(NOW)
    service, hooks = await make_service(clock=clock, quota_per_user_per_day=1)
    await service.submit(request_for("1", portrait_bytes))
    with pytest.raises(QuotaExceededError):
        await service.submit(request_for("1", portrait_bytes))
    clock.now = NOW - NOW % 86400 + 86400  # the next UTC midnight
    await service.submit(request_for("1", portrait_bytes))
    await hooks.wait_for("done", 2)
    assert await used(service, "1") == 1


async def test_admission_limits(make_service: ServiceFactory, portrait_bytes: bytes) -> None:
    clock = Clock()
    backend = EchoBackend(gated=True)
    service, hooks = await make_service(
        backend=backend,
        clock=clock,
        quota_max_in_flight_per_user=2,
        quota_burst_per_minute=3,
        admin_ids="telegram:99",
    )
    await service.submit(request_for("1", portrait_bytes))
    await service.submit(request_for("1", portrait_bytes))
    with pytest.raises(TooManyInFlightError):
        await service.submit(request_for("1", portrait_bytes))
    backend.gate.set()
    await hooks.wait_for("done", 2)
    await service.submit(request_for("1", portrait_bytes))
    with pytest.raises(RateLimitedError) as caught:  # 3 in the last minute
        await service.submit(request_for("1", portrait_bytes))
    assert caught.value.params["retry_after"] == 60
    clock.now += 61
    await service.submit(request_for("1", portrait_bytes))
    for _ in range(5):  # admins are not limited
        await service.submit(request_for("99", portrait_bytes))
    await hooks.wait_for("done", 9)
    assert await used(service, "1") == 4


async def test_allow_lists(make_service: ServiceFactory, portrait_bytes: bytes) -> None:
    service, hooks = await make_service(
        access_allowed_users="telegram:1", access_allowed_chats="telegram:-100"
    )
    await service.submit(request_for("1", portrait_bytes))
    await service.submit(request_for("2", portrait_bytes, chat="-100", is_group=True))
    with pytest.raises(AccessDeniedError):
        await service.submit(request_for("3", portrait_bytes))
    await hooks.wait_for("done", 2)


async def test_jobs_run_concurrently_up_to_the_limit(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    backend = EchoBackend(gated=True)
    service, hooks = await make_service(backend=backend, max_concurrent_jobs=20)
    submitted = await asyncio.gather(
        *(service.submit(request_for(str(user), portrait_bytes)) for user in range(20))
    )
    jobs = [job for job, _ in submitted]
    await backend.wait_started(20)  # all twenty are in the backend at once
    assert service.running_count == 20
    backend.gate.set()
    await hooks.wait_for("done", 20)
    # A free worker took each job at once: no queue position was worth announcing.
    assert all(hooks.kinds(job.id).count("queued") == 1 for job in jobs)


async def test_queue_positions_and_one_slow_user_does_not_block(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    backend = EchoBackend(gated=True)
    service, hooks = await make_service(backend=backend, max_concurrent_jobs=2)
    for user in ("a", "b"):
        await service.submit(request_for(user, portrait_bytes))
    await backend.wait_started(2)
    positions = [(await service.submit(request_for(u, portrait_bytes)))[1] for u in "cde"]
    assert positions == [1, 2, 3]
    assert service.queue_depth == 3 and service.running_count == 2
    assert service.position(hooks.events[-1].job.id) == 3
    backend.gate.set()
    await hooks.wait_for("done", 5)
    # The waiting jobs heard their new place when the queue moved.
    last = hooks.events[-1].job.id
    heard = [e.position for e in hooks.events if e.kind == "queued" and e.job.id != last]
    assert 1 in heard


async def test_cancel_while_queued(make_service: ServiceFactory, portrait_bytes: bytes) -> None:
    backend = EchoBackend(gated=True)
    service, hooks = await make_service(backend=backend, max_concurrent_jobs=1)
    await service.submit(request_for("1", portrait_bytes))
    await backend.wait_started(1)
    waiting, position = await service.submit(request_for("2", portrait_bytes))
    assert position == 1  # next in line
    assert not await service.cancel(waiting.id, "telegram", "1")  # not the requester's job
    assert await service.cancel(waiting.id, "telegram", "2")
    assert not await service.cancel(waiting.id, "telegram", "2")  # only once
    backend.gate.set()
    await hooks.wait_for("done")
    assert [j.user_id for j, _ in hooks.delivered] == ["1"]
    assert await used(service, "2") == 0
    assert hooks.kinds(waiting.id) == ["queued", "cancelled"]
    assert backend.started == 1


async def test_cancel_while_running_discards_the_result(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    backend = EchoBackend(gated=True)
    service, hooks = await make_service(backend=backend)
    job, _ = await service.submit(request_for("1", portrait_bytes))
    await backend.wait_started(1)
    assert await service.cancel(job.id, "telegram", "1")
    backend.gate.set()
    await hooks.wait_for("cancelled")
    # The worker is free again and serves the next job.
    await service.submit(request_for("2", portrait_bytes))
    await hooks.wait_for("done")
    assert [j.user_id for j, _ in hooks.delivered] == ["2"]
    assert await used(service, "1") == 0
    stored = await service.store.get_job(job.id)
    assert stored is not None and stored.state == "cancelled"


async def test_forget_leaves_only_todays_counter(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    service, hooks = await make_service()
    await service.set_default_fidelity("telegram", "1", 0.4)
    for _ in range(2):
        await service.submit(request_for("1", portrait_bytes))
    await service.submit(request_for("2", portrait_bytes))
    await hooks.wait_for("done", 3)
    assert await service.forget("telegram", "1") == 2
    assert await service.store.recent_jobs(user=("telegram", "1")) == []
    assert (await service.user_settings("telegram", "1")).default_fidelity is None
    assert await used(service, "1") == 2  # forgetting is not a quota reset
    [kept] = await service.store.recent_jobs(user=("telegram", "2"))
    # Only the other user's result is left (kept for Compare).
    assert [p.name for p in service.results_dir.iterdir()] == [Path(str(kept.result_path)).name]


async def test_shutdown_lets_running_jobs_finish_and_keeps_the_queue(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    settings = service_settings(tmp_path, max_concurrent_jobs=1)
    store = await SqliteStore.open(settings.database_path)
    backend = EchoBackend(gated=True)
    service = RetouchService(settings, store, backend, sleep=no_sleep)
    hooks = RecordingHooks(inputs={"file-of-2": portrait_bytes})
    service.register("telegram", hooks)
    await service.start()
    running, _ = await service.submit(request_for("1", portrait_bytes))
    waiting, _ = await service.submit(request_for("2", portrait_bytes))
    await backend.wait_started(1)
    stopping = asyncio.create_task(service.shutdown(grace=30))
    await asyncio.sleep(0)
    with pytest.raises(ShuttingDownError):
        await service.submit(request_for("3", portrait_bytes))
    backend.gate.set()
    await stopping
    assert [j.id for j, _ in hooks.delivered] == [running.id]
    left = await store.get_job(waiting.id)
    assert left is not None and left.state == "queued"

    # The next start resumes it, fetching the input again through the adapter.
    service = RetouchService(settings, store, EchoBackend(), sleep=no_sleep)
    service.register("telegram", hooks)
    await service.start()
    await hooks.wait_for("done", 2)
    assert [j.id for j, _ in hooks.delivered] == [running.id, waiting.id]
    assert await used(service, "2") == 1
    await service.shutdown()
    await store.close()


async def test_shutdown_deadline_requeues_a_running_job(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    settings = service_settings(tmp_path)
    store = await SqliteStore.open(settings.database_path)
    backend = EchoBackend(gated=True)
    service = RetouchService(settings, store, backend, sleep=no_sleep)
    service.register("telegram", RecordingHooks())
    await service.start()
    job, _ = await service.submit(request_for("1", portrait_bytes))
    await backend.wait_started(1)
    await service.shutdown(grace=0)
    stored = await store.get_job(job.id)
    assert stored is not None and stored.state == "queued" and stored.paid == "daily"
    await store.close()


class SlowUploadHooks(RecordingHooks):
    """An adapter whose upload is under way until the test lets it finish."""

    def __init__(self) -> None:
        super().__init__()
        self.uploading = asyncio.Event()
        self.finish = asyncio.Event()

    async def deliver(self, job: Job, result: bytes) -> None:
        self.uploading.set()
        await self.finish.wait()
        await super().deliver(job, result)


async def test_shutdown_lets_an_upload_under_way_finish(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    settings = service_settings(tmp_path)
    store = await SqliteStore.open(settings.database_path)
    service = RetouchService(settings, store, EchoBackend(), sleep=no_sleep)
    hooks = SlowUploadHooks()
    service.register("telegram", hooks)
    await service.start()
    job, _ = await service.submit(request_for("1", portrait_bytes))
    await asyncio.wait_for(hooks.uploading.wait(), 10)
    stopping = asyncio.create_task(service.shutdown(grace=0))
    await asyncio.sleep(0)
    assert not stopping.done()  # waiting for the upload, not cancelling it
    hooks.finish.set()
    await asyncio.wait_for(stopping, 10)
    stored = await store.get_job(job.id)
    assert stored is not None and stored.state == "done"
    assert len(hooks.delivered) == 1
    await store.close()


async def test_recovery_redelivers_a_stored_result_and_fails_lost_inputs(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    settings = service_settings(tmp_path)
    store = await SqliteStore.open(settings.database_path, clock=Clock())
    # What a crash leaves: one job with its result stored, one whose input is gone.
    stored = await store.reserve(
        request_as_new_job("1"), day=day_key(NOW), user_limit=5, chat_limit=None
    )
    queued: tuple[JobState, ...] = ("queued",)
    running: tuple[JobState, ...] = ("running",)
    await store.transition(stored.id, "running", expect=queued, attempts=1)
    settings.results_dir.mkdir(parents=True)
    result = settings.results_dir / f"{stored.id}.jpg"
    result.write_bytes(portrait_bytes)
    await store.transition(stored.id, "delivering", expect=running, result_path=str(result))
    orphan = await store.reserve(
        request_as_new_job("2"), day=day_key(NOW), user_limit=5, chat_limit=None
    )

    hooks = RecordingHooks()
    service = RetouchService(settings, store, EchoBackend(), clock=Clock(), sleep=no_sleep)
    service.register("telegram", hooks)
    await service.start()
    await hooks.wait_for("done")
    await hooks.wait_for("failed")
    assert [(j.id, data) for j, data in hooks.delivered] == [(stored.id, portrait_bytes)]
    failed = [e for e in hooks.events if e.kind == "failed"]
    assert failed[0].job.id == orphan.id and failed[0].error is not None
    assert failed[0].error.code == "input_gone"
    assert await used(service, "1") == 1 and await used(service, "2") == 0
    assert result.exists()  # kept for Compare, until the retention sweep
    await service.shutdown()
    await store.close()


async def test_a_job_cut_off_while_running_runs_again_until_its_attempts_are_spent(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    """A photo that crashes the bot each time it runs must not crash it forever."""
    settings = service_settings(tmp_path, jobs_max_attempts=2)
    store = await SqliteStore.open(settings.database_path, clock=Clock())
    queued: tuple[JobState, ...] = ("queued",)
    jobs = []
    for user, attempts in (("1", 1), ("2", 2)):  # what two crashes mid-run leave behind
        job = await store.reserve(
            request_as_new_job(user), day=day_key(NOW), user_limit=5, chat_limit=None
        )
        await store.transition(job.id, "running", expect=queued, attempts=attempts)
        jobs.append(job)

    hooks = RecordingHooks(inputs={"file-of-1": portrait_bytes, "file-of-2": portrait_bytes})
    service = RetouchService(settings, store, EchoBackend(), clock=Clock(), sleep=no_sleep)
    service.register("telegram", hooks)
    await service.start()
    await hooks.wait_for("done")
    await hooks.wait_for("failed")
    again, spent = [await store.get_job(job.id) for job in jobs]
    assert again is not None and (again.state, again.attempts) == ("done", 2)
    assert spent is not None and (spent.state, spent.attempts) == ("failed", 2)
    assert [j.id for j, _ in hooks.delivered] == [jobs[0].id]
    assert await used(service, "1") == 1 and await used(service, "2") == 0  # refunded
    await service.shutdown()
    await store.close()


def request_as_new_job(user: str) -> NewJob:
    return NewJob(
        platform="telegram",
        user_id=user,
        chat_id=user,
        reply_target={"chat_id": user},
        input_ref={"file_id": f"file-of-{user}"},
        fidelity=0.1,
    )


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from core.service import RetouchService
    from core.store.sqlite import SqliteStore
    from tests.service_fakes import EchoBackend, RecordingHooks, request_for, service_settings

    async def main():
        settings = service_settings(Path(sys.argv[1]))
        store = await SqliteStore.open(settings.database_path)
        backend = EchoBackend(gated=True)  # never released: the job is mid-flight when killed
        service = RetouchService(settings, store, backend)
        service.register("telegram", RecordingHooks())
        await service.start()
        job, _ = await service.submit(request_for("7", Path(sys.argv[2]).read_bytes()))
        await backend.wait_started(1)
        print(job.id, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def test_sigkill_mid_job_is_resumed_and_delivered_once(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(portrait_bytes)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(tmp_path),
        str(photo),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    async with asyncio.timeout(60):
        job_id = (await child.stdout.readline()).decode().strip()
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL and job_id

    settings = service_settings(tmp_path)
    store = await SqliteStore.open(settings.database_path)
    left = await store.get_job(job_id)
    assert left is not None and left.state == "running"
    hooks = RecordingHooks(inputs={"file-of-7": portrait_bytes})
    service = RetouchService(settings, store, EchoBackend(), sleep=no_sleep)
    service.register("telegram", hooks)
    await service.start()
    await hooks.wait_for("done")
    assert [j.id for j, _ in hooks.delivered] == [job_id]
    assert await used(service, "7") == 1
    await service.shutdown()
    # A second restart finds nothing left to do.
    service = RetouchService(settings, store, EchoBackend(), sleep=no_sleep)
    service.register("telegram", hooks)
    await service.start()
    assert await store.unfinished_jobs() == []
    await service.shutdown()
    assert len(hooks.delivered) == 1
    await store.close()


async def test_old_results_are_swept(make_service: ServiceFactory, tmp_path: Path) -> None:
    service, _ = await make_service()
    stale = service.results_dir / "stale.jpg"
    fresh = service.results_dir / "fresh.jpg"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (NOW - 2 * 86400, NOW - 2 * 86400))
    os.utime(fresh, (NOW - 60, NOW - 60))
    assert await service.retention.sweep_results() == 1
    assert sorted(p.name for p in service.results_dir.iterdir()) == ["fresh.jpg"]


# --- replicas: several services on one store ---------------------------------------------

FAST_CLAIMS = {"jobs_heartbeat_seconds": 0.05, "jobs_stale_after_seconds": 0.3}
MANUAL_CLAIMS = {"jobs_heartbeat_seconds": 1000, "jobs_stale_after_seconds": 3000}
"""Heartbeats far apart in real time: the tests beat and adopt by hand, on a clock they move."""


async def test_a_replica_never_takes_a_live_replicas_jobs(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    clock = Clock()
    backend = EchoBackend(gated=True)
    a, a_hooks = await make_service(
        backend=backend, clock=clock, replica_id="a", max_concurrent_jobs=1, **MANUAL_CLAIMS
    )
    b, b_hooks = await make_service(clock=clock, replica_id="b", **MANUAL_CLAIMS)
    jobs = [(await a.submit(request_for(str(u), portrait_bytes)))[0] for u in range(4)]
    await backend.wait_started(1)  # one in a's backend, three in a's queue
    for _ in range(3):
        clock.now += 2999
        await a.claims.heartbeat()
        assert await b.claims.adopt() == 0  # a's claims are fresh
    assert (b.running_count, b.queue_depth, b_hooks.events) == (0, 0, [])
    backend.gate.set()
    await a_hooks.wait_for("done", 4)
    assert [j.id for j, _ in a_hooks.delivered] == [j.id for j in jobs]
    assert all(j.owner == "a" for j in jobs)


async def test_a_job_cancelled_through_another_replica_is_neither_announced_nor_run(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    backend = EchoBackend(gated=True)
    a, a_hooks = await make_service(
        backend=backend, replica_id="a", max_concurrent_jobs=1, **MANUAL_CLAIMS
    )
    b, b_hooks = await make_service(replica_id="b", **MANUAL_CLAIMS)
    first, second, third = [(await a.submit(request_for(u, portrait_bytes)))[0] for u in "123"]
    await backend.wait_started(1)  # "1" runs on a; "2" and "3" wait in a's queue
    assert await b.cancel(third.id, "telegram", "3")  # the user's button press reached b
    backend.gate.set()
    await a_hooks.wait_for("done", 2)
    assert [j.id for j, _ in a_hooks.delivered] == [first.id, second.id]
    # When the queue moved, "3" heard nothing more from a: its status says "cancelled".
    assert a_hooks.kinds(third.id) == ["queued"]
    assert b_hooks.kinds(third.id) == ["cancelled"]
    assert backend.started == 2
    assert await used(a, "3") == 0


async def test_a_silent_replicas_jobs_are_adopted_and_delivered_once(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    clock = Clock()
    stuck = EchoBackend(gated=True)
    a, a_hooks = await make_service(
        backend=stuck, clock=clock, replica_id="a", max_concurrent_jobs=2, **MANUAL_CLAIMS
    )
    b_hooks = RecordingHooks(inputs={f"file-of-{u}": portrait_bytes for u in range(5)})
    b, _ = await make_service(hooks=b_hooks, clock=clock, replica_id="b", **MANUAL_CLAIMS)
    jobs = [(await a.submit(request_for(str(u), portrait_bytes)))[0] for u in range(5)]
    await stuck.wait_started(2)  # two in a's backend, three waiting in a's queue

    clock.now += 3001  # a stalls: no heartbeat for longer than the stale limit
    assert await b.claims.adopt() == 5
    await b_hooks.wait_for("done", 5)
    assert sorted(j.id for j, _ in b_hooks.delivered) == sorted(j.id for j in jobs)
    assert [e.kind for e in b_hooks.events if e.job.id == jobs[0].id][-1] == "done"

    await a.claims.heartbeat()  # a wakes up, sees b holds its jobs now, and lets them go
    assert (a.running_count, a.queue_depth) == (0, 0)
    stuck.gate.set()
    await asyncio.sleep(0.2)
    assert a_hooks.delivered == [] and stuck.finished == 0
    for user in range(5):
        assert await used(b, str(user)) == 1
    assert await b.store.unfinished_jobs() == []


async def test_the_heartbeat_loop_adopts_a_dead_replicas_jobs(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    """The same with real time and the service's own heartbeat task."""
    stuck = EchoBackend(gated=True)
    a, _ = await make_service(
        backend=stuck, clock=time.time, replica_id="a", max_concurrent_jobs=1, **FAST_CLAIMS
    )
    b_hooks = RecordingHooks(inputs={f"file-of-{u}": portrait_bytes for u in range(2)})
    await make_service(hooks=b_hooks, clock=time.time, replica_id="b", **FAST_CLAIMS)
    for user in range(2):
        await a.submit(request_for(str(user), portrait_bytes))
    await stuck.wait_started(1)
    await a.claims.stop()  # a dies, as far as the store can tell
    await b_hooks.wait_for("done", 2)
    assert len(b_hooks.delivered) == 2


async def test_shutdown_hands_the_queue_to_another_replica_at_once(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    backend = EchoBackend(gated=True)
    a, _ = await make_service(
        backend=backend, clock=time.time, replica_id="a", max_concurrent_jobs=1, **FAST_CLAIMS
    )
    slow = {"jobs_heartbeat_seconds": 0.05, "jobs_stale_after_seconds": 3600}
    b_hooks = RecordingHooks(inputs={f"file-of-{u}": portrait_bytes for u in range(3)})
    await make_service(hooks=b_hooks, clock=time.time, replica_id="b", **slow)
    jobs = [(await a.submit(request_for(str(u), portrait_bytes)))[0] for u in range(3)]
    await backend.wait_started(1)
    await a.shutdown(grace=0)
    left = [await a.store.get_job(j.id) for j in jobs]
    assert [(j.state, j.owner) for j in left if j] == [("queued", None)] * 3
    await b_hooks.wait_for("done", 3)  # no stale wait: the jobs were given back
    assert sorted(j.id for j, _ in b_hooks.delivered) == sorted(j.id for j in jobs)


class SlowEcho(EchoBackend):
    """An echo that takes `seconds` of the service's clock."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    async def retouch(self, image: Any, fidelity: float) -> bytes:
        self.clock.now += self.seconds
        return await super().retouch(image, fidelity)


async def test_every_finished_job_leaves_one_info_line_without_personal_data(
    make_service: ServiceFactory, portrait_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    service, hooks = await make_service(backend=SlowEcho(clock, 12.5), clock=clock)
    user, chat = "777001", "-100777002"
    with caplog.at_level(logging.INFO, logger="retouch"):
        done, _ = await service.submit(request_for(user, portrait_bytes, chat=chat))
        await hooks.wait_for("done")
        failed, _ = await service.submit(request_for(user, b"not an image", chat=chat))
        await hooks.wait_for("failed")
    finished = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job ")]
    assert len(finished) == 2
    assert finished[0] == f"job {done.id} done on telegram in 12.5 s"
    assert finished[1].startswith(f"job {failed.id} failed on telegram in 0.0 s: not_an_image (")
    assert all(r.levelno == logging.INFO for r in caplog.records if "job " in r.getMessage())
    for record in caplog.records:
        assert user not in record.getMessage() and chat not in record.getMessage()


INBOX_UPDATE = {"update_id": 700, "message": {"message_id": 1, "text": "hi"}}


# --- the inbox and one-transaction endings -----------------------------------------------


async def test_a_job_admitted_while_handling_an_update_takes_it(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    service, hooks = await make_service()
    inbox = service.inbox("telegram")
    assert await inbox.receive(700, INBOX_UPDATE) and await inbox.receive(701, INBOX_UPDATE)
    taken: list[int | None] = []

    async with inbox.handling(700):
        await service.submit(request_for("1", portrait_bytes))
        # A second job of the same update (an album) does not take it again.
        taken.append(take_current_update("telegram"))
        assert [u for u, _ in await inbox.pending()] == [701]  # done with the reservation
    assert taken == [None]
    await hooks.wait_for("done")

    async with inbox.handling(701):  # refused at the door: done when its handlers return
        with pytest.raises(FidelityError):
            await service.submit(request_for("1", portrait_bytes, fidelity=1.5))
    assert await inbox.pending() == []
    assert await inbox.receive(700, INBOX_UPDATE) is False  # Telegram sending it again


async def test_an_update_interrupted_by_a_shutdown_stays_pending(
    make_service: ServiceFactory,
) -> None:
    service, _ = await make_service()
    inbox: Inbox = service.inbox("telegram")
    await inbox.receive(700, INBOX_UPDATE)
    entered = asyncio.Event()

    async def handle() -> None:
        async with inbox.handling(700):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(handle())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [u for u, _ in await inbox.pending()] == [700]


class KilledError(BaseException):
    """The process died here: nothing after it runs (what SIGKILL does, in one process)."""


class DiesOnRefund:
    """A store that dies when asked for a separate refund: a kill between a job's ending and
    its refund, had they been two transactions."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def refund(self, job_id: str) -> bool:
        raise KilledError


async def test_a_kill_after_a_failure_or_cancel_leaves_nothing_charged(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    """Reproduced on main: the failed state committed, the process died before the refund's own
    transaction, and the user stayed charged for good."""
    service, hooks = await make_service(backend=FailingBackend())
    store = service.store
    service.store = service.admission._store = DiesOnRefund(store)
    failed, _ = await service.submit(request_for("1", portrait_bytes))
    await hooks.wait_for("failed")
    gated = EchoBackend(gated=True)
    service.backend = gated
    cancelled, _ = await service.submit(request_for("2", portrait_bytes))
    assert await service.cancel(cancelled.id, "telegram", "2")
    for job_id, user in ((failed.id, "1"), (cancelled.id, "2")):
        stored = await store.get_job(job_id)
        assert stored is not None and stored.state in ("failed", "cancelled")
        assert stored.paid is None
        assert (await store.usage("telegram", user, stored.day)).used == 0


async def test_a_failure_left_untold_is_told_at_the_next_start(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    """The process committed the failure and died before telling it: the next start tells it,
    once (the note that it was told is kept)."""
    service, hooks = await make_service()
    job, _ = await service.submit(request_for("1", portrait_bytes))
    await hooks.wait_for("done")
    other = await service.store.reserve(
        NewJob("telegram", "2", "2", {}, {}, 0.1),
        day=job.day,
        user_limit=None,
        chat_limit=None,
        owner=service.replica_id,
    )
    failed = await service.store.transition(other.id, "failed", expect=["queued"], error_code="x")
    assert failed is not None and failed.sent_ref is None  # committed, never told
    assert await service.endings.tell_untold() == 1
    [event] = [e for e in hooks.events if e.job.id == other.id]
    assert event.kind == "failed" and event.error is not None and event.error.code == "x"
    stored = await service.store.get_job(other.id)
    assert stored is not None and stored.sent_ref == "told"
    assert await service.endings.tell_untold() == 0
    assert await service.store.untold_endings(service.replica_id) == []


async def submit_many(
    services: list[RetouchService], n: int, image: bytes
) -> tuple[list[Job], list[RetouchError]]:
    """`n` simultaneous requests of one user, spread over `services`: (admitted, refusals)."""
    results = await asyncio.gather(
        *(services[i % len(services)].submit(request_for("1", image)) for i in range(n)),
        return_exceptions=True,
    )
    admitted = [r[0] for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, RetouchError) for r in refused), refused[:3]
    return admitted, [r for r in refused if isinstance(r, RetouchError)]


async def test_the_in_flight_limit_is_exact_across_replicas(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    clock = Clock()
    backend = EchoBackend(gated=True)
    limits = {"quota_max_in_flight_per_user": 3, "quota_per_user_per_day": 1000}
    a, a_hooks = await make_service(backend=backend, clock=clock, replica_id="a", **limits)
    b, b_hooks = await make_service(backend=backend, clock=clock, replica_id="b", **limits)

    admitted, refused = await submit_many([a, b], 100, portrait_bytes)

    assert len(admitted) == 3
    assert all(isinstance(exc, TooManyInFlightError) for exc in refused), refused[:3]
    assert refused[0].params["limit"] == 3
    assert await used(a, "1") == 3  # a refusal costs nothing
    backend.gate.set()
    await a_hooks.wait_for("done", sum(job.owner == "a" for job in admitted))
    await b_hooks.wait_for("done", sum(job.owner == "b" for job in admitted))
    # Finished jobs leave room again, whichever replica ran them.
    backend.gate.clear()
    assert len((await submit_many([b, a], 10, portrait_bytes))[0]) == 3


async def test_the_burst_limit_is_exact_across_replicas(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    clock = Clock()
    limits = {
        "quota_max_in_flight_per_user": 1000,
        "quota_burst_per_minute": 7,
        "quota_per_user_per_day": 1000,
    }
    a, _ = await make_service(clock=clock, replica_id="a", **limits)
    b, _ = await make_service(clock=clock, replica_id="b", **limits)

    admitted, refused = await submit_many([a, b], 100, portrait_bytes)

    assert len(admitted) == 7
    assert all(isinstance(exc, RateLimitedError) for exc in refused), refused[:3]
    assert {exc.params["retry_after"] for exc in refused} == {60}
    clock.now += 30
    with pytest.raises(RateLimitedError) as caught:
        await b.submit(request_for("1", portrait_bytes))
    assert caught.value.params["retry_after"] == 30
    clock.now += 31  # the first minute's admissions have left the window
    assert len((await submit_many([b, a], 20, portrait_bytes))[0]) == 7


class ParkingHooks(RecordingHooks):
    """Deliveries of the first user's jobs give their worker back, then wait for `release`."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def deliver(self, job: Job, result: bytes) -> None:
        if job.user_id == "parked":
            worker_slot.give_back_worker()
            worker_slot.give_back_worker()  # twice is once
            await self.release.wait()
        await super().deliver(job, result)


async def test_a_job_that_gives_its_worker_back_lets_the_next_one_run(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    hooks = ParkingHooks()
    service, _ = await make_service(hooks=hooks, max_concurrent_jobs=1)
    parked = [(await service.submit(request_for("parked", portrait_bytes)))[0] for _ in range(3)]
    await service.submit(request_for("2", portrait_bytes))

    await hooks.wait_for("done", 1)  # with its only worker lent out three times
    assert [job.user_id for job, _ in hooks.delivered] == ["2"]
    assert service.running_count == 3  # the parked ones still run, outside the pool
    hooks.release.set()
    await hooks.wait_for("done", 4)
    assert sorted(job.id for job, _ in hooks.delivered[1:]) == sorted(job.id for job in parked)
    assert service.running_count == 0


async def test_shutdown_stops_a_job_that_only_waits_and_the_next_start_delivers_it(
    make_service: ServiceFactory, portrait_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.service.UPLOAD_DRAIN_SECONDS", 1000.0)  # drained: the test hangs
    hooks = ParkingHooks()
    service, _ = await make_service(hooks=hooks, replica_id="a")
    job, _ = await service.submit(request_for("parked", portrait_bytes))
    await hooks.wait_for("delivering")

    async with asyncio.timeout(10):
        await service.shutdown(grace=0)
    stored = await service.store.get_job(job.id)
    assert stored is not None and stored.state == "delivering"  # its result kept for the next

    _, again = await make_service(replica_id="a")
    await again.wait_for("done")
    assert [(j.id, data) for j, data in again.delivered] == [(job.id, portrait_bytes)]
