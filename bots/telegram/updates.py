"""Telegram updates through the durable inbox: stored before they are confirmed, handled once.

PTB's `Updater` hands an update to the application and moves the offset on the next
getUpdates, whether or not anything durable holds it yet: a kill in between loses the photo.
Here each update is stored (`core.inbox`) before the getUpdates that confirms it (polling) or
the 200 (webhook), a re-sent one is skipped, and those stored but never handled (the process
died first) are handled at start, before anything new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from telegram import Update
from telegram.error import InvalidToken, RetryAfter, TelegramError, TimedOut
from telegram.ext import Application

from core.crash import crash_point
from core.inbox import KEEP_DONE_SECONDS, Inbox

log = logging.getLogger("retouch.telegram")

MAX_BACKOFF_SECONDS = 30.0
PRUNE_EVERY_SECONDS = 3600.0
"""How often handled updates past `KEEP_DONE_SECONDS` are deleted while the bot runs."""


class InboxDispatcher:
    """Hands stored updates to the PTB application, each in its own task (PTB's update
    processor bounds how many run at once), and marks each done when its handlers return."""

    def __init__(self, app: Application[Any, Any, Any, Any, Any, Any], inbox: Inbox) -> None:
        self.app = app
        self.inbox = inbox
        self._tasks: set[asyncio.Task[None]] = set()
        self._pruned_at = time.monotonic()

    async def receive(self, payload: dict[str, Any]) -> None:
        """A new update from Telegram (a webhook call): stored, then handled unless it came
        before."""
        update = Update.de_json(payload, self.app.bot)
        if await self.inbox.receive(update.update_id, payload):
            self._dispatch(update)
        if time.monotonic() - self._pruned_at > PRUNE_EVERY_SECONDS:
            await self._prune_old()

    async def receive_many(self, updates: list[Update]) -> None:
        """One getUpdates answer: stored in one go, then the new ones handled."""
        fresh = await self.inbox.receive_many([(u.update_id, u.to_dict()) for u in updates])
        for update in updates:
            if update.update_id in fresh:
                self._dispatch(update)

    async def _prune_old(self) -> None:
        """Forget handled updates Telegram no longer keeps (a webhook has no offset to say so)."""
        self._pruned_at = time.monotonic()
        await self.inbox.prune(before=time.time() - KEEP_DONE_SECONDS)

    async def replay(self) -> int:
        """Handle the updates stored before a stop and never handled; how many."""
        await self._prune_old()
        pending = await self.inbox.pending()
        for _, payload in pending:
            self._dispatch(Update.de_json(payload, self.app.bot))
        if pending:
            log.info("handling %d updates left from before the restart", len(pending))
        return len(pending)

    def _dispatch(self, update: Update) -> None:
        task = asyncio.create_task(self._handle(update), name=f"update-{update.update_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, update: Update) -> None:
        async with self.inbox.handling(update.update_id):
            processor = self.app.update_processor
            await processor.process_update(update, self.app.process_update(update))

    async def close(self) -> None:
        """Let the handlers under way finish (they only admit jobs); those cut off stay pending."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class InboxPoller:
    """Long polling whose offset moves past an update only once the inbox holds it."""

    def __init__(self, dispatcher: InboxDispatcher, *, timeout: int) -> None:
        self.dispatcher = dispatcher
        self.bot = dispatcher.app.bot
        self.timeout = timeout
        self.offset: int | None = None
        """The next update id to ask for: every update below it is stored."""
        self.task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name="telegram-polling")

    async def stop(self) -> None:
        """Stop polling, then confirm what was stored, so Telegram does not send it again."""
        if self.task is None:
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        if self.offset is not None:
            with contextlib.suppress(TelegramError):
                await self.bot.get_updates(offset=self.offset, timeout=0, limit=1)

    async def _loop(self) -> None:
        backoff = 1.0
        while True:
            try:
                updates = await self.bot.get_updates(
                    offset=self.offset, timeout=self.timeout, allowed_updates=Update.ALL_TYPES
                )
            except RetryAfter as exc:
                await asyncio.sleep(_seconds(exc.retry_after) + 0.5)
                continue
            except TimedOut:
                continue
            except InvalidToken:
                raise
            except TelegramError as exc:
                log.warning("getUpdates failed (%s); again in %.0f s", exc.message, backoff)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_SECONDS, 2 * backoff)
                continue
            backoff = 1.0
            if self.offset is not None:
                crash_point("offset_confirmed")
                await self.dispatcher.inbox.prune(below=self.offset)
            if updates:
                await self.dispatcher.receive_many(updates)
                self.offset = updates[-1].update_id + 1


def _seconds(value: Any) -> float:
    """`RetryAfter.retry_after`: seconds, as a number or a timedelta."""
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)
