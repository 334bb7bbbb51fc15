"""Who administers a Telegram group: asked with `getChatMember` on every check, the answer
cached a few seconds so a burst of presses costs one call.

An anonymous admin writes as the group itself (`sender_chat` is the chat): that is an admin.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from telegram import Bot, Chat, User
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError

log = logging.getLogger("retouch.telegram")

CACHE_SECONDS = 5.0
MAX_CACHED = 10_000
ADMIN_STATUSES = frozenset({ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER})


class ChatAdmins:
    """`is_admin` by `getChatMember`, remembered for `ttl` seconds of `clock`."""

    def __init__(
        self,
        bot: Bot,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.ttl = ttl
        self.clock = clock
        self._known: dict[tuple[int, int], tuple[bool, float]] = {}

    async def is_admin(
        self, chat: Chat, user: User | None, sender_chat: Chat | None = None
    ) -> bool:
        """Whether `user` (or the chat writing as itself) administers `chat`.

        In a private chat the one person there is its admin. A failed lookup is a no.
        """
        if chat.type == ChatType.PRIVATE:
            return True
        if sender_chat is not None and sender_chat.id == chat.id:
            return True
        if user is None:
            return False
        key = (chat.id, user.id)
        now = self.clock()
        known = self._known.get(key)
        if known is not None and known[1] > now:
            return known[0]
        try:
            member = await self.bot.get_chat_member(chat.id, user.id)
        except TelegramError as exc:
            log.warning("could not look up user %s in chat %s: %s", user.id, chat.id, exc.message)
            return False
        admin = member.status in ADMIN_STATUSES
        self._remember(key, admin, now)
        return admin

    def _remember(self, key: tuple[int, int], admin: bool, now: float) -> None:
        if len(self._known) >= MAX_CACHED:
            self._known = {k: v for k, v in self._known.items() if v[1] > now}
        self._known[key] = (admin, now + self.ttl)
