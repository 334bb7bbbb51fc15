"""The clock the flood budget keeps time on: the system's, or one a test sets for the bot's task.

A test runs the bot on the fake Bot API's clock by setting `BUDGET_CLOCK` before it starts the
bot's task (a task copies the context it was created in); nothing else reads it.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds, a sleep until one of them, and word of the calls in flight."""

    def monotonic(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...

    def in_flight(self, change: int) -> None:
        """A call went out (+1) or was answered (-1): a test's clock holds still meanwhile."""


class SystemClock:
    """`time.monotonic` and `asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))

    def in_flight(self, change: int) -> None:
        """Real time passes anyway."""


SYSTEM_CLOCK = SystemClock()
BUDGET_CLOCK: ContextVar[Clock | None] = ContextVar("telegram_budget_clock", default=None)
"""None: `SYSTEM_CLOCK`."""


def budget_clock() -> Clock:
    """The clock set for this task, else the system's."""
    return BUDGET_CLOCK.get() or SYSTEM_CLOCK
