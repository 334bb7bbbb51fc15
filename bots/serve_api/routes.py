"""serve-api's routes: chat completions, the model list, result files and the health probe."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any, Final

from aiohttp import web

from bots.serve_api.errors import ApiError, json_response
from bots.serve_api.images import load_image
from bots.serve_api.request import MODEL, body_limit, parse_request, read_json
from bots.serve_api.state import FIDELITY, STATE
from core.imaging import prepare_image

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
    """Retouch the request's image; answers the contract's JSON with the result file's URL."""
    state = request.app[STATE]
    authorize(request)
    job = parse_request(await read_json(request, body_limit(state.settings)))
    request[FIDELITY] = job.fidelity
    assert state.client is not None  # set at start-up, before the first request
    with state.queue.admit():
        data = await load_image(
            job.image_url,
            client=state.client,
            max_bytes=state.settings.image_max_input_bytes,
            allow_private=state.serve.serve_api_allow_private_urls,
        )
        async with state.queue.slot():
            prepared = await asyncio.to_thread(prepare_image, data, state.limits)
            result = await state.backend.retouch(prepared, job.fidelity)
        name = await asyncio.to_thread(state.files.save, result)
    now = state.clock()
    base = state.serve.serve_api_public_url.rstrip("/") or str(request.url.origin())
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
