"""Group settings, languages, Compare and retention, end to end: the real Telegram bot
(python-telegram-bot) against the fake Bot API, with `getChatMember` answered by the fake's
`ChatMembers` (`tests/fake_telegram_chats.py`)."""

from __future__ import annotations

import io

from PIL import Image
from telegram import Bot, Chat
from telegram import User as TelegramUser

from bots.telegram.chat_admins import ChatAdmins
from tests import test_telegram_bot
from tests.fake_telegram import ChatMessage, FakeTelegram, User
from tests.test_telegram_bot import ALICE, BOB, GROUP, LI, Harness, upstream_fidelities

bot = test_telegram_bot.bot
"""The fixture of `tests/test_telegram_bot.py`: the bot, the fake Bot API and the upstream."""

CAROL = User(1004, "Carol", username="carol", language_code="en")


async def menu_of(bot: Harness, chat: int) -> ChatMessage:
    """The settings menu message the bot sent (the newest one)."""
    return await bot.text_containing(chat, "Settings of")


async def press(bot: Harness, chat: int, user: User, message: ChatMessage, data: str) -> str:
    """Press a button and wait for its answer; the answer's text."""
    query = bot.tg.press_button(chat, user, message.message_id, data)
    await bot.tg.wait_until(lambda: query in bot.tg.callback_answers)
    return str(bot.tg.callback_answers[query].get("text") or "")


async def test_an_admin_changes_a_setting_and_a_non_admin_is_refused(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start()
    bot.tg.members.set(GROUP, ALICE, "administrator")
    bot.tg.send_text(GROUP, BOB, "hello")  # Bob is a plain member
    bot.tg.send_text(GROUP, BOB, "/settings")
    await bot.text_containing(GROUP, "only this chat's admins can change its settings")
    assert [c.params["user_id"] for c in bot.tg.calls_to("getChatMember")] == [BOB.id]

    bot.tg.send_text(GROUP, ALICE, "/settings")
    menu = await menu_of(bot, GROUP)
    assert menu.text is not None and "Default fidelity: the bot's (0.1)" in menu.text
    assert menu.call is not None and menu.call.params["parse_mode"] == "HTML"
    assert "s:fidelity" in menu.callback_data and "s:x" in menu.callback_data

    assert await press(bot, GROUP, BOB, menu, "s:fidelity") == (
        "Sorry, only this chat's admins can change its settings."
    )
    assert await press(bot, GROUP, ALICE, menu, "s:fidelity") == ""
    assert "s:fidelity:0.5" in menu.callback_data and menu.text.startswith("Default fidelity")
    toast = await press(bot, GROUP, ALICE, menu, "s:fidelity:0.5")
    assert toast == "Saved: Default fidelity is now 0.5."
    assert menu.text is not None and "Default fidelity: 0.5" in menu.text
    # Every change was checked with getChatMember (Alice's answer, cached for a few seconds).
    assert {c.params["user_id"] for c in bot.tg.calls_to("getChatMember")} == {ALICE.id, BOB.id}

    # The group's default now applies to everyone there without one of their own.
    bot.tg.send_photo(GROUP, BOB, portrait_bytes, caption="/retouch")
    await bot.result_for(GROUP)
    assert upstream_fidelities(bot.upstream) == [0.5]
    # ...and survives a restart.
    await bot.restart()
    bot.tg.send_text(GROUP, ALICE, "/settings")
    await bot.tg.wait_until(lambda: len([m for m in bot.texts(GROUP) if "Settings of" in m]) == 2)
    assert "Default fidelity: 0.5" in bot.texts(GROUP)[-1]
    await press(bot, GROUP, ALICE, bot.tg.sent_to(GROUP)[-1], "s:x")
    assert bot.tg.sent_to(GROUP)[-1].text == "Settings saved."


async def test_an_anonymous_admin_is_an_admin_of_that_group(bot: Harness) -> None:
    await bot.start()
    bot.tg.members.send_as_group(GROUP, "/settings")
    menu = await menu_of(bot, GROUP)
    assert menu.callback_data[0] == "s:fidelity"
    assert bot.tg.calls_to("getChatMember") == []  # the chat writing as itself needs no lookup


async def test_auto_retouch_in_a_group(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start()
    bot.tg.members.set(GROUP, ALICE, "creator")
    bot.tg.send_text(GROUP, ALICE, "/settings")
    menu = await menu_of(bot, GROUP)
    await press(bot, GROUP, ALICE, menu, "s:auto")
    await press(bot, GROUP, ALICE, menu, "s:auto:on")
    assert menu.text is not None and "Retouch every photo: on" in menu.text

    # A photo nobody addressed to the bot (unanswered by default, `test_telegram_bot.py`).
    sent = bot.tg.send_photo(GROUP, BOB, portrait_bytes, caption="our trip")
    [result] = await bot.result_for(GROUP)
    assert result.reply_to_message_id == sent["message_id"] and result.data == portrait_bytes
    assert len(bot.upstream.calls) == 1


async def test_admins_only_and_the_groups_language(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start()
    bot.tg.members.set(GROUP, ALICE, "administrator")
    bot.tg.send_text(GROUP, ALICE, "/settings")
    menu = await menu_of(bot, GROUP)
    for data in ("s:who", "s:who:admins", "s:lang", "s:lang:zh"):
        await press(bot, GROUP, ALICE, menu, data)
    assert menu.text is not None and "谁可以使用：仅管理员" in menu.text  # Alice too: the group's

    bot.tg.send_photo(GROUP, BOB, portrait_bytes, caption="/retouch")
    await bot.text_containing(GROUP, "本群只有管理员可以使用我")
    assert bot.upstream.calls == []
    bot.tg.send_photo(GROUP, ALICE, portrait_bytes, caption="/retouch")
    [result] = await bot.result_for(GROUP)
    assert result.caption is not None and result.caption.startswith("美颜完成")

    # A person's own language wins over the group's.
    bot.tg.send_text(GROUP, BOB, "/language en")
    await bot.text_containing(GROUP, "Done: I'll speak English with you.")
    bot.tg.send_photo(GROUP, BOB, portrait_bytes, caption="/retouch")
    await bot.text_containing(GROUP, "In this chat only its admins can use me")


async def test_language_is_chosen_by_button_and_stored(bot: Harness) -> None:
    await bot.start()
    bot.tg.send_text(ALICE.id, ALICE, "/language")
    chooser = await bot.text_containing(ALICE.id, "I speak English with you")
    assert chooser.callback_data == [f"l:en:{ALICE.id}", f"l:zh:{ALICE.id}", f"l:auto:{ALICE.id}"]
    await press(bot, ALICE.id, ALICE, chooser, f"l:zh:{ALICE.id}")
    assert chooser.text == "好的，我会用中文和你交流。"
    await bot.restart()
    bot.tg.send_text(ALICE.id, ALICE, "/help")
    await bot.text_containing(ALICE.id, "发送一张人像照片")

    # A Chinese client with no choice of its own gets Chinese; "auto" goes back to the app's.
    bot.tg.send_text(LI.id, LI, "/quota")
    await bot.text_containing(LI.id, "今天已用 0/20 次")
    bot.tg.send_text(ALICE.id, ALICE, "/language auto")
    await bot.text_containing(ALICE.id, "Done: I'll follow your app's language")


async def test_whoami_and_help_come_as_html(bot: Harness) -> None:
    await bot.start()
    bot.tg.send_text(ALICE.id, ALICE, "/whoami")
    line = await bot.text_containing(ALICE.id, "Your id is")
    assert line.text is not None and line.text.startswith("Your id is telegram:1001.")
    assert line.call is not None and "<code>telegram:1001</code>" in line.call.params["text"]
    bot.tg.send_text(GROUP, BOB, "/whoami")
    in_group = await bot.text_containing(GROUP, "This chat is")
    assert in_group.text is not None and "telegram:-100500" in in_group.text
    bot.tg.send_text(ALICE.id, ALICE, "/help")
    help_line = await bot.text_containing(ALICE.id, "Send a portrait photo")
    assert help_line.text is not None and "`" not in help_line.text  # code, not backticks
    commands = {c["command"] for c in bot.tg.calls_to("setMyCommands")[0].params["commands"]}
    assert {"settings", "language", "whoami"} <= commands and "buy" not in commands


async def test_compare_sends_a_before_after_only_to_the_requester(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start()
    bot.tg.send_photo(GROUP, ALICE, portrait_bytes, caption="/retouch")
    [result] = await bot.result_for(GROUP)
    compare = next(d for d in result.callback_data if d.startswith("k:"))
    assert await press(bot, GROUP, BOB, result, compare) == (
        "Only the person who sent the photo can use these buttons."
    )
    assert await press(bot, GROUP, ALICE, result, compare) == ""
    [_, sheet] = await bot.result_for(GROUP, 2)
    assert sheet.reply_to_message_id == result.message_id
    assert sheet.caption is not None and sheet.caption.startswith("Before · after (fidelity 0.1)")
    assert sheet.data is not None
    with Image.open(io.BytesIO(sheet.data)) as image, Image.open(io.BytesIO(portrait_bytes)) as raw:
        assert image.height == raw.height and image.width > 2 * raw.width
    assert len(bot.upstream.calls) == 1  # nothing retouched again
    bot.tg.send_text(ALICE.id, ALICE, "/quota")
    await bot.text_containing(ALICE.id, "used 1 of 20")  # and nothing counted

    for path in (bot.tmp_path / "data" / "results").iterdir():  # the result is no longer kept
        path.unlink()
    assert "no longer keep that result" in await press(bot, GROUP, ALICE, result, compare)


async def test_old_jobs_lose_their_references_and_their_buttons_say_so(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start()
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    [result] = await bot.result_for(ALICE.id)
    await bot.settled(ALICE.id)
    await bot.halt()
    # Restarted with a retention shorter than the job's age: the sweep at start erases it.
    await bot.start(jobs_retention_days=1e-9)
    redo = next(d for d in result.callback_data if d.startswith("r:"))
    compare = next(d for d in result.callback_data if d.startswith("k:"))
    gone = "That photo is no longer available — please send it again."
    assert await press(bot, ALICE.id, ALICE, result, redo) == gone
    assert await press(bot, ALICE.id, ALICE, result, compare) == gone
    assert len(bot.upstream.calls) == 1


async def test_admin_status_is_cached_for_a_few_seconds_of_the_clock() -> None:
    async with FakeTelegram() as tg:
        bot = Bot(tg.token, base_url=tg.base_url, base_file_url=tg.base_file_url)
        now = [0.0]
        admins = ChatAdmins(bot, ttl=5.0, clock=lambda: now[0])
        tg.members.set(GROUP, ALICE, "administrator")
        tg.send_text(GROUP, BOB, "hi")
        group = Chat(GROUP, "supergroup", title="Test group")
        alice, bob, carol = (TelegramUser(p.id, p.first_name, False) for p in (ALICE, BOB, CAROL))
        async with bot:
            assert await admins.is_admin(group, alice) and not await admins.is_admin(group, bob)
            assert await admins.is_admin(group, alice)
            assert len(tg.calls_to("getChatMember")) == 2
            tg.members.set(GROUP, ALICE, "member")  # demoted
            now[0] = 4.9
            assert await admins.is_admin(group, alice)
            now[0] = 5.1
            assert not await admins.is_admin(group, alice)
            assert len(tg.calls_to("getChatMember")) == 3
            assert not await admins.is_admin(group, carol)  # unknown to Telegram: a no
            assert "user not found" in str(tg.calls_to("getChatMember")[-1].response)
