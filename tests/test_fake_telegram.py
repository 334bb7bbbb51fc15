"""The fake Telegram Bot API, proved with the real python-telegram-bot against it.

If PTB parses every answer and its handlers fire, end-to-end tests of the bot can trust the fake.
No test sleeps: they wait on the fake's change signal or on asyncio events, with timeouts.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import io
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fake_telegram import DOWNLOAD, FakeTelegram, User, compute_entities

ALICE = User(1001, "Alice", username="alice")
BOB = User(1002, "Bob", username="bob_the_builder")
GROUP = -1001234567890


def ci(text: str) -> re.Pattern[str]:
    """Match an error text case-insensitively: PTB capitalises Telegram's descriptions."""
    return re.compile(re.escape(text), re.IGNORECASE)


def jpeg(
    width: int = 640, height: int = 480, color: tuple[int, int, int] = (200, 150, 120)
) -> bytes:
    """A real JPEG of the given size."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@pytest.fixture
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeTelegram]:
    """The fake with Telegram's flood limits; `UNLIMITED` (indirect) turns them off for a test of
    unrelated features that sends a dozen messages to one chat in a millisecond."""
    enforce = getattr(request, "param", "limited") != "unlimited"
    async with FakeTelegram(enforce_limits=enforce) as server:
        yield server


UNLIMITED = pytest.mark.parametrize("fake", ["unlimited"], indirect=True)


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url) as b:
        yield b


@asynccontextmanager
async def running(
    fake: FakeTelegram, handlers: Sequence[BaseHandler[Any, Any, Any]]
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """A real PTB Application long-polling the fake, stopped cleanly afterwards."""
    app = (
        ApplicationBuilder()
        .token(fake.token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .build()
    )
    for handler in handlers:
        app.add_handler(handler)
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=dtm.timedelta(seconds=1))
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


async def raw_post(url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, **kwargs) as response:
        return response.status, await response.json(content_type=None)


# --------------------------------------------------------------------------- basics


async def test_get_me_unknown_method_and_wrong_token(fake: FakeTelegram, bot: Bot) -> None:
    """getMe answers the configured bot; unknown methods get 404, a wrong token 401."""
    me = await bot.get_me()
    assert me.username == "RetouchTestBot" and me.is_bot and me.can_join_groups
    assert me.id == 123456  # the token's prefix, as on Telegram
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("noSuchMethod")

    status, body = await raw_post(f"{fake.base_url}{fake.token}/noSuchMethod")
    assert (status, body) == (404, {"ok": False, "error_code": 404, "description": "Not Found"})
    status, body = await raw_post(f"{fake.base_url}999:wrong/getMe")
    assert (status, body) == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    wrong = Bot("999:wrong", base_url=fake.base_url, base_file_url=fake.base_file_url)
    try:
        with pytest.raises(InvalidToken):
            await wrong.initialize()
    finally:
        await wrong.shutdown()

    assert fake.calls[0].method == "getMe" and fake.calls[0].token_in_path == fake.token
    assert "User-Agent" in fake.calls[0].headers
    assert fake.calls_to("getMe")[-1].token_in_path == "999:wrong"


async def test_method_names_are_case_insensitive_and_json_bodies_work(fake: FakeTelegram) -> None:
    """JSON bodies and any method-name case are accepted, as Telegram does."""
    fake.send_text(ALICE.id, ALICE, "hi")
    status, body = await raw_post(
        f"{fake.base_url}{fake.token}/SENDMESSAGE",
        json={"chat_id": ALICE.id, "text": "hello", "reply_parameters": {"message_id": 1}},
    )
    assert status == 200 and body["result"]["reply_to_message"]["text"] == "hi"
    assert fake.calls[-1].method == "sendMessage"


# --------------------------------------------------------------------------- updates


async def test_long_polling_delivers_a_photo_that_the_bot_downloads_and_answers(
    fake: FakeTelegram,
) -> None:
    """The loop e2e tests rely on: poll, download the largest size, reply with a photo."""
    original = jpeg(1000, 750)
    received: list[Update] = []

    async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        received.append(update)
        assert update.message is not None
        file = await update.message.photo[-1].get_file()
        data = bytes(await file.download_as_bytearray())
        await update.message.reply_photo(data, caption=f"{len(data)} bytes", do_quote=True)

    async with running(fake, [MessageHandler(filters.PHOTO, on_photo)]):
        sent = fake.send_photo(ALICE.id, ALICE, original, caption="fidelity 0.3")
        [call] = await fake.wait_for("sendPhoto", answered=True)

    [update] = received
    assert update.message is not None and update.message.caption == "fidelity 0.3"
    sizes = [(p.width, p.height) for p in update.message.photo]
    assert sizes == [(90, 68), (320, 240), (800, 600), (1000, 750)]
    assert call.files["photo"].data == original
    assert call.params["reply_parameters"]["message_id"] == sent["message_id"]
    [answer] = fake.sent_to(ALICE.id)
    assert answer.kind == "photo" and answer.data == original
    assert answer.caption == f"{len(original)} bytes"
    assert answer.reply_to_message_id == sent["message_id"]
    assert answer.message_id == sent["message_id"] + 1
    assert answer.message["photo"][-1]["width"] == 1000
    downloads = fake.calls_to(DOWNLOAD)
    assert downloads and downloads[0].token_in_path == fake.token
    assert fake.calls_to("deleteWebhook")


async def test_get_updates_long_polls_with_offset_and_allowed_updates(
    fake: FakeTelegram, bot: Bot
) -> None:
    """Real long polling: waits for an update or the timeout, confirms by offset, filters."""
    polling = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_for("getUpdates")
    assert not polling.done()  # waiting, not answering empty
    started = time.monotonic()
    fake.send_text(ALICE.id, ALICE, "hello")
    [update] = await polling
    assert time.monotonic() - started < 4  # well before the 5 s poll timeout
    assert update.message is not None and update.message.text == "hello"

    # Not confirmed yet: the same update again; then confirmed by the offset.
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [update.update_id]
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == ()
    assert fake.pending_updates == []

    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 <= time.monotonic() - started < 5

    fake.send_text(ALICE.id, ALICE, "skip me")
    fake.send_sticker(ALICE.id, ALICE)
    only = await bot.get_updates(timeout=0, allowed_updates=["edited_message"])
    assert only == ()
    both = await bot.get_updates(timeout=0, allowed_updates=[])
    assert [u.message.sticker is not None for u in both if u.message] == [False, True]


async def test_a_second_poller_terminates_the_first_with_conflict(
    fake: FakeTelegram, bot: Bot
) -> None:
    """Two pollers of one token conflict, as when two replicas poll: the older one gets 409."""
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await fake.wait_for("getUpdates")
    # PTB's getUpdates pool holds one connection, so the second poller is another process.
    async with Bot(fake.token, base_url=fake.base_url) as replica:
        assert await replica.get_updates(timeout=0) == ()
    with pytest.raises(Conflict):
        await first


async def test_user_builders_make_updates_ptb_parses(fake: FakeTelegram, bot: Bot) -> None:
    """Albums, documents, videos and replies built by the fake parse in PTB correctly."""
    album = fake.send_album(GROUP, BOB, [jpeg(300, 200), jpeg(200, 300)], caption="/retouch")
    fake.send_document(ALICE.id, ALICE, jpeg(), "me.jpg", caption="0.5")
    fake.send_video(ALICE.id, ALICE)
    reply = fake.send_text(GROUP, ALICE, "/retouch 0.7", reply_to=album[0])
    updates = await bot.get_updates(timeout=0)
    messages = [u.message for u in updates if u.message]
    assert len(messages) == 5
    first, second, document, video, text = messages
    assert first.media_group_id == second.media_group_id is not None
    assert first.caption == "/retouch" and second.caption is None
    assert first.chat.type == "supergroup" and first.chat.title
    assert first.caption_entities[0].type == "bot_command"
    assert [(p.width, p.height) for p in second.photo][-1] == (200, 300)
    assert document.document is not None and document.document.file_name == "me.jpg"
    assert document.document.mime_type == "image/jpeg" and document.chat.type == "private"
    assert video.video is not None and video.video.mime_type == "video/mp4"
    assert text.reply_to_message is not None
    assert text.reply_to_message.message_id == album[0]["message_id"]
    assert text.reply_to_message.photo and reply["message_id"] == 3


def test_entities_use_utf16_offsets() -> None:
    """Entity offsets count UTF-16 code units, so an emoji before a command shifts it by two."""
    text = "👋 /retouch@RetouchTestBot 0.3 @someone e@mail.com"
    assert compute_entities(text) == [
        {"type": "bot_command", "offset": 3, "length": 23},
        {"type": "mention", "offset": 31, "length": 8},
    ]


# --------------------------------------------------------------------------- files


async def test_get_file_and_download(fake: FakeTelegram, bot: Bot) -> None:
    """getFile gives a path under base_file_url that serves the stored bytes; unknown ids fail."""
    data = b"%PDF-1.4 not really"
    file_id = fake.add_file(data, kind="document", file_name="a.pdf", mime_type="application/pdf")
    file = await bot.get_file(file_id)
    assert file.file_size == len(data) and file.file_path is not None
    assert file.file_path.startswith(fake.base_file_url)
    assert bytes(await file.download_as_bytearray()) == data
    with pytest.raises(BadRequest, match=ci("invalid file_id")):
        await bot.get_file("nope")
    async with aiohttp.ClientSession() as session:
        url = f"{fake.base_file_url}{fake.token}/documents/missing.pdf"
        async with session.get(url) as response:
            assert response.status == 404


# --------------------------------------------------------------------------- sending


@UNLIMITED
async def test_uploads_are_recorded_with_bytes_and_reply_parameters(
    fake: FakeTelegram, bot: Bot
) -> None:
    """Multipart uploads (single, and albums via attach://) are recorded and echoed back."""
    asked = fake.send_photo(ALICE.id, ALICE, jpeg())
    result, full = jpeg(512, 384, (10, 20, 30)), jpeg(1024, 768, (10, 20, 31))
    photo = await bot.send_photo(
        ALICE.id,
        result,
        caption="<b>done</b> at fidelity 0.3",
        parse_mode=ParseMode.HTML,
        reply_parameters=ReplyParameters(asked["message_id"]),
        reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("0.5", callback_data="r:0.5")]]),
    )
    assert photo.caption == "done at fidelity 0.3"
    assert photo.reply_to_message is not None
    assert photo.reply_to_message.message_id == asked["message_id"]
    assert (photo.photo[-1].width, photo.photo[-1].height) == (512, 384)
    assert photo.reply_markup is not None and photo.from_user is not None
    assert photo.from_user.username == "RetouchTestBot"

    document = await bot.send_document(
        ALICE.id, full, filename="retouched.jpg", reply_to_message_id=asked["message_id"]
    )
    assert document.document is not None and document.document.file_name == "retouched.jpg"
    assert document.document.mime_type == "image/jpeg"
    assert document.document.file_size == len(full)

    album = await bot.send_media_group(
        ALICE.id,
        [InputMediaPhoto(result, caption="one"), InputMediaPhoto(full)],
        reply_parameters=ReplyParameters(asked["message_id"]),
    )
    assert len(album) == 2 and album[0].media_group_id == album[1].media_group_id
    assert album[0].caption == "one" and album[1].caption is None

    [photo_call] = fake.calls_to("sendPhoto")
    assert photo_call.files["photo"].data == result
    assert photo_call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "r:0.5"
    [group_call] = fake.calls_to("sendMediaGroup")
    refs = [item["media"] for item in group_call.params["media"]]
    assert all(ref.startswith("attach://") for ref in refs)
    assert [group_call.file(ref).data for ref in refs] == [result, full]  # type: ignore[union-attr]

    sent = fake.sent_to(ALICE.id)
    assert [m.kind for m in sent] == ["photo", "document", "photo", "photo"]
    assert [m.data for m in sent] == [result, full, result, full]
    assert {m.reply_to_message_id for m in sent} == {asked["message_id"]}
    assert sent[0].callback_data == ["r:0.5"]
    assert sent[1].upload is not None and sent[1].upload.filename == "retouched.jpg"

    # The bot can send its result again by file_id, and fetch it back.
    again = await bot.send_photo(ALICE.id, photo.photo[-1].file_id)
    assert again.photo[-1].file_unique_id == photo.photo[-1].file_unique_id
    fetched = await (await bot.get_file(photo.photo[-1].file_id)).download_as_bytearray()
    assert bytes(fetched) == result


@UNLIMITED
async def test_edit_delete_actions_commands_and_callback_answers(
    fake: FakeTelegram, bot: Bot
) -> None:
    """Status-message life cycle, chat actions, commands, callback answers, and their errors."""
    fake.send_text(ALICE.id, ALICE, "/start")
    buttons = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="x")]])
    status = await bot.send_message(ALICE.id, "queued, #3", reply_markup=buttons)
    await bot.send_chat_action(ALICE.id, ChatAction.UPLOAD_PHOTO)
    edited = await bot.edit_message_text("retouching...", ALICE.id, status.message_id)
    assert isinstance(edited, type(status)) and edited.text == "retouching..."
    assert edited.reply_markup is None  # an edit without reply_markup drops the keyboard
    with pytest.raises(BadRequest, match=ci("message is not modified")):
        await bot.edit_message_text("retouching...", ALICE.id, status.message_id)
    with pytest.raises(BadRequest, match=ci("message to edit not found")):
        await bot.edit_message_text("x", ALICE.id, 999)
    marked = await bot.edit_message_reply_markup(ALICE.id, status.message_id, reply_markup=buttons)
    assert not isinstance(marked, bool) and marked.reply_markup is not None
    assert await bot.delete_message(ALICE.id, status.message_id)
    with pytest.raises(BadRequest, match=ci("message to delete not found")):
        await bot.delete_message(ALICE.id, status.message_id)

    [record] = fake.sent_to(ALICE.id)
    assert record.deleted and record.text == "retouching..."
    assert [h.get("text") for h in record.history] == ["queued, #3", "retouching..."]
    assert fake.sent_to(ALICE.id, include_deleted=False) == []
    assert fake.chat_actions(ALICE.id) == ["upload_photo"]

    commands = [BotCommand("retouch", "Retouch a photo"), BotCommand("quota", "Your quota")]
    assert await bot.set_my_commands(commands)
    assert [c.command for c in await bot.get_my_commands()] == ["retouch", "quota"]
    with pytest.raises(BadRequest, match=ci("BOT_COMMAND_INVALID")):
        await bot.set_my_commands([BotCommand("Retouch", "upper case is refused")])
    assert fake.calls_to("setMyCommands")[0].params["commands"][0]["command"] == "retouch"

    message = await bot.send_message(ALICE.id, "pick", reply_markup=buttons)
    query_id = fake.press_button(ALICE.id, ALICE, message.message_id, "x")
    assert await bot.answer_callback_query(query_id, text="queued")
    assert fake.callback_answers[query_id]["text"] == "queued"
    with pytest.raises(BadRequest, match=ci("query is too old")):
        await bot.answer_callback_query(query_id)
    with pytest.raises(ValueError, match="no button"):
        fake.press_button(ALICE.id, ALICE, message.message_id, "not-a-button")


@UNLIMITED
async def test_telegram_limits_are_enforced(fake: FakeTelegram, bot: Bot) -> None:
    """The fake refuses what Telegram refuses, so these bugs surface in tests, not in production."""
    fake.send_text(ALICE.id, ALICE, "hi")
    with pytest.raises(BadRequest, match=ci('Unsupported start tag "x"')):
        await bot.send_message(ALICE.id, "/fidelity <x>", parse_mode=ParseMode.HTML)
    escaped = await bot.send_message(ALICE.id, "/fidelity &lt;x&gt;", parse_mode=ParseMode.HTML)
    assert escaped.text == "/fidelity <x>"
    with pytest.raises(BadRequest, match=ci("Character '.' is reserved")):
        await bot.send_message(ALICE.id, "fidelity 0.3", parse_mode=ParseMode.MARKDOWN_V2)
    ok = await bot.send_message(ALICE.id, r"*fidelity* 0\.3", parse_mode=ParseMode.MARKDOWN_V2)
    assert ok.text == "fidelity 0.3"
    with pytest.raises(BadRequest, match=ci("Can't find end of the entity")):
        await bot.send_message(ALICE.id, "hi @bob_builder", parse_mode=ParseMode.MARKDOWN)
    with pytest.raises(BadRequest, match=ci("message is too long")):
        await bot.send_message(ALICE.id, "x" * 4097)
    with pytest.raises(BadRequest, match=ci("caption is too long")):
        await bot.send_photo(ALICE.id, jpeg(64, 64), caption="x" * 1025)
    with pytest.raises(BadRequest, match=ci("BUTTON_DATA_INVALID")):
        too_long = InlineKeyboardButton("redo", callback_data="r" * 65)
        await bot.send_message(ALICE.id, "x", reply_markup=InlineKeyboardMarkup([[too_long]]))
    with pytest.raises(BadRequest, match=ci("PHOTO_INVALID_DIMENSIONS")):
        await bot.send_photo(ALICE.id, jpeg(2100, 100))
    with pytest.raises(BadRequest, match=ci("IMAGE_PROCESS_FAILED")):
        await bot.send_photo(ALICE.id, b"not an image", filename="x.jpg")
    with pytest.raises(BadRequest, match=ci("message to be replied not found")):
        await bot.send_message(ALICE.id, "x", reply_parameters=ReplyParameters(12345))
    with pytest.raises(Forbidden, match=ci("can't initiate conversation")):
        await bot.send_message(BOB.id, "you never wrote to me")
    with pytest.raises(BadRequest, match=ci("chat not found")):
        await bot.send_message(-42, "no such group")
    fake.block(ALICE.id)
    with pytest.raises(Forbidden, match=ci("blocked by the user")):
        await bot.send_message(ALICE.id, "x")


# --------------------------------------------------------------------------- faults


@UNLIMITED
async def test_flood_control_raises_retry_after(
    fake: FakeTelegram, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Injected 429 / 500 / 400 / garbage answers reach PTB as its typed errors, once each."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    fake.send_text(ALICE.id, ALICE, "hi")
    fake.fail_next("sendMessage", retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(ALICE.id, "result")
    assert caught.value.retry_after == dtm.timedelta(seconds=7)
    failed = fake.calls_to("sendMessage")[0]
    assert failed.status == 429 and failed.response["parameters"] == {"retry_after": 7}
    assert failed.response["description"] == "Too Many Requests: retry after 7"
    assert (await bot.send_message(ALICE.id, "result")).text == "result"
    assert [m.text for m in fake.sent_to(ALICE.id)] == ["result"]

    fake.fail_next("sendMessage", status=500, times=2)
    for _ in range(2):
        with pytest.raises(NetworkError, match=ci("Internal Server Error")):
            await bot.send_message(ALICE.id, "x")
    fake.fail_next(
        "editMessageText", status=400, description="Bad Request: message to edit not found"
    )
    with pytest.raises(BadRequest, match=ci("message to edit not found")):
        await bot.edit_message_text("x", ALICE.id, 1)
    fake.garble_next("getMe")
    with pytest.raises(TelegramError, match="Invalid server response"):
        await bot.get_me()


async def test_failed_dropped_and_hanging_uploads(fake: FakeTelegram, bot: Bot) -> None:
    """An upload can fail after its body was read, lose its connection, or never be answered."""
    fake.send_text(ALICE.id, ALICE, "hi")
    image = jpeg(128, 96)
    fake.fail_upload_next("sendPhoto")
    with pytest.raises(NetworkError, match=ci("Internal Server Error")):
        await bot.send_photo(ALICE.id, image)
    fake.fail_upload_next("sendPhoto", drop=True)
    with pytest.raises(NetworkError):
        await bot.send_photo(ALICE.id, image)
    assert [c.files["photo"].data for c in fake.calls_to("sendPhoto")] == [image, image]
    fake.hang_next("sendPhoto")
    with pytest.raises(TimedOut):
        await bot.send_photo(ALICE.id, image, read_timeout=0.3)
    await bot.send_photo(ALICE.id, image)
    assert [m.data for m in fake.sent_to(ALICE.id)] == [image]
    fake.hang_next(DOWNLOAD)
    file = await bot.get_file(fake.add_file(image))
    with pytest.raises(TimedOut):
        await file.download_as_bytearray(read_timeout=0.3)


def test_token_helper_never_echoes_the_token() -> None:
    """The leak check names the offending text by index and never prints the token itself."""
    fake = FakeTelegram()
    fake.assert_token_never_in(["GET https://api.telegram.org/bot<redacted>/getMe"])
    secret = fake.token.split(":", 1)[1]
    with pytest.raises(AssertionError) as caught:
        fake.assert_token_never_in(["fine", f"leaked {secret}"])
    assert "#1" in str(caught.value) and secret not in str(caught.value)


# --------------------------------------------------------------------------- handlers


async def test_callback_query_reaches_callback_query_handler(fake: FakeTelegram) -> None:
    """A pressed button reaches CallbackQueryHandler, which answers it and edits the message."""
    seen: list[str] = []

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.data is not None and query.message is not None
        seen.append(query.data)
        await query.answer("redoing at 0.5")
        await context.bot.edit_message_text(
            "redo queued", query.message.chat.id, query.message.message_id
        )

    fake.send_text(ALICE.id, ALICE, "hi")
    async with running(fake, [CallbackQueryHandler(on_button, pattern=r"^redo:")]) as app:
        markup = InlineKeyboardMarkup([[InlineKeyboardButton("0.5", callback_data="redo:0.5")]])
        result = await app.bot.send_message(ALICE.id, "done", reply_markup=markup)
        query_id = fake.press_button(ALICE.id, ALICE, result.message_id, "redo:0.5")
        await fake.wait_for("editMessageText", answered=True)
    assert seen == ["redo:0.5"]
    assert fake.callback_answers[query_id]["text"] == "redoing at 0.5"
    assert fake.sent_to(ALICE.id)[0].text == "redo queued"


async def test_group_commands_addressed_to_the_bot(fake: FakeTelegram) -> None:
    """In a group `/retouch@RetouchTestBot` reaches CommandHandler; another bot's does not."""
    handled: list[tuple[str, list[str]]] = []
    done = asyncio.Event()

    async def on_retouch(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None
        handled.append(("retouch", list(context.args or [])))

    async def on_other_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and update.message.text is not None
        handled.append(("command", [update.message.text]))
        if update.message.text == "/end":
            done.set()

    handlers = [
        CommandHandler("retouch", on_retouch),
        MessageHandler(filters.COMMAND, on_other_command),
    ]
    async with running(fake, handlers):
        fake.send_text(GROUP, BOB, "/retouch@RetouchTestBot 0.3", chat_type="supergroup")
        fake.send_text(GROUP, BOB, "/retouch@SomeOtherBot 0.9")
        fake.send_text(GROUP, BOB, "hello @RetouchTestBot")
        fake.send_text(GROUP, BOB, "/end")
        await asyncio.wait_for(done.wait(), 10)
    assert handled == [
        ("retouch", ["0.3"]),
        ("command", ["/retouch@SomeOtherBot 0.9"]),
        ("command", ["/end"]),
    ]
    assert fake.history(GROUP)[2].message["entities"] == [
        {"type": "mention", "offset": 6, "length": 15}
    ]


async def test_webhook_mode_pushes_updates_and_blocks_get_updates(
    fake: FakeTelegram, bot: Bot
) -> None:
    """With a webhook set, updates are POSTed with the secret header and getUpdates is refused."""
    received: list[tuple[dict[str, Any], str | None]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append(
            (await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
        )
        arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        assert await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        with pytest.raises(Conflict, match=ci("webhook is active")):
            await bot.get_updates(timeout=0)
        fake.send_text(ALICE.id, ALICE, "via webhook")
        await asyncio.wait_for(arrived.wait(), 10)
        await fake.wait_consumed()
        info = await bot.get_webhook_info()
        assert info.url.endswith("/hook") and info.pending_update_count == 0
        assert await bot.delete_webhook()
    finally:
        await runner.cleanup()
    [(update, secret)] = received
    assert update["message"]["text"] == "via webhook" and secret == "s3cret"
    assert Update.de_json(json.loads(json.dumps(update)), bot).message is not None


async def test_the_rest_of_the_surface_parses_in_ptb(fake: FakeTelegram, bot: Bot) -> None:
    """Captions, media edits, document albums, bulk deletes and the trivial methods."""
    fake.send_text(GROUP, ALICE, "/retouch@RetouchTestBot")
    photo = await bot.send_photo(GROUP, jpeg(100, 80), caption="first")
    recaptioned = await bot.edit_message_caption(GROUP, photo.message_id, caption="second")
    assert not isinstance(recaptioned, bool) and recaptioned.caption == "second"
    replaced = await bot.edit_message_media(
        InputMediaPhoto(jpeg(60, 40), caption="third"), GROUP, photo.message_id
    )
    assert not isinstance(replaced, bool) and replaced.photo[-1].width == 60
    assert fake.sent_to(GROUP)[0].data == jpeg(60, 40)
    text = await bot.send_message(GROUP, "status")
    with pytest.raises(BadRequest, match=ci("no caption in the message")):
        await bot.edit_message_caption(GROUP, text.message_id, caption="x")
    with pytest.raises(BadRequest, match=ci("type of file mismatch")):
        await bot.send_document(GROUP, photo.photo[-1].file_id)
    documents = await bot.send_media_group(
        GROUP, [InputMediaDocument(b"a", filename="a.txt"), InputMediaDocument(b"b")]
    )
    assert [d.document.file_name for d in documents if d.document] == [
        "a.txt",
        "application.octet-stream",
    ]
    assert await bot.delete_messages(GROUP, [text.message_id, 999])
    assert [m.deleted for m in fake.sent_to(GROUP)] == [False, True, False, False]
    assert await bot.get_webhook_info()
    assert await bot.log_out() and await bot.close()


async def test_lenient_chats_and_raw_updates() -> None:
    """With strict_chats=False the bot may write first; any update body can be queued."""
    async with (
        FakeTelegram(strict_chats=False, username="OtherBot") as fake,
        Bot(fake.token, base_url=fake.base_url) as other,
    ):
        assert (await other.get_me()).username == "OtherBot"
        message = await other.send_message(777, "unsolicited")
        assert message.chat.type == "private"
        fake.enqueue_update({"my_chat_member": {"chat": {"id": -5, "type": "group"}}})
        assert len(fake.pending_updates) == 1
