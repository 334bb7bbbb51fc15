"""The real Telegram bot (`run_telegram`, python-telegram-bot 22) against a local fake Bot API.

The upstream is a fake retouch API on 127.0.0.1 that echoes the input image back, so each test
can check which photo came back where, and a gate can hold a job in the upstream on demand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bots.telegram.clock import BUDGET_CLOCK
from bots.telegram.run import run_telegram
from bots.telegram.settings import TelegramSettings
from core.settings import Settings, load_settings
from tests.fake_clock import JumpClock
from tests.fake_telegram import ChatMessage, FakeTelegram, User
from tests.upstream_fakes import Echo, FakeUpstream, Gate

ALICE = User(1001, "Alice", username="alice", language_code="en")
BOB = User(1002, "Bob", username="bob", language_code="en")
LI = User(1003, "Li", username="li", language_code="zh-hans")
GROUP = -100500
ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_KEY = "sk-upstream-test-key-0123456789"


@dataclass
class Harness:
    """The fake Bot API, the fake upstream and the bot task, restartable on the same data."""

    tg: FakeTelegram
    upstream: FakeUpstream
    tmp_path: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    telegram_overrides: dict[str, Any] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event | None = None

    def settings(self) -> Settings:
        values: dict[str, Any] = {
            "retouch_api_key": UPSTREAM_KEY,
            "retouch_api_base_url": self.upstream.base_url,
            "retouch_max_retries": 0,
            "data_dir": self.tmp_path / "data",
            "database_path": self.tmp_path / "data" / "retouch.db",
            "quota_burst_per_minute": 0,
            "jobs_shutdown_grace_seconds": 0,
            "admin_ids": "telegram:9999",
        }
        values.update(self.overrides)
        return load_settings(**values)

    def telegram(self) -> TelegramSettings:
        return TelegramSettings.load(
            bot_token=self.tg.token,
            api_base_url=self.tg.base_url,
            file_base_url=self.tg.base_file_url,
            **{"album_wait_seconds": 0.05, "status_edit_interval_seconds": 0}
            | self.telegram_overrides,
        )

    async def start(self, telegram: dict[str, Any] | None = None, **overrides: Any) -> None:
        """Run the bot; `overrides` are core settings, `telegram` the `TELEGRAM_*` ones."""
        self.overrides.update(overrides)
        self.telegram_overrides.update(telegram or {})
        polls = len(self.tg.calls_to("getUpdates"))
        self.stop = asyncio.Event()
        # The bot's flood budget keeps the fake's clock when that is a test's (see JumpClock).
        clock = self.tg.clock if isinstance(self.tg.clock, JumpClock) else None
        token = BUDGET_CLOCK.set(clock)
        try:
            self.task = asyncio.create_task(
                run_telegram(self.settings(), self.telegram(), self.stop)
            )
        finally:
            BUDGET_CLOCK.reset(token)
        await self.tg.wait_until(
            lambda: len(self.tg.calls_to("getUpdates")) > polls or self._died()
        )
        self._raise_if_died()

    async def restart(self) -> None:
        await self.halt()
        await self.start()

    async def halt(self) -> None:
        assert self.stop is not None and self.task is not None
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
        self.task = None

    def _died(self) -> bool:
        return self.task is not None and self.task.done()

    def _raise_if_died(self) -> None:
        if self.task is not None and self.task.done():
            self.task.result()

    async def result_for(self, chat: int, count: int = 1) -> list[ChatMessage]:
        """Wait for `count` results (photos or documents) the bot sent to `chat`."""

        def results() -> list[ChatMessage]:
            return [m for m in self.tg.sent_to(chat) if m.kind in ("photo", "document")]

        await self.tg.wait_until(lambda: len(results()) >= count or self._died())
        self._raise_if_died()
        return results()

    async def settled(self, chat: int) -> None:
        """Wait until every status reply in `chat` is gone: its jobs are done and committed."""
        status = [m for m in self.tg.sent_to(chat) if m.kind == "text"]
        await self.tg.wait_until(lambda: all(m.deleted for m in status))

    def texts(self, chat: int) -> list[str]:
        return [m.text for m in self.tg.sent_to(chat) if m.text is not None]

    async def text_containing(self, chat: int, fragment: str) -> ChatMessage:
        def found() -> ChatMessage | None:
            return next((m for m in self.tg.sent_to(chat) if m.text and fragment in m.text), None)

        await self.tg.wait_until(lambda: found() is not None or self._died())
        self._raise_if_died()
        message = found()
        assert message is not None
        return message


@pytest.fixture
async def bot(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Harness]:
    caplog.set_level(logging.DEBUG)
    async with FakeTelegram(clock=JumpClock()) as tg, FakeUpstream(default=Echo()) as upstream:
        harness = Harness(tg, upstream, tmp_path)
        yield harness
        if harness.task is not None:
            await harness.halt()
        # Nothing the bot logged or sent upstream ever carried the bot token.
        logged = [record.getMessage() for record in caplog.records]
        logged += [caplog.text]
        tg.assert_token_never_in(logged)
        for call in upstream.calls:
            tg.assert_token_never_in([json.dumps(call.json), json.dumps(dict(call.headers))])


def upstream_fidelities(upstream: FakeUpstream) -> list[float]:
    return [call.json["codeformer_fidelity"] for call in upstream.calls if call.json]


async def test_private_photo_without_caption(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start()
    sent = bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    [result] = await bot.result_for(ALICE.id)
    assert result.kind == "photo" and result.data == portrait_bytes
    assert result.reply_to_message_id == sent["message_id"]
    assert result.caption is not None and "fidelity 0.1" in result.caption
    assert "19 left today" in result.caption
    job_buttons = [d for d in result.callback_data if d.startswith("r:")]
    assert [d.rsplit(":", 1)[1] for d in job_buttons] == ["0.1", "0.3", "0.5", "0.7"]
    assert all(len(d.encode()) <= 64 for d in job_buttons)
    # The upstream got the photo itself as a data URL, fidelity as a number in both places.
    [call] = bot.upstream.calls
    assert call.json["codeformer_fidelity"] == 0.1
    assert call.json["extra_body"] == {"codeformer_fidelity": 0.1}
    assert call.image() == ("image/jpeg", portrait_bytes)
    assert call.authorization == f"Bearer {UPSTREAM_KEY}"
    # The status reply was shown and removed; the chat showed "sending photo".
    status = [m for m in bot.tg.sent_to(ALICE.id) if m.kind == "text"]
    assert len(status) == 1
    await bot.tg.wait_until(lambda: status[0].deleted)
    assert "upload_photo" in bot.tg.chat_actions(ALICE.id)
    commands = {c["command"] for c in bot.tg.calls_to("setMyCommands")[0].params["commands"]}
    assert {"retouch", "quota", "fidelity", "help", "forget", "start"} <= commands


async def test_caption_fidelity_and_image_as_document(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start()
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes, caption="fidelity 0.3")
    await bot.result_for(ALICE.id)
    bot.tg.send_document(ALICE.id, ALICE, portrait_bytes, "me.jpg", caption="f=.5")
    results = await bot.result_for(ALICE.id, 2)
    assert upstream_fidelities(bot.upstream) == [0.3, 0.5]
    assert results[1].caption is not None and "fidelity 0.5" in results[1].caption


async def test_bad_caption_and_non_images_get_a_polite_line(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start()
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes, caption="fidelity 7")
    await bot.text_containing(ALICE.id, "between 0 and 1")
    bot.tg.send_document(ALICE.id, ALICE, b"%PDF-1.4 not a photo", "cv.pdf", "application/pdf")
    await bot.text_containing(ALICE.id, "isn't an image")
    bot.tg.send_sticker(ALICE.id, ALICE)
    await bot.text_containing(ALICE.id, "Please send a photo")
    # A file that claims to be an image but isn't: a job, refused by the core, refunded.
    bot.tg.send_document(ALICE.id, ALICE, b"definitely not a jpeg", "fake.jpg", "image/jpeg")
    await bot.text_containing(ALICE.id, "It didn't count against your quota.")
    assert bot.upstream.calls == []
    bot.tg.send_text(ALICE.id, ALICE, "/quota")
    await bot.text_containing(ALICE.id, "used 0 of 20")


async def test_groups_answer_only_when_addressed(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start()
    bot.tg.send_photo(GROUP, ALICE, portrait_bytes, caption="our trip")
    bot.tg.send_photo(GROUP, ALICE, portrait_bytes, caption="/retouch@SomeOtherBot 0.3")
    await bot.tg.wait_consumed()
    mention = bot.tg.send_photo(GROUP, ALICE, portrait_bytes, caption="@RetouchTestBot 0.3")
    [result] = await bot.result_for(GROUP)
    assert result.reply_to_message_id == mention["message_id"]
    assert upstream_fidelities(bot.upstream) == [0.3]

    # `/retouch 0.5` as a reply to someone's photo in the group.
    photo = bot.tg.send_photo(GROUP, BOB, portrait_bytes)
    command = bot.tg.send_text(GROUP, ALICE, "/retouch@RetouchTestBot 0.5", reply_to=photo)
    results = await bot.result_for(GROUP, 2)
    assert results[1].reply_to_message_id == command["message_id"]
    assert upstream_fidelities(bot.upstream) == [0.3, 0.5]
    assert len(bot.upstream.calls) == 2  # the unaddressed photos never went anywhere


async def test_answer_every_photo_in_a_chosen_group(bot: Harness, portrait_bytes: bytes) -> None:
    other_group = GROUP - 1
    await bot.start(telegram={"all_photos_chats": str(GROUP)})
    bot.tg.send_photo(other_group, ALICE, portrait_bytes)  # not chosen: left alone
    await bot.tg.wait_consumed()
    sent = bot.tg.send_photo(GROUP, BOB, portrait_bytes)
    [result] = await bot.result_for(GROUP)
    assert result.reply_to_message_id == sent["message_id"]
    assert result.kind == "photo" and result.data == portrait_bytes
    assert upstream_fidelities(bot.upstream) == [0.1]
    assert bot.tg.sent_to(other_group) == []


async def test_album_comes_back_as_one_album(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start()
    bot.tg.send_album(ALICE.id, ALICE, [portrait_bytes] * 3, caption="0.3")
    [call] = await bot.tg.wait_for("sendMediaGroup", answered=True)
    assert len(call.params["media"]) == 3
    assert all(call.file(item["media"]) is not None for item in call.params["media"])
    assert upstream_fidelities(bot.upstream) == [0.3, 0.3, 0.3]
    assert bot.tg.calls_to("sendPhoto") == []
    [status] = [m for m in bot.tg.sent_to(ALICE.id) if m.kind == "text"]
    await bot.tg.wait_until(lambda: status.deleted)


async def test_redo_button_and_someone_elses_press(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start()
    bot.tg.send_photo(GROUP, ALICE, portrait_bytes, caption="/retouch")
    [result] = await bot.result_for(GROUP)
    redo = next(d for d in result.callback_data if d.endswith(":0.5"))

    query = bot.tg.press_button(GROUP, BOB, result.message_id, redo)
    await bot.tg.wait_for("answerCallbackQuery")
    assert "Only the person" in bot.tg.callback_answers[query]["text"]

    query = bot.tg.press_button(GROUP, ALICE, result.message_id, redo)
    results = await bot.result_for(GROUP, 2)
    assert results[1].reply_to_message_id == result.message_id
    assert upstream_fidelities(bot.upstream) == [0.1, 0.5]
    assert "0.5" in bot.tg.callback_answers[query]["text"]
    bot.tg.send_text(ALICE.id, ALICE, "/quota")
    await bot.text_containing(ALICE.id, "used 2 of 20")


@pytest.mark.parametrize("forged", ["5", "inf", "nan", "0.2"])
async def test_a_forged_redo_value_is_refused_and_costs_nothing(
    bot: Harness, portrait_bytes: bytes, forged: str
) -> None:
    await bot.start()
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    [result] = await bot.result_for(ALICE.id)
    await bot.settled(ALICE.id)
    job_id = result.callback_data[0].split(":")[1]
    texts = len(bot.texts(ALICE.id))

    data = f"r:{job_id}:{forged}"
    query = bot.tg.press_button(ALICE.id, ALICE, result.message_id, data, strict=False)
    await bot.tg.wait_for("answerCallbackQuery")
    assert bot.tg.callback_answers[query]["text"] == (
        "Redo takes fidelity 0.1, 0.3, 0.5, 0.7 only. Nothing was retouched, and nothing "
        "counted against your quota."
    )
    assert len(bot.texts(ALICE.id)) == texts  # no status reply: no job
    assert upstream_fidelities(bot.upstream) == [0.1]
    bot.tg.send_text(ALICE.id, ALICE, "/quota")
    await bot.text_containing(ALICE.id, "used 1 of 20")


async def test_redo_works_after_a_restart(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start()
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    [result] = await bot.result_for(ALICE.id)
    await bot.settled(ALICE.id)
    await bot.restart()
    bot.tg.press_button(ALICE.id, ALICE, result.message_id, result.callback_data[2])
    await bot.result_for(ALICE.id, 2)
    assert upstream_fidelities(bot.upstream) == [0.1, 0.5]


async def test_cancel_while_queued_is_refunded(bot: Harness, portrait_bytes: bytes) -> None:
    gate = Gate()
    bot.upstream.script(gate)
    await bot.start(max_concurrent_jobs=1)
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    await gate.wait_entered()
    bot.tg.send_photo(BOB.id, BOB, portrait_bytes)
    status = await bot.text_containing(BOB.id, "Queued, #1")
    cancel = next(d for d in status.callback_data if d.startswith("c:"))

    bot.tg.press_button(BOB.id, ALICE, status.message_id, cancel, strict=False)
    await bot.tg.wait_for("answerCallbackQuery")
    assert "Only the person" in next(iter(bot.tg.callback_answers.values()))["text"]

    query = bot.tg.press_button(BOB.id, BOB, status.message_id, cancel)
    await bot.text_containing(BOB.id, "Cancelled. This photo didn't count against your quota.")
    await bot.tg.wait_for("answerCallbackQuery", 2)
    assert bot.tg.callback_answers[query]["text"] == "Cancelled."
    gate.opened.set()
    await bot.result_for(ALICE.id)
    assert len(bot.upstream.calls) == 1
    assert [m for m in bot.tg.sent_to(BOB.id) if m.kind == "photo"] == []
    bot.tg.send_text(BOB.id, BOB, "/quota")
    await bot.text_containing(BOB.id, "used 0 of 20")


async def test_quota_exhausted_is_answered_without_an_upstream_call(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start(quota_per_user_per_day=1)
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    await bot.result_for(ALICE.id)
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    refusal = await bot.text_containing(ALICE.id, "used all 1 photos for today")
    assert re.search(r"resets at 00:00 UTC \(in (\d+ h )?\d+ min\)", refusal.text or "")
    assert len(bot.upstream.calls) == 1


async def test_a_slow_job_never_delays_another_user(bot: Harness, portrait_bytes: bytes) -> None:
    gate = Gate()
    bot.upstream.script(gate)
    await bot.start()
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    await gate.wait_entered()
    bot.tg.send_photo(BOB.id, BOB, portrait_bytes)
    await bot.result_for(BOB.id)
    assert [m for m in bot.tg.sent_to(ALICE.id) if m.kind == "photo"] == []
    gate.opened.set()
    await bot.result_for(ALICE.id)


async def test_flood_control_on_send_photo_is_waited_out(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start()
    bot.tg.fail_next("sendPhoto", status=429, retry_after=1)
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    [result] = await bot.result_for(ALICE.id)
    assert result.data == portrait_bytes
    assert [c.status for c in bot.tg.calls_to("sendPhoto")] == [429, 200]
    assert bot.tg.flood_stats()["calls_during_flood_wait"] == 0  # it waited the whole second


async def test_a_failed_upload_is_retried_from_the_stored_result(
    bot: Harness, portrait_bytes: bytes
) -> None:
    await bot.start()
    bot.tg.fail_upload_next("sendPhoto")
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    await bot.result_for(ALICE.id)
    assert len(bot.upstream.calls) == 1  # not retouched twice


async def test_restart_mid_job_delivers_once(bot: Harness, portrait_bytes: bytes) -> None:
    gate = Gate()
    bot.upstream.script(gate)
    await bot.start()
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    await gate.wait_entered()
    await bot.halt()  # the job is mid-flight; it stays in the store
    await bot.start()
    [result] = await bot.result_for(ALICE.id)
    assert result.data == portrait_bytes
    assert len(bot.upstream.calls) == 2  # the first attempt died with the old process
    bot.tg.send_text(ALICE.id, ALICE, "/quota")
    await bot.text_containing(ALICE.id, "used 1 of 20")
    assert len([m for m in bot.tg.sent_to(ALICE.id) if m.kind == "photo"]) == 1


async def test_commands(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start()
    bot.tg.send_text(ALICE.id, ALICE, "/start")
    await bot.text_containing(ALICE.id, "Send me a portrait photo")
    bot.tg.send_text(ALICE.id, ALICE, "/help")
    await bot.text_containing(ALICE.id, "fidelity 0.3")
    bot.tg.send_text(ALICE.id, ALICE, "/fidelity 0.4")
    await bot.text_containing(ALICE.id, "Saved: your photos will use fidelity 0.4")
    bot.tg.send_text(ALICE.id, ALICE, "/fidelity")
    await bot.text_containing(ALICE.id, "Your default fidelity is 0.4.")
    bot.tg.send_text(ALICE.id, ALICE, "/fidelity 2")
    await bot.text_containing(ALICE.id, "between 0 and 1")
    bot.tg.send_photo(ALICE.id, ALICE, portrait_bytes)
    await bot.result_for(ALICE.id)
    assert upstream_fidelities(bot.upstream) == [0.4]
    bot.tg.send_text(ALICE.id, ALICE, "/stats")
    await bot.text_containing(ALICE.id, "for the bot's admins")

    admin = User(9999, "Root", language_code="en")
    bot.tg.send_text(admin.id, admin, f"/grant {ALICE.id} 3")
    await bot.text_containing(admin.id, f"telegram:{ALICE.id} now has 3 extra credits")
    bot.tg.send_text(admin.id, admin, "/stats")
    await bot.text_containing(admin.id, "1 jobs from 1 users")

    bot.tg.send_text(ALICE.id, ALICE, "/forget")
    confirm = await bot.text_containing(ALICE.id, "Delete your saved settings")
    bot.tg.press_button(ALICE.id, ALICE, confirm.message_id, confirm.callback_data[0])
    await bot.text_containing(ALICE.id, "I deleted your settings and history (1 jobs)")
    bot.tg.send_text(ALICE.id, ALICE, "/fidelity")
    await bot.text_containing(ALICE.id, "0.1 (the bot's default)")


async def test_chinese_users_get_chinese(bot: Harness, portrait_bytes: bytes) -> None:
    await bot.start()
    bot.tg.send_photo(LI.id, LI, portrait_bytes, caption="保真度 0.3")
    [result] = await bot.result_for(LI.id)
    assert result.caption is not None and "美颜完成" in result.caption
    assert upstream_fidelities(bot.upstream) == [0.3]


async def test_the_real_command_serves_a_photo_and_stops_on_sigterm(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    """`retouch-bot telegram` as a process: a photo comes back, SIGTERM ends it with code 0."""
    import os
    import signal
    import sys

    async with FakeTelegram() as tg, FakeUpstream(default=Echo()) as upstream:
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))},
            "PYTHONPATH": str(ROOT),
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_BASE_URL": tg.base_url,
            "TELEGRAM_FILE_BASE_URL": tg.base_file_url,
            "RETOUCH_API_KEY": UPSTREAM_KEY,
            "RETOUCH_API_BASE_URL": upstream.base_url,
            "LOG_LEVEL": "DEBUG",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots.cli",
            "telegram",
            cwd=tmp_path,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await tg.wait_for("getUpdates", timeout=60)
            tg.send_photo(ALICE.id, ALICE, portrait_bytes)
            await tg.wait_for("sendPhoto", answered=True, timeout=30)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                _, stderr = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, stderr.decode()
        log = stderr.decode()
        assert "Telegram bot @RetouchTestBot is running" in log
        assert "SIGTERM" in log
        tg.assert_token_never_in([log])
