"""Albums (media groups): gather the incoming photos, and send the results back as one album.

A finished photo waits for its siblings without holding a worker (`core.worker_slot`); a sibling
that will not come (refused at the door, failed, cancelled) leaves the album, so the rest go out
together at once, in albums of at most ten (what sendMediaGroup takes). An album this process did
not take in (its photos resumed after a restart, or adopted from another replica) learns from the
store which of its photos are still to come (`missing_siblings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telegram import Message

from bots.telegram.target import PLATFORM, AlbumSlot, Target
from core.jobs import UNFINISHED_STATES, Job
from core.service import RetouchService
from core.worker_slot import give_back_worker, uploading_again

log = logging.getLogger("retouch.telegram")

DELIVERY_WAIT = 600.0
"""How long a finished photo waits for its album siblings before it is sent on its own."""
CLOSED_REMEMBERED = 1000
OPEN_REMEMBERED = 1000
"""Albums kept open at most: one whose photos were all taken over by another replica is never
completed here, so the oldest makes way."""
ALBUM_MAX = 10
"""sendMediaGroup takes 2 to 10 items."""
SIBLINGS_LOOKED_AT = 100
"""How many of the user's latest jobs `missing_siblings` reads to find an album's photos."""


class IncomingAlbums:
    """Telegram sends an album as separate messages; this hands them over together.

    Each part's handler waits (`add`) until the whole album has been handled, so the durable
    inbox keeps every part pending until its job is admitted: a kill while the album is being
    gathered loses no photo, and the parts are gathered again after the restart.
    """

    def __init__(
        self,
        wait: float,
        handle: Callable[[list[Message], list[int | None]], Awaitable[None]],
    ) -> None:
        self.wait = wait
        self.handle = handle
        self._groups: dict[str, list[tuple[Message, int | None]]] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._handled: dict[str, asyncio.Future[None]] = {}

    async def add(self, message: Message, update_id: int | None = None) -> None:
        """Add one album message (from update `update_id`) and wait until its album has been
        handled, `wait` seconds after its last part."""
        group = str(message.media_group_id)
        self._groups.setdefault(group, []).append((message, update_id))
        handled = self._handled.get(group)
        if handled is None:
            handled = self._handled[group] = asyncio.get_running_loop().create_future()
        timer = self._timers.pop(group, None)
        if timer is not None:
            timer.cancel()
        self._timers[group] = asyncio.create_task(self._later(group))
        await asyncio.shield(handled)

    async def close(self) -> None:
        """Stop gathering: the parts waiting stay pending in the inbox, for the next start."""
        timers = list(self._timers.values())
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        for handled in self._handled.values():
            handled.cancel()
        self._handled.clear()

    async def _later(self, group: str) -> None:
        await asyncio.sleep(self.wait)
        self._timers.pop(group, None)
        handled = self._handled.pop(group, None)
        parts = sorted(self._groups.pop(group, []), key=lambda part: part[0].message_id)
        try:
            if parts:
                await self.handle([m for m, _ in parts], [u for _, u in parts])
        finally:
            if handled is not None and not handled.done():
                handled.set_result(None)


def album_chunks(indices: list[int]) -> list[list[int]]:
    """`indices` as consecutive albums of 2 to `ALBUM_MAX`, as even as can be (11 photos are 6 +
    5, 23 are 8 + 8 + 7); none for fewer than two photos."""
    if len(indices) < 2:
        return []
    count = -(-len(indices) // ALBUM_MAX)
    size, larger = divmod(len(indices), count)
    chunks, start = [], 0
    for n in range(count):
        end = start + size + (n < larger)
        chunks.append(indices[start:end])
        start = end
    return chunks


@dataclass
class _Album:
    size: int
    results: dict[int, bytes] = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)
    """Photos of the album that will not come: refused, failed or cancelled."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once every photo is in or gone, or the album is closed."""
    sent: asyncio.Future[frozenset[int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    """The photos that went out in albums, once the album is over."""
    sending: bool = False

    @property
    def complete(self) -> bool:
        return len(self.results.keys() | self.gone) >= self.size


Send = Callable[[dict[int, bytes]], Awaitable[None]]
Missing = Callable[[], Awaitable[set[int]]]
"""The indices of an album's photos that will not come (see `missing_siblings`)."""


async def missing_siblings(service: RetouchService, job: Job, album: AlbumSlot) -> set[int]:
    """The photos of `job`'s album that will not come: refused at the door (no job), or already
    finished (failed, cancelled, or sent on their own before a restart)."""
    jobs = await service.recent_jobs_of(PLATFORM, job.user_id, SIBLINGS_LOOKED_AT)
    coming = {album.index}
    for sibling in jobs:
        slot = Target.of(sibling).album
        if slot is not None and slot.id == album.id and sibling.state in UNFINISHED_STATES:
            coming.add(slot.index)
    return set(range(album.size)) - coming


class OutgoingAlbums:
    """Holds finished album photos until every sibling is in or gone, then sends them together.

    Each job's delivery waits for the album's send, so a job is only marked done once its photo
    really went out; a photo the album could not take (too long a wait, a failed send) goes alone.
    """

    def __init__(self) -> None:
        self._albums: dict[str, _Album] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()

    def open(self, album_id: str, size: int) -> None:
        """An album this process takes in: its photos are told apart as they are submitted (one
        refused `leave`s it), so its deliveries need not ask the store which will come."""
        self._album(album_id, size)

    async def deliver(
        self,
        album_id: str,
        size: int,
        index: int,
        result: bytes,
        send_album: Send,
        missing: Missing | None = None,
    ) -> bool:
        """Add a result; True once it went out in an album, False: the caller sends it alone.

        While the album waits for its other photos, the caller's worker is given back. An album
        not `open`ed here asks `missing` once which photos will not come.
        """
        if album_id in self._closed:
            return False
        unknown = album_id not in self._albums
        album = self._album(album_id, size)
        album.results[index] = result
        if unknown and missing is not None:
            for gone in await missing():
                self.leave(album_id, size, gone)
        if album.complete:
            album.ready.set()
        else:
            give_back_worker()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(album.ready.wait(), DELIVERY_WAIT)
            if not album.ready.is_set():  # waited too long: every photo goes alone
                self._close(album_id)
            uploading_again()  # in the album, or alone
        if not album.sending and not album.sent.done():
            await self._send(album_id, album, send_album)
        return index in await asyncio.shield(album.sent)

    def leave(self, album_id: str, size: int, index: int) -> None:
        """Photo `index` of the album will not come (refused, failed or cancelled): the album is
        complete without it."""
        if album_id in self._closed:
            return
        album = self._album(album_id, size)
        if index in album.results:
            return
        album.gone.add(index)
        if not album.complete:
            return
        if album.results:
            album.ready.set()  # a waiting photo sends the album
        else:
            self._close(album_id)

    def close(self) -> None:
        for album_id in list(self._albums):
            self._close(album_id)

    def _album(self, album_id: str, size: int) -> _Album:
        album = self._albums.get(album_id)
        if album is None:
            if len(self._albums) >= OPEN_REMEMBERED:  # the oldest, its photos long settled
                self._close(next(iter(self._albums)))  # elsewhere: any still waiting go alone
            album = self._albums[album_id] = _Album(size)
        return album

    async def _send(self, album_id: str, album: _Album, send_album: Send) -> None:
        """Send the album's photos in albums of at most ten; what a failure left unsent goes
        alone (the photos' own sends say why, if it fails again)."""
        album.sending = True
        self._close(album_id)
        sent: set[int] = set()
        try:
            for chunk in album_chunks(sorted(album.results)):
                await send_album({index: album.results[index] for index in chunk})
                sent.update(chunk)
        except Exception as exc:
            log.warning("an album could not be sent (%s); its photos go one by one", exc)
        finally:
            album.sent.set_result(frozenset(sent))

    def _close(self, album_id: str) -> None:
        """No photo joins the album any more; unless it is being sent, nothing of it is."""
        self._closed[album_id] = None
        while len(self._closed) > CLOSED_REMEMBERED:
            self._closed.popitem(last=False)
        album = self._albums.pop(album_id, None)
        if album is None:
            return
        if not album.sending and not album.sent.done():
            album.sent.set_result(frozenset())
        album.ready.set()
