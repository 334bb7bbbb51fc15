"""The fake Bot API's flood limits, proved with the real python-telegram-bot on a fake clock.

Telegram's Bot FAQ: about 30 messages a second in all, about one a second per chat (a short burst
passes), 20 a minute per group; past them 429 with `retry_after`. The clock is a list the test
moves, so no test waits real seconds.
"""

from __future__ import annotations

import datetime as dtm
from collections.abc import AsyncIterator

import aiohttp
import pytest
from telegram import Bot, InputMediaPhoto
from telegram.constants import ChatAction
from telegram.error import RetryAfter

import bots.telegram  # noqa: F401  (RetryAfter.retry_after as a timedelta, as the bot has it)
from tests.fake_telegram import FakeTelegram, TelegramLimits, User
from tests.test_fake_telegram import jpeg

ALICE = User(1001, "Alice", username="alice")
GROUP = -1001234567890


class Clock:
    """The fake's clock: seconds the test sets."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=clock) as server:
        server.add_chat(ALICE.id, user=ALICE)
        server.add_chat(GROUP, chat_type="supergroup")
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as b:
        yield b


def seconds(error: RetryAfter) -> float:
    delay = error.retry_after
    return delay.total_seconds() if isinstance(delay, dtm.timedelta) else float(delay)


async def test_a_private_chat_takes_a_short_burst_then_one_a_second(
    fake: FakeTelegram, bot: Bot, clock: Clock
) -> None:
    for n in range(3):
        await bot.send_message(ALICE.id, f"burst {n}")
    with pytest.raises(RetryAfter) as refused:
        await bot.send_message(ALICE.id, "one too many")
    assert seconds(refused.value) == 1
    clock.now += 1
    await bot.send_message(ALICE.id, "after the wait")
    with pytest.raises(RetryAfter):  # the bucket refilled by one message, not more
        await bot.send_message(ALICE.id, "again too soon")
    stats = fake.flood_stats()
    assert stats["too_many_requests"] == 2
    assert stats["calls_during_flood_wait"] == 0
    assert stats["messages_by_chat"] == {ALICE.id: 4}
    assert stats["sending_calls"] == 6


async def test_a_call_during_the_wait_is_refused_counted_and_lengthens_it(
    fake: FakeTelegram, bot: Bot, clock: Clock
) -> None:
    for n in range(3):
        await bot.send_message(ALICE.id, f"burst {n}")
    with pytest.raises(RetryAfter):
        await bot.send_message(ALICE.id, "one too many")  # the wait: 1 s from now
    clock.now += 0.5
    with pytest.raises(RetryAfter) as again:
        await bot.send_chat_action(ALICE.id, ChatAction.TYPING)  # free, but not during a wait
    assert seconds(again.value) == 2  # 0.5 s left, plus the 1 s penalty, rounded up
    clock.now += 1.5
    await bot.send_message(ALICE.id, "now")
    stats = fake.flood_stats()
    assert stats["calls_during_flood_wait"] == 1
    assert stats["too_many_requests"] == 2


async def test_the_429_body_is_telegrams(fake: FakeTelegram, bot: Bot) -> None:
    for n in range(3):
        await bot.send_message(ALICE.id, f"burst {n}")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{fake.base_url}{fake.token}/sendMessage",
            json={"chat_id": ALICE.id, "text": "one too many"},
        ) as response,
    ):
        assert response.status == 429
        assert await response.json() == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }


async def test_a_group_takes_twenty_a_minute(fake: FakeTelegram, bot: Bot, clock: Clock) -> None:
    for n in range(20):  # a minute's worth may come at once: one a second is a private limit
        await bot.send_message(GROUP, f"group {n}")
    with pytest.raises(RetryAfter) as refused:
        await bot.send_message(GROUP, "the 21st")
    assert seconds(refused.value) == 3  # one message every 60/20 s
    await bot.send_message(ALICE.id, "another chat is not waiting")
    clock.now += 3
    await bot.send_message(GROUP, "after the wait")
    with pytest.raises(RetryAfter):
        await bot.send_message(GROUP, "too soon")
    assert fake.flood_stats()["messages_by_chat"] == {GROUP: 21, ALICE.id: 1}


async def test_edits_count_and_an_album_costs_one_message_per_item(
    fake: FakeTelegram, bot: Bot, clock: Clock
) -> None:
    status = await bot.send_message(GROUP, "status")
    for n in range(9):
        await bot.edit_message_text(f"edit {n}", chat_id=GROUP, message_id=status.message_id)
    media = [InputMediaPhoto(jpeg(64, 64, (n * 20, 0, 0))) for n in range(10)]
    await bot.send_media_group(GROUP, media)  # 1 + 9 + 10 = 20: the whole minute's budget
    await bot.send_chat_action(GROUP, ChatAction.UPLOAD_PHOTO)  # a chat action costs nothing
    with pytest.raises(RetryAfter):
        await bot.edit_message_text("one edit more", chat_id=GROUP, message_id=status.message_id)
    with pytest.raises(RetryAfter):  # deleting costs nothing, but not during the wait
        await bot.delete_message(GROUP, status.message_id)
    clock.now += 5  # the wait, lengthened by the penalty
    await bot.delete_message(GROUP, status.message_id)
    stats = fake.flood_stats()
    assert stats["messages_by_chat"] == {GROUP: 11}
    assert stats["calls_during_flood_wait"] == 1


async def test_a_ten_photo_album_reaches_a_private_chat_whose_bucket_is_full(
    fake: FakeTelegram, bot: Bot, clock: Clock
) -> None:
    media = [InputMediaPhoto(jpeg(64, 64, (0, n * 20, 0))) for n in range(10)]
    await bot.send_media_group(ALICE.id, media)
    with pytest.raises(RetryAfter) as refused:  # ...and the chat owes ten seconds for it
        await bot.send_message(ALICE.id, "right after")
    assert seconds(refused.value) == 8  # 10 messages at one a second, a burst of 3 forgiven
    clock.now += 8
    await bot.send_message(ALICE.id, "paid off")


async def test_thirty_a_second_in_all_then_a_global_wait(
    fake: FakeTelegram, bot: Bot, clock: Clock
) -> None:
    users = [User(2000 + n) for n in range(32)]
    for user in users:
        fake.add_chat(user.id, user=user)
    for user in users[:30]:
        await bot.send_message(user.id, "hello")
    with pytest.raises(RetryAfter) as refused:
        await bot.send_message(users[30].id, "the 31st this second")
    assert seconds(refused.value) == 1
    with pytest.raises(RetryAfter):  # a global wait: every chat waits
        await bot.send_chat_action(users[31].id, ChatAction.TYPING)
    await bot.get_me()  # reading is no sending: never refused
    clock.now += 2  # the wait, and its penalty
    await bot.send_message(users[30].id, "after the wait")
    stats = fake.flood_stats()
    assert stats["calls_during_flood_wait"] == 1
    assert sum(stats["messages_by_chat"].values()) == stats["messages"] == 31


async def test_limits_are_configurable_and_can_be_only_counted(clock: Clock) -> None:
    tight = TelegramLimits(chat_per_second=0.5, chat_burst=1)
    async with FakeTelegram(clock=clock, limits=tight) as fake:
        fake.add_chat(ALICE.id, user=ALICE)
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            await bot.send_message(ALICE.id, "one")
            with pytest.raises(RetryAfter) as refused:
                await bot.send_message(ALICE.id, "two")
            assert seconds(refused.value) == 2
    async with FakeTelegram(clock=clock, enforce_limits=False) as fake:
        fake.add_chat(ALICE.id, user=ALICE)
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            for n in range(40):
                await bot.send_message(ALICE.id, f"message {n}")
        stats = fake.flood_stats()
        assert stats["too_many_requests"] == 0
        assert stats["messages_by_chat"] == {ALICE.id: 40}
        assert stats["sending_calls"] == 40


async def test_a_scripted_429_is_a_wait_like_the_limits_own(
    fake: FakeTelegram, bot: Bot, clock: Clock
) -> None:
    fake.fail_next("sendPhoto", retry_after=3)
    with pytest.raises(RetryAfter):
        await bot.send_photo(ALICE.id, jpeg(64, 64))
    clock.now += 2
    with pytest.raises(RetryAfter):
        await bot.send_message(ALICE.id, "too soon: the wait runs")
    clock.now += 2  # the 3 s and the penalty
    await bot.send_message(ALICE.id, "now")
    stats = fake.flood_stats()
    assert stats["too_many_requests"] == 2
    assert stats["calls_during_flood_wait"] == 1


async def test_penalties_lengthen_a_wait_up_to_a_cap(clock: Clock) -> None:
    capped = TelegramLimits(penalty_seconds=1.0, max_penalty_seconds=2.0)
    async with FakeTelegram(clock=clock, limits=capped) as fake:
        fake.add_chat(ALICE.id, user=ALICE)
        async with Bot(fake.token, base_url=fake.base_url) as bot:
            for n in range(3):
                await bot.send_message(ALICE.id, f"burst {n}")
            waits = []
            for _ in range(5):  # the first refusal announces 1 s; four calls during it follow
                with pytest.raises(RetryAfter) as refused:
                    await bot.send_message(ALICE.id, "again")
                waits.append(seconds(refused.value))
            assert waits == [1, 2, 3, 3, 3]  # 1 s, then +1, +1, and no more than 2 s added
            clock.now += 3
            await bot.send_message(ALICE.id, "after the capped wait")
        assert fake.flood_stats()["calls_during_flood_wait"] == 4
