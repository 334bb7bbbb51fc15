"""The naive Telegram bot, the load benchmark's baseline: `python -m benchmarks.naive_bot`.

It is our bot, built from the same parts and the same settings (environment), with two changes
that make it what a first, naive bot usually is:

1. python-telegram-bot's default update handling: `concurrent_updates(False)`, one update at a
   time, each handler awaited to completion before the next update is looked at;
2. the work done inside the handler: after the photo handler has submitted its job, it waits until
   that job has been delivered (or has failed) before returning.

Everything else (downloads, the upstream call, the status message, the upload) is the real code,
so the difference from `retouch-bot telegram` on the same load is concurrency alone.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from bots.runtime import serve
from bots.telegram import runner
from bots.telegram.adapter import TelegramBot
from core.logs import setup_logging
from core.service import JobEvent
from core.settings import load_settings

_submitted: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "naive_submitted", default=None
)


class NaiveBot(TelegramBot):
    """The photo handler returns only when its job is over: the work is done in the handler.

    The service announces each new job ("queued") from inside `submit`, that is, inside the
    handler's own task; that is how the handler learns the ids of the jobs it has to wait for.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ended: dict[str, asyncio.Future[None]] = {}

    def _future(self, job_id: str) -> asyncio.Future[None]:
        return self._ended.setdefault(job_id, asyncio.get_running_loop().create_future())

    async def on_media(self, update: Any, context: Any) -> None:
        submitted: list[str] = []
        token = _submitted.set(submitted)
        try:
            await super().on_media(update, context)
        finally:
            _submitted.reset(token)
        for job_id in submitted:
            await self._future(job_id)
            self._ended.pop(job_id, None)

    async def on_event(self, event: JobEvent) -> None:
        submitted = _submitted.get()
        if event.kind == "queued" and submitted is not None and event.job.id not in submitted:
            submitted.append(event.job.id)
        try:
            await super().on_event(event)
        finally:
            if event.kind in ("done", "failed", "cancelled"):
                future = self._future(event.job.id)
                if not future.done():
                    future.set_result(None)


async def run_naive() -> None:
    """`retouch-bot telegram` (the same runtime and runner) with the two changes above."""
    settings = load_settings()
    setup_logging(settings)
    # The runner makes the naive bot instead of ours; nothing else changes.
    setattr(runner, "TelegramBot", NaiveBot)  # noqa: B010
    await serve(settings, [runner.TelegramRunner(settings, concurrent_updates=False)])


if __name__ == "__main__":
    asyncio.run(run_naive())
