"""Hostile input, item 5: start-up failures end in one line naming the setting and the fix,
and no secret reaches a log line or an exception's text: neither a token nor a signed URL's query.

A token the platform rejects, or a platform API that can't be reached, for Telegram and for
Discord: exit code 2, one line on stderr, no traceback, no token. Run as the real command
against the fakes on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import sys
import traceback
from pathlib import Path

import pytest

from core.errors import BackendError
from core.fetch import download_image
from core.http import http_client
from core.logs import Redactor, setup_logging
from core.settings import Settings
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
# Put together here so that no string shaped like a real bot token is committed.
OTHER_TELEGRAM_TOKEN = ":".join(("987654321", "AAH-not-the-right-token-" + "x" * 20))
OTHER_DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.not-the.right-token-AbCdEfGhIjKlMnOpQrSt"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_command(command: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        command,
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), "RETOUCH_BACKEND": "local", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def assert_one_line(stderr: str, *, setting: str, secret: str) -> None:
    """The failure is the last line, and the only one not from the log (which may precede it)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    unlogged = [line for line in lines if not line[:4].isdigit()]  # log lines start with a date
    assert unlogged == lines[-1:], stderr
    assert lines[-1].startswith(f"retouch-bot: configuration error: {setting}: ")
    assert "fix:" in lines[-1]
    assert secret not in stderr and secret.split(":")[-1] not in stderr


async def test_telegram_with_a_rejected_token(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        code, stderr = await run_command(
            "telegram",
            {
                "TELEGRAM_BOT_TOKEN": OTHER_TELEGRAM_TOKEN,
                "TELEGRAM_API_BASE_URL": tg.base_url,
                "TELEGRAM_FILE_BASE_URL": tg.base_file_url,
            },
            tmp_path,
        )
    assert code == 2
    assert_one_line(stderr, setting="TELEGRAM_BOT_TOKEN", secret=OTHER_TELEGRAM_TOKEN)


async def test_telegram_with_an_unreachable_bot_api(tmp_path: Path) -> None:
    port = closed_port()
    code, stderr = await run_command(
        "telegram",
        {
            "TELEGRAM_BOT_TOKEN": OTHER_TELEGRAM_TOKEN,
            "TELEGRAM_API_BASE_URL": f"http://127.0.0.1:{port}/bot",
            "TELEGRAM_FILE_BASE_URL": f"http://127.0.0.1:{port}/file/bot",
        },
        tmp_path,
    )
    assert code == 2
    assert_one_line(stderr, setting="TELEGRAM_API_BASE_URL", secret=OTHER_TELEGRAM_TOKEN)


@pytest.mark.parametrize("reachable", [True, False], ids=["rejected-token", "unreachable"])
async def test_discord_start_up_failures(tmp_path: Path, reachable: bool) -> None:
    async with FakeDiscord() as discord:
        api = discord.api_base if reachable else f"http://127.0.0.1:{closed_port()}/api/v10"
        code, stderr = await run_command(
            "discord",
            {
                "DISCORD_BOT_TOKEN": OTHER_DISCORD_TOKEN,
                "DISCORD_API_BASE_URL": api,
                "DISCORD_GATEWAY_URL": discord.gateway_url,
            },
            tmp_path,
        )
    assert code == 2
    setting = "DISCORD_BOT_TOKEN" if reachable else "DISCORD_API_BASE_URL"
    assert_one_line(stderr, setting=setting, secret=OTHER_DISCORD_TOKEN)


# --- signed query strings ---------------------------------------------------------------

SIGNED_QUERY = "X-Amz-Credential=AKIAEXAMPLE%2F20260101&X-Amz-Signature=5ec7e7c0ffee0123456789"


def test_the_log_redactor_hides_signed_query_values() -> None:
    text = f"GET https://bucket.example/r.png?X-Amz-Expires=3600&{SIGNED_QUERY}&sig=abc123def"
    redacted = Redactor()(text)
    assert "AKIAEXAMPLE" not in redacted and "5ec7e7c0ffee" not in redacted
    assert "abc123def" not in redacted
    assert "X-Amz-Expires=3600" in redacted  # what is no secret stays readable


async def test_a_signed_url_stays_out_of_chained_exception_text() -> None:
    """aiohttp quotes the URL in its errors; the chain our error carries must not hold it."""

    async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"THIS IS NOT HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/results/r.png?{SIGNED_QUERY}"
    stream = io.StringIO()
    try:
        async with http_client(5.0) as client:
            with pytest.raises(BackendError) as caught:
                await download_image(client, url, max_bytes=1000)
        setup_logging(Settings.load(), stream=stream)
        logging.getLogger("retouch.test").error("download failed", exc_info=caught.value)
    finally:
        server.close()
        await server.wait_closed()
        logging.getLogger().handlers.clear()
    chain = "".join(traceback.format_exception(caught.value))
    for text in (chain, stream.getvalue()):
        assert "AKIAEXAMPLE" not in text and "5ec7e7c0ffee" not in text
    assert "download failed" in stream.getvalue()
