"""PTB's `AIORateLimiter` against the bot's own `FloodBudget`, on the limit-enforcing fake Bot API.

The same calls through each, in real time: 150 private chats get a status reply at once and a
result photo 2 s later, 10 private chats get 5 messages at once (a user who sent 5 photos), and
one group gets 15 status replies at once and 15 results 2 s later. Reported for each: seconds
until every call returned, sending calls, 429s, calls made during a flood wait, failed calls.
Both send everything as results (no priorities), so only the pacing is compared.

    .venv/bin/python -m benchmarks.telegram_limiters     # JSON to stdout (about a minute)

Needs `python-telegram-bot[rate-limiter]` (aiolimiter) for the peer.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
from collections.abc import Awaitable
from typing import Any

from PIL import Image
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, BaseRateLimiter, ExtBot

from bots.telegram.budget import FloodBudget, FloodLimits
from bots.telegram.request import AiohttpRequest
from tests.fake_telegram import FakeTelegram, User

PRIVATE = 150
BUSY_PRIVATE = 10
BUSY_MESSAGES = 5
GROUP_PHOTOS = 15
UPSTREAM_SECONDS = 2.0
GROUP = -1001234567890
DEADLINE_SECONDS = 150


def small_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 150, 120)).save(buffer, format="JPEG")
    return buffer.getvalue()


async def load(bot: ExtBot[Any]) -> int:
    """Send the calls; the number that failed (after the limiter's own retries)."""
    photo = small_jpeg()

    async def job(chat: int, n: int) -> None:
        await bot.send_message(chat, f"received #{n}")
        await asyncio.sleep(UPSTREAM_SECONDS)
        await bot.send_photo(chat, photo)

    calls: list[Awaitable[Any]] = [job(1000 + n, n) for n in range(PRIVATE)]
    calls += [job(GROUP, n) for n in range(GROUP_PHOTOS)]
    calls += [
        bot.send_message(5000 + n, f"line {m}")
        for n in range(BUSY_PRIVATE)
        for m in range(BUSY_MESSAGES)
    ]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    return sum(isinstance(outcome, TelegramError) for outcome in outcomes)


async def measure(name: str, limiter: BaseRateLimiter[Any]) -> dict[str, Any]:
    async with FakeTelegram() as fake:
        for chat in [*range(1000, 1000 + PRIVATE), *range(5000, 5000 + BUSY_PRIVATE)]:
            fake.add_chat(chat, user=User(chat))
        fake.add_chat(GROUP, chat_type="supergroup")
        requests = AiohttpRequest(connection_pool_size=64, read_timeout=30, pool_timeout=30)
        bot = ExtBot(fake.token, base_url=fake.base_url, rate_limiter=limiter, request=requests)
        async with bot:
            started = time.monotonic()
            try:
                async with asyncio.timeout(DEADLINE_SECONDS):
                    failed: int | str = await load(bot)
            except TimeoutError:
                failed = f"not done after {DEADLINE_SECONDS} s"
            seconds = time.monotonic() - started
        stats = fake.flood_stats()
    return {
        "limiter": name,
        "seconds": round(seconds, 2),
        "sending_calls": stats["sending_calls"],
        "too_many_requests": stats["too_many_requests"],
        "calls_during_flood_wait": stats["calls_during_flood_wait"],
        "failed_calls": failed,
        "messages": stats["messages"],
    }


async def main() -> dict[str, Any]:
    ours = await measure("FloodBudget (bots.telegram.budget)", FloodBudget(FloodLimits()))
    # AIORateLimiter's defaults (30/s overall, 20/min per group) and retries, as a peer would.
    peer = await measure("AIORateLimiter(max_retries=5)", AIORateLimiter(max_retries=5))
    expected = PRIVATE * 2 + GROUP_PHOTOS * 2 + BUSY_PRIVATE * BUSY_MESSAGES
    return {"messages_expected": expected, "results": [ours, peer]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    print(json.dumps(asyncio.run(main()), indent=2))
