"""The load benchmark's counterparts, in a process of their own: the fake Telegram Bot API, the
fake upstream (echo, with a fixed latency) and a small control server the driver talks to.

    python -m benchmarks.fakes --latency 10 --photo photo.jpg [--document] [--limits]

Prints one JSON line with the three base URLs once everything listens, then serves until
SIGTERM. Running apart from the driver and the bot means the bot's CPU and memory, read from
/proc by the driver, are the bot's alone, and the fakes get a core of their own.

`--limits`: the fake Bot API enforces Telegram's flood limits (`benchmarks.flood`); without it
none (`benchmarks.load` measures the bot, not the platform's budget).

Two liberties with the test fakes, both to keep them cheap and out of the measurement:
- the fake Bot API makes thumbnails of every photo (as Telegram does, on its own servers); here
  they are made once per distinct image and reused;
- the upstream is `tests.upstream_fakes.FakeUpstream` with `Echo()`: the result is the input.

Control routes (JSON):
- `POST /mark`: start a measurement window (forget earlier jobs, count calls from here).
- `POST /send {"users": [ids], "chat": id, "caption": text}`: each user sends the photo, in a
  private chat of their own unless `chat` (a group) is given; the time each update is queued is
  kept. `{"photos": [{"user": id, "chat": id, "caption": text}, ...]}`: the same, in that order.
- `GET /wait?results=N&timeout=T`: return once N jobs have a result (sendPhoto, sendDocument or
  an item of sendMediaGroup, answered OK) in this window, or T seconds pass.
- `GET /wait?polling=1`: return once the bot has polled getUpdates at least once.
- `GET /wait?idle=S&timeout=T`: return once the bot has made no call but getUpdates for S seconds.
- `GET /report[?timeline=CHAT]`: each job's queued and delivered times and result count, calls by
  method and by chat, 429s by method, the flood limits' figures (`flood_stats`), this process's
  CPU; with `timeline`, every call to that chat as [time, method, HTTP status].

A result answers the job whose message it replies to; one that replies to none (PTB quotes only
in groups by default) answers the oldest unanswered job of its chat. A result for a chat with no
unanswered job left counts as a duplicate of that chat's last job.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import resource
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

import tests.fake_telegram as fake_telegram
from tests.fake_telegram import Call, FakeTelegram, User
from tests.upstream_fakes import Echo, FakeUpstream

RESULT_METHODS = ("sendPhoto", "sendDocument", "sendMediaGroup")

_original_thumbnails = fake_telegram.thumbnails
_thumbnail_cache: dict[bytes, list[tuple[int, int, bytes]]] = {}


def _cached_thumbnails(data: bytes) -> list[tuple[int, int, bytes]]:
    key = hashlib.blake2b(data, digest_size=16).digest()
    found = _thumbnail_cache.get(key)
    if found is None:
        found = _thumbnail_cache[key] = _original_thumbnails(data)
    return found


@dataclass
class Job:
    chat_id: int
    message_id: int
    queued_at: float
    delivered_at: float | None = None
    method: str | None = None
    results: int = 0
    """Results that answered this job: 1 once delivered, more if it was answered again."""


@dataclass
class Window:
    """One measurement: the jobs sent in it and the calls since it began."""

    first_call: int
    first_upstream: int = 0
    jobs: dict[tuple[int, int], Job] = field(default_factory=dict)
    by_chat: dict[int, list[Job]] = field(default_factory=dict)
    delivered: int = 0
    results: list[Call] = field(default_factory=list)
    cursor: int = 0
    pending: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cursor = self.first_call


class Control:
    def __init__(
        self, tg: FakeTelegram, upstream: FakeUpstream, photo: bytes, document: bool
    ) -> None:
        self.last_call = time.monotonic()
        self.flood_at_mark: dict[str, Any] = {}
        self.tg = tg
        self.upstream = upstream
        self.photo = photo
        self.document = document
        self.window = Window(first_call=0)

    def result_count(self) -> int:
        """Jobs answered in this window; incremental, since it runs on every call."""
        window, calls = self.window, self.tg.calls
        for call in calls[window.cursor :]:
            if call.method != "getUpdates":
                self.last_call = max(self.last_call, call.time)
            if call.method in RESULT_METHODS:
                window.pending.append(call)
        window.cursor = len(calls)
        still = []
        for call in window.pending:
            if not call.answered:
                still.append(call)
            elif call.ok:
                window.results.append(call)
                self._match(call)
        window.pending = still
        return window.delivered

    def calls_in_window(self, method: str) -> int:
        """Answered calls of `method` in this window (a full scan: only used to settle)."""
        calls = self.tg.calls[self.window.first_call :]
        return sum(1 for call in calls if call.method == method and call.answered)

    def _match(self, call: Call) -> None:
        """Pair a result (each item of an album) with the user message it answers."""
        chat = int(call.params["chat_id"])
        reply = call.params.get("reply_parameters") or {}
        media = call.params.get("media")
        items = len(media) if call.method == "sendMediaGroup" and isinstance(media, list) else 1
        replied = self.window.jobs.get((chat, int(reply.get("message_id", 0))))
        for item in range(items):
            job = replied if item == 0 else None
            if job is None or job.delivered_at is not None:
                waiting = self.window.by_chat.get(chat, [])
                job = next((j for j in waiting if j.delivered_at is None), job)
            if job is None:
                chat_jobs = self.window.by_chat.get(chat)
                if not chat_jobs:
                    continue  # a photo to a chat no job came from: not a result of this window
                job = chat_jobs[-1]
            job.results += 1
            if job.delivered_at is None:
                job.delivered_at, job.method = call.time, call.method
                self.window.delivered += 1

    def add_job(self, chat: int, message_id: int) -> None:
        """A user message now waits for its answer (queued on the fake's clock)."""
        job = Job(chat, message_id, time.monotonic())
        self.window.jobs[(chat, message_id)] = job
        self.window.by_chat.setdefault(chat, []).append(job)

    async def mark(self, request: web.Request) -> web.Response:
        self.window = Window(first_call=len(self.tg.calls), first_upstream=len(self.upstream.calls))
        self.flood_at_mark = self._flood_stats()
        return web.json_response({"ok": True})

    async def send(self, request: web.Request) -> web.Response:
        body = await request.json()
        photos = body.get("photos") or [
            {"user": user, "chat": body.get("chat"), "caption": body.get("caption")}
            for user in body["users"]
        ]
        for photo in photos:
            user_id, caption = int(photo["user"]), photo.get("caption")
            user = User(user_id, f"User{user_id}", username=f"user{user_id}")
            chat = int(photo.get("chat") or user.id)
            if self.document:
                message = self.tg.send_document(
                    chat,
                    user,
                    self.photo,
                    file_name="IMG_0001.jpg",
                    mime_type="image/jpeg",
                    caption=caption,
                )
            else:
                message = self.tg.send_photo(chat, user, self.photo, caption)
            self.add_job(chat, int(message["message_id"]))
        return web.json_response({"sent": len(photos)})

    async def wait(self, request: web.Request) -> web.Response:
        timeout = float(request.query.get("timeout", "60"))
        if request.query.get("polling"):
            ok = await self._wait(lambda: bool(self.tg.calls_to("getUpdates")), timeout)
            return web.json_response({"ok": ok})
        if "idle" in request.query:
            ok = await self._wait_idle(float(request.query["idle"]), timeout)
            return web.json_response({"ok": ok})
        if "method" in request.query:
            method, count = request.query["method"], int(request.query["count"])
            ok = await self._wait(lambda: self.calls_in_window(method) >= count, timeout)
            return web.json_response({"ok": ok})
        wanted = int(request.query["results"])
        ok = await self._wait(lambda: self.result_count() >= wanted, timeout)
        return web.json_response({"ok": ok, "results": self.result_count()})

    async def _wait_idle(self, quiet: float, seconds: float) -> bool:
        """Until `quiet` seconds pass with no call but getUpdates (or `seconds` in all)."""
        deadline = time.monotonic() + seconds
        while True:
            self.result_count()  # moves `last_call` up to the newest call
            now = time.monotonic()
            left = self.last_call + quiet - now
            if left <= 0:
                return True
            if now + left > deadline:
                return False
            await asyncio.sleep(left)  # nothing to wait on: silence is the condition

    async def _wait(self, predicate: Any, seconds: float) -> bool:
        try:
            await self.tg.wait_until(predicate, seconds)
        except AssertionError:
            return False
        return True

    def _flood_stats(self) -> dict[str, Any]:
        return self.tg.flood_stats()

    async def report(self, request: web.Request) -> web.Response:
        self.result_count()
        calls = self.tg.calls[self.window.first_call :]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        failed = sum(
            1 for c in calls if c.method not in ("getUpdates",) and c.answered and not c.ok
        )
        chats = Counter(str(c.chat_id) for c in calls if c.params.get("chat_id") is not None)
        refused = Counter(c.method for c in calls if c.status == 429)
        chat = request.query.get("timeline")
        timeline = [[c.time, c.method, c.status] for c in calls if str(c.chat_id) == chat]
        return web.json_response(
            {
                "jobs": [vars(job) for job in self.window.jobs.values()],
                "calls_by_chat": dict(chats),
                "too_many_requests_by_method": dict(refused),
                "timeline": timeline,
                "flood_stats": _since(self._flood_stats(), self.flood_at_mark),
                "upstream_calls": [
                    call.received_at for call in self.upstream.calls[self.window.first_upstream :]
                ],
                "calls": dict(Counter(c.method for c in calls)),
                "call_times": _times_by_method(calls),
                "failed_calls": failed,
                "fake_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            }
        )


def _since(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The fake's flood figures counted in this window: counters minus their value at `/mark`."""
    window: dict[str, Any] = {}
    for key, value in now.items():
        earlier = before.get(key)
        if isinstance(value, dict):
            old = earlier if isinstance(earlier, dict) else {}
            window[key] = {k: v - old.get(k, 0) for k, v in value.items() if v - old.get(k, 0)}
        elif isinstance(value, int | float) and isinstance(earlier, int | float):
            window[key] = value - earlier
        else:
            window[key] = value
    return window


def _times_by_method(calls: list[Call]) -> dict[str, list[float]]:
    """When each call arrived, by method: the bot's timeline, for `benchmarks.load`."""
    times: dict[str, list[float]] = {}
    for call in calls:
        if call.method != "getUpdates":
            times.setdefault(call.method, []).append(call.time)
    return times


async def serve(latency: float, photo: bytes, document: bool, limits: bool) -> None:
    fake_telegram.thumbnails = _cached_thumbnails
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with (
        FakeTelegram(enforce_limits=limits) as tg,
        FakeUpstream(default=Echo(), latency=latency) as upstream,
    ):
        control = Control(tg, upstream, photo, document)
        app = web.Application()
        app.router.add_post("/mark", control.mark)
        app.router.add_post("/send", control.send)
        app.router.add_get("/wait", control.wait)
        app.router.add_get("/report", control.report)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        ready = {
            "pid": os.getpid(),
            "control": f"http://127.0.0.1:{port}",
            "telegram_api": tg.base_url,
            "telegram_files": tg.base_file_url,
            "token": tg.token,
            "upstream": upstream.base_url,
            "limits": dataclasses.asdict(tg.limits) if limits else {},
        }
        print(json.dumps(ready), flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, required=True, help="upstream seconds per job")
    parser.add_argument("--photo", type=Path, required=True, help="the JPEG every user sends")
    parser.add_argument("--document", action="store_true", help="send it as a file, not a photo")
    parser.add_argument("--limits", action="store_true", help="enforce Telegram's flood limits")
    args = parser.parse_args()
    asyncio.run(serve(args.latency, args.photo.read_bytes(), args.document, args.limits))
    sys.exit(0)


if __name__ == "__main__":
    main()
