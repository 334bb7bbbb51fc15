"""The "sending photo…" chat action, kept up in a chat while any of its jobs is worked on.

Chat actions go as `Priority.ACTION`: the flood budget sends at most one per chat in 5 s (as
long as Telegram shows one) and none while a result waits or the chat is in a flood wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from telegram import Bot
from telegram.constants import ChatAction
from telegram.error import TelegramError

from bots.telegram.budget import ACTION_EVERY, Deferred, Priority, sending_as

log = logging.getLogger("retouch.telegram")


class ChatActions:
    """Keeps "sending photo…" visible in a chat while any of its jobs is being worked on."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self._count: defaultdict[tuple[int, int | None], int] = defaultdict(int)
        self._tasks: dict[tuple[int, int | None], asyncio.Task[None]] = {}

    def start(self, chat_id: int, thread_id: int | None) -> None:
        key = (chat_id, thread_id)
        self._count[key] += 1
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._repeat(key))

    def stop(self, chat_id: int, thread_id: int | None) -> None:
        key = (chat_id, thread_id)
        self._count[key] = max(0, self._count[key] - 1)
        if self._count[key] == 0:
            self._count.pop(key, None)
            task = self._tasks.pop(key, None)
            if task is not None:
                task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._count.clear()

    async def _repeat(self, key: tuple[int, int | None]) -> None:
        chat_id, thread_id = key
        while True:
            try:
                with sending_as(Priority.ACTION):
                    await self.bot.send_chat_action(
                        chat_id, ChatAction.UPLOAD_PHOTO, message_thread_id=thread_id
                    )
            except Deferred:
                pass  # the chat is busy with results, or had one a moment ago
            except TelegramError as exc:
                log.debug("chat action failed: %s", exc.message)
            await asyncio.sleep(ACTION_EVERY)
