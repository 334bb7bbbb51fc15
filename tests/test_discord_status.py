"""The progress message of a Discord command: coalesced edits, and results that never wait.

The board's rules run against a recording replier on a manual clock with a sleep the test
releases; the end-to-end tests run the real bot against the rate-limit-enforcing fake Discord.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bots.discord.status import StatusBoard
from bots.discord.targets import Target
from tests.fake_discord import Call, FakeDiscord
from tests.fake_discord_limits import ManualClock
from tests.test_discord_bot import (
    API_KEY,
    jpeg,
    of,
    result_of,
    running,
    settings_for,
    strict_discord,
)
from tests.upstream_fakes import Echo, FakeUpstream, Gate

TARGET = Target(
    application_id=1,
    token="tok",
    interaction_id=7,
    channel_id=2,
    guild_id=None,
    user_id=3,
    lang="en",
    created_at=0.0,
    original_id=9,
)


class Replier:
    """Records edits and deletions; `hold` makes the next edit wait until released."""

    def __init__(self) -> None:
        self.edits: list[str] = []
        self.deleted = 0
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def edit_status(self, target: Target, content: str, view: Any) -> None:
        self.edits.append(content)
        self.entered.set()
        hold, self.hold = self.hold, None
        if hold is not None:
            await hold.wait()

    async def delete_status(self, target: Target) -> None:
        self.deleted += 1


class Sleeper:
    """A sleep that lasts until the test calls `elapse`, which moves the clock by as much."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.asked: list[float] = []
        self._release = asyncio.Event()
        self.sleeping = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.sleeping.set()
        await self._release.wait()
        self._release.clear()
        self.sleeping.clear()
        self.clock.advance(seconds)

    async def elapse(self) -> None:
        await self.sleeping.wait()
        self._release.set()


def board() -> tuple[StatusBoard, Replier, Sleeper]:
    clock = ManualClock()
    replier, sleeper = Replier(), Sleeper(clock)
    status = StatusBoard(replier, 1.0, clock=clock, sleep=sleeper)  # type: ignore[arg-type]
    return status, replier, sleeper


async def test_one_edit_per_interval_and_the_latest_state_wins() -> None:
    status, replier, sleeper = board()
    await status.show(TARGET, "Queued, #3")
    await status.settled()
    for line in ("Queued, #2", "Queued, #1", "Retouching…"):
        await status.show(TARGET, line)
    await sleeper.elapse()
    await status.settled()
    assert replier.edits == ["Queued, #3", "Retouching…"]
    assert sleeper.asked == [1.0]


async def test_the_deletion_does_not_wait_out_the_interval() -> None:
    status, replier, sleeper = board()
    await status.show(TARGET, "Queued, #1")
    await status.settled()
    await status.show(TARGET, "Retouching…")
    await sleeper.sleeping.wait()
    await status.finish(TARGET)
    await status.settled()
    assert replier.edits == ["Queued, #1"] and replier.deleted == 1
    await status.show(TARGET, "late news")  # after the end: nothing more
    await status.settled()
    assert replier.edits == ["Queued, #1"]


async def test_a_result_drops_a_pending_edit() -> None:
    status, replier, sleeper = board()
    await status.show(TARGET, "Queued, #1")
    await status.settled()
    await status.show(TARGET, "Retouching…")  # due only after the interval
    await sleeper.sleeping.wait()
    await asyncio.wait_for(status.quiet([TARGET]), 5)
    await status.settled()
    assert replier.edits == ["Queued, #1"]
    await status.finish(TARGET)
    await status.settled()
    assert replier.deleted == 1


async def test_a_result_lets_an_edit_already_sent_finish() -> None:
    """Cut off, it would free discord.py's per-token queue inside a wait Discord announced."""
    status, replier, _ = board()
    await status.show(TARGET, "Queued, #1")
    await status.settled()
    replier.entered.clear()
    release = replier.hold = asyncio.Event()
    status.clock.advance(5)  # type: ignore[attr-defined]
    await status.show(TARGET, "Retouching…")
    await replier.entered.wait()
    quiet = asyncio.create_task(status.quiet([TARGET]))
    await asyncio.sleep(0)
    assert not quiet.done()
    release.set()
    await asyncio.wait_for(quiet, 5)
    assert replier.edits == ["Queued, #1", "Retouching…"]


async def test_a_result_waits_for_the_first_edit_only() -> None:
    """The first edit ends Discord's "thinking..." state: a follow-up goes after it."""
    status, replier, _ = board()
    release = replier.hold = asyncio.Event()
    await status.show(TARGET, "Queued, #1")
    await replier.entered.wait()
    quiet = asyncio.create_task(status.quiet([TARGET]))
    await asyncio.sleep(0)
    assert not quiet.done()
    release.set()
    await asyncio.wait_for(quiet, 5)
    assert replier.edits == ["Queued, #1"]


FAST = {"status_edit_interval_seconds": 0.1}


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with strict_discord(monkeypatch) as server:
        yield server


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(default=Echo(), api_key=API_KEY) as server:
        yield server


async def test_a_slow_status_edit_never_holds_a_worker(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    """One worker; when it takes the next job it tells the queue their new places. An edit
    Discord is slow to answer must not keep it from running that job (nor anyone's)."""
    gate = Gate()
    upstream.default = gate
    config = settings_for(
        tmp_path, fake, upstream, {"status_edit_interval_seconds": 0}, max_concurrent_jobs=1
    )

    def edit_of(interaction: dict[str, Any], text: str) -> Callable[[Call], bool]:
        def match(call: Call) -> bool:
            if not of(interaction, "PATCH", r"/messages/")(call):
                return False
            return text in (call.json.get("content") or "")

        return match

    async with running(fake, config):
        users = [fake.make_user(name) for name in ("xena", "amir", "bea")]
        first, second, third = [
            await fake.slash_command("retouch", {"image": fake.attachment("a.jpg", jpeg())}, user=u)
            for u in users
        ]
        await gate.wait_entered(1)
        await fake.wait_for(edit_of(third, "#2"))
        release = fake.hold_answers(edit_of(third, "#1"))  # "#1 in line" hangs
        try:
            gate.opened.set()
            await fake.wait_for(edit_of(third, "#1"))
            await gate.wait_entered(2)  # the worker went on to the second photo
            await result_of(fake, second)
        finally:
            release.set()
        for interaction in (first, third):
            await result_of(fake, interaction)


async def test_a_busy_batch_edits_its_message_once_an_interval_within_the_limits(
    tmp_path: Path, fake: FakeDiscord, upstream: FakeUpstream
) -> None:
    """Five photos, one progress message: many state changes, yet one edit per interval at
    most, every photo delivered, and no 429 from Discord's limits."""
    gate = Gate()
    upstream.default = gate
    general = fake.channel_id("general")
    photos = [(f"p{i}.jpg", jpeg(40 + i, 30), "image/jpeg") for i in range(5)]
    target = fake.add_message(general, content="five", attachments=photos)
    interval = 0.2
    config = settings_for(
        tmp_path, fake, upstream, {"status_edit_interval_seconds": interval}, max_concurrent_jobs=2
    )
    async with running(fake, config):
        interaction = await fake.message_command("Retouch photo", target)
        await gate.wait_entered(2)
        gate.opened.set()
        await fake.wait_for(of(interaction, "DELETE", r"/messages/\d+$"))

    calls = fake.responses_for(interaction)
    edits = [c for c in calls if c.method == "PATCH"]
    gaps = [b.at - a.at for a, b in itertools.pairwise(edits)]
    assert edits and all(gap >= interval * 0.9 for gap in gaps), gaps
    delivered = [f.filename for c in calls if c.method == "POST" and c.files for f in c.files]
    assert sorted(delivered) == [f"retouched-{i}.jpg" for i in range(1, 6)]
    assert all(200 <= c.status < 300 for c in calls)
    stats = fake.rate_limit_stats()
    assert stats["too_many_requests"] == 0 and stats["requests_during_wait"] == 0
