"""A busy bot meets Telegram's flood limits: ours and a plain PTB peer, on the same load.

Run `python -m benchmarks.flood` (or `make bench`). For each bot it starts, each in a process of
its own, the fakes (`benchmarks.fakes --limits`: the fake Bot API enforcing Telegram's limits, and
an echo upstream whose every answer takes L seconds) and the bot: ours
(`python -m bots.cli telegram`, configured by environment variables only) or the peer
(`benchmarks.flood_peer`: python-telegram-bot with concurrent updates, AIORateLimiter, one httpx
client, no store). Then, at once, 150 users each send a photo in a private chat and 25 members of
one supergroup each send one captioned `/retouch` (spread among the private ones); L = 2 s. Our
bot gets MAX_CONCURRENT_JOBS=200 (every photo at once, as the peer takes them) and no quotas.

Measured, per bot (all on the fake's clock, from the first update queued):
- seconds until every photo was answered (a result photo per job), against the floor the limits
  set (see `floor`) and the ratio;
- the fake's flood figures: sending calls, 429 answers and their share, calls made to a chat (or
  anywhere, for a global wait) while a `retry_after` it had announced still ran;
- messages delivered and Bot API calls (file downloads included, getUpdates not) per photo,
  overall and in the group;
- the bot's CPU (utime + stime of its process, from /proc) per photo, over the window that ends
  once the bot has been silent (no call but getUpdates) for `--settle` seconds;
- whether every photo was answered exactly once, and every call to the group in order (where its
  budget went);
- noise: the fakes' CPU and what other processes used meanwhile (/proc/stat minus the bot, the
  fakes and this driver), against the machine's capacity (cores x the window's seconds).

Every wait has a deadline; a bot that misses it is reported (answered N of M), not waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.flood_peer import MAX_RETRIES
from benchmarks.load import (
    BOT,
    UPSTREAM_KEY,
    Fakes,
    _clean_env,
    _start,
    _stop,
    _tail,
    cpu_seconds,
    machine_busy_seconds,
    own_cpu_seconds,
    percentiles,
    until_quiet,
)
from benchmarks.report import publish
from benchmarks.samples import telegram_photo

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "flood.json"
PEER = (sys.executable, "-m", "benchmarks.flood_peer")
GROUP = -1001234567890
"""The supergroup the members write in (a `-100` id, as Telegram gives supergroups)."""
PEER_DESCRIPTION = (
    "benchmarks/flood_peer.py: python-telegram-bot with concurrent_updates(True), "
    f"AIORateLimiter(max_retries={MAX_RETRIES}) (its defaults: 30 a second in all, 20 a minute "
    "per group), PTB's default httpx requests, one httpx client to the upstream, no store; per "
    "photo a chat action, getFile and the download, the upstream call and its result's "
    "download, and reply_photo"
)
FIRST_GROUP_MEMBER = 100_000
"""Group members' user ids start here, apart from the private users' (1, 2, ...)."""


@dataclass(frozen=True)
class Load:
    """Who sends at once, and how long the upstream takes per job."""

    private_users: int = 150
    group_members: int = 25
    latency: float = 2.0

    @property
    def photos(self) -> int:
        return self.private_users + self.group_members


@dataclass(frozen=True)
class Options:
    """How a run is driven: deadlines, settling, our bot's concurrency."""

    deadline: float = 240.0
    """Seconds a bot gets, from the first update, to answer every photo."""
    settle: float = 2.0
    """The window ends once the bot has made no call but getUpdates for this long."""
    quiet: bool = True
    """Wait (up to 20 s) for the machine to calm down before each bot's run."""
    max_concurrent_jobs: int = 200
    """Our bot's workers: every photo at once, as the peer's concurrent updates take them."""
    bot_env: tuple[tuple[str, str], ...] = ()
    """Extra settings for our bot (`--bot-env NAME=VALUE`), e.g. to compare its senders."""


# --- the floor ---------------------------------------------------------------------------------


FLOOR_FORMULA = (
    "floor_s = L + max over budgets of max(0, n - burst) / rate. Every photo needs at least one "
    "message (its result) and none can go before the upstream's L seconds; a budget is a token "
    "bucket, full (burst messages) at best at L, passing one more message each 1/rate s after. "
    "Budgets: global (n = every photo, global_burst, global_per_second), the group (n = its "
    "photos, group_burst, group_per_minute / 60) and each private chat (n = 1, chat_burst, "
    "chat_per_second). A lower bound: status messages, edits and retries only add."
)


def floor(load: Load, limits: dict[str, Any]) -> dict[str, Any]:
    """The earliest moment every photo can have its answer under `limits`, and why."""
    if not limits:
        return {"floor_s": None, "formula": "the fake reported no limits", "limits": limits}
    budgets = {
        "global": (load.photos, limits["global_burst"], limits["global_per_second"]),
        "group": (load.group_members, limits["group_burst"], limits["group_per_minute"] / 60),
        "private_chat": (
            1 if load.private_users else 0,
            limits["chat_burst"],
            limits["chat_per_second"],
        ),
    }
    after_latency = {
        name: round(max(0, n - burst) / rate, 3) for name, (n, burst, rate) in budgets.items()
    }
    binding = max(after_latency, key=lambda name: after_latency[name])
    return {
        "floor_s": round(load.latency + after_latency[binding], 3),
        "binding_budget": binding,
        "seconds_after_latency_by_budget": after_latency,
        "formula": FLOOR_FORMULA,
        "limits": limits,
    }


# --- one bot -----------------------------------------------------------------------------------


def bot_env(name: str, fakes: Fakes, tmp: Path, options: Options) -> dict[str, str]:
    """The environment a bot runs with: the fakes' addresses, and our settings for ours."""
    common = {
        "HOME": str(tmp),
        "TELEGRAM_BOT_TOKEN": fakes.info["token"],
        "TELEGRAM_API_BASE_URL": fakes.info["telegram_api"],
        "TELEGRAM_FILE_BASE_URL": fakes.info["telegram_files"],
        "RETOUCH_API_KEY": UPSTREAM_KEY,
        "RETOUCH_API_BASE_URL": fakes.info["upstream"],
        "LOG_LEVEL": "WARNING",
    }
    if name == "peer":
        return _clean_env(**common)
    ours = {
        **common,
        "DATA_DIR": str(tmp / "data"),
        "DATABASE_PATH": str(tmp / "data" / "retouch.db"),
        "QUOTA_PER_USER_PER_DAY": "0",
        "QUOTA_BURST_PER_MINUTE": "0",
        "MAX_CONCURRENT_JOBS": str(options.max_concurrent_jobs),
    }
    return _clean_env(**{**ours, **dict(options.bot_env)})


async def run_bot(name: str, load: Load, options: Options, photo: Path) -> dict[str, Any]:
    """Start the fakes and one bot, send the load, measure; stop both whatever happens."""
    command = PEER if name == "peer" else tuple(BOT)
    with tempfile.TemporaryDirectory(prefix=f"flood-{name}-") as folder:
        tmp = Path(folder)
        fakes = await asyncio.to_thread(
            Fakes, load.latency, photo, False, tmp / "fakes.log", limits=True
        )
        bot_log = (tmp / "bot.log").open("wb")
        bot = None
        try:
            bot = _start(command, tmp, bot_env(name, fakes, tmp, options), bot_log)
            ready = await wait(fakes, {"polling": 1}, 60)
            if not ready["ok"] or bot.poll() is not None:
                return {"bot": name, "error": f"the bot did not start: {_tail(tmp / 'bot.log')}"}
            quiet = await until_quiet() if options.quiet else None
            figures = await measure(load, options, fakes, bot.pid)
            if bot.poll() is not None:
                figures["error"] = f"the bot exited ({bot.returncode}): {_tail(tmp / 'bot.log')}"
            limits = fakes.info.get("limits", {})
            return {"bot": name, **figures, "quiet_before": quiet, "limits": limits}
        finally:
            if bot is not None:
                await asyncio.to_thread(_stop, bot)
            bot_log.close()
            await fakes.close()


def arrivals(load: Load) -> list[dict[str, Any]]:
    """Every photo at once, the group's spread evenly among the private ones (as they would
    arrive from people sending at the same moment): neither kind waits behind the other."""
    private = [((n + 0.5) / load.private_users, {"user": n + 1}) for n in range(load.private_users)]
    group = [
        ((n + 0.5) / load.group_members, {"user": FIRST_GROUP_MEMBER + n, "chat": GROUP})
        for n in range(load.group_members)
    ]
    ordered = sorted(private + group, key=lambda item: item[0])
    return [{**photo, "caption": "/retouch"} if "chat" in photo else photo for _, photo in ordered]


async def wait(fakes: Fakes, condition: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The fakes' `/wait` for `condition`, with a deadline here too (should they hang)."""
    async with asyncio.timeout(seconds + 15):
        found: dict[str, Any] = await fakes.call(
            "GET", "/wait", params={**condition, "timeout": seconds}
        )
        return found


async def measure(load: Load, options: Options, fakes: Fakes, pid: int) -> dict[str, Any]:
    """Send every photo at once; wait (with deadlines) for the answers and for silence."""
    fakes_pid = int(fakes.info["pid"])
    cpu_before, fakes_before = sum(cpu_seconds(pid)), sum(cpu_seconds(fakes_pid))
    machine_before, driver_before = machine_busy_seconds(), own_cpu_seconds()
    started = time.monotonic()
    await fakes.call("POST", "/mark")
    await fakes.call("POST", "/send", json={"photos": arrivals(load)})
    answered = await wait(fakes, {"results": load.photos}, options.deadline)
    settled = await wait(fakes, {"idle": options.settle}, options.settle + 30)
    cpu = sum(cpu_seconds(pid)) - cpu_before
    fakes_cpu = sum(cpu_seconds(fakes_pid)) - fakes_before
    machine, driver = machine_busy_seconds() - machine_before, own_cpu_seconds() - driver_before
    elapsed = time.monotonic() - started
    report = await fakes.call("GET", "/report", params={"timeline": str(GROUP)})
    found = figures(load, report, cpu, answered=answered["ok"], settled=settled["ok"])
    found["noise"] = {
        "window_s": round(elapsed, 2),
        "fakes_cpu_s": round(fakes_cpu, 2),
        "other_processes_cpu_s": round(max(0.0, machine - cpu - fakes_cpu - driver), 2),
        "machine_cpu_capacity_s": round(elapsed * (os.cpu_count() or 1), 2),
    }
    return found


def figures(
    load: Load, report: dict[str, Any], cpu: float, *, answered: bool, settled: bool
) -> dict[str, Any]:
    """The per-bot figures from the fake's report and the bot's CPU seconds."""
    jobs = report["jobs"]
    delivered = [job for job in jobs if job["delivered_at"] is not None]
    first = min(job["queued_at"] for job in jobs)
    last = max((job["delivered_at"] for job in delivered), default=None)
    every = len(delivered) == load.photos
    flood = report["flood_stats"]
    sending = flood.get("sending_calls", 0)
    refused = flood.get("too_many_requests", 0)
    by_chat = {int(chat): n for chat, n in flood.get("messages_by_chat", {}).items()}
    calls = dict(report["calls"])
    calls.pop("getUpdates", None)
    group_calls = report["calls_by_chat"].get(str(GROUP), 0)
    group_messages = by_chat.get(GROUP, 0)
    return {
        "photos": load.photos,
        "group_members": load.group_members,
        "answered": len(delivered),
        "answered_in_group": sum(1 for job in delivered if job["chat_id"] == GROUP),
        "every_photo_answered_exactly_once": every and all(job["results"] == 1 for job in jobs),
        "duplicate_answers": sum(max(0, job["results"] - 1) for job in jobs),
        "answered_within_deadline": answered,
        "settled": settled,
        "seconds_until_all_answered": round(last - first, 3) if every and last else None,
        "seconds_until_last_answer": round(last - first, 3) if last else None,
        "answer_seconds": {
            "private": _answer_times(delivered, first, group=False),
            "group": _answer_times(delivered, first, group=True),
        },
        "sending_calls": sending,
        "too_many_requests": refused,
        "too_many_requests_share": round(refused / sending, 4) if sending else 0.0,
        "calls_during_flood_wait": flood.get("calls_during_flood_wait", 0),
        "too_many_requests_by_method": report["too_many_requests_by_method"],
        "messages": sum(by_chat.values()),
        "messages_per_photo": round(sum(by_chat.values()) / load.photos, 3),
        "messages_per_photo_in_group": (
            round(group_messages / load.group_members, 3) if load.group_members else None
        ),
        "bot_api_calls": sum(calls.values()),
        "bot_api_calls_per_photo": round(sum(calls.values()) / load.photos, 3),
        "bot_api_calls_per_photo_in_group": (
            round(group_calls / load.group_members, 3) if load.group_members else None
        ),
        "bot_api_calls_by_method": dict(sorted(calls.items())),
        "group_calls": [  # where the group's budget went: seconds, method, HTTP status
            f"{at - first:.2f} {method} {status}" for at, method, status in report["timeline"]
        ],
        "bot_cpu_s": round(cpu, 3),
        "bot_cpu_ms_per_photo": round(cpu / load.photos * 1000, 2),
    }


def _answer_times(
    delivered: list[dict[str, Any]], first: float, *, group: bool
) -> dict[str, float]:
    """When the answers came, from the first update queued: p50, p95, max in seconds."""
    times = sorted(
        job["delivered_at"] - first for job in delivered if (job["chat_id"] == GROUP) == group
    )
    if not times:
        return {}
    found = percentiles(times)
    return {key.replace("_ms", "_s"): round(found[key] / 1000, 3) for key in found}


# --- all of it ---------------------------------------------------------------------------------


def verdicts(
    ours: dict[str, Any], peer: dict[str, Any] | None, floor_s: float | None
) -> dict[str, Any]:
    """The issue's targets for our bot, each with its figure and whether it holds."""
    seconds = ours.get("seconds_until_all_answered")
    ratio = round(seconds / floor_s, 3) if seconds is not None and floor_s else None
    peer_seconds = peer.get("seconds_until_all_answered") if peer else None
    share = ours.get("too_many_requests_share", 1.0)
    group = ours.get("messages_per_photo_in_group")
    cpu = ours.get("bot_cpu_ms_per_photo", float("inf"))
    faster = seconds is not None and (peer_seconds is None or seconds < peer_seconds)
    return {
        "flood_within_1.2x_floor": {
            "ratio": ratio,
            "seconds": seconds,
            "floor_s": floor_s,
            "met": ratio is not None and ratio <= 1.2,
        },
        "flood_no_calls_inside_flood_wait": {
            "value": ours.get("calls_during_flood_wait"),
            "met": ours.get("calls_during_flood_wait") == 0 and "error" not in ours,
        },
        "flood_429_at_most_1pct_of_sending_calls": {"share": share, "met": share <= 0.01},
        "flood_group_at_most_1.3_messages_per_photo": {
            "value": group,
            "answered_in_group": ours.get("answered_in_group"),
            "met": group is not None
            and group <= 1.3
            and ours.get("answered_in_group") == ours.get("group_members"),
        },
        "flood_cpu_at_most_12ms_per_photo": {"value_ms": cpu, "met": cpu <= 12},
        "flood_every_photo_answered_exactly_once": {
            "answered": f"{ours.get('answered', 0)}/{ours.get('photos', 0)}",
            "met": bool(ours.get("every_photo_answered_exactly_once")),
        },
        "flood_faster_than_peer": {
            "ours_s": seconds,
            "peer_s": peer_seconds,
            "met": faster and peer is not None,
        },
    }


async def main_async(load: Load, options: Options, bots: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="flood-photo-") as folder:
        photo = Path(folder) / "photo.jpg"
        photo.write_bytes(telegram_photo())
        results: dict[str, dict[str, Any]] = {}
        limits: dict[str, Any] = {}
        for name in bots:
            print(f"flood: {name} ...", file=sys.stderr, flush=True)
            try:
                results[name] = await run_bot(name, load, options, photo)
            except (TimeoutError, RuntimeError, OSError, httpx.HTTPError) as exc:
                results[name] = {"bot": name, "error": f"{type(exc).__name__}: {exc}"}
            limits = results[name].pop("limits", limits)
    bound = floor(load, limits)
    for result in results.values():
        seconds = result.get("seconds_until_all_answered")
        result["ratio_to_floor"] = (
            round(seconds / bound["floor_s"], 3) if seconds and bound["floor_s"] else None
        )
    return {
        "benchmark": "flood",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "note": "shared machine: other test runs may add noise",
        },
        "load": {
            "private_users": load.private_users,
            "group_members": load.group_members,
            "group_chat_id": GROUP,
            "group_caption": "/retouch",
            "order": "one update each, all queued at once, the group's spread evenly among the "
            "private ones",
            "upstream_latency_s": load.latency,
            "ours_max_concurrent_jobs": options.max_concurrent_jobs,
            "deadline_s": options.deadline,
            "settle_s": options.settle,
            "ours_extra_env": dict(options.bot_env),
        },
        "peer": PEER_DESCRIPTION,
        "floor": bound,
        "targets": verdicts(results["ours"], results.get("peer"), bound["floor_s"])
        if "ours" in results
        else {},
        "bots": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--private-users", type=int, default=Load.private_users)
    parser.add_argument("--group-members", type=int, default=Load.group_members)
    parser.add_argument("--latency", type=float, default=Load.latency, help="upstream seconds")
    parser.add_argument("--deadline", type=float, default=Options.deadline)
    parser.add_argument("--settle", type=float, default=Options.settle)
    parser.add_argument("--max-concurrent-jobs", type=int, default=Options.max_concurrent_jobs)
    parser.add_argument("--no-quiet", action="store_true", help="skip waiting for a calm machine")
    parser.add_argument("--bots", default="ours,peer", help="comma-separated: ours,peer")
    parser.add_argument(
        "--bot-env", action="append", default=[], metavar="NAME=VALUE", help="our bot's setting"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    load = Load(args.private_users, args.group_members, args.latency)
    extra = tuple((name, value) for name, _, value in (s.partition("=") for s in args.bot_env))
    options = Options(
        args.deadline, args.settle, not args.no_quiet, args.max_concurrent_jobs, extra
    )
    report = asyncio.run(main_async(load, options, args.bots.split(",")))
    publish(report, args.out)


if __name__ == "__main__":
    main()
