"""The Telegram bot: its handlers on a python-telegram-bot application, and the service's hooks.

Updates are handled concurrently (the real work runs in the service's worker pool), replies go
to the message that asked, and everything the bot says comes from `bots.messages`.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.ext import Application, ContextTypes

from bots import messages as m
from bots.chat_commands import ChatCommands
from bots.compare import Comparisons
from bots.telegram.buttons import ButtonHandlers
from bots.telegram.chat_admins import ChatAdmins
from bots.telegram.commands import CommandHandlers, publish_menu
from bots.telegram.compare import CompareHandlers
from bots.telegram.delivery import Delivery
from bots.telegram.language_menu import LanguageHandlers
from bots.telegram.languages import Languages
from bots.telegram.media import MediaHandlers
from bots.telegram.parts import BotParts
from bots.telegram.payments import PaymentHandlers
from bots.telegram.replies import reply
from bots.telegram.settings import TelegramSettings
from bots.telegram.settings_menu import SettingsMenuHandlers
from bots.telegram.status import StatusBoard
from bots.telegram.target import PLATFORM, lang_of
from core.jobs import Job
from core.service import JobEvent, RetouchService
from core.settings import Settings

log = logging.getLogger("retouch.telegram")


class TelegramBot:
    """One bot: the handlers (commands, features, media, buttons) and the `PlatformHooks`."""

    media_handlers: type[MediaHandlers] = MediaHandlers
    """The class of the photo handlers (the naive-bot benchmark puts its own here)."""

    def __init__(
        self,
        settings: Settings,
        telegram: TelegramSettings,
        service: RetouchService,
        app: Application[Any, Any, Any, Any, Any, Any],
    ) -> None:
        self.bot = app.bot
        self.status = StatusBoard(app.bot, telegram.status_edit_interval_seconds)
        limit = telegram.download_limit(settings.image_max_input_bytes)
        languages = Languages(service)
        parts = BotParts(
            service,
            app.bot,
            self.status,
            limit,
            languages,
            ChatAdmins(app.bot, ttl=telegram.admin_cache_seconds),
            compare=settings.compare_enabled,
        )
        self.delivery = Delivery(parts, send_file_too=telegram.send_file_too)
        self.media = self.media_handlers(parts, telegram)
        commands = ChatCommands(service, PLATFORM, settings.retouch_default_fidelity)
        payments = service.payments(settings.payments_stars_packs)
        self.payments = PaymentHandlers(parts, payments, settings)
        self.selling = payments.enabled
        self.commands = CommandHandlers(commands, languages, payments=payments.enabled)
        self.buttons = ButtonHandlers(parts, commands)
        comparisons = Comparisons(service, commands, self.delivery.fetch_input)
        features = (
            SettingsMenuHandlers(parts, frozenset(telegram.all_photos_chats)),
            LanguageHandlers(languages, commands),
            CompareHandlers(languages, comparisons),
            self.payments,
        )
        for handler in (
            *self.commands.handlers(),
            *(handler for feature in features for handler in feature.handlers()),
            *self.media.handlers(),
            *self.buttons.handlers(),
        ):
            app.add_handler(handler)
        app.add_error_handler(self.on_error)

    async def register_commands(self) -> None:
        """Publish the command menu (`setMyCommands`)."""
        await publish_menu(self.bot, payments=self.selling)

    async def catch_up(self) -> None:
        """Record Stars payments made while the bot was away (see `PaymentHandlers.catch_up`);
        only when packs are on sale (no payments are expected otherwise)."""
        if self.selling:
            await self.payments.catch_up()

    async def close(self) -> None:
        await self.media.close()
        await self.delivery.close()
        await self.status.close()

    async def fetch_input(self, job: Job) -> bytes:
        return await self.delivery.fetch_input(job)

    async def deliver(self, job: Job, result: bytes) -> None:
        await self.delivery.deliver(job, result)

    async def on_event(self, event: JobEvent) -> None:
        await self.delivery.on_event(event)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A handler raised: log it, and tell the user something went wrong on our side."""
        log.error("a handler failed", exc_info=context.error)
        if isinstance(update, Update) and update.effective_message is not None:
            lang = lang_of(update.effective_message)
            line = m.text("failed", lang, reason=m.text("e:other", lang))
            await reply(update.effective_message, line)
