"""Chaos: 100 photos (one per user) while the real bot is SIGKILLed at 5 seeded random moments.

`python -m benchmarks.chaos [--photos 100] [--kills 5] [--seed 14]`

The real `retouch-bot telegram` process runs on a SQLite store against the fake Bot API and a
fake upstream that takes `--latency` seconds per photo (give or take `--jitter` of it, seeded:
photos do not all finish at once) and refuses one photo in ten (those jobs fail, and must be
refunded). The photos arrive in waves; the bot is killed at random moments of
each run and started again, and after the last kill it runs until every user was answered and
no job is unfinished, then stops cleanly. Counted: users answered (a photo, or the failure
line), photos sent more than once, jobs stuck, failed jobs refunded, failed jobs still charged.
Targets: every photo answered, nothing stuck, no refund lost, duplicates at most the kills.
(A job cut off by `JOBS_MAX_ATTEMPTS` kills is given up, refunded and told: answered, too.)
`CHAOS_KEEP=<path>` keeps a copy of the store for a look afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from benchmarks.report import publish
from tests.crash_harness import (
    FailsOnFidelity,
    bot_env,
    ended,
    kill,
    photos_of,
    read_store,
    start_bot,
    summary,
    told_failure,
    unfinished,
)
from tests.fake_telegram import FakeTelegram, User
from tests.upstream_fakes import FakeUpstream, RecordedRequest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "chaos.json"
PORTRAIT = ROOT / "examples" / "portrait.jpg"
FAILING_EVERY = 10
"""One user in this many sends a photo the upstream refuses."""
WAVE = 10
SETTLE_TIMEOUT = 120.0
"""How long the last run gets to answer everyone before the figures are taken as they are."""
WAVE_SECONDS = 0.25


async def feed(tg: FakeTelegram, users: list[User], image: bytes) -> None:
    """The photos, `WAVE` at a time: some arrive while the bot is down or restarting."""
    for n, user in enumerate(users):
        caption = "fidelity 0.7" if n % FAILING_EVERY == FAILING_EVERY - 1 else None
        tg.send_photo(user.id, user, image, caption=caption)
        if n % WAVE == WAVE - 1:
            await asyncio.sleep(WAVE_SECONDS)


class Jittered(FailsOnFidelity):
    """`FailsOnFidelity` after `latency` seconds, give or take `jitter` of it."""

    def __init__(self, rng: random.Random, latency: float, jitter: float) -> None:
        self.rng, self.latency, self.jitter = rng, latency, jitter

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        spread = self.latency * self.jitter
        await asyncio.sleep(self.latency + self.rng.uniform(-spread, spread))
        return await super().respond(fake, call)


async def measure(
    photos: int, kills: int, seed: int, latency: float, jitter: float
) -> dict[str, Any]:
    rng = random.Random(seed)
    moments = [round(rng.uniform(0.3, 2.5), 3) for _ in range(kills)]
    """Seconds after each run's start (its getMe) that the kill falls."""
    upstream_reply = Jittered(random.Random(seed + 1), latency, jitter)
    users = [User(100_000 + n, f"User{n}", language_code="en") for n in range(photos)]
    failing = {u.id for n, u in enumerate(users) if n % FAILING_EVERY == FAILING_EVERY - 1}
    image = PORTRAIT.read_bytes()
    with tempfile.TemporaryDirectory(prefix="chaos-") as folder_name:
        folder = Path(folder_name)
        database = folder / "data" / "retouch.db"
        async with (
            FakeTelegram() as tg,
            FakeUpstream(default=upstream_reply) as upstream,
        ):
            env = bot_env(tg, upstream, folder, MAX_CONCURRENT_JOBS="8")
            started = time.monotonic()
            feeding = asyncio.create_task(feed(tg, users, image))
            for moment in moments:
                runs = len(tg.calls_to("getMe"))
                process = await start_bot(env, folder)
                try:
                    await tg.wait_until(lambda: len(tg.calls_to("getMe")) > runs, timeout=60)  # noqa: B023
                    await asyncio.sleep(moment)
                finally:
                    await kill(process)

            def settled() -> bool:
                return all(answered(tg, u) for u in users) and unfinished(database) == 0

            process = await start_bot(env, folder)
            try:
                await feeding
                with contextlib.suppress(AssertionError):  # reported below, as what is missing
                    await tg.wait_until(settled, timeout=SETTLE_TIMEOUT)
                seconds = time.monotonic() - started
                process.send_signal(signal.SIGTERM)
                code, _ = await ended(process, 60)
            finally:
                await kill(process)
        store = read_store(database)
        if os.environ.get("CHAOS_KEEP"):  # for a look at the store after a bad run
            shutil.copy(database, os.environ["CHAOS_KEEP"])
    served = [u for u in users if u.id not in failing]
    sent = [photos_of(tg, u.id) for u in served]
    return {
        "photos": photos,
        "kills": kills,
        "kill_moments_s": moments,
        "seed": seed,
        "upstream_latency_s": latency,
        "upstream_jitter": jitter,
        "failing_photos": len(failing),
        "answered": sum(1 for u in users if answered(tg, u)),
        "answered_with_photo": sum(1 for n in sent if n >= 1),
        "unanswered_users": [u.id for u in users if not answered(tg, u)],
        "duplicated": sum(max(0, n - 1) for n in sent),
        "photos_to_failing_users": sum(photos_of(tg, uid) for uid in failing),
        **summary(store),
        "seconds_until_all_answered": round(seconds, 2),
        "clean_exit": code == 0,
    }


def answered(tg: FakeTelegram, user: User) -> bool:
    """The user got their photo, or was told it failed."""
    return photos_of(tg, user.id) >= 1 or told_failure(tg, user.id)


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    photos, kills = report["photos"], report["kills"]
    return {
        "chaos_every_photo_answered": {
            "value": f"{report['answered']}/{photos}",
            "met": report["answered"] == photos,
        },
        "chaos_nothing_stuck": {"value": report["stuck"], "met": report["stuck"] == 0},
        "chaos_no_lost_refund": {
            "value": report["lost_refunds"],
            "met": report["lost_refunds"] == 0,
        },
        "chaos_duplicates_at_most_kills": {
            "value": report["duplicated"],
            "met": report["duplicated"] <= kills,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--latency", type=float, default=0.5, help="upstream seconds per photo")
    parser.add_argument("--jitter", type=float, default=0.5, help="latency spread, 0 to 1")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "chaos",
        "machine": {"cpus": os.cpu_count(), "note": "shared machine: other runs may add noise"},
        **asyncio.run(measure(args.photos, args.kills, args.seed, args.latency, args.jitter)),
    }
    report["targets"] = verdicts(report)
    publish(report, args.out)


if __name__ == "__main__":
    main()
