"""A clock for the fake Bot API and the bot's flood budget together: it jumps when slept on.

`sleep_until(t)` moves the time to `t` at once, so a bot waiting out Telegram's limits costs the
test no real seconds, and the fake, reading the same clock, sees exactly the time the bot waited.
Pass it as `FakeTelegram(clock=...)` and set it as `bots.telegram.clock.BUDGET_CLOCK` in the
task the bot runs in.
"""

from __future__ import annotations

import asyncio


class JumpClock:
    """Seconds that pass only when someone sleeps on them."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep_until(self, deadline: float) -> None:
        self.now = max(self.now, deadline)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds
