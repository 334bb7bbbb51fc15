"""serve-api and the API client under hostile peers: memory, time held, answers (issue 13).

Each memory scenario runs a fresh `retouch-bot serve-api` process (its defaults, one worker per
core) and reads its peak RSS (VmHWM) and its RSS 10 s after the burst from /proc/<pid>/status:
- 8 concurrent near-limit pixel bombs (PNG and JPEG just under IMAGE_MAX_INPUT_PIXELS),
- 12 concurrent 60 MB junk bodies (`[{},{},...]`),
- 50 concurrent valid requests (the sample portrait; past the queue the answer is 429).
Then: how long a client that announces a body and stalls is held, and one whose headers stall;
and the longest attempt of the API client against an upstream that drips its answer a byte at a
time, with RETOUCH_TIMEOUT_SECONDS=5. No answer may be a 5xx. Prints JSON (`benchmarks.report`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from benchmarks.engine import start_server
from benchmarks.load import memory_mb
from benchmarks.report import engine_machine, publish
from core.api_backend import ApiBackend
from core.errors import RetouchError
from core.formats import PreparedImage
from core.http import create_http_client
from core.settings import Settings
from tests.hostile_inputs import exchange, jpeg_bomb, png_bomb, post_head

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "hostile.json"
SETTLE_SECONDS = 10.0
BOMB_SIDE = 8190  # 67.08 MP: just under the default cap of 2^26 pixels
JUNK_BYTES = 60_000_000
UPSTREAM_TIMEOUT = 5.0


def completion_body(image: bytes, mime: str) -> bytes:
    url = f"data:{mime};base64,{base64.b64encode(image).decode()}"
    content = [
        {"type": "text", "text": "a person"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    return json.dumps(
        {"model": "retouch", "messages": [{"role": "user", "content": content}]}
    ).encode()


@contextlib.asynccontextmanager
async def serve_api() -> AsyncIterator[tuple[str, int]]:
    """A fresh `retouch-bot serve-api`; its root URL and pid."""
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as folder:
        server, base = await asyncio.to_thread(start_server, Path(folder))
        try:
            yield base.removesuffix("/v1"), server.pid
        finally:
            server.terminate()
            try:
                await asyncio.to_thread(server.wait, 15)
            except subprocess.TimeoutExpired:
                server.kill()


async def burst(bodies: list[bytes]) -> dict[str, Any]:
    """Post every body at once to a fresh serve-api; its memory, statuses and error codes."""
    async with serve_api() as (root, pid):
        idle = memory_mb(pid)["VmRSS"]
        started = time.monotonic()
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(base_url=root, timeout=600, limits=limits) as client:
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/v1/chat/completions",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    for body in bodies
                )
            )
        took = time.monotonic() - started
        peak = memory_mb(pid)["VmHWM"]
        await asyncio.sleep(SETTLE_SECONDS)
        settled = memory_mb(pid)["VmRSS"]
    codes = Counter(_code(answer) for answer in answers)
    return {
        "requests": len(bodies),
        "statuses": dict(sorted(Counter(str(a.status_code) for a in answers).items())),
        "error_codes": dict(sorted(codes.items())),
        "seconds": round(took, 2),
        "rss_idle_mb": idle,
        "rss_peak_mb": peak,
        f"rss_{SETTLE_SECONDS:g}s_after_mb": settled,
        "any_5xx": any(answer.status_code >= 500 for answer in answers),
    }


def _code(answer: httpx.Response) -> str:
    if answer.status_code < 400:
        return "ok"
    try:
        return str(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "not-the-contract's-json"


async def stalled_clients() -> dict[str, Any]:
    """Seconds serve-api holds a client whose body never comes, and one whose headers stall."""
    async with serve_api() as (root, _):
        url = httpx.URL(root)
        assert url.host and url.port
        held: dict[str, Any] = {}
        cases = {"body_never_sent": post_head(1000), "headers_never_finished": post_head()}
        for name, sent in cases.items():
            started = time.monotonic()
            head, _ = await exchange(url.host, url.port, sent, within=120)
            held[name] = {
                "held_s": round(time.monotonic() - started, 2),
                "answer": head.split(b"\r\n", 1)[0].decode() or "(closed, no answer)",
            }
    return held


@contextlib.asynccontextmanager
async def dripping_upstream() -> AsyncIterator[tuple[str, list[float], asyncio.Condition]]:
    """An upstream that answers a byte every 0.5 s for ten minutes; yields its base URL and how
    long each request was held before the client let go."""
    attempts: list[float] = []
    ended = asyncio.Condition()

    async def completions(request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 1200
        await response.prepare(request)
        try:
            for _ in range(1200):
                await response.write(b" ")
                await asyncio.sleep(0.5)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            attempts.append(time.monotonic() - started)
            async with ended:
                ended.notify_all()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1", attempts, ended
    finally:
        await runner.cleanup()


async def upstream_attempts() -> dict[str, Any]:
    """The API client's attempts against a dripping upstream, timed from the upstream's side."""
    async with dripping_upstream() as (base, attempts, ended):
        settings = Settings.load(
            retouch_api_key="sk-bench",
            retouch_api_base_url=base,
            retouch_timeout_seconds=UPSTREAM_TIMEOUT,
            retouch_max_retries=1,
        )
        image = PreparedImage(jpeg_bomb(64, 64), "jpeg", 64, 64)
        async with create_http_client(settings) as client:
            backend = ApiBackend.from_settings(settings, client)
            started = time.monotonic()
            try:
                await backend.retouch(image, 0.3)
                error = "none"
            except RetouchError as exc:
                error = type(exc).__name__
            took = time.monotonic() - started
        async with asyncio.timeout(10), ended:  # the upstream sees the last one end too
            await ended.wait_for(lambda: len(attempts) >= 2)
    return {
        "retouch_timeout_seconds": UPSTREAM_TIMEOUT,
        "attempts": len(attempts),
        "longest_attempt_s": round(max(attempts), 2),
        "job_s": round(took, 2),
        "error": error,
    }


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    bombs, junk = report["bombs"], report["junk_bodies"]
    settled = bombs[f"rss_{SETTLE_SECONDS:g}s_after_mb"]
    held = max(case["held_s"] for case in report["stalled_clients"].values())
    longest = report["upstream"]["longest_attempt_s"]
    bursts = (bombs, junk, report["valid_requests"])
    return {
        "hostile_bombs_peak_under_600MB": {
            "value_mb": bombs["rss_peak_mb"],
            "met": bombs["rss_peak_mb"] <= 600,
        },
        "hostile_bombs_settled_under_250MB": {"value_mb": settled, "met": settled <= 250},
        "hostile_junk_bodies_peak_under_600MB": {
            "value_mb": junk["rss_peak_mb"],
            "met": junk["rss_peak_mb"] <= 600,
        },
        "hostile_no_5xx": {"met": not any(b["any_5xx"] for b in bursts)},
        "hostile_stalled_client_let_go_within_30s": {"value_s": held, "met": held <= 30},
        "hostile_upstream_attempt_within_timeout_plus_1s": {
            "value_s": longest,
            "met": longest <= UPSTREAM_TIMEOUT + 1,
        },
    }


async def measure() -> dict[str, Any]:
    bombs = [png_bomb(BOMB_SIDE, BOMB_SIDE), jpeg_bomb(BOMB_SIDE, BOMB_SIDE)] * 4
    bomb_bodies = [
        completion_body(bomb, "image/png" if bomb.startswith(b"\x89PNG") else "image/jpeg")
        for bomb in bombs
    ]
    junk = b"[" + b"{}," * ((JUNK_BYTES - 4) // 3) + b"{}]"
    portrait = (ROOT / "examples" / "portrait.jpg").read_bytes()
    return {
        "bombs": {
            "bomb": f"{BOMB_SIDE}x{BOMB_SIDE} PNG and JPEG, {len(bombs[0])} and "
            f"{len(bombs[1])} bytes",
            **await burst(bomb_bodies),
        },
        "junk_bodies": {"body_bytes": len(junk), **await burst([junk] * 12)},
        "valid_requests": {
            "photo": f"examples/portrait.jpg, {len(portrait)} bytes",
            **await burst([completion_body(portrait, "image/jpeg")] * 50),
        },
        "stalled_clients": await stalled_clients(),
        "upstream": await upstream_attempts(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    machine = {**engine_machine(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    report: dict[str, Any] = {"benchmark": "hostile", "machine": machine, **asyncio.run(measure())}
    report["targets"] = verdicts(report)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    publish(report, args.out)


if __name__ == "__main__":
    main()
