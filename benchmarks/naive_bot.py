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
from bots.telegram.bot import TelegramBot
from bots.telegram.media import MediaHandlers
from bots.telegram.run import TelegramRunner
from bots.telegram.settings import TelegramSettings
from core.logs import setup_logging
from core.service import JobEvent
from core.settings import load_settings

_submitted: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "naive_submitted", default=None
)
_ended: dict[str, asyncio.Future[None]] = {}
"""Each job's end, by job id (one bot per process)."""


def _end_of(job_id: str) -> asyncio.Future[None]:
    return _ended.setdefault(job_id, asyncio.get_running_loop().create_future())


class NaiveMedia(MediaHandlers):
    """The photo handler returns only when its job is over: the work is done in the handler.

    The service announces each new job ("queued") from inside `submit`, that is, inside the
    handler's own task; that is how the handler learns the ids of the jobs it has to wait for.
    """

    async def on_media(self, update: Any, context: Any) -> None:
        submitted: list[str] = []
        token = _submitted.set(submitted)
        try:
            await super().on_media(update, context)
        finally:
            _submitted.reset(token)
        for job_id in submitted:
            await _end_of(job_id)
            _ended.pop(job_id, None)


class NaiveBot(TelegramBot):
    """Our bot with the naive photo handler; its events tell the handler when a job is over."""

    media_handlers = NaiveMedia

    async def on_event(self, event: JobEvent) -> None:
        submitted = _submitted.get()
        if event.kind == "queued" and submitted is not None and event.job.id not in submitted:
            submitted.append(event.job.id)
        try:
            await super().on_event(event)
        finally:
            if event.kind in ("done", "failed", "cancelled"):
                future = _end_of(event.job.id)
                if not future.done():
                    future.set_result(None)


async def run_naive() -> None:
    """`retouch-bot telegram` (the same runtime and runner) with the two changes above."""
    settings, telegram = load_settings(), TelegramSettings.load()
    setup_logging(settings, telegram)
    runner = TelegramRunner(settings, telegram, concurrent_updates=False, bot_class=NaiveBot)
    await serve(settings, [runner])


if __name__ == "__main__":
    asyncio.run(run_naive())
