"""Handing a result to an adapter: retried with backoff, unless the adapter says it is hopeless;
and the record of what it sent, kept before the job is `done`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from core.crash import crash_point
from core.errors import DeliveryError, RetouchError
from core.jobs import Job
from core.platform import PlatformHooks
from core.store import JobStore

log = logging.getLogger("retouch.service")

MAX_BACKOFF_SECONDS = 30.0


async def deliver_with_retries(
    hooks: PlatformHooks,
    job: Job,
    result: bytes,
    *,
    attempts: int,
    sleep: Callable[[float], Awaitable[None]],
) -> RetouchError | None:
    """`hooks.deliver` up to `attempts` times (1 s, 2 s, 4 s ... apart); None once it worked,
    else the last error (a permanent `DeliveryError` ends the tries at once)."""
    for attempt in range(1, attempts + 1):
        try:
            await hooks.deliver(job, result)
            return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            permanent = isinstance(exc, DeliveryError) and exc.permanent
            log.warning("job %s: delivery attempt %d/%d failed: %s", job.id, attempt, attempts, exc)
            if permanent or attempt == attempts:
                return exc if isinstance(exc, RetouchError) else DeliveryError(str(exc))
            await sleep(min(MAX_BACKOFF_SECONDS, 2.0 ** (attempt - 1)))
    raise ValueError(f"attempts must be at least 1, not {attempts}")


class SentResults:
    """The platform's id of each delivered result, recorded the moment the upload is accepted:
    a restart before `done` then does not send it again (`Job.sent_ref`)."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    async def record(self, job: Job, sent_ref: str) -> None:
        """The adapter's upload of `job`'s result was accepted as `sent_ref`."""
        crash_point("upload_sent")
        await self._store.record_sent(job.id, sent_ref)
        crash_point("sent_recorded")
