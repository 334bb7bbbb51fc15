"""The serve-api application: its parts, their start and stop, and one middleware that answers
every failure in the OpenAI error shape and logs one line per request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Final

import httpx
from aiohttp import web
from aiohttp.typedefs import Handler

from bots.serve_api.errors import ApiError, from_retouch_error
from bots.serve_api.files import ResultStore
from bots.serve_api.request import body_limit
from bots.serve_api.routes import add_routes
from bots.serve_api.settings import ServeApiSettings
from bots.serve_api.state import FIDELITY, STATE, ServerState
from bots.serve_api.work_queue import WorkQueue
from core.backend import RetouchBackend
from core.errors import RetouchError
from core.http import create_http_client
from core.imaging import ImageLimits
from core.memory_budget import MemoryBudget
from core.settings import Settings

log = logging.getLogger("retouch.server")

_LINGERING_SECONDS: Final = 2.0


def create_app(
    settings: Settings,
    serve: ServeApiSettings,
    backend: RetouchBackend,
    *,
    client: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The serve-api application. The caller owns `backend` (and `client` when it passes one)."""
    state = ServerState(
        settings=settings,
        serve=serve,
        backend=backend,
        clock=clock,
        queue=WorkQueue(serve.serve_api_worker_count, serve.serve_api_queue_size),
        files=ResultStore(serve.serve_api_results_dir, serve.serve_api_result_ttl_seconds, clock),
        limits=ImageLimits.from_settings(settings),
        keys=[k.get_secret_value().encode() for k in serve.serve_api_keys],
        bodies=MemoryBudget(serve.serve_api_body_budget_bytes),
        client=client,
    )
    app = web.Application(
        client_max_size=body_limit(settings),
        middlewares=[_middleware],
        handler_args={
            # A connection that has not sent a whole request's headers this long after it
            # opened (or after its last answer) is closed: slow headers are let go.
            "keepalive_timeout": serve.serve_api_header_timeout_seconds,
            # After an answer to a body left unread (413, 408), drain it this long at most.
            "lingering_time": _LINGERING_SECONDS,
        },
    )
    app[STATE] = state
    app.cleanup_ctx.append(_lifetime)
    add_routes(app)
    return app


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    """Own an HTTP client if none was given; sweep expired results now and then periodically."""
    state = app[STATE]
    if state.client is None:
        state.client = create_http_client(state.settings)
        state.owns_client = True
    await asyncio.to_thread(state.files.sweep)
    interval = max(1.0, min(60.0, state.files.ttl / 4))
    state.sweeper = asyncio.create_task(_sweep_forever(state.files, interval))
    try:
        yield
    finally:
        state.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await state.sweeper
        if state.owns_client:
            await state.client.aclose()
            state.client = None


async def _sweep_forever(files: ResultStore, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await asyncio.to_thread(files.sweep)
        except OSError:
            log.exception("sweeping expired results failed")
            continue
        if removed:
            log.info("deleted %d expired result(s)", removed)


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure in the OpenAI error shape, and one log line per request."""
    started = time.perf_counter()
    status = 500
    code: str | None = None
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        return response
    except (ApiError, RetouchError) as exc:
        # No local may keep `exc`: with its traceback (this frame) that is a cycle, and the
        # request's body would wait in it for the garbage collector.
        status, code, answer = _answer(_as_api_error(exc, request))
        return answer
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        status, code, answer = _answer(_from_http_exception(exc, request))
        return answer
    except Exception:
        log.exception("unexpected error in %s", _route_name(request))
        code = "server_error"
        return ApiError(
            500,
            "The server had an error while processing your request.",
            type="server_error",
            code=code,
        ).response()
    finally:
        fidelity = request.get(FIDELITY)
        log.info(
            "%s %s -> %d in %.0f ms%s%s",
            request.method,
            _route_name(request),
            status,
            (time.perf_counter() - started) * 1000,
            "" if fidelity is None else f" fidelity={fidelity:g}",
            "" if code is None else f" code={code}",
        )


def _answer(error: ApiError) -> tuple[int, str | None, web.Response]:
    return error.status, error.code, error.response()


def _as_api_error(exc: ApiError | RetouchError, request: web.Request) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    return from_retouch_error(exc, request.app[STATE].queue.retry_after())


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> ApiError:
    if exc.status == 413:
        limit = body_limit(request.app[STATE].settings)
        return ApiError(
            413,
            f"The request body is too large: at most {limit} bytes are accepted.",
            code="request_too_large",
        )
    if exc.status == 404:
        return ApiError(404, f"Unknown path {request.path[:200]!r}.", code="not_found")
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return ApiError(exc.status, exc.reason, headers=headers)


def _route_name(request: web.Request) -> str:
    """The route's pattern, so that logs never hold a result file's name."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else ""
    return canonical or "<unmatched>"
