"""Quota ledger throughput: reservations per second and latency of `JobStore.reserve`.

Run `python -m benchmarks.ledger`. Side by side, SQLite (a file in a temporary folder, WAL,
synchronous=NORMAL) and PostgreSQL (a throw-away server from the `pgserver` wheel, started here,
or the server `--pg-url` names) twice: `postgresql` with the default durability (each commit
flushed to disk before it returns) and `postgresql-async-commit` with `synchronous_commit=off`,
which is the durability SQLite's NORMAL gives (a power cut may lose the last commits, never
consistency). Each with 1, 10 and 100 concurrent callers, in one process and in two processes
sharing the store, plus 100 callers all reserving for one user (the hot row). A scenario runs
on a fresh store; its callers reserve in a loop until `-n` reservations are made between them,
each with the in-flight and burst checks on (limits no caller reaches; the one-user scenario
counts all of its jobs, never finished, where the limits keep a real user's to a few).
The JSON goes to stdout and `benchmarks/results/ledger.json`.

Each process is a child (`--worker`) that opens its own store, waits for "go" on stdin, and
reports its latencies; the throughput is all reservations over the time from the first start to
the last finish.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.report import publish
from core.jobs import NewJob
from core.store import JobStore
from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore

RESULTS = Path(__file__).resolve().parent / "results" / "ledger.json"
ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-11-27"
POOL_SIZE = 10  # DATABASE_POOL_SIZE's default: connections per process


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int  # callers in each process
    users: int  # callers reserve for user (i % users); one user needs a big limit
    user_limit: int


@dataclass(frozen=True)
class Result:
    store: str
    name: str
    processes: int
    concurrency: int
    """Callers per process."""
    reservations: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float


SCENARIOS = [
    Scenario("spread-1", concurrency=1, users=1000, user_limit=1000),
    Scenario("spread-10", concurrency=10, users=1000, user_limit=1000),
    Scenario("spread-100", concurrency=100, users=1000, user_limit=1000),
    Scenario("one-user-100", concurrency=100, users=1, user_limit=10**9),
]


# --- a worker process -----------------------------------------------------------------------


async def open_target(kind: str, target: str) -> JobStore:
    if kind == "sqlite":
        return await SqliteStore.open(target)
    return await PostgresStore.open(target, max_size=POOL_SIZE)


async def worker(
    kind: str, target: str, total: int, concurrency: int, users: int, limit: int
) -> None:
    store = await open_target(kind, target)
    latencies: list[float] = []
    counter = iter(range(total))
    tag = uuid.uuid4().hex[:6]  # users are shared by the processes; job ids are not

    async def caller() -> None:
        for i in counter:
            user = str(i % users)
            job = NewJob(
                "telegram",
                user,
                user,
                {"chat_id": user},
                {"file_id": "x" * 40},
                0.3,
                id=f"{tag}{uuid.uuid4().hex[6:]}",
            )
            started = time.perf_counter()
            # The in-flight and burst checks run as the service runs them (the limits high
            # enough that none refuses): they count the user's jobs, here never finished.
            await store.reserve(
                job,
                day=DAY,
                user_limit=limit,
                chat_limit=None,
                max_in_flight=limit,
                max_per_minute=limit,
            )
            latencies.append(time.perf_counter() - started)

    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    began = time.time()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    ended = time.time()
    await store.close()
    print(json.dumps({"began": began, "ended": ended, "latencies": latencies}), flush=True)


# --- the driver -----------------------------------------------------------------------------


class Postgres:
    """A server to make one database per scenario on: pgserver's, or the one `url` names."""

    def __init__(self, url: str | None) -> None:
        self.handle: Any = None
        if url:
            self.url = url
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
            from pgserver.postgres_server import get_server
        # As root, pgserver runs the server as a system user `pgserver` it creates itself.
        self.handle = get_server(tempfile.mkdtemp(prefix="ledger-pg-"), cleanup_mode="delete")
        self.url = self.handle.get_uri()

    async def version(self) -> str:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    async def database(self) -> str:
        import asyncpg

        name = f"ledger_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        from urllib.parse import urlsplit, urlunsplit

        return urlunsplit(urlsplit(self.url)._replace(path=f"/{name}"))

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cleanup()


def with_setting(url: str, setting: str) -> str:
    """`url` with a server setting (asyncpg passes unknown query parameters to the server)."""
    if not setting:
        return url
    return f"{url}{'&' if '?' in url else '?'}{setting}"


async def run(kind: str, target: str, scenario: Scenario, processes: int, total: int) -> Result:
    share = [total // processes + (1 if n < total % processes else 0) for n in range(processes)]
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.ledger",
            "--worker",
            kind,
            target,
            str(n),
            str(scenario.concurrency),
            str(scenario.users),
            str(scenario.user_limit),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for n in share
    ]
    for child in children:
        assert child.stdout is not None
        assert (await child.stdout.readline()).strip() == b"ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
    reports = []
    for child in children:
        out, _ = await child.communicate()
        assert child.returncode == 0, f"worker failed ({child.returncode})"
        reports.append(json.loads(out))
    latencies = [x for r in reports for x in r["latencies"]]
    seconds = max(r["ended"] for r in reports) - min(r["began"] for r in reports)
    cuts = statistics.quantiles(latencies, n=100)
    return Result(
        store=kind,
        name=scenario.name,
        processes=processes,
        concurrency=scenario.concurrency,
        reservations=len(latencies),
        seconds=round(seconds, 3),
        per_second=round(len(latencies) / seconds, 1),
        p50_ms=round(cuts[49] * 1000, 3),
        p99_ms=round(cuts[98] * 1000, 3),
        max_ms=round(max(latencies) * 1000, 3),
    )


async def main_async(total: int, stores: list[str], pg_url: str | None) -> dict[str, object]:
    results: list[Result] = []
    report: dict[str, object] = {
        "benchmark": "ledger",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "reservations_per_scenario": total,
    }
    with tempfile.TemporaryDirectory(prefix="ledger-") as folder:
        if "sqlite" in stores:
            report["sqlite"] = f"{sqlite3.sqlite_version} (WAL, synchronous=NORMAL)"
            for processes in (1, 2):
                for scenario in SCENARIOS:
                    path = Path(folder) / f"{scenario.name}-{processes}.db"
                    results.append(await run("sqlite", str(path), scenario, processes, total))
                    print(json.dumps(asdict(results[-1])), file=sys.stderr)
        if "postgresql" in stores:
            server = Postgres(pg_url)
            try:
                version = await server.version()
                report["postgresql"] = (
                    f"{version} ({'pgserver' if server.handle else 'given server'}, "
                    f"default durability, pool of {POOL_SIZE} per process)"
                )
                for variant, suffix in (
                    ("postgresql", ""),
                    ("postgresql-async-commit", "synchronous_commit=off"),
                ):
                    for processes in (1, 2):
                        for scenario in SCENARIOS:
                            target = with_setting(await server.database(), suffix)
                            result = await run("postgresql", target, scenario, processes, total)
                            results.append(replace(result, store=variant))
                            print(json.dumps(asdict(results[-1])), file=sys.stderr)
            finally:
                server.stop()
    report["results"] = [asdict(result) for result in results]
    return report


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, target, total, concurrency, users, limit = sys.argv[2:8]
        asyncio.run(worker(kind, target, int(total), int(concurrency), int(users), int(limit)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--reservations", type=int, default=5000, help="per scenario")
    parser.add_argument(
        "--stores", default="sqlite,postgresql", help="which stores (default: both)"
    )
    parser.add_argument("--pg-url", help="use this PostgreSQL server instead of pgserver's")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    report = asyncio.run(main_async(args.reservations, stores, args.pg_url))
    publish(report, args.out)


if __name__ == "__main__":
    main()
