"""The Telegram bot's performance parts on their own: the aiohttp request layer, the status
board's edit budget, and the idle memory trim. (End to end they run in test_telegram_bot.py.)"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from telegram import Bot
from telegram.error import NetworkError, TimedOut

from bots.telegram import memory
from bots.telegram.request import AiohttpRequest
from bots.telegram.status import StatusBoard
from tests.fake_telegram import FakeTelegram, User
from tests.upstream_fakes import sample_jpeg

TOKEN = "123456:TEST-token-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


@pytest.fixture
async def slow_server() -> AsyncIterator[str]:
    """A server whose every answer takes 5 s."""

    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_bot_api_calls_and_uploads_arrive_as_with_httpx() -> None:
    async with FakeTelegram() as tg:
        request = AiohttpRequest(connection_pool_size=4)
        bot = Bot(tg.token, base_url=tg.base_url, base_file_url=tg.base_file_url, request=request)
        async with bot:
            alice = User(1001, "Alice")
            tg.send_text(1001, alice, "hi")
            sent = await bot.send_message(1001, "hello")
            assert sent.text == "hello"
            data = sample_jpeg(64, 48)
            message = await bot.send_photo(1001, data, caption="done", filename="r.jpg")
            assert message.caption == "done"
            [call] = tg.calls_to("sendPhoto")
            assert call.files["photo"].data == data
            file = await bot.get_file(message.photo[-1].file_id)
            assert bytes(await file.download_as_bytearray()) == data
        assert tg.calls_to("getMe")


async def test_a_slow_answer_is_a_timeout(slow_server: str) -> None:
    request = AiohttpRequest(read_timeout=0.2)
    await request.initialize()
    try:
        with pytest.raises(TimedOut):
            await request.post(f"{slow_server}/bot{TOKEN}/getMe")
    finally:
        await request.shutdown()


async def test_network_errors_never_carry_the_token() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    request = AiohttpRequest(connect_timeout=2)
    await request.initialize()
    try:
        with pytest.raises(NetworkError) as caught:
            await request.post(f"http://127.0.0.1:{port}/bot{TOKEN}/getMe")
    finally:
        await request.shutdown()
    assert TOKEN not in str(caught.value)
    assert TOKEN.split(":")[1] not in str(caught.value)


async def test_requests_need_initialize() -> None:
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest().do_request("http://127.0.0.1:1/", "GET")


class RecordingBot:
    def __init__(self) -> None:
        self.edits: list[str] = []
        self.deleted: list[int] = []

    async def edit_message_text(self, text: str, **kwargs: Any) -> bool:
        self.edits.append(text)
        return True

    async def delete_message(self, chat_id: int, message_id: int) -> bool:
        self.deleted.append(message_id)
        return True


async def test_the_status_message_itself_spends_the_edit_budget() -> None:
    bot = RecordingBot()
    board = StatusBoard(bot, interval=0.2)  # type: ignore[arg-type]
    board.sent(7)
    await board.show(7, 1, "queued, #1", None)
    await board.show(7, 1, "retouching", None)
    assert bot.edits == []  # both within the interval since the message went out
    await asyncio.sleep(0.3)
    assert bot.edits == ["retouching"]  # the latest text, once
    await board.close()


async def test_a_job_done_within_the_interval_costs_no_edit() -> None:
    bot = RecordingBot()
    board = StatusBoard(bot, interval=0.2)  # type: ignore[arg-type]
    board.sent(7)
    await board.show(7, 1, "retouching", None)
    await board.remove(7, 1)  # the result is out
    await asyncio.sleep(0.3)
    assert bot.edits == []
    assert bot.deleted == [1]
    await board.close()


async def test_memory_is_trimmed_once_the_bot_is_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []

    def trim() -> bool:
        trims.append(1)
        return True

    monkeypatch.setattr(memory, "_malloc_trim", lambda: len)  # as if on glibc
    monkeypatch.setattr(memory, "trim_memory", trim)
    busy = True
    trimmer = memory.IdleTrimmer(lambda: busy, delay=0.05)
    trimmer.job_ended()
    await asyncio.sleep(0.1)
    assert trims == []  # still busy: nothing
    busy = False
    trimmer.job_ended()
    trimmer.job_ended()  # the countdown restarts; one trim in the end
    await asyncio.sleep(0.15)
    assert trims == [1]
    await trimmer.close()


def test_trim_memory_works_or_says_it_cannot() -> None:
    assert memory.trim_memory() in (True, False)
