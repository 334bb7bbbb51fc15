"""The Discord bot under Discord's rate limits, end to end: busy, yet never refused.

Windows are Discord's sizes scaled down (`DiscordLimits().scaled`), so the counts are the real
ones and discord.py's own waits stay short.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_discord import Call, FakeDiscord
from tests.fake_discord_limits import DiscordLimits
from tests.test_discord_bot import API_KEY, jpeg, running, settings_for, strict_discord
from tests.upstream_fakes import Echo, FakeUpstream

SCALE = 0.05
"""A channel's 5 posts per 5 s become 5 per 0.25 s."""


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with strict_discord(monkeypatch, DiscordLimits().scaled(SCALE)) as server:
        yield server


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(default=Echo(), api_key=API_KEY) as server:
        yield server


async def test_results_posted_to_one_channel_at_once_meet_no_429(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    """Twelve late results (tokens too old) for one channel, eight workers: the channel's
    bucket passes five per window, discord.py waits out the rest, each photo is posted once."""
    general = fake.channel_id("general")
    users = [fake.make_user(f"user{i}") for i in range(12)]
    config = settings_for(tmp_path, fake, upstream, max_concurrent_jobs=8)

    def posted(call: Call) -> bool:
        return call.path == f"/channels/{general}/messages" and bool(call.files)

    async with running(fake, config, clock=lambda: time.time() + 3600):
        for user in users:
            await fake.slash_command(
                "retouch", {"image": fake.attachment("a.jpg", jpeg())}, user=user
            )
        posts = await fake.wait_for(posted, count=len(users), timeout=30)

    assert [c.status for c in posts] == [200] * len(users)
    mentioned = sorted(c.json["content"].split(">")[0] for c in posts)
    assert mentioned == sorted(f"<@{u['id']}" for u in users)
    assert len({c.json["nonce"] for c in posts}) == len(users)
    stats = fake.rate_limit_stats()
    assert stats["too_many_requests"] == 0 and stats["requests_during_wait"] == 0
    assert stats["by_bucket"]["channel_messages"] == len(users)
