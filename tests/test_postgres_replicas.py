"""Several replicas in separate processes on one PostgreSQL: exact quotas, claims, adoption.

The replicas are real processes (`tests/replica_child.py`, and `retouch-bot telegram` itself),
the database is the session's PostgreSQL server (see `tests/pg.py`), and a replica is killed
with SIGKILL, so nothing it meant to do on the way out happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from core.jobs import NewJob
from core.quota import day_key
from core.store.postgres import PostgresStore
from tests.fake_telegram import FakeTelegram, User
from tests.upstream_fakes import Echo, FakeUpstream, RecordedRequest, Reply

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_KEY = "sk-upstream-test-key-0123456789"


def child_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))}
    env.pop("DATABASE_URL", None)
    return {**env, "PYTHONPATH": str(ROOT), **values}


class Replica:
    """A child process speaking lines on stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, *args: str, cwd: Path, env: dict[str, str]) -> Replica:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def line(self, within: float = 60) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            text = (await self.process.stdout.readline()).decode().strip()
        assert text, f"the replica ended (exit {self.process.returncode})"
        return text

    async def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{text}\n".encode())
        await self.process.stdin.drain()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def eventually(predicate: Callable[[], bool], within: float = 60) -> None:
    """Wait for a condition spanning several fakes (each fake signals only its own changes)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - no one event covers both fakes
            await asyncio.sleep(0.02)


@pytest.fixture
async def replicas() -> AsyncIterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        await replica.stop()


# --- quotas -------------------------------------------------------------------------------


async def test_exact_quotas_and_refunds_across_two_processes(
    tmp_path: Path, postgres_url: str, replicas: list[Replica]
) -> None:
    """200 simultaneous requests from one user with 5 left, split over two processes: exactly 5
    are admitted. The backend fails every other call; those jobs are refunded at once, so the
    next round admits exactly as many as failed."""
    day = day_key(time.time())
    async with await PostgresStore.open(postgres_url) as store:
        used = await store.reserve(
            NewJob("telegram", "u", "u", {}, {}, 0.1), day=day, user_limit=3, chat_limit=None
        )
        await store.transition(used.id, "done", expect=["queued"])
        await store.grant("telegram", "u", 3)  # 2 of 3 daily left + 3 credits = 5

        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            env = child_env(DATABASE_URL=postgres_url, REPLICA_ID=name)
            replica = await Replica.start(
                "-m", "tests.replica_child", "service", str(folder), cwd=folder, env=env
            )
            replicas.append(replica)
        assert [await r.line() for r in replicas] == ["ready", "ready"]

        async def round_of(n: int) -> tuple[list[str], int, int]:
            """Both replicas submit n at once, then run them: (admitted ids, done, failed)."""
            await asyncio.gather(*(r.send(f"submit {n}") for r in replicas))
            reports = [json.loads(await r.line()) for r in replicas]
            assert [r["other_errors"] for r in reports] == [[], []]
            admitted = [job_id for r in reports for job_id in r["admitted"]]
            assert sum(r["refused"] for r in reports) == 2 * n - len(admitted)
            await asyncio.gather(*(r.send("release") for r in replicas))
            settled = [json.loads(await r.line()) for r in replicas]
            return admitted, sum(r["done"] for r in settled), sum(r["failed"] for r in settled)

        admitted, done, failed = await round_of(100)
        assert len(admitted) == 5
        assert done + failed == 5 and failed >= 1  # the first job of each replica failed
        usage = await store.usage("telegram", "u", day)
        assert (3 - usage.used) + usage.credits == failed  # each failure came back at once
        for job_id in admitted:
            job = await store.get_job(job_id)
            assert job is not None and job.state in ("done", "failed")
            assert (job.paid is None) == (job.state == "failed")
        assert await store.unfinished_jobs() == []

        again, _, failed_total = await round_of(100)
        assert len(again) == failed  # exactly the refunded ones, no more
        usage = await store.usage("telegram", "u", day)
        assert (3 - usage.used) + usage.credits == failed_total - failed
        assert await store.unfinished_jobs() == []
        await asyncio.gather(*(r.send("quit") for r in replicas))


async def test_the_in_flight_limit_is_exact_across_two_processes(
    tmp_path: Path, postgres_url: str, replicas: list[Replica]
) -> None:
    """100 simultaneous requests from one user, split over two processes, with 4 allowed in
    flight: exactly 4 are admitted, and the others are refused for that (nothing charged)."""
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        env = child_env(DATABASE_URL=postgres_url, REPLICA_ID=name)
        replica = await Replica.start(
            "-m", "tests.replica_child", "service", str(folder), "1000", "4", cwd=folder, env=env
        )
        replicas.append(replica)
    assert [await r.line() for r in replicas] == ["ready", "ready"]

    await asyncio.gather(*(r.send("submit 50") for r in replicas))
    reports = [json.loads(await r.line()) for r in replicas]

    admitted = [job_id for r in reports for job_id in r["admitted"]]
    refusals = [error for r in reports for error in r["other_errors"]]
    assert len(admitted) == 4 and len(refusals) == 96
    assert all(error.startswith("TooManyInFlightError(") for error in refusals), refusals[:2]
    async with await PostgresStore.open(postgres_url) as store:
        usage = await store.usage("telegram", "u", day_key(time.time()))
        assert usage.used == 4
        await asyncio.gather(*(r.send("release") for r in replicas))
        settled = [json.loads(await r.line()) for r in replicas]
        assert sum(r["done"] + r["failed"] for r in settled) == 4
        assert await store.unfinished_jobs() == []
    await asyncio.gather(*(r.send("quit") for r in replicas))


# --- two Telegram replicas ----------------------------------------------------------------


class Phased(Reply):
    """Echo the first `fast` calls at once; hold every later one until `opened` is set."""

    def __init__(self, fast: int) -> None:
        self.fast = fast
        self.seen = 0
        self.opened = asyncio.Event()

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        self.seen += 1
        if self.seen > self.fast:
            await self.opened.wait()
        return await Echo().respond(fake, call)


async def test_two_telegram_replicas_one_killed_every_photo_delivered_once(
    tmp_path: Path, postgres_url: str, replicas: list[Replica], portrait_bytes: bytes
) -> None:
    """50 photos from 50 users reach replica A (the one polling); A is SIGKILLed with one result
    stuck in upload, three jobs in the upstream and the rest queued in its memory. Replica B
    (same store, same shared data folder, not polling) adopts them all once A's heartbeats are
    stale and delivers each: every user gets exactly one photo, and nothing stays reserved."""
    users = [User(5000 + n, f"User{n}", language_code="en") for n in range(50)]
    upstream_reply = Phased(fast=10)
    async with (
        FakeTelegram() as tg,
        FakeUpstream(default=upstream_reply) as upstream,
    ):
        common = {
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_BASE_URL": tg.base_url,
            "TELEGRAM_FILE_BASE_URL": tg.base_file_url,
            "RETOUCH_API_KEY": UPSTREAM_KEY,
            "RETOUCH_API_BASE_URL": upstream.base_url,
            "RETOUCH_MAX_RETRIES": "0",
            "DATABASE_URL": postgres_url,
            "DATA_DIR": str(tmp_path / "data"),  # shared, like a volume both replicas mount
            "MAX_CONCURRENT_JOBS": "4",
            "QUOTA_BURST_PER_MINUTE": "0",
            "TELEGRAM_STATUS_EDIT_INTERVAL_SECONDS": "0",
            "JOBS_HEARTBEAT_SECONDS": "0.5",
            "JOBS_STALE_AFTER_SECONDS": "3",
            "JOBS_SHUTDOWN_GRACE_SECONDS": "0",
        }
        b = await Replica.start(
            "-m",
            "tests.replica_child",
            "telegram",
            cwd=tmp_path,
            env=child_env(**common, REPLICA_ID="b"),
        )
        replicas.append(b)
        assert await b.line() == "ready"
        a = await Replica.start(
            "-m", "bots.cli", "telegram", cwd=tmp_path, env=child_env(**common, REPLICA_ID="a")
        )
        replicas.append(a)
        await tg.wait_for("getUpdates", timeout=60)

        tg.hang_next("sendPhoto")  # A's first upload never completes
        for user in users:
            tg.send_photo(user.id, user, portrait_bytes)
        # A: 9 photos delivered, 1 stuck uploading, 3 jobs waiting in the upstream, 37 queued.
        await eventually(lambda: len(tg.calls_to("sendPhoto")) >= 10 and len(upstream.calls) >= 13)
        await asyncio.sleep(0.2)  # nothing more can move on A: every worker is blocked
        assert len(tg.calls_to("sendPhoto")) == 10 and len(upstream.calls) == 13
        a.process.send_signal(signal.SIGKILL)
        await a.process.wait()
        upstream_reply.opened.set()

        def photos() -> list[Any]:
            return [c for c in tg.calls_to("sendPhoto") if c.status == 200]

        await eventually(lambda: len(photos()) >= 50)
        await asyncio.sleep(1)  # anything still to come (a duplicate) would arrive now
        assert len(photos()) == 50
        for user in users:
            sent = [m for m in tg.sent_to(user.id) if m.kind == "photo"]
            assert len(sent) == 1, f"user {user.id} got {len(sent)} photos"
            assert sent[0].data == portrait_bytes
        # 10 + 3 calls from A; B re-ran A's 3 and its 37 queued, and re-sent the stored result.
        assert len(upstream.calls) == 13 + 40

        async with await PostgresStore.open(postgres_url) as store:
            jobs = await store.recent_jobs(limit=100)
            assert len(jobs) == 50 and {j.state for j in jobs} == {"done"}
            assert sorted(j.owner or "" for j in jobs) == ["a"] * 9 + ["b"] * 41
            assert await store.unfinished_jobs() == []
            day = jobs[0].day
            for user in users:
                usage = await store.usage("telegram", str(user.id), day)
                assert usage.used == 1  # paid once, nothing refunded, nothing stuck
        b.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await b.process.wait() == 0
        tg.assert_token_never_in([json.dumps(c.json) for c in upstream.calls if c.json])
