"""The embedded engine's time per photo, and `retouch-bot serve-api` throughput.

Run `python -m benchmarks.engine` (or `make bench`).

1. Time per photo at 0.3, 2 and 12 megapixels (4:3 crops of the sample portrait, JPEG quality
   90): the median of several runs of the path a photo takes through the local backend,
   `prepare_image` then `retouch_bytes` (decode, detect, retouch, encode). Once on one core
   (the process pinned to one CPU and OpenCV at one thread), once with OpenCV's default threads
   on every core.
2. `retouch-bot serve-api` as a process on 127.0.0.1 with its default workers, driven over HTTP by
   concurrent httpx clients posting the 1280x960 photo the bots see most: requests per second,
   latency percentiles, and the server's CPU seconds per request (from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import httpx

from benchmarks.load import cpu_seconds, memory_mb, percentiles
from benchmarks.report import engine_machine, publish
from benchmarks.samples import megapixels, telegram_photo
from core.imaging import prepare_image
from core.local_backend import retouch_bytes

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "engine.json"
SIZES = (0.3, 2.0, 12.0)
FIDELITY = 0.1


def time_photo(data: bytes, runs: int) -> dict[str, Any]:
    """Median and spread of `prepare_image` + `retouch_bytes` on `data`, after one warm-up."""
    retouch_bytes(prepare_image(data).data, FIDELITY)
    totals, prepares = [], []
    for _ in range(runs):
        started = time.perf_counter()
        prepared = prepare_image(data)
        middle = time.perf_counter()
        retouch_bytes(prepared.data, FIDELITY)
        ended = time.perf_counter()
        totals.append(ended - started)
        prepares.append(middle - started)
    return {
        "median_ms": round(statistics.median(totals) * 1000, 1),
        "min_ms": round(min(totals) * 1000, 1),
        "max_ms": round(max(totals) * 1000, 1),
        "prepare_median_ms": round(statistics.median(prepares) * 1000, 1),
        "runs": runs,
    }


def engine_times(runs: int) -> dict[str, Any]:
    default_threads = cv2.getNumThreads()
    cpus = sorted(os.sched_getaffinity(0))
    photos = {mp: megapixels(mp) for mp in SIZES}
    found: dict[str, Any] = {}
    try:
        os.sched_setaffinity(0, {cpus[0]})
        cv2.setNumThreads(1)
        found["one_core"] = {
            f"{mp:g}MP": {"bytes": len(data), **time_photo(data, runs)}
            for mp, data in photos.items()
        }
    finally:
        os.sched_setaffinity(0, cpus)
        cv2.setNumThreads(default_threads)
    found["all_cores"] = {
        "cpus": len(cpus),
        "opencv_threads": cv2.getNumThreads(),
        **{f"{mp:g}MP": time_photo(data, runs) for mp, data in photos.items()},
    }
    return found


# --- serve-api --------------------------------------------------------------------------------


def start_server(folder: Path) -> tuple[subprocess.Popen[str], str]:
    env = {key: os.environ[key] for key in ("PATH", "LANG", "TMPDIR") if key in os.environ}
    env.update(
        PYTHONPATH=str(ROOT),
        HOME=str(folder),
        DATA_DIR=str(folder / "data"),
        SERVE_API_RESULTS_DIR=str(folder / "results"),
        LOG_LEVEL="WARNING",
    )
    command = [sys.executable, "-m", "bots.cli", "serve-api", "--host", "127.0.0.1", "--port", "0"]
    # cwd: a folder without a .env, so the defaults apply (workers: one per CPU)
    server = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = server.stdout.readline()
    if " at " not in line:
        server.kill()
        raise RuntimeError(f"serve-api did not start: {line!r}")
    return server, line.split(" at ", 1)[1].split()[0]  # http://127.0.0.1:PORT/v1


async def drive(base: str, requests: int, concurrency: int, pid: int) -> dict[str, Any]:
    photo = telegram_photo()
    body = {
        "model": "retouch",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a person"},
                    {
                        "type": "image_url",
                        "image_url": {
                            "url": "data:image/jpeg;base64," + base64.b64encode(photo).decode()
                        },
                    },
                ],
            }
        ],
        "extra_body": {"codeformer_fidelity": FIDELITY},
    }
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pending = iter(range(requests))
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        warm = await client.post("/chat/completions", json=body)
        warm.raise_for_status()
        result = await client.get(warm.json()["choices"][0]["message"]["content"])
        result.raise_for_status()

        async def caller() -> None:
            for _ in pending:
                started = time.perf_counter()
                response = await client.post("/chat/completions", json=body)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        cpu_before = sum(cpu_seconds(pid))
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        cpu = sum(cpu_seconds(pid)) - cpu_before
    ok = statuses.get(200, 0)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "photo": f"1280x960 JPEG, {len(photo)} bytes",
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "wall_s": round(wall, 2),
        "requests_per_second": round(ok / wall, 2),
        "latency": percentiles(latencies),
        "server_cpu_s_per_request": round(cpu / requests, 3),
        "server_rss_peak_mb": memory_mb(pid)["VmHWM"],
    }


async def serve_api(requests: int, concurrency: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-serve-api-") as folder:
        server, base = await asyncio.to_thread(start_server, Path(folder))
        try:
            found = await drive(base, requests, concurrency, server.pid)
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
    return {"workers": os.cpu_count(), **found}


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    one_core = report["engine"]["one_core"]
    two, twelve = one_core["2MP"]["median_ms"], one_core["12MP"]["median_ms"]
    return {
        "2MP_under_400ms_one_core": {"value_ms": two, "met": two < 400},
        "12MP_under_2500ms_one_core": {"value_ms": twelve, "met": twelve < 2500},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per photo size")
    parser.add_argument("--requests", type=int, default=40, help="serve-api requests")
    parser.add_argument("--concurrency", type=int, default=8, help="serve-api clients at once")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "engine",
        "machine": engine_machine(),
        "fidelity": FIDELITY,
        "engine": engine_times(args.runs),
        "serve_api": asyncio.run(serve_api(args.requests, args.concurrency)),
    }
    report["targets"] = verdicts(report)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    publish(report, args.out)


if __name__ == "__main__":
    main()
