"""The deferred response as a status board: queue position and progress, with a Cancel button.

Edits are throttled per message (latest text wins) and serialised, so a deletion is never
overtaken by an older edit. An interaction with several photos shows one line per photo.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from bots.discord.delivery import Replier
from bots.discord.targets import Target
from bots.discord.views import cancel_view

CLOSED_REMEMBERED = 1000


@dataclass
class _Board:
    target: Target
    lines: dict[int, str] = field(default_factory=dict)
    shown: str = ""
    last_edit: float = float("-inf")
    closed: bool = False
    flusher: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def render(self) -> str:
        if self.target.batch is None:
            return next(iter(self.lines.values()), "")
        return "\n".join(f"#{index + 1} {line}" for index, line in sorted(self.lines.items()))


class StatusBoard:
    """One board per interaction; at most one edit per `interval` seconds each."""

    def __init__(self, replier: Replier, interval: float) -> None:
        self.replier = replier
        self.interval = interval
        self._boards: dict[int, _Board] = {}
        self._closed: OrderedDict[int, None] = OrderedDict()

    async def show(self, target: Target, line: str) -> None:
        """Set the line of the job at `target.index`; the message follows within `interval`."""
        if target.original_id is None or target.interaction_id in self._closed:
            return
        board = self._boards.setdefault(target.interaction_id, _Board(target))
        board.lines[target.index] = line
        await self._request(board)

    async def finish(self, target: Target) -> None:
        """The job is over: drop its line, and delete the message once no line is left."""
        board = self._boards.get(target.interaction_id)
        if board is None:
            if target.interaction_id not in self._closed:  # e.g. shown before a restart
                self._remember_closed(target.interaction_id)
                await self.replier.delete_status(target)
            return
        board.lines.pop(target.index, None)
        if board.lines:
            await self._request(board)
            return
        self._boards.pop(target.interaction_id, None)
        self._remember_closed(target.interaction_id)
        board.closed = True
        if board.flusher is not None:
            board.flusher.cancel()
        async with board.lock:
            await self.replier.delete_status(target)

    def drop(self, target: Target) -> None:
        """Forget the job's line without an edit: its result is out, the message goes soon."""
        board = self._boards.get(target.interaction_id)
        if board is not None:
            board.lines.pop(target.index, None)

    async def idle(self, target: Target) -> None:
        """Wait until no edit of the target's message is in flight."""
        board = self._boards.get(target.interaction_id)
        if board is not None:
            async with board.lock:
                pass

    async def close(self) -> None:
        tasks = [b.flusher for b in self._boards.values() if b.flusher is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._boards.clear()

    def _remember_closed(self, interaction_id: int) -> None:
        self._closed[interaction_id] = None
        while len(self._closed) > CLOSED_REMEMBERED:
            self._closed.popitem(last=False)

    async def _request(self, board: _Board) -> None:
        if board.flusher is not None:
            return  # a scheduled flush will show the latest lines
        wait = board.last_edit + self.interval - time.monotonic()
        if wait <= 0:
            await self._flush(board)
        else:
            board.flusher = asyncio.create_task(self._flush_later(board, wait))

    async def _flush_later(self, board: _Board, wait: float) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(wait)
            board.flusher = None
            await self._flush(board)

    async def _flush(self, board: _Board) -> None:
        async with board.lock:
            content = board.render()
            if board.closed or not content or content == board.shown:
                return
            board.shown = content
            board.last_edit = time.monotonic()
            view = cancel_view(board.target.interaction_id, board.target.lang)
            await self.replier.edit_status(board.target, content, view)
