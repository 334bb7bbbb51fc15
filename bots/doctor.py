"""`retouch-bot doctor`: check the configuration, store, upstream and bot tokens, one line each.

Every check says ok, warn or FAIL (both with the fix) or skip. The exit code agrees with `run`:
2 when the bots cannot start (a bad setting, no bot configured), else 1 when a check failed. The
upstream is probed with a request that carries no image, which the retouch API answers with its
"needs an image" error at no cost: that proves it is reachable and accepts the key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from bots.discord.settings import DiscordSettings
from bots.enabled import NO_BOT_FIX, enabled_bots
from bots.telegram.settings import TelegramSettings
from core.errors import ConfigError, StoreError
from core.http import create_http_client, url_origin
from core.settings import Settings, load_settings

Verdict = Literal["ok", "warn", "FAIL", "skip"]
EXIT_CODES: dict[Verdict, int] = {"ok": 0, "skip": 0, "FAIL": 1, "warn": 2}
"""A warning is what stops `run` (no bot configured: its exit code 2); a failed probe is 1."""
PROBE_TIMEOUT = 15.0


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def line(self) -> str:
        tail = f" — fix: {self.fix}" if self.fix and self.verdict in ("FAIL", "warn") else ""
        return f"[{self.verdict:^4}] {self.name}: {self.detail}{tail}"


async def run_doctor(
    settings: Settings | None = None,
    telegram: TelegramSettings | None = None,
    discord: DiscordSettings | None = None,
    *,
    out: Callable[[str], None] = print,
) -> int:
    """Run every check, print one line each; 0 when all is well, 1 when a check failed, 2 when
    `run` would refuse to start (a bad setting, no bot configured).

    Settings not given are read from the environment and `.env`.
    """
    try:
        settings = settings or load_settings()
        telegram = telegram or TelegramSettings.load()
        discord = discord or DiscordSettings.load()
    except ConfigError as exc:
        out(
            Check("configuration", "FAIL", str(exc), "correct it in .env or the environment").line()
        )
        return 2
    bots = enabled_bots(telegram, discord)
    checks = [
        Check("configuration", "ok", describe_backend(settings)),
        Check("bots", "ok", ", ".join(bots))
        if bots
        else Check("bots", "warn", "none configured", NO_BOT_FIX),
    ]
    for check in checks:
        out(check.line())
    async with create_http_client(settings) as client:
        probes: list[Callable[[], Awaitable[Check]]] = [
            lambda: check_store(settings),
            lambda: check_backend(settings, client),
            lambda: check_telegram(telegram, client),
            lambda: check_discord(discord, client),
        ]
        for probe in probes:
            check = await probe()
            checks.append(check)
            out(check.line())
    return max(EXIT_CODES[check.verdict] for check in checks)


def describe_backend(settings: Settings) -> str:
    """The backend setting as it is written, and what it comes to."""
    chosen = f"RETOUCH_BACKEND={settings.retouch_backend}"
    if settings.retouch_backend == "auto":
        key = (
            "RETOUCH_API_KEY set"
            if settings.retouch_api_key.get_secret_value()
            else "no RETOUCH_API_KEY"
        )
        chosen = f"{chosen}, {key}"
    if settings.effective_backend == "local":
        return f"{chosen}: the local engine"
    return f"{chosen}: the hosted API at {url_origin(settings.retouch_api_base_url)}"


async def check_store(settings: Settings) -> Check:
    from core.store import describe_store, open_store

    try:
        store = await open_store(settings)
        try:
            version = await store.schema_version()
        finally:
            await store.close()
    except StoreError as exc:
        return Check("database", "FAIL", str(exc), exc.params.get("fix", ""))
    return Check(
        "database", "ok", f"{describe_store(settings)} is writable, schema version {version}"
    )


async def check_backend(settings: Settings, client: httpx.AsyncClient) -> Check:
    if settings.effective_backend == "local":
        return _check_engine()
    base = settings.retouch_api_base_url.rstrip("/")
    origin = url_origin(base)
    body = {
        "model": settings.retouch_model,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "doctor"}]}],
    }
    headers = {"Authorization": f"Bearer {settings.retouch_api_key.get_secret_value()}"}
    try:
        response = await client.post(
            f"{base}/chat/completions", json=body, headers=headers, timeout=PROBE_TIMEOUT
        )
    except httpx.TimeoutException:
        return Check(
            "upstream",
            "FAIL",
            f"{origin} did not answer in {PROBE_TIMEOUT:g} s",
            "check RETOUCH_API_BASE_URL and the network",
        )
    except httpx.HTTPError as exc:
        return Check(
            "upstream",
            "FAIL",
            f"{origin} is unreachable ({type(exc).__name__})",
            "check RETOUCH_API_BASE_URL and the network",
        )
    status = response.status_code
    if status in (401, 403):
        return Check(
            "upstream",
            "FAIL",
            f"{origin} rejected the key (HTTP {status})",
            "check RETOUCH_API_KEY",
        )
    if status == 400 or status < 300:
        return Check("upstream", "ok", f"{origin} is reachable and accepts the key")
    if status == 404:
        return Check(
            "upstream",
            "FAIL",
            f"{origin} has no /chat/completions (HTTP 404)",
            "RETOUCH_API_BASE_URL should end in /v1",
        )
    return Check(
        "upstream",
        "FAIL",
        f"{origin} answered HTTP {status}",
        "the upstream has a problem; try again later",
    )


def _check_engine() -> Check:
    import numpy as np

    try:
        from core.engine import detect_faces

        detect_faces(np.zeros((64, 64, 3), dtype=np.uint8))
    except Exception as exc:
        return Check(
            "upstream",
            "FAIL",
            f"the local engine does not load: {exc}",
            "reinstall the package: its face models or ai-edge-litert are missing",
        )
    return Check("upstream", "ok", "the local engine loads")


async def check_telegram(telegram: TelegramSettings, client: httpx.AsyncClient) -> Check:
    token = telegram.bot_token.get_secret_value()
    if not token:
        return Check("telegram", "skip", "TELEGRAM_BOT_TOKEN is not set")
    origin = url_origin(telegram.api_base_url)
    try:
        response = await client.get(f"{telegram.api_base_url}{token}/getMe", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return Check(
            "telegram",
            "FAIL",
            f"{origin} is unreachable ({type(exc).__name__})",
            "check TELEGRAM_API_BASE_URL and the network",
        )
    if response.status_code in (401, 404):
        return Check(
            "telegram",
            "FAIL",
            f"the token was rejected (HTTP {response.status_code})",
            "copy the token from @BotFather into TELEGRAM_BOT_TOKEN",
        )
    try:
        me = response.json()["result"]
    except (ValueError, KeyError, TypeError):
        return Check(
            "telegram",
            "FAIL",
            f"{origin} answered HTTP {response.status_code}, not the Bot API",
            "check TELEGRAM_API_BASE_URL",
        )
    return Check("telegram", "ok", f"token accepted: @{me.get('username')}")


async def check_discord(discord: DiscordSettings, client: httpx.AsyncClient) -> Check:
    token = discord.bot_token.get_secret_value()
    if not token:
        return Check("discord", "skip", "DISCORD_BOT_TOKEN is not set")
    from discord.http import Route

    base = discord.api_base_url.rstrip("/") or Route.BASE
    try:
        response = await client.get(
            f"{base}/users/@me", headers={"Authorization": f"Bot {token}"}, timeout=PROBE_TIMEOUT
        )
    except httpx.HTTPError as exc:
        return Check(
            "discord",
            "FAIL",
            f"{url_origin(base)} is unreachable ({type(exc).__name__})",
            "check the network",
        )
    if response.status_code == 401:
        return Check(
            "discord",
            "FAIL",
            "the token was rejected (HTTP 401)",
            "copy the bot token from the Discord developer portal into DISCORD_BOT_TOKEN",
        )
    if response.status_code != 200:
        return Check(
            "discord", "FAIL", f"Discord answered HTTP {response.status_code}", "try again later"
        )
    return Check("discord", "ok", f"token accepted: {response.json().get('username')}")
