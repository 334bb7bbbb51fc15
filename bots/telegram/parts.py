"""What the Telegram handlers and the delivery share, built once by `TelegramBot`."""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Bot

from bots.telegram.status import StatusBoard
from core.service import RetouchService


@dataclass(frozen=True, slots=True)
class BotParts:
    """The service, the Bot API, the status board, and the largest file the bot will fetch."""

    service: RetouchService
    bot: Bot
    status: StatusBoard
    download_limit: int
