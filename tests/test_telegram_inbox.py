"""Telegram updates through the durable inbox, in process: polling and webhook.

Stored before they are confirmed, handled once: a stored update never handled (the process
died) is handled at the next start before anything new, one Telegram sends again after it was
handled is skipped, and a webhook answers 200 only once the update is stored.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import httpx
from telegram import Bot

from bots.telegram.run import TelegramRunner
from core.store.sqlite import SqliteStore
from tests.fake_telegram import FakeTelegram, User
from tests.test_operations import KEY, bot_settings, free_port, run_in_process
from tests.upstream_fakes import Echo, FakeUpstream

ALICE = User(2101, "Alice", language_code="en")
BOB = User(2102, "Bob", language_code="en")


def replies_to(tg: FakeTelegram, chat_id: int) -> int:
    return sum(1 for m in tg.sent_to(chat_id) if m.kind == "text" and not m.edited)


async def test_a_restart_handles_what_was_stored_and_skips_what_was_handled(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    async with FakeTelegram() as tg, FakeUpstream(default=Echo(), api_key=KEY) as upstream:
        # Before the restart: Alice's photo was stored and confirmed, never handled; Bob's
        # /help was handled, but the process died before confirming it.
        tg.send_photo(ALICE.id, ALICE, portrait_bytes)
        tg.send_text(BOB.id, BOB, "/help")
        photo, helped = tg.pending_updates
        async with Bot(tg.token, base_url=tg.base_url, base_file_url=tg.base_file_url) as bot:
            await bot.get_updates(offset=photo["update_id"] + 1)
        assert [u["update_id"] for u in tg.pending_updates] == [helped["update_id"]]
        settings, telegram = bot_settings(tmp_path, tg, upstream, quota_burst_per_minute=0)
        async with await SqliteStore.open(settings.database_path) as store:
            await store.store_update("telegram", photo["update_id"], copy.deepcopy(photo))
            await store.store_update("telegram", helped["update_id"], copy.deepcopy(helped))
            await store.finish_update("telegram", helped["update_id"])

        task, stop = await run_in_process(settings, [TelegramRunner(settings, telegram)])
        try:
            [sent] = await tg.wait_for("sendPhoto", answered=True, timeout=30)
            assert sent.chat_id == ALICE.id
            await tg.wait_consumed()  # Bob's /help was confirmed...
            tg.send_text(BOB.id, BOB, "/help")
            await tg.wait_until(lambda: replies_to(tg, BOB.id) >= 1)
            assert replies_to(tg, BOB.id) == 1  # ...and answered once: only the new one
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        async with await SqliteStore.open(settings.database_path) as store:
            assert await store.pending_updates("telegram") == []
            [job] = await store.recent_jobs()
            assert job.state == "done" and job.sent_ref == str(tg.sent_to(ALICE.id)[-1].message_id)


async def test_a_webhook_update_sent_again_is_handled_once(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    async with FakeTelegram() as tg, FakeUpstream(default=Echo(), api_key=KEY) as upstream:
        port = free_port()
        url = f"http://127.0.0.1:{port}/telegram/hook"
        settings, telegram = bot_settings(
            tmp_path, tg, upstream, webhook_url=url, webhook_listen=f"127.0.0.1:{port}"
        )
        task, stop = await run_in_process(settings, [TelegramRunner(settings, telegram)])
        try:
            await tg.wait_for("setWebhook", answered=True)
            tg.send_photo(ALICE.id, ALICE, portrait_bytes)
            await tg.wait_for("sendPhoto", answered=True, timeout=30)
            [delivery] = tg.webhook_deliveries
            assert delivery.status == 200
            # Telegram sends it again (say the 200 was lost on the way): 200, and nothing runs.
            headers = {"X-Telegram-Bot-Api-Secret-Token": telegram.secret_token}
            async with httpx.AsyncClient() as client:
                again = await client.post(url, json=delivery.update, headers=headers)
                junk = await client.post(url, json={"message": {}}, headers=headers)
            assert (again.status_code, junk.status_code) == (200, 400)
            tg.send_text(ALICE.id, ALICE, "/help")
            await tg.wait_for("sendMessage", 2, answered=True)  # the status line, then the help
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        assert len(tg.calls_to("sendPhoto")) == 1
        async with await SqliteStore.open(settings.database_path) as store:
            assert len(await store.recent_jobs()) == 1
            assert await store.pending_updates("telegram") == []
