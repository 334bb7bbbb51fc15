"""The whole Telegram bot under load: the real `retouch-bot telegram` process against fakes.

Run `python -m benchmarks.load` (or `make bench`). For each scenario it starts, each in a
process of its own, the fakes (`benchmarks.fakes`: the fake Bot API and an echo upstream whose
every answer takes L seconds) and a fresh bot (`python -m bots.cli telegram`, configured by
environment variables only, data in a temporary folder). Users then send a photo each, a
1280x960 JPEG of about 200 KB, the size Telegram delivers for a photo (`--document`: a 12 MP,
~4 MB JPEG sent as a file).

Scenarios (one invocation, so every ratio comes from the same machine and the same run):
- single: one user, L = 1 s, jobs one after another: the latency floor;
- burst: 200 users at once, L = 10 s, MAX_CONCURRENT_JOBS=200;
- naive: 20 users at once, L = 1 s, run against our bot (MAX_CONCURRENT_JOBS=20, and again
  with the default 8 for information) and against `benchmarks.naive_bot`, the same bot forced
  to handle one update at a time with the work done in the handler.

Measured, per scenario:
- a job's latency runs from its update being queued in the fake to its sendPhoto (or
  sendDocument) arriving there, both on the fake's clock; overhead is latency minus L; wall time
  runs from the first update queued to the last result; `upstream_call_after_first_update` is
  when the upstream saw each job (the bot's intake);
- the bot's CPU seconds: utime + stime of its process (all threads) from /proc/<pid>/stat over
  the window, which ends once every status message is deleted; also its event-loop thread's
  share and its CPU until the last upstream call;
- its memory: VmRSS before (idle), VmHWM (peak) and VmRSS after, and again 3 s later, from
  /proc/<pid>/status;
- Bot API calls per job: every call the fake received in the window (file downloads included)
  but getUpdates, divided by the jobs; calls by method;
- noise: the fakes' CPU, and what other processes used meanwhile (/proc/stat minus the bot, the
  fakes and this driver), against the machine's capacity (cores x elapsed seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from benchmarks.samples import camera_file, telegram_photo

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "load.json"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BOT = [sys.executable, "-m", "bots.cli", "telegram"]
NAIVE_BOT = [sys.executable, "-m", "benchmarks.naive_bot"]
UPSTREAM_KEY = "sk-bench-0123456789abcdef"
GLOBAL_PER_SECOND = 30.0
GLOBAL_BURST = 30
"""Telegram's limit on messages a second in all, which the bot's flood budget keeps."""


# --- the bot process, seen from /proc --------------------------------------------------------


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads) in seconds, from /proc/<pid>/stat."""
    return cpu_seconds_of(f"/proc/{pid}/stat")  # fields 14 and 15 of proc_pid_stat(5)


def main_thread_cpu(pid: int) -> float:
    """utime + stime of the process's main thread (the event loop), from /proc/<pid>/task."""
    return sum(cpu_seconds_of(f"/proc/{pid}/task/{pid}/stat"))


def cpu_seconds_of(path: str) -> tuple[float, float]:
    fields = Path(path).read_text().rpartition(")")[2].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used since boot (every core), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


async def until_quiet(
    busy_below: float = 0.1, window: float = 0.5, longest: float = 20.0
) -> dict[str, float]:
    """Wait (up to `longest` s) until the machine uses under `busy_below` of one core.

    What earlier work leaves behind (a database flushing to disk, processes exiting) would
    otherwise compete with the bot. Returns how long that took and the last window's busy share.
    """
    started = time.monotonic()
    share = 0.0
    while True:
        before = machine_busy_seconds()
        await asyncio.sleep(window)
        share = (machine_busy_seconds() - before) / window
        if share < busy_below or time.monotonic() - started > longest:
            return {"waited_s": round(time.monotonic() - started, 1), "busy_cores": round(share, 2)}


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MB, from /proc/<pid>/status."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = round(int(value.split()[0]) / 1024, 1)
    return found


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max by nearest rank, in milliseconds."""
    ordered = sorted(values)

    def rank(p: float) -> float:
        index = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[index]

    return {
        "p50_ms": round(rank(50) * 1000, 1),
        "p95_ms": round(rank(95) * 1000, 1),
        "p99_ms": round(rank(99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


# --- one scenario ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    users: int
    latency: float
    max_concurrent_jobs: int
    sequential_jobs: int = 0
    """> 0: user 1 sends this many photos, each after the previous result (`users` ignored)."""
    bot: tuple[str, ...] = tuple(BOT)


class Fakes:
    """The `benchmarks.fakes` process and its control routes."""

    def __init__(
        self, latency: float, photo: Path, document: bool, log: Path, *, limits: bool = False
    ) -> None:
        """`limits`: the fake Bot API enforces Telegram's flood limits (`benchmarks.flood`)."""
        args = [sys.executable, "-m", "benchmarks.fakes", "--latency", str(latency)]
        args += ["--photo", str(photo)] + (["--document"] if document else [])
        args += ["--limits"] if limits else []
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, env=_clean_env()
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fakes did not start; see {log}")
        self.info: dict[str, Any] = json.loads(line)
        self.client = httpx.AsyncClient(base_url=self.info["control"], timeout=None)

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    async def close(self) -> None:
        await self.client.aclose()
        _stop(self.process)
        self.log.close()


def _clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment: no stray RETOUCH_*/TELEGRAM_*/DATABASE_* from the caller's shell."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _start(
    command: tuple[str, ...], folder: Path, env: dict[str, str], log: IO[bytes]
) -> subprocess.Popen[bytes]:
    """The bot, in `folder`: one without a .env, so only `env` configures it."""
    return subprocess.Popen(command, cwd=folder, env=env, stderr=log)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


EXTRA_BOT_ENV: dict[str, str] = {}
"""Set by `--bot-env NAME=VALUE` (for experiments, e.g. with glibc's MALLOC_* variables)."""


async def run_scenario(scenario: Scenario, photo: Path, document: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"load-{scenario.name}-") as folder:
        tmp = Path(folder)
        fakes = await asyncio.to_thread(Fakes, scenario.latency, photo, document, tmp / "fakes.log")
        bot_log = (tmp / "bot.log").open("wb")
        bot: subprocess.Popen[bytes] | None = None
        try:
            env = _clean_env(
                HOME=str(tmp),
                TELEGRAM_BOT_TOKEN=fakes.info["token"],
                TELEGRAM_API_BASE_URL=fakes.info["telegram_api"],
                TELEGRAM_FILE_BASE_URL=fakes.info["telegram_files"],
                RETOUCH_API_KEY=UPSTREAM_KEY,
                RETOUCH_API_BASE_URL=fakes.info["upstream"],
                DATA_DIR=str(tmp / "data"),
                DATABASE_PATH=str(tmp / "data" / "retouch.db"),
                QUOTA_PER_USER_PER_DAY="0",
                QUOTA_BURST_PER_MINUTE="0",
                MAX_CONCURRENT_JOBS=str(scenario.max_concurrent_jobs),
                LOG_LEVEL="WARNING",
                **EXTRA_BOT_ENV,
            )
            bot = _start(scenario.bot, tmp, env, bot_log)
            ready = await fakes.call("GET", "/wait", params={"polling": 1, "timeout": 60})
            if not ready["ok"] or bot.poll() is not None:
                raise RuntimeError(f"the bot did not start: {_tail(tmp / 'bot.log')}")
            quiet = await until_quiet()  # also lets the bot's start-up work finish
            return {**await _measure(scenario, fakes, bot.pid, tmp), "quiet_before": quiet}
        finally:
            if bot is not None:
                _stop(bot)
            bot_log.close()
            await fakes.close()


async def _measure(scenario: Scenario, fakes: Fakes, pid: int, tmp: Path) -> dict[str, Any]:
    idle = memory_mb(pid)
    cpu_before = cpu_seconds(pid)
    main_before = main_thread_cpu(pid)
    machine_before, driver_before = machine_busy_seconds(), own_cpu_seconds()
    fake_cpu_before = (await fakes.call("GET", "/report"))["fake_cpu_seconds"]
    await fakes.call("POST", "/mark")
    samples: list[tuple[float, float]] = []
    sampler = asyncio.create_task(_sample_cpu(pid, samples))
    fake_pid = int(fakes.info["pid"])
    fake_samples: list[tuple[float, float]] = []
    fake_sampler = asyncio.create_task(_sample_cpu(fake_pid, fake_samples))
    started = time.monotonic()
    deadline = scenario.latency * 3 + 120
    if scenario.sequential_jobs:
        jobs = scenario.sequential_jobs
        for n in range(1, jobs + 1):
            await fakes.call("POST", "/send", json={"users": [1]})
            await fakes.call("GET", "/wait", params={"results": n, "timeout": deadline})
    else:
        jobs = scenario.users
        await fakes.call("POST", "/send", json={"users": list(range(1, jobs + 1))})
        await fakes.call("GET", "/wait", params={"results": jobs, "timeout": deadline})
    elapsed = time.monotonic() - started
    # The job ends after its upload: the status message is deleted, the row settled.
    await fakes.call(
        "GET", "/wait", params={"method": "deleteMessage", "count": jobs, "timeout": 10}
    )
    await asyncio.sleep(0.5)
    user, system = (
        after - before for after, before in zip(cpu_seconds(pid), cpu_before, strict=True)
    )
    cpu = user + system
    main = main_thread_cpu(pid) - main_before
    machine = machine_busy_seconds() - machine_before
    driver = own_cpu_seconds() - driver_before
    sampler.cancel()
    fake_sampler.cancel()
    peak = memory_mb(pid)
    report = await fakes.call("GET", "/report")
    fake_cpu = report["fake_cpu_seconds"] - fake_cpu_before
    others = machine - cpu - fake_cpu - driver
    await asyncio.sleep(3.0)
    later = memory_mb(pid)

    done = [job for job in report["jobs"] if job["delivered_at"] is not None]
    latencies = [job["delivered_at"] - job["queued_at"] for job in done]
    if not done:
        raise RuntimeError(f"no job was delivered: {_tail(tmp / 'bot.log')}")
    first = min(j["queued_at"] for j in report["jobs"])
    wall = max(j["delivered_at"] for j in done) - first
    # When the upstream saw each job, from the first update queued: the bot's intake delay.
    upstream_seen = [t - first for t in report["upstream_calls"]]
    # The bot's CPU until the last job reached the upstream: the intake's share of the work.
    intake_end = max(report["upstream_calls"], default=first)
    intake_cpu = _cpu_at(samples, intake_end) - samples[0][1]
    fake_intake_cpu = _cpu_at(fake_samples, intake_end) - fake_samples[0][1]
    # When each kind of Bot API call reached the fake, from the first update queued.
    timeline = {
        method: percentiles([t - first for t in times])
        for method, times in sorted(report["call_times"].items())
    }
    calls = report["calls"]
    polls = calls.pop("getUpdates", 0)
    api_calls = sum(calls.values())
    return {
        "scenario": scenario.name,
        "users": 1 if scenario.sequential_jobs else scenario.users,
        "jobs": jobs,
        "delivered": len(done),
        "upstream_latency_s": scenario.latency,
        "max_concurrent_jobs": scenario.max_concurrent_jobs,
        "bot": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(scenario.bot)),
        "wall_s": round(wall, 3),
        "driver_elapsed_s": round(elapsed, 3),
        "wall_over_latency": round(wall / scenario.latency, 3),
        "throughput_jobs_per_s": round(len(done) / wall, 2),
        "latency": percentiles(latencies),
        "overhead": percentiles([x - scenario.latency for x in latencies]),
        "upstream_call_after_first_update": percentiles(upstream_seen) if upstream_seen else {},
        "bot_api_call_after_first_update": timeline,
        "bot_cpu_s": round(cpu, 3),
        "bot_cpu_until_last_upstream_call_s": round(intake_cpu, 3),
        "bot_cpu_event_loop_thread_s": round(main, 3),
        "bot_cpu_user_s": round(user, 3),
        "bot_cpu_system_s": round(system, 3),
        "bot_cpu_ms_per_job": round(cpu / jobs * 1000, 2),
        "bot_rss_idle_mb": idle["VmRSS"],
        "bot_rss_peak_mb": peak["VmHWM"],
        "bot_rss_after_mb": peak["VmRSS"],
        "bot_rss_after_3s_mb": later["VmRSS"],
        "bot_api_calls_per_job": round(api_calls / jobs, 2),
        "bot_api_calls": dict(sorted(calls.items())),
        "get_updates_polls": polls,
        "failed_api_calls": report["failed_calls"],
        "fake_cpu_s": round(fake_cpu, 3),
        "fake_cpu_until_last_upstream_call_s": round(fake_intake_cpu, 3),
        "other_processes_cpu_s": round(max(0.0, others), 2),
        "machine_cpu_capacity_s": round(elapsed * (os.cpu_count() or 1), 2),
    }


async def _sample_cpu(pid: int, samples: list[tuple[float, float]]) -> None:
    """(time, CPU seconds) of the bot every 50 ms, on the clock the fakes use (monotonic)."""
    while True:
        samples.append((time.monotonic(), sum(cpu_seconds(pid))))
        await asyncio.sleep(0.05)


def _cpu_at(samples: list[tuple[float, float]], when: float) -> float:
    return next((cpu for at, cpu in samples if at >= when), samples[-1][1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- all of it -------------------------------------------------------------------------------


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    chosen: list[Scenario] = []
    if "single" in args.only:
        chosen.append(Scenario("single", 1, args.single_latency, 8, args.single_jobs))
    if "burst" in args.only:
        chosen.append(Scenario("burst", args.burst_users, args.burst_latency, args.burst_users))
    if "naive" in args.only:
        users, latency = args.naive_users, args.naive_latency
        chosen += [
            Scenario("naive-ours", users, latency, users),
            Scenario("naive-ours-default-8", users, latency, 8),
            Scenario("naive-one-at-a-time", users, latency, users, bot=tuple(NAIVE_BOT)),
        ]
    return chosen


def verdicts(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The targets of the performance issue, each with its figure and whether it holds."""
    found: dict[str, Any] = {}
    if "single" in results:
        p95 = results["single"]["overhead"]["p95_ms"]
        found["single_overhead_p95_under_150ms"] = {"value_ms": p95, "met": p95 < 150}
    if "burst" in results:
        burst = results["burst"]
        # Each result is a message: Telegram's 30 a second in all (which the bot keeps) adds
        # (n - 30) / 30 s to L once there are more than 30 (one per private chat here).
        latency = burst["upstream_latency_s"]
        floor = latency + max(0, burst["jobs"] - GLOBAL_BURST) / GLOBAL_PER_SECOND
        ratio = round(burst["wall_s"] / floor, 3)
        found["burst_all_within_1.3x_floor"] = {
            "wall_over_floor": ratio,
            "floor_s": round(floor, 3),
            "floor": "L + max(0, jobs - 30) / 30: the upstream's L, then 30 results a second",
            "wall_over_latency": burst["wall_over_latency"],
            "delivered": f"{burst['delivered']}/{burst['jobs']}",
            "met": ratio <= 1.3 and burst["delivered"] == burst["jobs"],
        }
        cpu = burst["bot_cpu_ms_per_job"]
        found["burst_cpu_under_25ms_per_job"] = {"value_ms": cpu, "met": cpu < 25}
        peak = burst["bot_rss_peak_mb"]
        found["burst_peak_rss_under_400mb"] = {
            "peak_mb": peak,
            "idle_mb": burst["bot_rss_idle_mb"],
            "after_3s_mb": burst["bot_rss_after_3s_mb"],
            "met": peak < 400,
        }
    if "naive-ours" in results and "naive-one-at-a-time" in results:
        ours = results["naive-ours"]["wall_s"]
        naive = results["naive-one-at-a-time"]["wall_s"]
        ratio = round(naive / ours, 2)
        found["naive_at_least_10x"] = {
            "ours_wall_s": ours,
            "one_at_a_time_wall_s": naive,
            "ratio": ratio,
            "ours_default_8_wall_s": results.get("naive-ours-default-8", {}).get("wall_s"),
            "met": ratio >= 10,
        }
    return found


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="load-photo-") as folder:
        photo = Path(folder) / "photo.jpg"
        data = camera_file() if args.document else telegram_photo()
        photo.write_bytes(data)
        results: dict[str, dict[str, Any]] = {}
        for scenario in scenarios(args):
            print(f"load: {scenario.name} ...", file=sys.stderr, flush=True)
            results[scenario.name] = await run_scenario(scenario, photo, args.document)
    return {
        "benchmark": "load",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "note": "shared machine: other test runs may add noise",
        },
        "extra_bot_env": EXTRA_BOT_ENV,
        "photo": {
            "kind": "document" if args.document else "photo",
            "bytes": len(data),
            "size": "4000x3000" if args.document else "1280x960",
        },
        # The targets are set for the default photo; a 4 MB file is a different load.
        "targets": {} if args.document else verdicts(results),
        "scenarios": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="single,burst,naive", help="comma-separated: single,burst,naive"
    )
    parser.add_argument("--document", action="store_true", help="a 12 MP ~4 MB JPEG as a file")
    parser.add_argument("--single-jobs", type=int, default=20)
    parser.add_argument("--single-latency", type=float, default=1.0)
    parser.add_argument("--burst-users", type=int, default=200)
    parser.add_argument("--burst-latency", type=float, default=10.0)
    parser.add_argument("--naive-users", type=int, default=20)
    parser.add_argument("--naive-latency", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    parser.add_argument(
        "--bot-env", action="append", default=[], metavar="NAME=VALUE", help="extra bot setting"
    )
    args = parser.parse_args()
    EXTRA_BOT_ENV.update(item.split("=", 1) for item in args.bot_env)
    args.only = set(args.only.split(","))
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    out = args.out or (RESULTS.with_name("load-document.json") if args.document else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
