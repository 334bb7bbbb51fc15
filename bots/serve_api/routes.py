"""serve-api's routes: chat completions, the model list, result files and the health probe."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any, Final

from aiohttp import web

from bots.serve_api.errors import ApiError, json_response
from bots.serve_api.images import decode_data_url, is_data_url, load_image
from bots.serve_api.request import (
    MODEL,
    BodyDeadlines,
    body_cost,
    body_limit,
    parse_request,
    read_json,
)
from bots.serve_api.state import FIDELITY, STATE, ServerState
from core.pipeline import retouch_photo

BAD_KEY_MESSAGE: Final = "Incorrect API key provided."


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{model}", model)
    app.router.add_get("/v1/files/{name}", result_file)
    app.router.add_get("/healthz", healthz)


def authorize(request: web.Request) -> None:
    """Require `Authorization: Bearer <key>` matching a configured key, when any is configured."""
    keys = request.app[STATE].keys
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


async def chat_completions(request: web.Request) -> web.Response:
    """Retouch the request's image; answers the contract's JSON with the result file's URL.

    A place in the queue, then a share of the body budget, come before any of the body is read,
    so neither many bodies at once nor a huge one can take the memory.
    """
    state = request.app[STATE]
    authorize(request)
    settings, serve = state.settings, state.serve
    limit = body_limit(settings)
    deadlines = BodyDeadlines(
        serve.serve_api_body_idle_seconds, serve.serve_api_body_timeout_seconds
    )
    max_bytes = settings.image_max_input_bytes
    with state.queue.admit():
        async with state.bodies.hold_async(body_cost(request, limit)):
            job = parse_request(await read_json(request, limit, deadlines))
            request[FIDELITY] = fidelity = job.fidelity
            url = job.image_url
            del job
            if is_data_url(url):
                data = await asyncio.to_thread(decode_data_url, url, max_bytes)
                del url  # the body's largest string goes before the wait for a worker
                return _completion(state, request, await _retouch(state, data, fidelity))
        # An image URL: the body was small, the download may not be.
        async with state.bodies.hold_async(max_bytes):
            data = await _download(state, url)
            return _completion(state, request, await _retouch(state, data, fidelity))


async def _download(state: ServerState, url: str) -> bytes:
    assert state.client is not None  # set at start-up, before the first request
    return await load_image(
        url,
        client=state.client,
        max_bytes=state.settings.image_max_input_bytes,
        allow_private=state.serve.serve_api_allow_private_urls,
    )


async def _retouch(state: ServerState, data: bytes, fidelity: float) -> str:
    """Retouch in one of the workers' slots; the result file's name."""
    async with state.queue.slot():
        result = await retouch_photo(state.backend, data, fidelity, state.limits)
    return await asyncio.to_thread(state.files.save, result)


def _completion(state: ServerState, request: web.Request, name: str) -> web.Response:
    now = state.clock()
    base = state.serve.serve_api_public_url.rstrip("/") or bound_origin(request)
    return json_response(
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


def bound_origin(request: web.Request) -> str:
    """`http://address:port` of the socket the request came in on: never the Host header,
    which the client writes."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        raise ApiError(500, "The server cannot tell its own address.", type="server_error")
    host, port = str(sockname[0]), int(sockname[1])
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def models(request: web.Request) -> web.Response:
    authorize(request)
    return json_response({"object": "list", "data": [_model_card()]})


async def model(request: web.Request) -> web.Response:
    authorize(request)
    if request.match_info["model"] != MODEL:
        raise ApiError(404, "The model does not exist.", param="model", code="model_not_found")
    return json_response(_model_card())


def _model_card() -> dict[str, Any]:
    return {"id": MODEL, "object": "model", "created": 1704067200, "owned_by": "retouch-bot"}


async def result_file(request: web.Request) -> web.StreamResponse:
    """A result image; the unguessable URL is the capability, so no key is asked for."""
    files = request.app[STATE].files
    found = await asyncio.to_thread(files.open, request.match_info["name"])
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


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return json_response(
        {"status": "ok", "backend": state.backend.name, "queue": state.queue.snapshot()}
    )
