"""Running it for real: `retouch-bot run`, SIGTERM, webhook mode, health and metrics."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bots.runtime import serve
from bots.telegram.run import TelegramRunner
from bots.telegram.settings import TelegramSettings
from core.settings import Settings, load_settings
from tests.fake_discord import FOLLOWUP, FakeDiscord
from tests.fake_telegram import FakeTelegram, User
from tests.upstream_fakes import Echo, FakeUpstream, Gate

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-ops-upstream-key-0123456789"
ALICE = User(2001, "Alice", language_code="en")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def read_until(stream: asyncio.StreamReader, fragment: str, seen: list[str]) -> None:
    """Read log lines until one contains `fragment` (all lines are kept in `seen`)."""
    async with asyncio.timeout(60):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"the process ended before logging {fragment!r}")
            seen.append(line)
            if fragment in line:
                return


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_run_serves_both_bots_and_stops_cleanly_on_sigterm(
    tmp_path: Path, portrait_bytes: bytes, log_format: str
) -> None:
    gate = Gate()
    async with (
        FakeTelegram() as tg,
        FakeDiscord() as dc,
        FakeUpstream(default=Echo(), api_key=KEY) as upstream,
    ):
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))},
            "PYTHONPATH": str(ROOT),
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_BASE_URL": tg.base_url,
            "TELEGRAM_FILE_BASE_URL": tg.base_file_url,
            "DISCORD_BOT_TOKEN": dc.token,
            "DISCORD_API_BASE_URL": dc.api_base,
            "DISCORD_GATEWAY_URL": dc.gateway_url,
            "RETOUCH_API_KEY": KEY,
            "RETOUCH_API_BASE_URL": upstream.base_url,
            "RETOUCH_MAX_RETRIES": "0",
            "LOG_LEVEL": "DEBUG",
            "LOG_FORMAT": log_format,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots.cli",
            "run",
            cwd=tmp_path,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        lines: list[str] = []
        try:
            await read_until(process.stderr, "running telegram and discord", lines)
            await dc.wait_ready()
            # A photo on each platform comes back.
            tg.send_photo(ALICE.id, ALICE, portrait_bytes)
            await tg.wait_for("sendPhoto", answered=True, timeout=30)
            interaction = await dc.slash_command(
                "retouch", {"image": dc.attachment("me.jpg", portrait_bytes, "image/jpeg")}
            )
            [followup] = await dc.wait_for(
                lambda c: (
                    c.method == "POST" and bool(re.search(FOLLOWUP, c.path)) and bool(c.files)
                ),
                timeout=30,
            )
            assert followup.token == interaction["token"]
            assert followup.files[0][1] == portrait_bytes

            # SIGTERM while a job is running: it finishes, then the process exits with 0.
            upstream.script(gate)
            tg.send_photo(ALICE.id, ALICE, portrait_bytes, caption="0.3")
            await gate.wait_entered()
            process.send_signal(signal.SIGTERM)
            await read_until(process.stderr, "SIGTERM", lines)
            gate.opened.set()
            async with asyncio.timeout(60):
                rest = await process.stderr.read()
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        lines += rest.decode().splitlines()
        assert process.returncode == 0, "".join(lines[-30:])
        photos = [c for c in tg.calls_to("sendPhoto") if c.ok]
        assert len(photos) == 2
        # Every log line, whatever the format, is free of tokens and keys.
        log = "\n".join(lines)
        for secret in (tg.token, dc.token, KEY, interaction["token"]):
            assert secret not in log
        if log_format == "json":
            entries = [json.loads(line) for line in lines if line.strip()]
            assert any(entry.get("job_id") for entry in entries)


async def run_in_process(
    settings: Any, runners: list[Any]
) -> tuple[asyncio.Task[None], asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, runners, stop))
    return task, stop


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTelegram, FakeUpstream]]:
    async with FakeTelegram() as tg, FakeUpstream(default=Echo(), api_key=KEY) as upstream:
        yield tg, upstream


def bot_settings(
    tmp_path: Path, tg: FakeTelegram, upstream: FakeUpstream, **extra: Any
) -> tuple[Settings, TelegramSettings]:
    """The core's settings (`extra` among them) and the Telegram bot's on the fake Bot API."""
    telegram = {name: extra.pop(name) for name in list(extra) if name.startswith("webhook_")}
    platform = TelegramSettings.load(
        bot_token=tg.token,
        api_base_url=tg.base_url,
        file_base_url=tg.base_file_url,
        status_edit_interval_seconds=0,
        **telegram,
    )
    return load_settings(
        retouch_api_key=KEY,
        retouch_api_base_url=upstream.base_url,
        data_dir=tmp_path / "data",
        database_path=tmp_path / "data" / "retouch.db",
        **extra,
    ), platform


async def test_webhook_mode_checks_the_secret(
    tmp_path: Path, portrait_bytes: bytes, fakes: tuple[FakeTelegram, FakeUpstream]
) -> None:
    tg, upstream = fakes
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    settings, telegram = bot_settings(
        tmp_path, tg, upstream, webhook_url=url, webhook_listen=f"127.0.0.1:{port}"
    )
    task, stop = await run_in_process(settings, [TelegramRunner(settings, telegram)])
    try:
        [registered] = await tg.wait_for("setWebhook", answered=True)
        assert registered.params["url"] == url
        assert registered.params["secret_token"] == telegram.secret_token
        assert tg.calls_to("getUpdates") == []

        # The fake pushes updates with the secret, as Telegram does: the photo comes back.
        tg.send_photo(ALICE.id, ALICE, portrait_bytes)
        await tg.wait_for("sendPhoto", answered=True)

        # Without the secret, or with a wrong one: 403, and nothing runs.
        update = {
            "update_id": 1,
            "message": {
                "message_id": 99,
                "date": 0,
                "text": "/start",
                "chat": {"id": ALICE.id, "type": "private"},
                "from": ALICE.to_dict(),
                "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
            },
        }
        sent_before = len(tg.calls_to("sendMessage"))
        async with httpx.AsyncClient() as client:
            missing = await client.post(url, json=update)
            wrong = await client.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "guess"}
            )
            right = await client.post(
                url,
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": telegram.secret_token},
            )
        assert (missing.status_code, wrong.status_code, right.status_code) == (403, 403, 200)
        await tg.wait_for("sendMessage", sent_before + 1)
        assert len(tg.calls_to("sendMessage")) == sent_before + 1  # only the right one ran
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert tg.webhook is not None  # left in place for the other replicas


async def test_health_and_metrics(
    tmp_path: Path, portrait_bytes: bytes, fakes: tuple[FakeTelegram, FakeUpstream]
) -> None:
    tg, upstream = fakes
    port = free_port()
    settings, telegram = bot_settings(
        tmp_path, tg, upstream, ops_listen=f"127.0.0.1:{port}", quota_per_user_per_day=1
    )
    base = f"http://127.0.0.1:{port}"
    task, stop = await run_in_process(settings, [TelegramRunner(settings, telegram)])
    try:
        await tg.wait_for("getUpdates")
        async with httpx.AsyncClient() as client:
            health = await client.get(f"{base}/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "ok" and health.json()["bots"] == {"telegram": True}
            before = (await client.get(f"{base}/metrics")).text
            assert 'retouch_jobs_total{outcome="done",platform="telegram"}' not in before
            assert "retouch_queue_depth 0.0" in before

            tg.send_photo(ALICE.id, ALICE, portrait_bytes)
            await tg.wait_for("sendPhoto", answered=True)
            # The status reply goes once the job is done (and counted).
            [status] = [m for m in tg.sent_to(ALICE.id) if m.kind == "text"]
            await tg.wait_until(lambda: status.deleted)
            tg.send_photo(ALICE.id, ALICE, portrait_bytes)  # over the quota of 1
            await tg.wait_until(
                lambda: any("used all 1" in (m.text or "") for m in tg.sent_to(ALICE.id))
            )
            metrics = (await client.get(f"{base}/metrics")).text
        assert 'retouch_jobs_total{outcome="done",platform="telegram"} 1.0' in metrics
        assert (
            'retouch_rejections_total{platform="telegram",reason="quota_exceeded"} 1.0' in metrics
        )
        assert 'retouch_upstream_duration_seconds_count{backend="api"} 1.0' in metrics
        assert 'retouch_job_duration_seconds_count{platform="telegram"} 1.0' in metrics
        assert "retouch_jobs_in_flight 0.0" in metrics
        assert "retouch_upstream_retries_total 0.0" in metrics
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
