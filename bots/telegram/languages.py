"""Which language each Telegram user is answered in (`core.preferences` decides; this reads it
for a message or a button press)."""

from __future__ import annotations

from telegram import Chat, Message, User
from telegram.constants import ChatType

from bots import messages as m
from bots.telegram.target import PLATFORM
from core.service import RetouchService


def group_id(chat: Chat) -> str | None:
    """The chat's id when it is a group (its settings apply), None for a private chat."""
    return None if chat.type == ChatType.PRIVATE else str(chat.id)


class Languages:
    """The language of a user in a chat: their `/language`, the group's, else their app's."""

    def __init__(self, service: RetouchService) -> None:
        self.service = service

    async def of(self, message: Message) -> m.Lang:
        return await self.of_user(message.from_user, message.chat)

    async def of_user(self, user: User | None, chat: Chat | None) -> m.Lang:
        if user is None:
            return "en"
        group = group_id(chat) if chat is not None else None
        return await self.service.preferences.language(
            PLATFORM, str(user.id), group, user.language_code
        )
