"""Replica processes for `tests/test_postgres_replicas.py`, run as `python -m tests.replica_child`.

`service DIR [QUOTA IN_FLIGHT]`: a `RetouchService` on the store the environment names
(`DATABASE_URL`; the daily quota 3 and the in-flight limit 1000 unless given), with a backend
that fails every other call. It prints `ready`, then obeys lines on stdin: `submit N`
sends N simultaneous requests from user `u` and prints what was admitted, with the backend held
shut (so no failure refunds anything while any replica is still submitting); `release` opens
the backend and, once every admitted job is settled, prints the counts; `quit` shuts down.

`telegram`: a Telegram replica that does not poll. Long polling admits one poller per bot (the
Bot API answers 409 Conflict to a second), so until webhook mode exists a second replica of
`retouch-bot telegram` cannot receive updates; this one is built exactly like `run_telegram`
(the same `TelegramBot` hooks on the same `RetouchService`) minus the updater. It runs and
delivers the jobs it adopts from replicas that died, which is what is under test. It prints
`ready` once started and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from core.errors import BackendError
from core.formats import PreparedImage
from core.service import RetouchService
from core.settings import load_settings
from core.store import open_store
from tests.service_fakes import EchoBackend, RecordingHooks, request_for, service_settings

PORTRAIT = Path(__file__).resolve().parent.parent / "examples" / "portrait.jpg"


class EveryOtherFails(EchoBackend):
    """Held shut until the test opens it; then the 1st, 3rd, 5th... call fails (the upstream
    broke) and the others echo the input."""

    def __init__(self) -> None:
        super().__init__(gated=True)
        self.calls = 0

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        await self.gate.wait()
        self.calls += 1
        if self.calls % 2 == 1:
            raise BackendError("upstream exploded")
        return await super().retouch(image, fidelity)


async def settle(hooks: RecordingHooks, jobs: int) -> None:
    """Until `jobs` jobs have ended, done or failed."""
    async with asyncio.timeout(30), hooks.changed:
        await hooks.changed.wait_for(
            lambda: hooks.by_kind["done"] + hooks.by_kind["failed"] >= jobs
        )


async def run_service(folder: Path, quota: int = 3, in_flight: int = 1000) -> None:
    settings = service_settings(
        folder,
        quota_per_user_per_day=quota,
        quota_max_in_flight_per_user=in_flight,
        max_concurrent_jobs=8,
    )
    store = await open_store(settings)
    hooks = RecordingHooks()
    backend = EveryOtherFails()
    service = RetouchService(settings, store, backend)
    service.register("telegram", hooks)
    await service.start()
    image = PORTRAIT.read_bytes()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    admitted = 0
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        report: dict[str, Any]
        if line[0] == "submit":
            backend.gate.clear()
            results = await asyncio.gather(
                *(service.submit(request_for("u", image)) for _ in range(int(line[1]))),
                return_exceptions=True,
            )
            jobs = [r[0].id for r in results if not isinstance(r, BaseException)]
            errors = [r for r in results if isinstance(r, BaseException)]
            admitted += len(jobs)
            report = {
                "admitted": jobs,
                "refused": sum(getattr(e, "code", "") == "quota_exceeded" for e in errors),
                "other_errors": [
                    repr(e) for e in errors if getattr(e, "code", "") != "quota_exceeded"
                ],
            }
        else:  # release
            backend.gate.set()
            await settle(hooks, admitted)
            report = {"done": hooks.by_kind["done"], "failed": hooks.by_kind["failed"]}
        print(json.dumps(report), flush=True)
    await service.shutdown()
    await store.close()


async def run_telegram_replica() -> None:
    from bots.telegram.bot import TelegramBot
    from bots.telegram.run import build_application
    from bots.telegram.settings import TelegramSettings
    from core.backend import open_backend
    from core.http import quiet_http_loggers
    from core.logs import setup_logging

    settings, telegram = load_settings(), TelegramSettings.load()
    setup_logging(settings, telegram)
    quiet_http_loggers()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    app = build_application(telegram)
    store = await open_store(settings)
    try:
        async with open_backend(settings) as backend:
            service = RetouchService(settings, store, backend)
            bot = TelegramBot(settings, telegram, service, app)
            service.register("telegram", bot)
            async with app:
                await service.start()
                print("ready", flush=True)
                await stop.wait()
                await service.shutdown()
                await bot.close()
    finally:
        await store.close()


if __name__ == "__main__":
    if sys.argv[1] == "service":
        asyncio.run(run_service(Path(sys.argv[2]), *(int(arg) for arg in sys.argv[3:5])))
    else:
        asyncio.run(run_telegram_replica())
