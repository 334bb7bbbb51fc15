"""What serve-api's routes share: the settings, the backend, the queue and the result files."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import httpx
from aiohttp import web

from bots.serve_api.files import ResultStore
from bots.serve_api.settings import ServeApiSettings
from bots.serve_api.work_queue import WorkQueue
from core.backend import RetouchBackend
from core.imaging import ImageLimits
from core.memory_budget import MemoryBudget
from core.settings import Settings


@dataclass
class ServerState:
    """One application's parts; `client` is set by the app's start-up when none was given."""

    settings: Settings
    serve: ServeApiSettings
    backend: RetouchBackend
    clock: Callable[[], float]
    queue: WorkQueue
    files: ResultStore
    limits: ImageLimits
    keys: list[bytes]
    bodies: MemoryBudget
    """Bytes of request bodies (and the images they name) held at once."""
    client: httpx.AsyncClient | None = None
    owns_client: bool = False
    sweeper: asyncio.Task[None] | None = field(default=None, repr=False)


STATE: Final = web.AppKey("retouch_server_state", ServerState)
FIDELITY: Final = web.RequestKey("retouch_fidelity", float)
"""The fidelity a request asked for, for its log line."""
