"""The durable inbox an adapter puts each platform update through: stored, then confirmed.

    if await inbox.receive(update_id, payload):   # before the platform hears it arrived
        async with inbox.handling(update_id):
            ...                                   # the handlers
    # after a restart: for update_id, payload in await inbox.pending(): handle it first

An update is handled once even across restarts: `receive` is False for one stored before (the
platform re-sent it), and the first job an update admits marks it done in the reservation's own
transaction (`source_update`), so a kill can neither lose it nor admit it twice. An update that
admits no job is marked done when its handlers return.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from core.crash import crash_point
from core.platform import RetouchRequest
from core.store import JobStore

log = logging.getLogger("retouch.inbox")

KEEP_DONE_SECONDS: Final = 24 * 3600.0
"""How long a handled update is remembered where no offset says it cannot come again
(Telegram keeps an unconfirmed update for 24 hours)."""


@dataclass
class _Handling:
    platform: str
    update_id: int
    taken: bool = False


_handling: ContextVar[_Handling | None] = ContextVar("retouch_update", default=None)


def take_current_update(platform: str) -> int | None:
    """The update being handled in this context, for the first job it admits; None after.

    The reservation that carries it marks it done; if it is refused, `give_back_update`.
    """
    handling = _handling.get()
    if handling is None or handling.taken or handling.platform != platform:
        return None
    handling.taken = True
    return handling.update_id


def give_back_update(update_id: int | None) -> None:
    """The reservation that took the current update was refused: it is marked done as usual."""
    handling = _handling.get()
    if handling is not None and handling.update_id == update_id:
        handling.taken = False


@contextlib.contextmanager
def carrying_update(request: RetouchRequest) -> Iterator[RetouchRequest]:
    """`request` with the update being handled (the first job of it only); given back if the
    block raises (the reservation was refused)."""
    if request.source_update is None:
        update = take_current_update(request.platform)
        request = dataclasses.replace(request, source_update=update)
    try:
        yield request
    except BaseException:
        give_back_update(request.source_update)
        raise


class Inbox:
    """One platform's updates in the store, between arrival and handling."""

    def __init__(self, store: JobStore, platform: str) -> None:
        self.store = store
        self.platform = platform

    async def receive(self, update_id: int, payload: dict[str, Any]) -> bool:
        """Store an update before it is confirmed; False when it came before (skip it)."""
        fresh = await self.store.store_update(self.platform, update_id, payload)
        crash_point("update_stored")
        return fresh

    async def receive_many(self, updates: Sequence[tuple[int, dict[str, Any]]]) -> set[int]:
        """`receive` for a batch, stored at once; the ids to handle."""
        fresh = await self.store.store_updates(self.platform, updates)
        crash_point("update_stored")
        return set(fresh)

    async def pending(self) -> list[tuple[int, dict[str, Any]]]:
        """Stored updates never handled (the process stopped first), oldest first."""
        return await self.store.pending_updates(self.platform)

    @contextlib.asynccontextmanager
    async def handling(self, update_id: int) -> AsyncIterator[None]:
        """Handle one stored update in the block; it is done when the block ends, unless it was
        cancelled (a shutdown): then it stays pending, for the next start."""
        handling = _Handling(self.platform, update_id)
        token = _handling.set(handling)
        try:
            yield
        except Exception:
            await self._finish(update_id)
            raise
        finally:
            _handling.reset(token)
        if not handling.taken:  # else the job's reservation marked it done already
            await self._finish(update_id)

    async def _finish(self, update_id: int) -> None:
        try:
            await self.store.finish_update(self.platform, update_id)
        except Exception:  # it stays pending: handled again after a restart
            log.exception("could not mark update %d handled", update_id)

    async def prune(self, *, below: int | None = None, before: float | None = None) -> int:
        """Forget handled updates the platform can no longer re-send: ids below a confirmed
        offset, or received before `before`."""
        return await self.store.prune_updates(self.platform, below=below, before=before)
