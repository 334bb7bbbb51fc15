"""`retouch-bot telegram`: the bot by long polling or webhook, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from telegram.error import InvalidToken, NetworkError
from telegram.ext import Application, ApplicationBuilder

from bots.runtime import Runtime, serve
from bots.telegram.bot import TelegramBot
from bots.telegram.budget import FloodBudget, FloodLimits
from bots.telegram.request import AiohttpRequest
from bots.telegram.settings import TelegramSettings
from bots.telegram.target import PLATFORM
from bots.telegram.webhook import start_webhook
from core.errors import ConfigError
from core.http import url_origin
from core.settings import Settings

log = logging.getLogger("retouch.telegram")

CONNECTIONS = 64
"""Bot API connections at once (uploads, downloads, messages); more requests wait their turn."""
POLL_TIMEOUT = 30


def build_application(
    telegram: TelegramSettings, *, concurrent_updates: bool = True
) -> Application[Any, Any, Any, Any, Any, Any]:
    """A PTB application on the configured Bot API server, handling updates concurrently.

    `concurrent_updates=False` is PTB's default (one update at a time); only the naive-bot model
    in `benchmarks/` asks for it.
    """
    token = telegram.bot_token.get_secret_value()
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
        .base_url(telegram.api_base_url)
        .base_file_url(telegram.file_base_url)
        .concurrent_updates(concurrent_updates)
        .request(requests)
        .get_updates_request(polling)
        .rate_limiter(FloodBudget(FloodLimits.of(telegram)))
        .build()
    )


class TelegramRunner:
    """Telegram as a `BotRunner`: long polling, or a webhook when TELEGRAM_WEBHOOK_URL is set."""

    name = "telegram"

    def __init__(
        self,
        settings: Settings,
        telegram: TelegramSettings,
        *,
        concurrent_updates: bool = True,
        bot_class: type[TelegramBot] = TelegramBot,
    ) -> None:
        self.settings = settings
        self.telegram = telegram
        self.bot_class = bot_class
        self.app: Application[Any, Any, Any, Any, Any, Any] = build_application(
            telegram, concurrent_updates=concurrent_updates
        )
        self.bot: TelegramBot | None = None
        self._webhook: web.AppRunner | None = None
        self._initialized = False
        self._closed = asyncio.Event()

    async def prepare(self, runtime: Runtime) -> None:
        self.bot = self.bot_class(self.settings, self.telegram, runtime.service, self.app)
        runtime.register(PLATFORM, self.bot)
        try:
            await self.app.initialize()  # getMe: the token is checked here
        except (InvalidToken, NetworkError) as exc:
            await _close_requests(self.app)
            raise _start_up_error(exc, self.telegram) from None
        self._initialized = True
        await self.bot.register_commands()
        await self.bot.catch_up()

    async def start(self) -> None:
        await self.app.start()
        if self.telegram.webhook_url:
            self._webhook = await start_webhook(self.app, self.telegram)
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


def _start_up_error(exc: Exception, telegram: TelegramSettings) -> ConfigError:
    """One line naming the setting and the fix (PTB's own message quotes the token)."""
    if isinstance(exc, InvalidToken):
        return ConfigError(
            "TELEGRAM_BOT_TOKEN: the Bot API rejected the token; fix: copy it again from @BotFather"
        )
    return ConfigError(
        f"TELEGRAM_API_BASE_URL: cannot reach the Bot API at "
        f"{url_origin(telegram.api_base_url)} ({type(exc).__name__}); "
        "fix: check the network, or the setting"
    )


async def _close_requests(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Close the Bot API connections `initialize` opened before getMe failed: PTB's shutdown
    skips a bot that never finished initializing."""
    requests = {app.bot.request, *getattr(app.bot, "_request", ())}
    await asyncio.gather(*(request.shutdown() for request in requests))


async def run_telegram(
    settings: Settings, telegram: TelegramSettings, stop: asyncio.Event | None = None
) -> None:
    """Run until `stop` is set (or a signal arrives); jobs left unfinished resume next time.

    Long polling by default; webhook mode when `TELEGRAM_WEBHOOK_URL` is set.
    """
    await serve(settings, [TelegramRunner(settings, telegram)], stop)
