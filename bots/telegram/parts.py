"""What the Telegram handlers and the delivery share, built once by `TelegramBot`."""

from __future__ import annotations

from dataclasses import dataclass, field

from telegram import Bot

from bots.telegram.albums import OutgoingAlbums
from bots.telegram.chat_admins import ChatAdmins
from bots.telegram.languages import Languages
from bots.telegram.status import StatusBoard
from core.service import RetouchService


@dataclass(frozen=True, slots=True)
class BotParts:
    """The service, the Bot API, the status board, the largest file the bot will fetch, who
    speaks which language, who administers which group, whether results get Compare, and the
    albums whose results are being gathered."""

    service: RetouchService
    bot: Bot
    status: StatusBoard
    download_limit: int
    languages: Languages
    admins: ChatAdmins
    compare: bool = False
    albums: OutgoingAlbums = field(default_factory=OutgoingAlbums)
