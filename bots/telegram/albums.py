"""Albums (media groups): gather the incoming photos, and send the results back as one album."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telegram import Message

DELIVERY_WAIT = 600.0
"""How long a finished photo waits for its album siblings before it is sent on its own."""
CLOSED_REMEMBERED = 1000


class IncomingAlbums:
    """Telegram sends an album as separate messages; this hands them over together."""

    def __init__(self, wait: float, handle: Callable[[list[Message]], Awaitable[None]]) -> None:
        self.wait = wait
        self.handle = handle
        self._groups: dict[str, list[Message]] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}

    def add(self, message: Message) -> None:
        """Add one album message; the album is handled `wait` seconds after its last part."""
        group = str(message.media_group_id)
        self._groups.setdefault(group, []).append(message)
        timer = self._timers.pop(group, None)
        if timer is not None:
            timer.cancel()
        self._timers[group] = asyncio.create_task(self._later(group))

    async def close(self) -> None:
        timers = list(self._timers.values())
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)

    async def _later(self, group: str) -> None:
        await asyncio.sleep(self.wait)
        self._timers.pop(group, None)
        messages = sorted(self._groups.pop(group, []), key=lambda m: m.message_id)
        if messages:
            await self.handle(messages)


@dataclass
class _Album:
    size: int
    results: dict[int, bytes] = field(default_factory=dict)
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def complete(self) -> bool:
        return len(self.results) >= self.size


Send = Callable[[dict[int, bytes]], Awaitable[None]]


class OutgoingAlbums:
    """Holds finished album photos until every sibling is done, then sends them in one go.

    Each job's delivery waits for the album's send, so a job is only marked done once its photo
    really went out. When a sibling failed, or the album takes too long, photos go one by one.
    """

    def __init__(self) -> None:
        self._albums: dict[str, _Album] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()

    async def deliver(
        self, album_id: str, size: int, index: int, result: bytes, send_album: Send
    ) -> bool:
        """Add a result; True when it went out in the album, False: the caller sends it alone."""
        if album_id in self._closed:
            return False
        album = self._albums.setdefault(album_id, _Album(size))
        album.results[index] = result
        if album.complete:
            self._close(album_id, None)
            if len(album.results) < 2:
                return False
            try:
                await send_album(dict(sorted(album.results.items())))
            except BaseException:
                album.done.set_result(False)
                raise
            album.done.set_result(True)
            return True
        try:
            return await asyncio.wait_for(asyncio.shield(album.done), DELIVERY_WAIT)
        except TimeoutError:
            self._close(album_id, False)
            return False

    def failed(self, album_id: str) -> None:
        """A sibling failed: the album cannot be complete, so the others go alone."""
        self._close(album_id, False)

    def close(self) -> None:
        for album_id in list(self._albums):
            self._close(album_id, False)

    def _close(self, album_id: str, outcome: bool | None) -> None:
        self._closed[album_id] = None
        while len(self._closed) > CLOSED_REMEMBERED:
            self._closed.popitem(last=False)
        album = self._albums.pop(album_id, None)
        if album is not None and outcome is not None and not album.done.done():
            album.done.set_result(outcome)
