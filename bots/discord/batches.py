"""Photos of one context-menu command answered in one message, when they finish together.

A finished result waits only for siblings that are running or delivering right now: those hold
their own worker, so waiting can never starve the pool. Siblings still queued are not waited
for, and a result goes out alone after `wait` seconds at most. Each job's delivery returns only
once its photo really went out (or raises what the send raised), so the service settles and
retries each job as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from core.jobs import Job

Send = Callable[[Sequence[tuple[Job, bytes]]], Awaitable[None]]
Busy = Callable[[int], Awaitable[set[str]]]
"""The ids of a batch's jobs that are running or delivering (from the store)."""

MAX_WAIT = 300.0


@dataclass
class _Parked:
    job: Job
    result: bytes
    outcome: asyncio.Future[BaseException | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Batch:
    send: Send
    parked: dict[str, _Parked] = field(default_factory=dict)


class Batches:
    """Collects the results of each batch (keyed by interaction id) and sends them together."""

    def __init__(self, busy: Busy, wait: float = MAX_WAIT) -> None:
        self.busy = busy
        self.wait = wait
        self._batches: dict[int, _Batch] = {}

    async def deliver(self, key: int, job: Job, result: bytes, send: Send) -> None:
        """Send `result` with whichever siblings finish with it; raises if that send failed."""
        batch = self._batches.setdefault(key, _Batch(send))
        parked = _Parked(job, result)
        batch.parked[job.id] = parked
        await self._flush_if_ready(key)
        try:
            async with asyncio.timeout(self.wait):
                error = await asyncio.shield(parked.outcome)
        except TimeoutError:
            if batch.parked.pop(job.id, None) is not None:
                await self._send(send, [parked])
            error = await parked.outcome
        if error is not None:
            raise error

    async def sibling_done(self, key: int) -> None:
        """A job of the batch failed or was cancelled: the others need not wait for it."""
        if key in self._batches:
            await self._flush_if_ready(key)

    async def _flush_if_ready(self, key: int) -> None:
        busy = await self.busy(key)
        batch = self._batches.get(key)
        if batch is None or not batch.parked or busy - set(batch.parked):
            return
        items = list(batch.parked.values())
        batch.parked.clear()
        self._batches.pop(key, None)
        await self._send(batch.send, items)

    async def _send(self, send: Send, items: list[_Parked]) -> None:
        items.sort(key=lambda p: p.job.reply_target.get("index", 0))
        try:
            await send([(p.job, p.result) for p in items])
        except Exception as exc:
            for p in items:
                if not p.outcome.done():
                    p.outcome.set_result(exc)
            return
        for p in items:
            if not p.outcome.done():
                p.outcome.set_result(None)
