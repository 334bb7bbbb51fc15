"""`retouch-bot serve-api`: the embedded engine served on a TCP port until cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from aiohttp import web

from bots.serve_api.app import create_app
from bots.serve_api.settings import ServeApiSettings
from core.http import create_http_client
from core.settings import Settings

log = logging.getLogger("retouch.server")

_SHUTDOWN_TIMEOUT: Final = 10.0


async def run_server(
    settings: Settings,
    serve: ServeApiSettings,
    *,
    host: str | None = None,
    port: int | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the local engine until cancelled.

    `ready` gets the root URL once listening, e.g. `http://127.0.0.1:8000`; clients use it + `/v1`.
    """
    from core.local_backend import LocalBackend  # the engine pulls in OpenCV: load it on demand

    host = serve.serve_api_host if host is None else host
    port = serve.serve_api_port if port is None else port
    backend = LocalBackend(threads=serve.serve_api_worker_count)
    client = create_http_client(settings)
    runner: web.AppRunner | None = None
    try:
        app = create_app(settings, serve, backend, client=client)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        # A wildcard address is not one to connect to: show loopback instead.
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104
        shown = wildcard.get(host, host)
        if ":" in shown:
            shown = f"[{shown}]"
        root_url = f"http://{shown}:{bound_port}"
        log.info("serve-api listening on %s/v1", root_url)
        if ready is not None:
            ready(root_url)
        await asyncio.Event().wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        await client.aclose()
        await backend.aclose()
