"""The real `retouch-bot telegram` process, killed and restarted, against the local fakes.

Shared by the SIGKILL matrix (`tests/test_crash_matrix.py`) and the chaos benchmark
(`benchmarks/chaos.py`): the bot runs as a child process on a SQLite store in a folder of its
own, the fake Bot API and the fake upstream run in the caller's event loop, and what the users
got and what the store holds afterwards is counted the same way for both.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fake_telegram import ChatMessage, FakeTelegram
from tests.upstream_fakes import Echo, FakeUpstream, RecordedRequest, Reply, ServerError

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_KEY = "sk-upstream-test-key-0123456789"
FAILING_FIDELITY = 0.7
"""A photo sent with this fidelity is refused by the upstream (HTTP 500): its job fails."""
FAILURE_LINE = "Sorry, I couldn't retouch that photo"
"""How the English line that tells a user their job failed begins."""
UPSTREAM_FAILED = "the retouch service is unavailable right now"
"""The reason that line gives when the upstream refused the photo."""


class FailsOnFidelity(Reply):
    """Echo the input, except for requests at `FAILING_FIDELITY`: those get a 500."""

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        if f'"codeformer_fidelity": {FAILING_FIDELITY}' in json.dumps(call.json):
            return await ServerError(500).respond(fake, call)
        return await Echo().respond(fake, call)


def bot_env(tg: FakeTelegram, upstream: FakeUpstream, folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a bot process on the fakes, its data in `folder`."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))}
    env.pop("DATABASE_URL", None)
    return {
        **env,
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_BASE_URL": tg.base_url,
        "TELEGRAM_FILE_BASE_URL": tg.base_file_url,
        "TELEGRAM_STATUS_EDIT_INTERVAL_SECONDS": "0",
        "RETOUCH_API_KEY": UPSTREAM_KEY,
        "RETOUCH_API_BASE_URL": upstream.base_url,
        "RETOUCH_MAX_RETRIES": "0",
        "DATA_DIR": str(folder / "data"),
        "DATABASE_PATH": str(folder / "data" / "retouch.db"),
        "QUOTA_BURST_PER_MINUTE": "0",
        "QUOTA_PER_USER_PER_DAY": "5",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


async def start_bot(env: Mapping[str, str], folder: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        "telegram",
        cwd=folder,
        env=dict(env),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def ended(process: asyncio.subprocess.Process, within: float) -> tuple[int, str]:
    """The process's exit code and what it wrote to stderr, once it has ended."""
    async with asyncio.timeout(within):
        _, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode(errors="replace")


async def kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
    await process.wait()


def photos_of(tg: FakeTelegram, chat_id: int) -> int:
    """How many photos the bot sent the chat (each one an answer)."""
    return len(photo_messages(tg, chat_id))


def photo_messages(tg: FakeTelegram, chat_id: int) -> list[ChatMessage]:
    return [message for message in tg.sent_to(chat_id) if message.kind == "photo"]


def told_failure(tg: FakeTelegram, chat_id: int, reason: str = "") -> bool:
    """Whether the chat was told a job failed (for `reason`, when one is given)."""
    return any(
        FAILURE_LINE in (message.text or "") and reason in (message.text or "")
        for message in tg.sent_to(chat_id)
    )


@dataclass(frozen=True)
class StoreReport:
    """What the store holds once every process has stopped."""

    jobs: dict[str, list[tuple[str, str | None]]]
    """user id -> [(state, paid)] of their jobs"""
    sent: dict[str, list[str | None]]
    """user id -> the recorded message id of each job's result"""
    used: dict[str, int]
    """user id -> jobs counted against today's allowance"""
    stuck: int
    """jobs still queued, running or delivering"""
    pending_updates: int

    def lost_refunds(self) -> int:
        """Failed or cancelled jobs still paid for."""
        return sum(
            1
            for jobs in self.jobs.values()
            for state, paid in jobs
            if state in ("failed", "cancelled") and paid is not None
        )

    def refunded(self) -> int:
        return sum(
            1
            for jobs in self.jobs.values()
            for state, paid in jobs
            if state in ("failed", "cancelled") and paid is None
        )


def unfinished(database: Path) -> int:
    """Jobs not yet settled, read while a bot may be running (-1 before the store exists)."""
    if not database.exists():
        return -1
    with sqlite3.connect(database, timeout=5) as conn:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running', 'delivering')"
        ).fetchone()
    return int(count)


def read_store(database: Path) -> StoreReport:
    """The jobs, counters and inbox of the SQLite store at `database` (no process using it)."""
    with sqlite3.connect(database) as conn:
        jobs: dict[str, list[tuple[str, str | None]]] = {}
        sent: dict[str, list[str | None]] = {}
        for user, state, paid, sent_ref in conn.execute(
            "SELECT user_id, state, paid, sent_ref FROM jobs ORDER BY created_at"
        ):
            jobs.setdefault(user, []).append((state, paid))
            sent.setdefault(user, []).append(sent_ref)
        used = dict(conn.execute("SELECT user_id, SUM(used) FROM daily_usage GROUP BY user_id"))
        (stuck,) = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running', 'delivering')"
        ).fetchone()
        (pending,) = conn.execute("SELECT COUNT(*) FROM inbox WHERE state = 'pending'").fetchone()
    return StoreReport(jobs, sent, used, int(stuck), int(pending))


def summary(report: StoreReport) -> dict[str, Any]:
    return {
        "jobs": sum(len(jobs) for jobs in report.jobs.values()),
        "stuck": report.stuck,
        "refunded": report.refunded(),
        "lost_refunds": report.lost_refunds(),
        "pending_updates": report.pending_updates,
    }
