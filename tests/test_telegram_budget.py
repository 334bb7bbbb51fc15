"""The bot's flood budget (`bots.telegram.budget`) against the limit-enforcing fake Bot API.

PTB's `ExtBot` sends through `FloodBudget`; the fake and the budget share a `JumpClock`, so the
budget's waits cost no real time and the fake sees exactly the time the budget waited.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from telegram.constants import ChatAction
from telegram.ext import ExtBot

from bots.telegram.budget import (
    Deferred,
    FloodBudget,
    FloodLimits,
    Priority,
    sending_as,
)
from tests.fake_clock import JumpClock
from tests.fake_telegram import FakeTelegram, User

ALICE = User(1001, "Alice")
BOB = User(1002, "Bob")
GROUP = -1001234567890


@pytest.fixture
def clock() -> JumpClock:
    return JumpClock()


@pytest.fixture
async def fake(clock: JumpClock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=clock) as server:
        for user in (ALICE, BOB):
            server.add_chat(user.id, user=user)
        server.add_chat(GROUP, chat_type="supergroup")
        yield server


def ext_bot(fake: FakeTelegram, budget: FloodBudget) -> ExtBot[Priority]:
    return ExtBot(fake.token, base_url=fake.base_url, rate_limiter=budget)


async def test_a_burst_to_one_chat_and_a_group_waits_instead_of_meeting_429(
    fake: FakeTelegram, clock: JumpClock
) -> None:
    start = clock.now
    async with ext_bot(fake, FloodBudget(FloodLimits(), clock)) as bot:
        await asyncio.gather(*(bot.send_message(ALICE.id, f"a{n}") for n in range(10)))
        private = clock.now - start
        await asyncio.gather(*(bot.send_message(GROUP, f"g{n}") for n in range(25)))
    # A burst of 3, then one a second; 20 in the group at once, then one in 3 s.
    assert private == pytest.approx(7.0, abs=0.05)
    assert clock.now - start == pytest.approx(7.0 + 15.0, abs=0.05)
    stats = fake.flood_stats()
    assert stats["too_many_requests"] == 0
    assert stats["calls_during_flood_wait"] == 0
    assert stats["messages_by_chat"] == {ALICE.id: 10, GROUP: 25}


async def test_thirty_a_second_in_all(fake: FakeTelegram, clock: JumpClock) -> None:
    users = [User(3000 + n) for n in range(90)]
    for user in users:
        fake.add_chat(user.id, user=user)
    start = clock.now
    async with ext_bot(fake, FloodBudget(FloodLimits(), clock)) as bot:
        await asyncio.gather(*(bot.send_message(user.id, "hello") for user in users))
    # 30 at once, 60 more at 30 a second
    assert clock.now - start == pytest.approx(2.0, abs=0.05)
    assert fake.flood_stats()["too_many_requests"] == 0


async def test_answers_to_a_group_go_first_when_the_global_bucket_is_busy(
    fake: FakeTelegram, clock: JumpClock
) -> None:
    """120 private answers, then 25 to a group, all at once: the group's go first, so its slow
    bucket (20 a minute) starts refilling at once instead of after the private ones."""
    users = [User(4000 + n) for n in range(120)]
    for user in users:
        fake.add_chat(user.id, user=user)
    start = clock.now
    async with ext_bot(fake, FloodBudget(FloodLimits(), clock)) as bot:
        private = [asyncio.create_task(bot.send_message(u.id, "done")) for u in users]
        await asyncio.sleep(0)
        group = [asyncio.create_task(bot.send_message(GROUP, f"g{n}")) for n in range(25)]
        await asyncio.gather(*group)
        group_done = clock.now - start
        await asyncio.gather(*private)
    # The group's 20 go in the first second, the other 5 one every 3 s: 15 s, not 4 + 15.
    assert group_done == pytest.approx(15.0, abs=0.5)
    assert fake.flood_stats()["too_many_requests"] == 0
    assert fake.flood_stats()["calls_during_flood_wait"] == 0


async def test_after_a_429_the_chat_waits_and_nothing_goes_there_meanwhile(
    fake: FakeTelegram, clock: JumpClock
) -> None:
    lenient = FloodLimits(chat_burst=4)  # more than Telegram allows: the 4th message meets a 429
    async with ext_bot(fake, FloodBudget(lenient, clock)) as bot:
        sent = [bot.send_message(ALICE.id, f"a{n}") for n in range(6)]
        sent.append(bot.send_message(BOB.id, "another chat does not wait"))
        await asyncio.gather(*sent)
    stats = fake.flood_stats()
    assert stats["too_many_requests"] == 1  # then the budget knows the chat's bucket is full
    assert stats["calls_during_flood_wait"] == 0  # every call waited out the retry_after
    assert stats["messages_by_chat"] == {ALICE.id: 6, BOB.id: 1}
    alice = [str(m.text) for m in fake.sent_to(ALICE.id)]
    assert sorted(alice) == [f"a{n}" for n in range(6)]


async def test_status_updates_give_way_to_results(fake: FakeTelegram, clock: JumpClock) -> None:
    budget = FloodBudget(FloodLimits(), clock)
    async with ext_bot(fake, budget) as bot:
        with sending_as(Priority.STATUS):
            status = await bot.send_message(ALICE.id, "received")  # room to spare: it goes
        budget.expect(ALICE.id, "job-1")
        budget.expect(ALICE.id, "job-2")
        with pytest.raises(Deferred), sending_as(Priority.STATUS):
            # two results to come and two messages left in the burst: no room for a status
            await bot.edit_message_text("running", chat_id=ALICE.id, message_id=status.message_id)
        await bot.send_message(ALICE.id, "result 1")
        budget.settle(ALICE.id, "job-1")
        results = asyncio.gather(*(bot.send_message(ALICE.id, f"r{n}") for n in range(2)))
        await asyncio.sleep(0)  # the results now wait for the chat's next slots
        with pytest.raises(Deferred), sending_as(Priority.STATUS):
            await bot.edit_message_text("running", chat_id=ALICE.id, message_id=status.message_id)
        await results
        budget.settle(ALICE.id, "job-2")
        clock.advance(3)
        with sending_as(Priority.STATUS):  # the chat is idle again
            await bot.edit_message_text("done", chat_id=ALICE.id, message_id=status.message_id)
    assert fake.flood_stats()["too_many_requests"] == 0


async def test_chat_actions_are_sparse(fake: FakeTelegram, clock: JumpClock) -> None:
    async with ext_bot(fake, FloodBudget(FloodLimits(), clock)) as bot:
        await bot.send_chat_action(ALICE.id, ChatAction.UPLOAD_PHOTO)
        with pytest.raises(Deferred):
            await bot.send_chat_action(ALICE.id, ChatAction.UPLOAD_PHOTO)
        await bot.send_chat_action(BOB.id, ChatAction.UPLOAD_PHOTO)  # another chat: its own
        clock.advance(5)
        await bot.send_chat_action(ALICE.id, ChatAction.UPLOAD_PHOTO)
    assert fake.chat_actions(ALICE.id) == ["upload_photo", "upload_photo"]
