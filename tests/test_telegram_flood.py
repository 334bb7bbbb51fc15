"""The real bot under load against the fake Bot API's flood limits (on the fake's `JumpClock`).

Many photos at once reach Telegram's limits (20 messages a minute in a group, 30 a second in
all): the bot waits instead of meeting 429s, sends nothing during a flood wait, answers every
photo exactly once, and in a busy group shows one status line rather than one per photo.
"""

from __future__ import annotations

from collections import Counter

from tests.fake_telegram import ChatMessage, FakeTelegram, User
from tests.test_telegram_bot import GROUP, Harness
from tests.upstream_fakes import ErrorJson, Gate

pytest_plugins = ["tests.test_telegram_bot"]  # the `bot` fixture


def results(tg: FakeTelegram, chat: int) -> list[ChatMessage]:
    return [m for m in tg.sent_to(chat) if m.kind in ("photo", "document")]


def answered_once(tg: FakeTelegram, chat: int, photos: list[int]) -> bool:
    replies = Counter(m.reply_to_message_id for m in results(tg, chat))
    return all(replies[photo] == 1 for photo in photos) and sum(replies.values()) == len(photos)


async def test_a_busy_group_of_25_photos(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start({"status_edit_interval_seconds": 1.0}, max_concurrent_jobs=25)
    start = bot.tg.clock()
    members = [User(5000 + n, f"Member {n}") for n in range(25)]
    photos = [
        bot.tg.send_photo(GROUP, member, portrait_bytes, caption="/retouch")["message_id"]
        for member in members
    ]
    await bot.result_for(GROUP, 25)
    await bot.settled(GROUP)

    assert answered_once(bot.tg, GROUP, photos)
    stats = bot.tg.flood_stats()
    assert stats["calls_during_flood_wait"] == 0
    assert stats["too_many_requests"] == 0
    assert stats["messages_by_chat"][GROUP] <= 1.3 * 25  # one status line, not one per photo
    status_lines = [m for m in bot.tg.sent_to(GROUP) if m.kind == "text"]
    assert 0 < len(status_lines) <= 2 and all(m.deleted for m in status_lines)
    assert bot.tg.clock() - start >= 5 * 3  # the limit was met: 20 at once, then one in 3 s


async def test_private_chats_and_a_group_at_once(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start(max_concurrent_jobs=64)
    people = [User(6000 + n, f"User {n}") for n in range(60)]
    members = [User(7000 + n, f"Member {n}") for n in range(10)]
    private = {p.id: bot.tg.send_photo(p.id, p, portrait_bytes)["message_id"] for p in people}
    in_group = [
        bot.tg.send_photo(GROUP, member, portrait_bytes, caption="/retouch")["message_id"]
        for member in members
    ]
    for person in people:
        await bot.result_for(person.id)
    await bot.result_for(GROUP, len(members))

    assert all(answered_once(bot.tg, chat, [photo]) for chat, photo in private.items())
    assert answered_once(bot.tg, GROUP, in_group)
    stats = bot.tg.flood_stats()
    assert stats["calls_during_flood_wait"] == 0
    assert stats["too_many_requests"] == 0
    messages = sum(stats["messages_by_chat"].values())
    assert messages <= 2 * (len(people) + len(members))  # a result each, a status at most
    assert stats["messages_by_chat"][GROUP] <= 1.3 * len(members)


async def test_a_failure_in_a_shared_group_line_is_said_apart(
    bot: Harness, portrait_bytes: bytes
) -> None:
    gate = Gate()
    bot.upstream.script(gate, ErrorJson(400, "the image could not be processed"))
    await bot.start(max_concurrent_jobs=2)
    alice, bob = User(8001, "Alice"), User(8002, "Bob")
    first = bot.tg.send_photo(GROUP, alice, portrait_bytes, caption="/retouch")["message_id"]
    await gate.wait_entered()
    [line] = [m for m in bot.tg.sent_to(GROUP) if m.kind == "text"]
    second = bot.tg.send_photo(GROUP, bob, portrait_bytes, caption="/retouch")["message_id"]

    def said_apart() -> list[ChatMessage]:
        return [m for m in bot.tg.sent_to(GROUP) if m.reply_to_message_id == second]

    await bot.tg.wait_until(lambda: bool(said_apart()))
    [failure] = said_apart()
    assert failure.kind == "text" and failure.message_id != line.message_id
    assert line.reply_to_message_id == first and not line.deleted  # Alice's job still shows
    gate.opened.set()
    [result] = await bot.result_for(GROUP)
    assert result.reply_to_message_id == first
    await bot.tg.wait_until(lambda: line.deleted)
    assert [m for m in bot.tg.sent_to(GROUP) if m.kind == "text"] == [line, failure]
