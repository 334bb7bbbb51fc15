"""The fake Discord's rate limits: Discord's buckets and headers, and discord.py obeying them.

The limiter's own rules run on a `ManualClock`; the end-to-end tests drive the real discord.py
against small windows (or a clock the test advances), so nothing waits long and nothing races.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import aiohttp
import discord
import pytest

from tests.fake_discord import FakeDiscord
from tests.fake_discord_limits import (
    Bucket,
    DiscordLimits,
    ManualClock,
    RateLimiter,
    Verdict,
)

CHANNEL_POST = ("POST", "/channels/{channel_id}/messages")
FOLLOWUP_ROUTE = ("POST", "/webhooks/{application_id}/{token}")


def post(limiter: RateLimiter, channel: str) -> Verdict:
    return limiter.check(*CHANNEL_POST, {"channel_id": channel})


def test_a_channel_bucket_refuses_the_sixth_post_and_resets_with_its_window() -> None:
    clock = ManualClock()
    limiter = RateLimiter(DiscordLimits(), clock)
    answers = [post(limiter, "1") for _ in range(5)]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0"]
    assert all(a.refusal is None for a in answers)
    first = answers[0].headers
    assert first["X-RateLimit-Limit"] == "5" and first["X-RateLimit-Reset-After"] == "5.000"
    clock.advance(1.5)
    refused = post(limiter, "1")
    assert refused.refusal == {
        "message": "You are being rate limited.",
        "retry_after": 3.5,
        "global": False,
    }
    headers = refused.headers
    assert headers["X-RateLimit-Scope"] == "user" and headers["Retry-After"] == "4"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert post(limiter, "2").refusal is None  # another channel is another bucket
    post(limiter, "1")  # sent during the wait the 429 announced: counted
    clock.advance(3.5)
    assert post(limiter, "1").refusal is None
    stats = limiter.stats.as_dict()
    assert stats["too_many_requests"] == 2 and stats["requests_during_wait"] == 1
    assert stats["requests"] == 9 and stats["global_too_many_requests"] == 0


def test_the_global_limit_binds_bot_routes_but_not_interaction_routes() -> None:
    clock = ManualClock()
    limiter = RateLimiter(replace(DiscordLimits(), global_per_second=3), clock)
    for channel in ("1", "2", "3"):
        assert post(limiter, channel).refusal is None
    for _ in range(4):  # follow-ups have their own bucket and no global limit
        params = {"application_id": "9", "token": "t"}
        assert limiter.check(*FOLLOWUP_ROUTE, params).refusal is None
    refused = limiter.check("GET", "/users/@me", {})
    assert refused.refusal == {
        "message": "You are being rate limited.",
        "retry_after": 1.0,
        "global": True,
    }
    assert refused.headers == {
        "Retry-After": "1",
        "X-RateLimit-Global": "true",
        "X-RateLimit-Scope": "global",
    }
    assert post(limiter, "4").refusal is not None  # every bot route waits for it
    webhook = limiter.check(*FOLLOWUP_ROUTE, {"application_id": "9", "token": "u"})
    assert webhook.refusal is None
    clock.advance(1.0)
    assert post(limiter, "4").refusal is None
    stats = limiter.stats.as_dict()
    assert stats["global_too_many_requests"] == 2 and stats["requests_during_wait"] == 1


def test_an_interaction_token_is_one_bucket_for_its_follow_ups_and_edits() -> None:
    clock = ManualClock()
    limits = replace(DiscordLimits(), interaction_webhook=Bucket(3, 2.0))
    limiter = RateLimiter(limits, clock)
    params = {"application_id": "9", "token": "t"}
    edit = ("PATCH", "/webhooks/{application_id}/{token}/messages/@original")
    verdicts = [
        limiter.check(*edit, params),
        limiter.check(*FOLLOWUP_ROUTE, params),
        limiter.check("DELETE", "/webhooks/{application_id}/{token}/messages/{message_id}", params),
        limiter.check(*edit, params),
    ]
    assert [v.refusal is None for v in verdicts] == [True, True, True, False]
    assert len({v.headers["X-RateLimit-Bucket"] for v in verdicts}) == 1
    assert limiter.check(*edit, {"application_id": "9", "token": "other"}).refusal is None


# --- discord.py against the limits -----------------------------------------------------------


@asynccontextmanager
async def connected(
    fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[discord.Client]:
    """A plain discord.py client, logged in and ready on the fake; closed on exit."""
    fake.patch(monkeypatch)
    bot = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
    await bot.login(fake.token)
    task = asyncio.create_task(bot.connect(reconnect=False))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        yield bot
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)


async def test_discord_py_waits_out_a_channel_bucket_by_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twelve posts to one channel, one after another: discord.py reads `Remaining: 0` and waits
    for the reset itself, so it never meets a 429. (Posts sent at once can: answers read out of
    order leave it a stale `Remaining`; the bot takes turns per channel for that reason.)"""
    limits = DiscordLimits(channel_messages=Bucket(5, 0.15))
    async with FakeDiscord(limits=limits) as fake, connected(fake, monkeypatch) as bot:
        channel = bot.get_partial_messageable(fake.channel_id("general"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = [await channel.send(f"photo {i}") for i in range(12)]
        elapsed = loop.time() - started
        stats = fake.rate_limit_stats()
        assert [m.content for m in sent] == [f"photo {i}" for i in range(12)]
        assert stats["too_many_requests"] == 0 and stats["requests_during_wait"] == 0
        assert stats["by_bucket"]["channel_messages"] == 12
        assert elapsed >= 0.3  # three windows of five: it did wait for two resets
        assert fake.errors == [] and fake.violations == []


async def test_discord_py_stops_everything_for_a_global_429(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the global limit the answer is a global 429; discord.py waits, then retries once."""
    clock = ManualClock()
    limits = DiscordLimits(global_per_second=3, global_window=0.05)
    async with FakeDiscord(limits=limits, clock=clock) as fake:
        async with connected(fake, monkeypatch) as bot:
            clock.advance(10)  # past the start-up calls' window
            channels = [fake.channel_id(n) for n in ("general", "no-files", "retouch-thread")]
            for channel_id in channels:
                await bot.get_partial_messageable(channel_id).send("hello")
            fourth = asyncio.create_task(bot.fetch_channel(channels[0]))
            [limited] = await fake.wait_for(lambda c: c.status == 429)
            clock.advance(10)  # the fake's window is over before discord.py's sleep ends
            fetched = await asyncio.wait_for(fourth, 10)
        assert fetched.id == channels[0]
        assert limited.response == {
            "message": "You are being rate limited.",
            "retry_after": 0.05,
            "global": True,
        }
        retried = [c for c in fake.calls if c.path == f"/channels/{channels[0]}"]
        assert [c.status for c in retried] == [429, 200]
        stats = fake.rate_limit_stats()
        assert stats["global_too_many_requests"] == 1 and stats["requests_during_wait"] == 0


async def test_the_headers_discord_py_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeDiscord() as fake:
        async with aiohttp.ClientSession() as session:
            url = f"{fake.api_base}/channels/{fake.channel_id('general')}/messages"
            auth = {"Authorization": f"Bot {fake.token}"}
            statuses, remaining = [], []
            for _ in range(6):
                data = aiohttp.FormData()
                data.add_field("payload_json", '{"content": "x"}')
                data.add_field("files[0]", io.BytesIO(b"abc"), filename="a.txt")
                async with session.post(url, headers=auth, data=data) as response:
                    statuses.append(response.status)
                    remaining.append(response.headers.get("X-RateLimit-Remaining"))
                    last = response
                    body = await response.json()
        assert statuses == [200] * 5 + [429]
        assert remaining == ["4", "3", "2", "1", "0", "0"]
        assert last.headers["X-RateLimit-Scope"] == "user" and last.headers["Via"]
        assert float(last.headers["X-RateLimit-Reset-After"]) <= 5.0
        assert body["global"] is False and 0 < body["retry_after"] <= 5.0
        assert fake.rate_limit_stats()["too_many_requests"] == 1


async def test_a_fake_without_limits_says_so_in_its_headers() -> None:
    """`enforce_limits=False`, for a test that needs no limit: nothing refused, still counted."""
    async with FakeDiscord(enforce_limits=False) as fake, aiohttp.ClientSession() as session:
        url = f"{fake.api_base}/channels/{fake.channel_id('general')}/messages"
        auth = {"Authorization": f"Bot {fake.token}"}
        statuses = []
        for _ in range(8):
            async with session.post(url, headers=auth, json={"content": "x"}) as response:
                statuses.append(response.status)
                assert response.headers["X-RateLimit-Remaining"] != "0"
    assert statuses == [200] * 8
    stats = fake.rate_limit_stats()
    assert stats["requests"] == 8 and stats["too_many_requests"] == 0
