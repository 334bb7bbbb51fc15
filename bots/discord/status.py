"""The deferred response as a status board: queue position and progress, with a Cancel button.

Each message has one background task that edits it: at most one edit per `interval` seconds
(one every 2 s by default), always the latest lines, then the deletion once every job is
over; the service's hooks never wait for Discord here. A result about to go out is never held
behind a pending edit: that edit is dropped. An edit already sent is let finish first: every
request of one interaction token shares one rate-limit bucket and discord.py sends them one at a
time, sleeping out a 429 in between, so cutting it off would send the result inside the wait
Discord announced. The first edit also ends Discord's "thinking..." state, which a follow-up must
not meet. An interaction with several photos shows one line per photo.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from bots.discord.delivery import Replier
from bots.discord.targets import Target
from bots.discord.views import cancel_view

CLOSED_REMEMBERED = 1000
CLOSE_GRACE = 5.0

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Board:
    target: Target
    lines: dict[int, str] = field(default_factory=dict)
    shown: str = ""
    last_edit: float = float("-inf")
    closing: bool = False
    editor: asyncio.Task[None] | None = None
    request: asyncio.Task[None] | None = None
    """The edit or deletion the editor has sent and waits the answer of."""
    landed: asyncio.Event = field(default_factory=asyncio.Event)
    """The first edit was answered (or none will come): the message is no longer "thinking"."""

    def render(self) -> str:
        if self.target.batch is None:
            return next(iter(self.lines.values()), "")
        return "\n".join(f"#{index + 1} {line}" for index, line in sorted(self.lines.items()))


class StatusBoard:
    """One board per interaction; `clock` and `sleep` are injectable for tests."""

    def __init__(
        self,
        replier: Replier,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.replier = replier
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self._boards: dict[int, _Board] = {}
        self._closed: OrderedDict[int, None] = OrderedDict()

    async def show(self, target: Target, line: str) -> None:
        """Set the line of the job at `target.index`; the message follows within `interval`."""
        if target.original_id is None or target.interaction_id in self._closed:
            return
        board = self._boards.setdefault(target.interaction_id, _Board(target))
        board.lines[target.index] = line
        self._wake(board)

    async def finish(self, target: Target) -> None:
        """The job is over: drop its line, and delete the message once no line is left."""
        if target.original_id is None or target.interaction_id in self._closed:
            return
        board = self._boards.get(target.interaction_id)
        if board is None:  # e.g. shown before a restart
            board = self._boards[target.interaction_id] = _Board(target)
        board.lines.pop(target.index, None)
        if not board.lines:
            board.closing = True
            self._remember_closed(target.interaction_id)
            if board.request is None:
                await self._stop(board)  # it waits out the interval: the deletion need not
        self._wake(board)

    async def quiet(self, targets: Iterable[Target]) -> None:
        """These jobs' results go out now: forget their lines and drop a pending edit (one
        already sent finishes first, and the very first is waited for)."""
        for target in targets:
            board = self._boards.get(target.interaction_id)
            if board is None:
                continue
            if board.editor is not None and not board.landed.is_set():
                await board.landed.wait()  # a follow-up must not meet a "thinking" message
            board.lines.pop(target.index, None)
            if not board.closing:  # else the deletion goes on
                await self._stop(board)

    async def settled(self) -> None:
        """Wait until no message has an edit or a deletion under way or pending."""
        while editors := [b.editor for b in self._boards.values() if b.editor is not None]:
            await asyncio.gather(*editors, return_exceptions=True)

    async def close(self) -> None:
        """Let deletions under way finish (for `CLOSE_GRACE` seconds); drop pending edits."""
        editors = [b.editor for b in self._boards.values() if b.editor is not None]
        deleting = [b.editor for b in self._boards.values() if b.editor is not None and b.closing]
        if deleting:
            await asyncio.wait(deleting, timeout=CLOSE_GRACE)
        for task in editors:
            task.cancel()
        await asyncio.gather(*editors, return_exceptions=True)
        self._boards.clear()

    def _remember_closed(self, interaction_id: int) -> None:
        self._closed[interaction_id] = None
        while len(self._closed) > CLOSED_REMEMBERED:
            self._closed.popitem(last=False)

    def _wake(self, board: _Board) -> None:
        if board.editor is None:
            board.editor = asyncio.create_task(self._edit(board))

    async def _stop(self, board: _Board) -> None:
        """End the editor, once it has no request out: one sent is let finish, not cut off."""
        while board.request is not None:
            await asyncio.wait([board.request])
        editor, board.editor = board.editor, None
        if editor is not None:
            editor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await editor

    async def _send(self, board: _Board, request: Awaitable[None]) -> None:
        board.request = asyncio.ensure_future(request)
        try:
            await board.request
        finally:
            board.request = None

    async def _edit(self, board: _Board) -> None:
        """Show the latest lines (one edit per interval) until nothing changes; then, if every
        job is over, delete the message."""
        task = asyncio.current_task()
        try:
            while not board.closing:
                content = board.render()
                if not content or content == board.shown:
                    break
                wait = board.last_edit + self.interval - self.clock()
                if wait > 0:
                    await self.sleep(wait)
                    continue  # the lines may have changed meanwhile: render them again
                board.shown, board.last_edit = content, self.clock()
                view = cancel_view(board.target.interaction_id, board.target.lang)
                await self._send(board, self.replier.edit_status(board.target, content, view))
                board.landed.set()
            if board.closing:
                await self._send(board, self.replier.delete_status(board.target))
                self._boards.pop(board.target.interaction_id, None)
        finally:
            if board.editor is task:
                board.editor = None
            board.landed.set()  # edited, or nothing will be: nobody need wait for it
