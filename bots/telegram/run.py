"""`retouch-bot telegram`: the bot by long polling, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from telegram.ext import Application, ApplicationBuilder

from bots.telegram.adapter import TelegramBot
from core.backend import open_backend
from core.errors import ConfigError
from core.http import quiet_http_loggers
from core.service import RetouchService
from core.settings import Settings
from core.store import open_store

log = logging.getLogger("retouch.telegram")

POLL_TIMEOUT = 30


def build_application(settings: Settings) -> Application[Any, Any, Any, Any, Any, Any]:
    """A PTB application on the configured Bot API server, handling updates concurrently."""
    token = settings.telegram_bot_token.get_secret_value()
    if not token:
        raise ConfigError("TELEGRAM_BOT_TOKEN: must be set to run the Telegram bot")
    return (
        ApplicationBuilder()
        .token(token)
        .base_url(settings.telegram_api_base_url)
        .base_file_url(settings.telegram_file_base_url)
        .concurrent_updates(True)
        .connection_pool_size(64)
        .connect_timeout(10)
        .read_timeout(30)
        .write_timeout(60)
        .media_write_timeout(120)
        .pool_timeout(30)
        .get_updates_read_timeout(POLL_TIMEOUT + 10)
        .build()
    )


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM ask for a graceful stop; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def handle(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            raise SystemExit(1)
        log.info("%s: finishing running jobs, then stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, handle, signum)


async def run_telegram(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or a signal arrives); jobs left unfinished resume next time."""
    quiet_http_loggers()  # httpx logs request URLs, and Bot API URLs carry the token
    app = build_application(settings)
    if stop is None:
        stop = asyncio.Event()
        stop_on_signals(stop)
    store = await open_store(settings)
    try:
        async with open_backend(settings) as backend:
            service = RetouchService(settings, store, backend)
            bot = TelegramBot(settings, service, app)
            service.register("telegram", bot)
            async with app:
                await bot.register_commands()
                await service.start()
                await app.start()
                assert app.updater is not None
                await app.updater.start_polling(timeout=POLL_TIMEOUT, drop_pending_updates=False)
                log.info("Telegram bot @%s is running (%s backend)", bot.username, backend.name)
                await stop.wait()
                await app.updater.stop()
                await service.shutdown()
                await bot.close()
                await app.stop()
    finally:
        await store.close()
