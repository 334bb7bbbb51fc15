"""`retouch-bot serve-api`: the embedded engine behind the hosted API's OpenAI-style HTTP contract.

Same request and response JSON as `seed/API-CONTRACT.md`, the same error shape, result files served
from this server's own URLs that expire after a configurable time, optional bearer keys, and a
bounded work queue that answers 429 at once when full. Built on aiohttp's web server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from aiohttp import web
from aiohttp.typedefs import Handler

from core.backend import RetouchBackend
from core.errors import (
    BackendError,
    BusyError,
    FidelityError,
    ForbiddenUrlError,
    ImageTooLargeError,
    NoFaceError,
    RetouchError,
    UserInputError,
)
from core.fetch import download_image
from core.formats import EXTENSIONS, MIME_TYPES, sniff_format
from core.http import create_http_client
from core.imaging import ImageLimits, prepare_image
from core.netguard import ensure_public_url
from core.settings import Settings

log = logging.getLogger("retouch.server")

MODEL: Final = "retouch"
DEFAULT_FIDELITY: Final = 0.1  # the contract's default, independent of the bots' own default
NO_IMAGE_MESSAGE: Final = "retouch模型需要图片,请在请求中包含图片"
NO_FACE_MESSAGE: Final = "未检测到人脸,请上传包含清晰正脸的图片 (no face found in the image)"
BAD_KEY_MESSAGE: Final = "Incorrect API key provided."

# JSON around the base64 image (messages, text parts, the data: prefix) gets this much room.
_BODY_OVERHEAD: Final = 64 * 1024
_MAX_URL_CHARS: Final = 8192
_IMAGE_DOWNLOAD_TIMEOUT: Final = 30.0
_THREAD_THRESHOLD: Final = 256 * 1024  # parse/decode bigger payloads off the event loop
_RESULT_NAME = re.compile(r"^[A-Za-z0-9_-]{32}\.(?:jpg|png|webp)$")
_RESULT_FORMATS: Final = ("jpeg", "png", "webp")
_RESULT_MIME: Final = {EXTENSIONS[f]: MIME_TYPES[f] for f in _RESULT_FORMATS}
_SHUTDOWN_TIMEOUT: Final = 10.0


# --- errors in the OpenAI shape ------------------------------------------------------------------


class ApiError(Exception):
    """An answer in the OpenAI error shape: `{"error": {message, type, param, code}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return _json(body, status=self.status, headers=self.headers)


def _json(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        data, status=status, headers=headers, dumps=lambda d: json.dumps(d, ensure_ascii=False)
    )


def _from_retouch_error(exc: RetouchError, retry_after: int) -> ApiError:
    """Typed core errors as HTTP answers: the user's fault is a 400, ours a 429 or 500."""
    if isinstance(exc, NoFaceError):
        return ApiError(400, NO_FACE_MESSAGE, code=exc.code)
    if isinstance(exc, FidelityError):
        return ApiError(400, exc.message, param="codeformer_fidelity", code=exc.code)
    if isinstance(exc, UserInputError):
        return ApiError(400, exc.message, code=exc.code)
    if isinstance(exc, BusyError):
        return ApiError(
            429,
            exc.message,
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(retry_after)},
        )
    return ApiError(500, exc.message, type="server_error", code=exc.code)


# --- the request ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """What a valid chat-completions request asks for."""

    image_url: str
    fidelity: float


def parse_job(payload: Any) -> Job:
    """Validate the contract's request JSON; raises `ApiError` (400) naming the faulty field."""
    if not isinstance(payload, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "You must provide a model parameter: 'retouch'.", param="model")
    if model != MODEL:
        raise ApiError(
            400,
            f"The model {model[:100]!r} does not exist; this server serves only '{MODEL}'.",
            param="model",
            code="model_not_found",
        )
    if payload.get("stream"):
        raise ApiError(400, "Streaming is not supported by the retouch model.", param="stream")
    fidelity = _parse_fidelity(payload)
    url = _find_image_url(payload.get("messages"))
    if url is None:
        raise ApiError(400, NO_IMAGE_MESSAGE)
    return Job(image_url=url, fidelity=fidelity)


def _parse_fidelity(payload: dict[str, Any]) -> float:
    """`extra_body.codeformer_fidelity` (curl form) wins over the top-level key (SDK form)."""
    extra = payload.get("extra_body", {})
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise ApiError(400, "extra_body must be a JSON object.", param="extra_body")
    value = extra.get("codeformer_fidelity", payload.get("codeformer_fidelity"))
    if value is None:
        return DEFAULT_FIDELITY
    # bool is an int in Python but not a number in JSON; NaN/Infinity are refused by the parser.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(
            400,
            "codeformer_fidelity must be a JSON number (not a string) between 0.0 and 1.0.",
            param="codeformer_fidelity",
            code=FidelityError.code,
        )
    if not 0.0 <= value <= 1.0:
        raise ApiError(
            400,
            f"codeformer_fidelity must be between 0.0 and 1.0 (got {value}).",
            param="codeformer_fidelity",
            code=FidelityError.code,
        )
    return float(value)


def _find_image_url(messages: Any) -> str | None:
    """The URL of the first `image_url` part of the user's messages, or None when there is none."""
    if messages is None:
        return None
    if not isinstance(messages, list):
        raise ApiError(400, "messages must be an array.", param="messages")
    for message in messages:
        if not isinstance(message, dict):
            raise ApiError(400, "Each message must be a JSON object.", param="messages")
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url.strip():
                raise ApiError(400, "image_url.url must be a non-empty string.", param="messages")
            return url.strip()
    return None


def decode_data_url(url: str, max_bytes: int) -> bytes:
    """The bytes of a base64 `data:` URL, its length checked before the base64 is decoded."""
    header, sep, payload = url.partition(",")
    if not sep or not header.lower().endswith(";base64"):
        raise ApiError(400, "An image data: URL must be base64-encoded.", code="invalid_image_url")
    max_chars = 4 * math.ceil(max_bytes / 3)
    if len(payload) > max_chars + max_chars // 38 + 16:  # room for MIME line breaks
        raise ImageTooLargeError(f"The image is larger than {max_bytes} bytes.")
    if re.search(r"\s", payload):
        payload = "".join(payload.split())
    if len(payload) > max_chars:
        raise ImageTooLargeError(f"The image is larger than {max_bytes} bytes.")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            400, "The image data: URL is not valid base64.", code="invalid_image_url"
        ) from None
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"The image is larger than {max_bytes} bytes.")
    return data


def body_limit(settings: Settings) -> int:
    """The largest request body: the image cap inflated by base64 (4/3), plus JSON overhead."""
    return 4 * math.ceil(settings.image_max_input_bytes / 3) + _BODY_OVERHEAD


# --- the bounded work queue -----------------------------------------------------------------------


class WorkQueue:
    """At most `workers` jobs run and at most `capacity` wait; beyond that, refuse at once."""

    def __init__(self, workers: int, capacity: int) -> None:
        self.workers = workers
        self.capacity = capacity
        self.admitted = 0
        self.running = 0
        self._slots = asyncio.Semaphore(workers)
        self._average_seconds = 5.0

    @property
    def waiting(self) -> int:
        return self.admitted - self.running

    def snapshot(self) -> dict[str, int]:
        return {
            "workers": self.workers,
            "capacity": self.capacity,
            "running": self.running,
            "waiting": self.waiting,
        }

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the first of `workers` running jobs to end."""
        return max(1, min(60, math.ceil(self._average_seconds / self.workers)))

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place in the queue; raises a 429 `ApiError` when every place is taken."""
        if self.admitted >= self.workers + self.capacity:
            seconds = self.retry_after()
            raise ApiError(
                429,
                f"The server is busy ({self.running} jobs running, {self.waiting} waiting). "
                f"Retry after {seconds} s.",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(seconds)},
            )
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for one of the `workers` slots, then run."""
        async with self._slots:
            self.running += 1
            started = time.monotonic()
            try:
                yield
            finally:
                self.running -= 1
                elapsed = time.monotonic() - started
                self._average_seconds = 0.8 * self._average_seconds + 0.2 * elapsed


# --- result files ---------------------------------------------------------------------------------


class ResultStore:
    """Result images under unguessable names; a file's mtime is its creation time on `clock`."""

    def __init__(self, directory: Path, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self.directory = directory
        self.ttl = ttl_seconds
        self.clock = clock

    def save(self, data: bytes) -> str:
        """Write `data` (sync, run it in a thread) and return its file name."""
        fmt = sniff_format(data)
        if fmt is None or fmt not in _RESULT_FORMATS:
            raise BackendError("The engine produced no image.")
        name = secrets.token_urlsafe(24) + EXTENSIONS[fmt]
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(data)
        now = self.clock()
        os.utime(temporary, (now, now))
        os.replace(temporary, self.directory / name)  # never serve a half-written file
        return name

    def open(self, name: str) -> tuple[Path, str, int] | None:
        """(path, MIME type, seconds left) of a live result; an expired one is deleted."""
        if not _RESULT_NAME.fullmatch(name):
            return None
        path = self.directory / name
        try:
            created = path.stat().st_mtime
        except OSError:
            return None
        left = created + self.ttl - self.clock()
        if left <= 0:
            path.unlink(missing_ok=True)
            return None
        return path, _RESULT_MIME[path.suffix], math.ceil(left)

    def sweep(self) -> int:
        """Delete expired results and stale partial writes; returns how many went."""
        if not self.directory.is_dir():
            return 0
        now = self.clock()
        removed = 0
        for entry in os.scandir(self.directory):
            temporary = entry.name.startswith(".") and entry.name.endswith(".tmp")
            if not (_RESULT_NAME.fullmatch(entry.name) or temporary):
                continue
            try:
                expired = entry.stat().st_mtime + self.ttl <= now
                if expired:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


# --- the application ------------------------------------------------------------------------------


@dataclass
class _State:
    settings: Settings
    backend: RetouchBackend
    clock: Callable[[], float]
    queue: WorkQueue
    store: ResultStore
    limits: ImageLimits
    keys: list[bytes]
    client: httpx.AsyncClient | None = None
    owns_client: bool = False
    sweeper: asyncio.Task[None] | None = field(default=None, repr=False)


_STATE: Final = web.AppKey("retouch_server_state", _State)
_FIDELITY: Final = web.RequestKey("retouch_fidelity", float)


def create_app(
    settings: Settings,
    backend: RetouchBackend,
    *,
    client: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The serve-api application. The caller owns `backend` (and `client` when it passes one)."""
    state = _State(
        settings=settings,
        backend=backend,
        clock=clock,
        queue=WorkQueue(settings.serve_api_worker_count, settings.serve_api_queue_size),
        store=ResultStore(
            settings.serve_api_results_dir, settings.serve_api_result_ttl_seconds, clock
        ),
        limits=ImageLimits.from_settings(settings),
        keys=[k.get_secret_value().encode() for k in settings.serve_api_keys],
        client=client,
    )
    app = web.Application(client_max_size=body_limit(settings), middlewares=[_middleware])
    app[_STATE] = state
    app.cleanup_ctx.append(_lifetime)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model}", _model)
    app.router.add_get("/v1/files/{name}", _file)
    app.router.add_get("/healthz", _healthz)
    return app


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    """Own an HTTP client if none was given; sweep expired results now and then periodically."""
    state = app[_STATE]
    if state.client is None:
        state.client = create_http_client(state.settings)
        state.owns_client = True
    await asyncio.to_thread(state.store.sweep)
    interval = max(1.0, min(60.0, state.store.ttl / 4))
    state.sweeper = asyncio.create_task(_sweep_forever(state.store, interval))
    try:
        yield
    finally:
        state.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await state.sweeper
        if state.owns_client:
            await state.client.aclose()
            state.client = None


async def _sweep_forever(store: ResultStore, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await asyncio.to_thread(store.sweep)
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
    except ApiError as exc:
        status, code = exc.status, exc.code
        return exc.response()
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        error = _from_http_exception(exc, request)
        code = error.code
        return error.response()
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
        fidelity = request.get(_FIDELITY)
        log.info(
            "%s %s -> %d in %.0f ms%s%s",
            request.method,
            _route_name(request),
            status,
            (time.perf_counter() - started) * 1000,
            "" if fidelity is None else f" fidelity={fidelity:g}",
            "" if code is None else f" code={code}",
        )


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> ApiError:
    if exc.status == 413:
        limit = body_limit(request.app[_STATE].settings)
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


def _authorize(request: web.Request) -> None:
    """Require `Authorization: Bearer <key>` matching a configured key, when any is configured."""
    keys = request.app[_STATE].keys
    if not keys:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    candidate = given.strip().encode()
    matched = False
    for key in keys:  # no early exit: the time taken does not depend on which key matched
        matched |= hmac.compare_digest(candidate, key)
    if scheme.lower() != "bearer" or not matched:
        raise ApiError(
            401, BAD_KEY_MESSAGE, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        )


async def _read_json(request: web.Request) -> Any:
    limit = body_limit(request.app[_STATE].settings)
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = await request.read()
    try:
        if len(body) > _THREAD_THRESHOLD:
            return await asyncio.to_thread(_loads, body)
        return _loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.") from None


def _loads(body: bytes) -> Any:
    return json.loads(body, parse_constant=_no_constants)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _chat_completions(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    _authorize(request)
    job = parse_job(await _read_json(request))
    request[_FIDELITY] = job.fidelity
    try:
        with state.queue.admit():
            data = await _load_image(state, job.image_url)
            async with state.queue.slot():
                prepared = await asyncio.to_thread(prepare_image, data, state.limits)
                result = await state.backend.retouch(prepared, job.fidelity)
            name = await asyncio.to_thread(state.store.save, result)
    except RetouchError as exc:
        raise _from_retouch_error(exc, state.queue.retry_after()) from None
    now = state.clock()
    base = state.settings.serve_api_public_url.rstrip("/") or str(request.url.origin())
    return _json(
        {
            "id": f"xty-{int(now * 1000)}",
            "object": "chat.completion",
            "created": int(now),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": f"{base}/v1/files/{name}"},
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
    )


async def _load_image(state: _State, url: str) -> bytes:
    """The image bytes behind a `data:` URL or an http(s) URL (public only, unless allowed)."""
    max_bytes = state.settings.image_max_input_bytes
    scheme = url.partition(":")[0].lower()
    if scheme == "data":
        return await asyncio.to_thread(decode_data_url, url, max_bytes)
    if scheme not in ("http", "https"):
        raise ForbiddenUrlError("Only http(s) and base64 data: image URLs are accepted.")
    if len(url) > _MAX_URL_CHARS:
        raise ApiError(400, "The image URL is too long.", code="invalid_image_url")
    guard = None if state.settings.serve_api_allow_private_urls else ensure_public_url
    assert state.client is not None  # set by _lifetime before the first request
    try:
        # The guard vets the URL and every redirect target.
        return await download_image(
            state.client,
            url,
            max_bytes=max_bytes,
            timeout=_IMAGE_DOWNLOAD_TIMEOUT,
            guard=guard,
        )
    except BackendError as exc:
        raise ApiError(
            400, f"The image URL could not be downloaded: {exc.message}", code="invalid_image_url"
        ) from None


async def _models(request: web.Request) -> web.Response:
    _authorize(request)
    return _json({"object": "list", "data": [_model_card()]})


async def _model(request: web.Request) -> web.Response:
    _authorize(request)
    if request.match_info["model"] != MODEL:
        raise ApiError(404, "The model does not exist.", param="model", code="model_not_found")
    return _json(_model_card())


def _model_card() -> dict[str, Any]:
    return {"id": MODEL, "object": "model", "created": 1704067200, "owned_by": "retouch-bot"}


async def _file(request: web.Request) -> web.StreamResponse:
    """A result image; the unguessable URL is the capability, so no key is asked for."""
    store = request.app[_STATE].store
    found = await asyncio.to_thread(store.open, request.match_info["name"])
    if found is None:
        raise ApiError(404, "The file does not exist or has expired.", code="file_not_found")
    path, mime, left = found
    return web.FileResponse(
        path,
        headers={
            "Content-Type": mime,
            "Cache-Control": f"private, max-age={left}",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _healthz(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    return _json({"status": "ok", "backend": state.backend.name, "queue": state.queue.snapshot()})


# --- running it -----------------------------------------------------------------------------------


async def run_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the local engine until cancelled.

    `ready` gets the root URL once listening, e.g. `http://127.0.0.1:8000`; clients use it + `/v1`.
    """
    from core.local_backend import LocalBackend  # the engine pulls in OpenCV: load it on demand

    host = settings.serve_api_host if host is None else host
    port = settings.serve_api_port if port is None else port
    backend = LocalBackend(threads=settings.serve_api_worker_count)
    client = create_http_client(settings)
    runner: web.AppRunner | None = None
    try:
        app = create_app(settings, backend, client=client)
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
