"""Quota ledger throughput: reservations per second and latency of `SqliteStore.reserve`.

Run `python -m benchmarks.ledger`. Each scenario runs `concurrency` callers that reserve in a loop
on a fresh store in a temporary folder; the JSON goes to stdout and `benchmarks/results/`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from core.jobs import NewJob
from core.sqlite_store import SqliteStore

RESULTS = Path(__file__).resolve().parent / "results" / "ledger.json"
DAY = "2026-11-27"


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    users: int  # callers reserve for user (i % users); one user needs a big limit
    user_limit: int


@dataclass(frozen=True)
class Result:
    name: str
    concurrency: int
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


async def run(scenario: Scenario, total: int, folder: Path) -> Result:
    store = await SqliteStore.open(folder / f"{scenario.name}.db")
    latencies: list[float] = []
    counter = iter(range(total))

    async def caller() -> None:
        for i in counter:
            user = str(i % scenario.users)
            job = NewJob("telegram", user, user, {"chat_id": user}, {"file_id": "x" * 40}, 0.3)
            started = time.perf_counter()
            await store.reserve(job, day=DAY, user_limit=scenario.user_limit, chat_limit=None)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(scenario.concurrency)))
    seconds = time.perf_counter() - started
    await store.close()
    cuts = statistics.quantiles(latencies, n=100)
    return Result(
        name=scenario.name,
        concurrency=scenario.concurrency,
        reservations=len(latencies),
        seconds=round(seconds, 3),
        per_second=round(len(latencies) / seconds, 1),
        p50_ms=round(cuts[49] * 1000, 3),
        p99_ms=round(cuts[98] * 1000, 3),
        max_ms=round(max(latencies) * 1000, 3),
    )


async def main_async(total: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="ledger-") as folder:
        results = [await run(scenario, total, Path(folder)) for scenario in SCENARIOS]
    return {
        "benchmark": "ledger",
        "store": "sqlite",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "reservations_per_scenario": total,
        "results": [asdict(result) for result in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--reservations", type=int, default=5000, help="per scenario")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    report = asyncio.run(main_async(args.reservations))
    text = json.dumps(report, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
