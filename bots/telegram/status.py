"""The status reply under a user's photo, edited as the job moves, and the chat action."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import partial

from telegram import Bot, InlineKeyboardMarkup, Message
from telegram.constants import ChatAction
from telegram.error import BadRequest, TelegramError

from bots.telegram.flood import patiently
from bots.telegram.replies import reply

log = logging.getLogger("retouch.telegram")

CHAT_ACTION_EVERY = 4.5
"""Telegram shows a chat action for 5 s; repeat a little sooner."""


@dataclass
class _Pending:
    text: str
    keyboard: InlineKeyboardMarkup | None


class StatusBoard:
    """Edits status messages, at most one edit per chat per `interval`, latest text wins.

    Sending the status message counts as the chat's first edit (`sent`), so a job that moves
    from "queued" to "running" at once, or finishes within the interval, costs no edit at all:
    the user sees "received", then the latest state, then the result.
    """

    def __init__(self, bot: Bot, interval: float) -> None:
        self.bot = bot
        self.interval = interval
        self._last_edit: dict[int, float] = {}
        self._pending: dict[tuple[int, int], _Pending] = {}
        self._flushers: dict[int, asyncio.Task[None]] = {}

    def sent(self, chat_id: int) -> None:
        """A message just went to this chat: it spends the chat's budget as an edit would."""
        self._last_edit[chat_id] = time.monotonic()

    async def open(self, message: Message, text: str) -> Message | None:
        """Reply to `message` with the status message a job's progress is shown in."""
        status = await reply(message, text)
        if status is not None:
            self.sent(status.chat.id)
        return status

    async def show(
        self, chat_id: int, message_id: int, text: str, keyboard: InlineKeyboardMarkup | None
    ) -> None:
        """Show `text` now if the chat's edit budget allows, else as soon as it does."""
        self._pending[(chat_id, message_id)] = _Pending(text, keyboard)
        wait = self._last_edit.get(chat_id, -1e9) + self.interval - time.monotonic()
        if wait <= 0 and chat_id not in self._flushers:
            await self._flush(chat_id)
        elif chat_id not in self._flushers:
            self._flushers[chat_id] = asyncio.create_task(self._flush_later(chat_id, wait))

    async def remove(self, chat_id: int, message_id: int) -> None:
        """Drop pending edits of a status message and delete it."""
        self._pending.pop((chat_id, message_id), None)
        with contextlib.suppress(TelegramError):
            await patiently(lambda: self.bot.delete_message(chat_id, message_id))

    async def close(self) -> None:
        for task in self._flushers.values():
            task.cancel()
        await asyncio.gather(*self._flushers.values(), return_exceptions=True)
        self._flushers.clear()

    async def _flush_later(self, chat_id: int, wait: float) -> None:
        try:
            await asyncio.sleep(wait)
            await self._flush(chat_id)
        finally:
            self._flushers.pop(chat_id, None)

    async def _edit(self, key: tuple[int, int], pending: _Pending) -> object:
        return await self.bot.edit_message_text(
            pending.text, chat_id=key[0], message_id=key[1], reply_markup=pending.keyboard
        )

    async def _flush(self, chat_id: int) -> None:
        for key in [k for k in self._pending if k[0] == chat_id]:
            pending = self._pending.pop(key, None)
            if pending is None:
                continue
            self._last_edit[chat_id] = time.monotonic()
            try:
                await patiently(partial(self._edit, key, pending))
            except BadRequest as exc:
                # "message is not modified" / "message to edit not found": nothing to do.
                log.debug("status edit skipped: %s", exc.message)
            except TelegramError as exc:
                log.warning("status edit failed: %s", exc.message)


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
                await self.bot.send_chat_action(
                    chat_id, ChatAction.UPLOAD_PHOTO, message_thread_id=thread_id
                )
            except TelegramError as exc:
                log.debug("chat action failed: %s", exc.message)
            await asyncio.sleep(CHAT_ACTION_EVERY)
