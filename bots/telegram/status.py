"""The status reply under a user's photo, edited as the job moves; one shared line per group.

Status messages are the first thing the flood budget gives up: they go as `Priority.STATUS`, so
one that would delay a result is held back (`Deferred`) and tried again later, the latest text
winning. In a group every job started while its status line is up shows in that one line, so a
busy group gets one status message, not one per photo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from telegram import Bot, InlineKeyboardMarkup, Message
from telegram.constants import ChatType
from telegram.error import BadRequest, TelegramError

from bots.telegram.budget import Deferred, Priority, sending_as
from bots.telegram.replies import reply

log = logging.getLogger("retouch.telegram")

RETRY_SECONDS = 1.0
"""A held-back status edit is tried again after this long (or the edit interval, if longer)."""

Key = tuple[int, int]  # (chat id, message id)


@dataclass
class _Pending:
    text: str
    keyboard: InlineKeyboardMarkup | None
    final: bool = False


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
        self._pending: dict[Key, _Pending] = {}
        self._flushers: dict[int, asyncio.Task[None]] = {}
        self._jobs: dict[Key, int] = {}  # how many jobs show in each status message
        self._group_lines: dict[int, asyncio.Future[Message | None]] = {}

    def sent(self, chat_id: int) -> None:
        """A message just went to this chat: it spends the chat's budget as an edit would."""
        self._last_edit[chat_id] = time.monotonic()

    async def open(self, message: Message, text: str, jobs: int = 1) -> Message | None:
        """The status message `jobs` jobs for `message` show in: a new reply, or in a group
        the line already up; None when the budget holds it back (the jobs go without)."""
        chat = message.chat.id
        if message.chat.type == ChatType.PRIVATE:
            return await self._open(message, text, jobs)
        line = self._group_lines.get(chat)
        if line is not None:
            status = await asyncio.shield(line)
            if status is not None and (chat, status.message_id) in self._jobs:
                self._jobs[(chat, status.message_id)] += jobs
                return status
            if status is None:
                return None  # held back a moment ago: the group is busy
        future: asyncio.Future[Message | None] = asyncio.get_running_loop().create_future()
        self._group_lines[chat] = future
        status = None
        try:
            status = await self._open(message, text, jobs)
        finally:
            future.set_result(status)
            if status is None and self._group_lines.get(chat) is future:
                del self._group_lines[chat]
        return status

    async def show(
        self, chat_id: int, message_id: int, text: str, keyboard: InlineKeyboardMarkup | None
    ) -> None:
        """Show `text` now if the chat's edit budget allows, else as soon as it does. A line
        several jobs share shows no job's buttons."""
        if self._jobs.get((chat_id, message_id), 1) > 1:
            keyboard = None
        self._pending[(chat_id, message_id)] = _Pending(text, keyboard)
        wait = self._last_edit.get(chat_id, -1e9) + self.interval - time.monotonic()
        if wait <= 0 and chat_id not in self._flushers:
            await self._flush(chat_id)
        else:
            self._schedule(chat_id, wait)

    async def final(self, chat_id: int, message_id: int, text: str) -> bool:
        """A job's last word (a failure, a refusal): shown in its status message unless that
        is a group's line other jobs still show in; False then, and the caller says it apart."""
        key = (chat_id, message_id)
        if self._jobs.get(key, 1) > 1 and self._is_group_line(key):
            self._jobs[key] -= 1
            return False
        self._release(key)
        self._retire_group_line(key)
        self._pending[key] = _Pending(text, None, final=True)
        await self._flush_one(key)
        return True

    async def remove(self, chat_id: int, message_id: int) -> None:
        """A job is done with its status message: deleted once no job shows in it."""
        key = (chat_id, message_id)
        if self._release(key):
            return
        self._pending.pop(key, None)
        self._retire_group_line(key)
        with contextlib.suppress(TelegramError):
            await self.bot.delete_message(chat_id, message_id)

    async def close(self) -> None:
        for task in self._flushers.values():
            task.cancel()
        await asyncio.gather(*self._flushers.values(), return_exceptions=True)
        self._flushers.clear()

    async def _open(self, message: Message, text: str, jobs: int) -> Message | None:
        with sending_as(Priority.STATUS):
            status = await reply(message, text)
        if status is not None:
            self._jobs[(status.chat.id, status.message_id)] = jobs
            self.sent(status.chat.id)
        return status

    def _release(self, key: Key) -> bool:
        """One job fewer shows in this message; True if others still do."""
        left = self._jobs.pop(key, 1) - 1
        if left > 0:
            self._jobs[key] = left
            return True
        return False

    def _is_group_line(self, key: Key) -> bool:
        line = self._group_lines.get(key[0])
        if line is None or not line.done():
            return False
        status = line.result()
        return status is not None and status.message_id == key[1]

    def _retire_group_line(self, key: Key) -> None:
        """New jobs in the group open a new line: this one ends (deleted or showing an end)."""
        if self._is_group_line(key):
            del self._group_lines[key[0]]

    def _schedule(self, chat_id: int, wait: float) -> None:
        if chat_id not in self._flushers:
            task = asyncio.create_task(self._flush_later(chat_id, wait))
            self._flushers[chat_id] = task

    async def _flush_later(self, chat_id: int, wait: float) -> None:
        try:
            await asyncio.sleep(max(0.0, wait))
        finally:
            if self._flushers.get(chat_id) is asyncio.current_task():
                del self._flushers[chat_id]
        await self._flush(chat_id)

    async def _flush(self, chat_id: int) -> None:
        for key in [k for k in self._pending if k[0] == chat_id]:
            await self._flush_one(key)

    async def _flush_one(self, key: Key) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        self._last_edit[key[0]] = time.monotonic()
        priority = Priority.ANSWER if pending.final else Priority.STATUS
        try:
            with sending_as(priority):
                await self.bot.edit_message_text(
                    pending.text, chat_id=key[0], message_id=key[1], reply_markup=pending.keyboard
                )
        except Deferred:
            if key not in self._pending:  # nothing newer came meanwhile: this text again
                self._pending[key] = pending
            self._schedule(key[0], max(self.interval, RETRY_SECONDS))
        except BadRequest as exc:
            # "message is not modified" / "message to edit not found": nothing to do.
            log.debug("status edit skipped: %s", exc.message)
        except TelegramError as exc:
            log.warning("status edit failed: %s", exc.message)
