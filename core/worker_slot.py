"""A job's place in the worker pool, given back early by a job that from now on only waits.

An album photo that is done waits for its siblings before the album goes out; while it waits it
gives its worker back (`give_back_worker`), so the siblings it waits for can run. The service
binds each job's task to its worker (`bind`); outside a worker, giving back does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

_release: ContextVar[Callable[[], None] | None] = ContextVar("worker_release", default=None)


def bind(release: Callable[[], None]) -> None:
    """In a job's own task: `release` frees the worker running it."""
    _release.set(release)


def give_back_worker() -> None:
    """Free the calling job's worker for the next job; the job itself goes on, outside the pool.

    Idempotent, and a no-op outside a worker (a job resumed after a restart, a test).
    """
    release = _release.get()
    if release is not None:
        release()
