"""`retouch-bot doctor` against local fakes: each problem gets its own clear line."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from bots.discord.settings import DiscordSettings
from bots.doctor import describe_backend, run_doctor
from bots.telegram.settings import TelegramSettings
from core.settings import load_settings
from tests.fake_discord import FakeDiscord
from tests.fake_telegram import FakeTelegram
from tests.upstream_fakes import Echo, FakeUpstream

KEY = "sk-doctor-test-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def doctor(
    telegram: dict[str, Any] | None = None,
    discord: dict[str, Any] | None = None,
    **overrides: Any,
) -> tuple[int, list[str]]:
    """Run the doctor; `overrides` are core settings, `telegram`/`discord` the platforms'."""
    lines: list[str] = []
    code = await run_doctor(
        load_settings(**overrides),
        TelegramSettings.load(**(telegram or {})),
        DiscordSettings.load(**(discord or {})),
        out=lines.append,
    )
    return code, lines


def line(lines: list[str], name: str) -> str:
    return next(entry for entry in lines if f"] {name}:" in entry)


async def test_everything_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with (
        FakeTelegram() as tg,
        FakeUpstream(default=Echo(), api_key=KEY) as up,
        FakeDiscord() as dc,
    ):
        dc.patch(monkeypatch)
        code, lines = await doctor(
            retouch_api_key=KEY,
            retouch_api_base_url=up.base_url,
            telegram={"bot_token": tg.token, "api_base_url": tg.base_url},
            discord={"bot_token": dc.token},
        )
    assert code == 0, lines
    assert line(lines, "upstream").startswith("[ ok ]")
    assert "@RetouchTestBot" in line(lines, "telegram")
    assert line(lines, "discord").startswith("[ ok ]")
    assert line(lines, "database").startswith("[ ok ]") and "schema version" in line(
        lines, "database"
    )
    tg.assert_token_never_in(lines)


async def test_bad_token_bad_key_and_unreachable_upstream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        FakeTelegram() as tg,
        FakeUpstream(default=Echo(), api_key=KEY) as up,
        FakeDiscord() as dc,
    ):
        dc.patch(monkeypatch)
        code, lines = await doctor(
            retouch_api_key="sk-wrong-key-000000",
            retouch_api_base_url=up.base_url,
            telegram={"bot_token": "999:not-the-real-token", "api_base_url": tg.base_url},
            discord={"bot_token": "not-the-discord-token"},
        )
        assert code == 1
        assert line(lines, "upstream") == (
            f"[FAIL] upstream: {up.base_url.rsplit('/', 1)[0]} rejected the key (HTTP 401)"
            " — fix: check RETOUCH_API_KEY"
        )
        assert "token was rejected" in line(lines, "telegram")
        assert "TELEGRAM_BOT_TOKEN" in line(lines, "telegram")
        assert "token was rejected" in line(lines, "discord")

        code, lines = await doctor(
            discord={"bot_token": dc.token},
            retouch_api_key=KEY,
            retouch_api_base_url=f"http://127.0.0.1:{free_port()}/v1",
        )
    assert code == 1
    assert "is unreachable" in line(lines, "upstream")
    assert "RETOUCH_API_BASE_URL" in line(lines, "upstream")
    assert line(lines, "telegram").startswith("[skip]")
    for text in lines:
        assert "sk-wrong-key" not in text and "not-the-real-token" not in text


async def test_bad_setting_is_reported_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUOTA_PER_USER_PER_DAY", "plenty")
    lines: list[str] = []
    assert await run_doctor(out=lines.append) == 2
    assert lines[0].startswith("[FAIL] configuration: QUOTA_PER_USER_PER_DAY:")


async def test_no_bot_is_a_warning_and_exit_2_like_run(tmp_path: Path) -> None:
    code, lines = await doctor()
    assert code == 2, lines
    assert line(lines, "bots") == (
        "[warn] bots: none configured — fix: set TELEGRAM_BOT_TOKEN and/or DISCORD_BOT_TOKEN"
    )
    assert line(lines, "database").startswith("[ ok ]")  # the other checks still run


@pytest.mark.parametrize(
    ("overrides", "shown"),
    [
        ({}, "RETOUCH_BACKEND=auto, no RETOUCH_API_KEY: the local engine"),
        ({"retouch_backend": "local"}, "RETOUCH_BACKEND=local: the local engine"),
        (
            {"retouch_backend": "api", "retouch_api_key": KEY},
            "RETOUCH_BACKEND=api: the hosted API at https://api.xty.app",
        ),
        (
            {"retouch_api_key": KEY},
            "RETOUCH_BACKEND=auto, RETOUCH_API_KEY set: the hosted API at https://api.xty.app",
        ),
    ],
)
def test_the_backend_is_shown_as_set(overrides: dict[str, Any], shown: str) -> None:
    assert describe_backend(load_settings(**overrides)) == shown


async def test_the_configuration_line_shows_settings_as_they_are(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        code, lines = await doctor(telegram={"bot_token": tg.token, "api_base_url": tg.base_url})
    assert code == 0, lines
    assert line(lines, "configuration") == (
        "[ ok ] configuration: RETOUCH_BACKEND=auto, no RETOUCH_API_KEY: the local engine"
    )
    assert line(lines, "bots") == "[ ok ] bots: telegram"
    assert line(lines, "upstream") == "[ ok ] upstream: the local engine loads"
