"""The Telegram bot's life in a process: prepare, receive updates (polling or webhook), stop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from telegram.ext import Application

from bots.runtime import Runtime
from bots.telegram.adapter import PLATFORM, TelegramBot
from bots.telegram.webhook import start_webhook
from core.settings import Settings

log = logging.getLogger("retouch.telegram")

POLL_TIMEOUT = 30


class TelegramRunner:
    """Telegram as a `BotRunner`: long polling, or a webhook when TELEGRAM_WEBHOOK_URL is set."""

    name = "telegram"

    def __init__(self, settings: Settings, *, concurrent_updates: bool = True) -> None:
        from bots.telegram.run import build_application

        self.settings = settings
        self.app: Application[Any, Any, Any, Any, Any, Any] = build_application(
            settings, concurrent_updates=concurrent_updates
        )
        self.bot: TelegramBot | None = None
        self._webhook: web.AppRunner | None = None
        self._initialized = False
        self._closed = asyncio.Event()

    async def prepare(self, runtime: Runtime) -> None:
        self.bot = TelegramBot(self.settings, runtime.service, self.app)
        runtime.register(PLATFORM, self.bot)
        await self.app.initialize()  # getMe: the token is checked here
        self._initialized = True
        await self.bot.register_commands()

    async def start(self) -> None:
        await self.app.start()
        if self.settings.telegram_webhook_url:
            self._webhook = await start_webhook(self.app, self.settings)
        else:
            assert self.app.updater is not None
            await self.app.bot.delete_webhook()
            await self.app.updater.start_polling(timeout=POLL_TIMEOUT)
        log.info("Telegram bot @%s is running", self.app.bot.username)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def healthy(self) -> bool:
        if not self.app.running:
            return False
        if self._webhook is not None:
            return True
        return self.app.updater is not None and self.app.updater.running

    async def stop(self) -> None:
        if self._webhook is not None:
            await self._webhook.cleanup()  # the webhook stays set for the other replicas
            self._webhook = None
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()

    async def close(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self.app.running:
            await self.app.stop()
        if self._initialized:
            await self.app.shutdown()
        self._closed.set()
