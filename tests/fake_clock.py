"""A clock for the fake Bot API and the bot's flood budget together: time passes when slept on.

Sleepers wake in the order of their deadlines, and the clock moves on to the next deadline only
when no call the budget let out is still in flight and the sleeper just woken has shown up (made
its call, or sleeps again). So a bot that waits out Telegram's limits costs the test no real
seconds, and the fake, reading the same clock, sees each call at the time the bot meant to make
it, as it would in real time.

    clock = JumpClock()
    async with FakeTelegram(clock=clock) as fake:
        token = BUDGET_CLOCK.set(clock)   # then start the bot's task, and reset the token
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

QUIET_SECONDS = 10.0
"""Real seconds the clock waits for calls in flight to end (a hanging one never does)."""
SHOW_UP_SECONDS = 0.5
"""Real seconds a woken sleeper has to make its call before the clock moves on anyway."""


class JumpClock:
    """Seconds that pass only as sleepers need them, one deadline at a time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._flying = 0
        self._moves = 0  # calls let out and sleeps begun: a woken sleeper's sign of life
        self._changed = asyncio.Event()
        self._driver: asyncio.Task[None] | None = None

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def in_flight(self, change: int) -> None:
        self._flying += change
        self._moves += change > 0
        self._fire()

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self.now:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._order), woken))
        self._moves += 1
        self._fire()
        if self._driver is None or self._driver.done():
            self._driver = asyncio.create_task(self._drive())
        await woken

    async def _drive(self) -> None:
        while self._sleepers:
            await self._until(lambda: self._flying <= 0, QUIET_SECONDS)
            deadline, _, woken = heapq.heappop(self._sleepers)
            if woken.done():  # its sleeper was cancelled
                continue
            self.now = max(self.now, deadline)
            woken.set_result(None)
            await self._until(self._shown_up(self._moves), SHOW_UP_SECONDS)

    def _shown_up(self, moves: int) -> Callable[[], bool]:
        return lambda: self._moves > moves

    async def _until(self, predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            pass

    def _fire(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
