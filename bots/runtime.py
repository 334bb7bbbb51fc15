"""What the bots of one process share (store, HTTP pool, backend, service, metrics) and how
they start and stop together: `serve` runs any set of `BotRunner`s until a signal arrives."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from bots.ops import start_ops_server
from core.backend import RetouchBackend, create_backend
from core.http import create_http_client, quiet_http_loggers
from core.jobs import Platform
from core.metrics import MeteredBackend, MeteredHooks, Metrics
from core.service import PlatformHooks, RetouchService
from core.settings import Settings
from core.store import JobStore, open_store

log = logging.getLogger("retouch.runtime")


@dataclass
class Runtime:
    """The shared parts; adapters register their hooks here before the service starts."""

    settings: Settings
    store: JobStore
    http: httpx.AsyncClient
    backend: RetouchBackend
    service: RetouchService
    metrics: Metrics
    ready: bool = False
    runners: list[BotRunner] = field(default_factory=list)

    def register(self, platform: Platform, hooks: PlatformHooks) -> None:
        self.service.register(platform, MeteredHooks(hooks, self.metrics))


class BotRunner(Protocol):
    """One chat platform's bot, driven through its life by `serve`."""

    name: str

    async def prepare(self, runtime: Runtime) -> None:
        """Build the client, log in, register hooks with `runtime` (before the service starts)."""
        ...

    async def start(self) -> None:
        """Begin receiving updates (the service is running)."""
        ...

    async def wait_closed(self) -> None:
        """Return (or raise) if the bot stops on its own, e.g. its connection failed for good."""
        ...

    async def stop(self) -> None:
        """Stop receiving updates; results may still be delivered."""
        ...

    async def close(self) -> None:
        """Release everything, after the service has shut down."""
        ...

    def healthy(self) -> bool:
        """Whether the bot is connected and receiving updates."""
        ...


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The store, one HTTP client pool, the backend and the service, closed in order on exit."""
    metrics = Metrics()
    store = await open_store(settings)
    try:
        async with create_http_client(settings) as http:
            backend = MeteredBackend(
                create_backend(settings, http, on_retry=metrics.upstream_retries.inc), metrics
            )
            try:
                service = RetouchService(settings, store, backend)
                service.on_rejected = metrics.rejected
                metrics.watch(service)
                yield Runtime(settings, store, http, backend, service, metrics)
            finally:
                await backend.aclose()
    finally:
        await store.close()


def stop_on_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM ask for a graceful stop; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def handle(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            raise SystemExit(1)
        log.info("%s: finishing running jobs, then stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, handle, signum)


async def serve(
    settings: Settings, runners: Sequence[BotRunner], stop: asyncio.Event | None = None
) -> None:
    """Run the bots on one shared runtime until `stop` is set or a signal arrives.

    Order on the way down: stop taking updates, let the service finish (or park) its jobs,
    then close the bots, so results of running jobs can still be delivered.
    """
    quiet_http_loggers()  # httpx logs request URLs, and Bot API URLs carry the token
    if stop is None:
        stop = asyncio.Event()
        stop_on_signals(stop)
    async with open_runtime(settings) as runtime:
        runtime.runners = list(runners)
        ops = await start_ops_server(runtime) if settings.ops_listen else None
        watchers: list[asyncio.Task[None]] = []
        try:
            for runner in runners:
                await runner.prepare(runtime)
            await runtime.service.start()
            for runner in runners:
                await runner.start()
            runtime.ready = True
            log.info(
                "running %s with the %s backend",
                " and ".join(r.name for r in runners),
                runtime.backend.name,
            )
            stopping = asyncio.create_task(stop.wait())
            watchers = [asyncio.create_task(r.wait_closed()) for r in runners]
            done, _ = await asyncio.wait([stopping, *watchers], return_when="FIRST_COMPLETED")
            stopping.cancel()
            for task in done:
                if task is not stopping and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            runtime.ready = False
            for task in watchers:
                task.cancel()
            for runner in runners:
                with contextlib.suppress(Exception):
                    await runner.stop()
            await runtime.service.shutdown()
            for runner in runners:
                try:
                    await runner.close()
                except Exception:
                    log.exception("closing the %s bot failed", runner.name)
            if ops is not None:
                await ops.cleanup()
