"""`retouch-bot telegram`: the bot by long polling or webhook, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telegram.ext import Application, ApplicationBuilder

from bots.runtime import serve, stop_on_signals
from bots.telegram.request import AiohttpRequest
from core.errors import ConfigError
from core.settings import Settings

__all__ = ["build_application", "run_telegram", "stop_on_signals"]

log = logging.getLogger("retouch.telegram")

CONNECTIONS = 64
"""Bot API connections at once (uploads, downloads, messages); more requests wait their turn."""


def build_application(
    settings: Settings, *, concurrent_updates: bool = True
) -> Application[Any, Any, Any, Any, Any, Any]:
    """A PTB application on the configured Bot API server, handling updates concurrently.

    `concurrent_updates=False` is PTB's default (one update at a time); only the naive-bot model
    in `benchmarks/` asks for it.
    """
    token = settings.telegram_bot_token.get_secret_value()
    if not token:
        raise ConfigError("TELEGRAM_BOT_TOKEN: must be set to run the Telegram bot")
    # aiohttp rather than PTB's default httpx: see bots/telegram/request.py for why.
    requests = AiohttpRequest(
        connection_pool_size=CONNECTIONS,
        connect_timeout=10,
        read_timeout=30,
        write_timeout=60,
        media_write_timeout=120,
        pool_timeout=30,
    )
    # getUpdates waits up to POLL_TIMEOUT for updates; PTB adds that to this read timeout.
    polling = AiohttpRequest(
        connection_pool_size=1, connect_timeout=10, read_timeout=10, write_timeout=10
    )
    return (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.telegram_api_base_url)
        .base_file_url(settings.telegram_file_base_url)
        .concurrent_updates(concurrent_updates)
        .request(requests)
        .get_updates_request(polling)
        .build()
    )


async def run_telegram(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or a signal arrives); jobs left unfinished resume next time.

    Long polling by default; webhook mode when `TELEGRAM_WEBHOOK_URL` is set.
    """
    from bots.telegram.runner import TelegramRunner

    await serve(settings, [TelegramRunner(settings)], stop)
