"""The operations endpoint (`OPS_LISTEN`): `GET /healthz` and `GET /metrics` (Prometheus)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from aiohttp import web

from core.backend import RetouchBackend
from core.metrics import CONTENT_TYPE, Metrics, Workload
from core.settings import Settings
from core.store import JobStore

log = logging.getLogger("retouch.ops")


class Probed(Protocol):
    """A bot as the health check sees it."""

    @property
    def name(self) -> str: ...

    def healthy(self) -> bool: ...


class Observed(Protocol):
    """What the endpoint reads of the running process (a `bots.runtime.Runtime`)."""

    ready: bool
    settings: Settings
    store: JobStore
    backend: RetouchBackend
    metrics: Metrics

    @property
    def service(self) -> Workload: ...

    @property
    def runners(self) -> Sequence[Probed]: ...


RUNTIME: web.AppKey[Observed] = web.AppKey("runtime")


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as a pair."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def healthz(request: web.Request) -> web.Response:
    """200 when the store answers and every bot is connected; 503 with the reasons otherwise."""
    runtime = request.app[RUNTIME]
    problems: list[str] = []
    if not runtime.ready:
        problems.append("starting or stopping")
    try:
        await runtime.store.get_job("healthz")
    except Exception as exc:
        problems.append(f"store: {type(exc).__name__}")
    bots = {runner.name: runner.healthy() for runner in runtime.runners}
    problems += [f"{name}: not connected" for name, ok in bots.items() if not ok]
    body = {
        "status": "ok" if not problems else "unavailable",
        "bots": bots,
        "backend": runtime.backend.name,
        "queue": runtime.service.queue_depth,
        "running": runtime.service.running_count,
        "problems": problems,
    }
    return web.json_response(body, status=200 if not problems else 503)


async def metrics(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    response = web.Response(body=runtime.metrics.render())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


async def start_ops_server(runtime: Observed) -> web.AppRunner:
    """Listen on `OPS_LISTEN`; the caller cleans the returned runner up."""
    app = web.Application()
    app[RUNTIME] = runtime
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = split_listen(runtime.settings.ops_listen)
    await web.TCPSite(runner, host, port).start()
    log.info("health and metrics on http://%s:%d/healthz and /metrics", host, port)
    return runner
