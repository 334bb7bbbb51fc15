"""A result resent to a channel after a crash is deduplicated by its message nonce.

The bot posts in the channel when the interaction token is gone; that post carries a nonce
derived from the job with `enforce_nonce`, so a restarted bot that sends it again gets the
message already posted back (Discord's rule, which the fake keeps) instead of a second one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest

from bots.discord.delivery import NONCE_LENGTH, result_nonce
from core.store.sqlite import SqliteStore
from tests.fake_discord import Call, FakeDiscord
from tests.fake_discord_limits import ManualClock
from tests.service_fakes import service_settings
from tests.test_discord_bot import API_KEY, jpeg, running, settings_for
from tests.upstream_fakes import Echo, FakeUpstream, Gate

ROOT = Path(__file__).resolve().parent.parent


def photo_post(call: Call) -> bool:
    """A channel post (not a follow-up) that carries a file."""
    return call.path.startswith("/channels/") and bool(call.files)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(default=Echo(), api_key=API_KEY) as server:
        yield server


def test_the_nonce_names_the_jobs_of_a_message() -> None:
    one = result_nonce(["job-a"])
    assert one == result_nonce(["job-a"]) and len(one) <= NONCE_LENGTH
    assert result_nonce(["job-a", "job-b"]) == result_nonce(["job-b", "job-a"])
    assert len({one, result_nonce(["job-b"]), result_nonce(["job-a", "job-b"])}) == 3


async def test_the_fake_keeps_discords_nonce_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same nonce in the same channel within minutes: the first message comes back."""
    clock = ManualClock()
    async with FakeDiscord(clock=clock) as fake:
        fake.patch(monkeypatch)
        client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        await client.login(fake.token)
        gateway = asyncio.create_task(client.connect(reconnect=False))
        try:
            await asyncio.wait_for(client.wait_until_ready(), 10)
            general = client.get_partial_messageable(fake.channel_id("general"))
            thread = client.get_partial_messageable(fake.channel_id("retouch-thread"))
            first = await general.send("result", nonce="rt-1")
            again = await general.send("result, again", nonce="rt-1")
            elsewhere = await thread.send("result", nonce="rt-1")
            clock.advance(6 * 60)  # past the few minutes Discord remembers a nonce
            later = await general.send("result, much later", nonce="rt-1")
            with pytest.raises(discord.HTTPException) as too_long:
                await general.send("x", nonce="n" * (NONCE_LENGTH + 1))
        finally:
            await client.close()
            await asyncio.wait_for(gateway, 10)
        assert again.id == first.id and again.content == "result"
        assert elsewhere.id != first.id and later.id != first.id
        assert too_long.value.status == 400 and too_long.value.code == 50035
        assert [m["content"] for m in fake.channel_messages(fake.channel_id("general"))] == [
            "result",
            "result, much later",
        ]
        posts = fake.calls_to("POST", f"/channels/{fake.channel_id('general')}/messages")
        assert all(c.json["enforce_nonce"] is True for c in posts)


async def test_a_kill_after_the_channel_post_resends_it_once(
    tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL once the channel post took effect but before `done`: the restart posts again
    with the same nonce, and Discord hands back the message already there."""
    gate = Gate()
    upstream.default = gate
    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)
        general = fake.channel_id("general")
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))},
            "PYTHONPATH": str(ROOT),
            "DISCORD_BOT_TOKEN": fake.token,
            "DISCORD_API_BASE_URL": fake.api_base,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            "RETOUCH_BACKEND": "api",
            "RETOUCH_API_KEY": API_KEY,
            "RETOUCH_API_BASE_URL": upstream.base_url,
            "RETOUCH_MAX_RETRIES": "0",
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots.cli",
            "discord",
            cwd=tmp_path,
            env=env,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await fake.wait_ready(timeout=60)
            interaction = await fake.slash_command(
                "retouch", {"image": fake.attachment("a.jpg", jpeg())}
            )
            await gate.wait_entered(1)
            fake.expire(interaction)  # the answer goes to the channel
            release = fake.hold_answers(("POST", rf"^/channels/{general}/messages$"))
            gate.opened.set()
            [posted] = await fake.wait_for(photo_post)
            child.send_signal(signal.SIGKILL)
            await asyncio.wait_for(child.wait(), 30)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        release.set()
        assert child.returncode == -signal.SIGKILL
        store = await SqliteStore.open(service_settings(tmp_path).database_path)
        try:
            [left] = await store.unfinished_jobs()
        finally:
            await store.close()
        assert left.state == "delivering"

        async with running(fake, settings_for(tmp_path, fake, upstream)):
            resent = await fake.wait_for(photo_post, 2)
            await fake.wait_for(lambda c: c.token == interaction["token"] and c.method == "DELETE")
        store = await SqliteStore.open(service_settings(tmp_path).database_path)
        try:
            assert await store.unfinished_jobs() == []
            done = await store.get_job(left.id)
        finally:
            await store.close()
        assert done is not None and done.state == "done"
        assert fake.errors == [] and fake.violations == []
        fake.assert_limits_kept()

    with_photo = [m for m in fake.channel_messages(general) if m["attachments"]]
    assert len(with_photo) == 1
    nonce = result_nonce([left.id])
    assert [c.json["nonce"] for c in resent] == [nonce, nonce]
    assert resent[1].response["id"] == posted.response["id"]
    assert with_photo[0]["attachments"][0]["filename"].startswith("retouched")
    assert with_photo[0]["attachments"][0]["content_type"] == "image/jpeg"
