"""Hostile input, item 7: Telegram's anonymous group admins, end to end with the real
python-telegram-bot against the fake Bot API.

Every anonymous admin of every group arrives as one account, GroupAnonymousBot (1087968824), with
`sender_chat` = the group; channels post as Channel_Bot. The rule: a message sent on behalf of a
chat starts no job, touches no quota and owns no button; its sender is asked, politely, to post
as themselves. Everyone else in the group is served as before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bots import messages as m
from tests.fake_clock import JumpClock
from tests.fake_telegram import JSON, ChatMessage, FakeTelegram, User
from tests.test_telegram_bot import ALICE, GROUP, Harness
from tests.upstream_fakes import Echo, FakeUpstream

ANONYMOUS = User(1087968824, "Group", username="GroupAnonymousBot", is_bot=True)
CHANNEL = User(136817688, "Channel", username="Channel_Bot", is_bot=True)
REFUSAL = m.text("anonymous_sender", "en")


class OnBehalfOfChats(FakeTelegram):
    """The fake Bot API, sending what GroupAnonymousBot and Channel_Bot post with a
    `sender_chat`, as Telegram does: the group itself for anonymous admins, a channel else."""

    def _user_message(
        self,
        chat_id: int,
        user: User | int,
        chat_type: str | None,
        reply_to: JSON | ChatMessage | int | None,
        content: JSON,
        data: bytes | None = None,
    ) -> JSON:
        if isinstance(user, User) and user in (ANONYMOUS, CHANNEL):
            sender = (
                self.add_chat(chat_id)
                if user == ANONYMOUS
                else {"id": -1009876, "type": "channel", "title": "A channel"}
            )
            content = {**content, "sender_chat": sender}
        return super()._user_message(chat_id, user, chat_type, reply_to, content, data)


@pytest.fixture
async def bot(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Harness]:
    caplog.set_level(logging.INFO)
    async with (
        OnBehalfOfChats(clock=JumpClock()) as tg,
        FakeUpstream(default=Echo()) as upstream,
    ):
        harness = Harness(tg, upstream, tmp_path)
        await harness.start()
        yield harness
        await harness.halt()


async def answered(bot: Harness, query: str) -> None:
    await bot.tg.wait_until(lambda: query in bot.tg.callback_answers)


def refusals(bot: Harness, chat: int) -> list[str]:
    return [text for text in bot.texts(chat) if text == REFUSAL]


@pytest.mark.parametrize("sender", [ANONYMOUS, CHANNEL], ids=["anonymous-admin", "channel"])
async def test_a_photo_posted_on_behalf_of_a_chat_starts_no_job(
    bot: Harness, portrait_bytes: bytes, sender: User
) -> None:
    bot.tg.send_photo(GROUP, sender, portrait_bytes, caption="/retouch 0.3")
    await bot.text_containing(GROUP, REFUSAL)
    bot.tg.send_photo(GROUP, ALICE, portrait_bytes, caption="/retouch")
    [result] = await bot.result_for(GROUP)  # the others are served as before
    assert result.caption is not None and "fidelity 0.1" in result.caption
    assert len(bot.upstream.calls) == 1
    assert len(refusals(bot, GROUP)) == 1


async def test_an_anonymous_retouch_reply_to_someones_photo_is_refused(
    bot: Harness, portrait_bytes: bytes
) -> None:
    photo = bot.tg.send_photo(GROUP, ALICE, portrait_bytes)
    bot.tg.send_text(GROUP, ANONYMOUS, "/retouch", reply_to=photo)
    await bot.text_containing(GROUP, REFUSAL)
    assert bot.upstream.calls == []


async def test_anonymous_commands_are_answered_with_the_rule(bot: Harness) -> None:
    commands = ("/quota", "/fidelity 0.3", "/forget", "/language zh", "/whoami")
    for command in commands:
        bot.tg.send_text(GROUP, ANONYMOUS, command)
    await bot.tg.wait_until(lambda: len(refusals(bot, GROUP)) == len(commands))
    bot.tg.send_text(GROUP, ANONYMOUS, "/help")
    await bot.text_containing(GROUP, "/retouch")  # what is the same for everyone still comes


async def test_the_shared_account_owns_no_button(bot: Harness, portrait_bytes: bytes) -> None:
    bot.tg.send_photo(GROUP, ALICE, portrait_bytes, caption="/retouch")
    [result] = await bot.result_for(GROUP)
    for data in result.callback_data:
        query = bot.tg.press_button(GROUP, ANONYMOUS, result.message_id, data)
        await answered(bot, query)
        answer: dict[str, Any] = bot.tg.callback_answers[query]
        assert answer["text"] == REFUSAL
    assert len(bot.upstream.calls) == 1  # no redo ran, nothing was charged
