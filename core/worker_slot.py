"""What a job's task holds while it runs: a place in the worker pool, and an upload under way.

An album photo that is done waits for its siblings before the album goes out. While it waits it
gives its worker back (`give_back_worker`), so the siblings it waits for can run, and it is no
upload under way: a shutdown stops it at once, and it is resumed from the store (its result is
kept) by the next start. Once it goes out after all, it says so (`uploading_again`), and a
shutdown lets that finish. The service binds each job's task (`bind`); outside one, both calls
do nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hold:
    """How a job's task gives back its worker, and says whether its result is going out."""

    give_back_worker: Callable[[], None]
    """Frees the worker for the next job (idempotent; nothing for a task outside the pool)."""
    set_uploading: Callable[[bool], None]


_hold: ContextVar[Hold | None] = ContextVar("job_hold", default=None)


def bind(hold: Hold) -> None:
    """In a job's own task: what `give_back_worker` and `uploading_again` act on."""
    _hold.set(hold)


def give_back_worker() -> None:
    """The calling job only waits from now on: its worker goes back to the pool, and a shutdown
    may stop it (it is no upload under way)."""
    hold = _hold.get()
    if hold is not None:
        hold.set_uploading(False)
        hold.give_back_worker()


def uploading_again() -> None:
    """The calling job's result is going out after its wait: a shutdown lets that finish."""
    hold = _hold.get()
    if hold is not None:
        hold.set_uploading(True)
