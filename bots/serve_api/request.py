"""The chat-completions request: its JSON body read within limits, checked, and reduced to what
it asks for (`CompletionRequest`). Faults raise `ApiError`s naming the field."""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from bots.serve_api.errors import FIDELITY_PARAM, ApiError
from core.fidelity import DEFAULT, check_fidelity
from core.settings import Settings

MODEL: Final = "retouch"
NO_IMAGE_MESSAGE: Final = "retouch模型需要图片,请在请求中包含图片"

# JSON around the base64 image (messages, text parts, the data: prefix) gets this much room.
_BODY_OVERHEAD: Final = 64 * 1024
_THREAD_THRESHOLD: Final = 256 * 1024  # parse bigger bodies off the event loop
MAX_VALUES: Final = 2000
MAX_CONTAINERS: Final = 200
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_CONTAINERS: Final = (b"{", b"[")
_SEPARATORS: Final = (b",", b":")


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What a valid chat-completions request asks for: one image, retouched at one fidelity."""

    image_url: str
    fidelity: float


def parse_request(payload: Any) -> CompletionRequest:
    """Validate the contract's request JSON; raises `ApiError` (400) naming the faulty field, or
    the core's `FidelityError`, which the app answers as a 400 naming `codeformer_fidelity`."""
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
    return CompletionRequest(image_url=url, fidelity=fidelity)


def _parse_fidelity(payload: dict[str, Any]) -> float:
    """`extra_body.codeformer_fidelity` (curl form) wins over the top-level key (SDK form);
    the value is checked by the core's one fidelity rule."""
    extra = payload.get("extra_body", {})
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise ApiError(400, "extra_body must be a JSON object.", param="extra_body")
    value = extra.get(FIDELITY_PARAM, payload.get(FIDELITY_PARAM))
    if value is None:
        return DEFAULT  # the contract's default, not the bots' configured one
    return check_fidelity(value)


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


def body_limit(settings: Settings) -> int:
    """The largest request body: the image cap inflated by base64 (4/3), plus JSON overhead."""
    return 4 * math.ceil(settings.image_max_input_bytes / 3) + _BODY_OVERHEAD


def body_cost(request: web.Request, limit: int) -> int:
    """The memory a body takes at most while read, parsed and its image decoded: the bytes, the
    decoded text, the URL string and the image, about four times what arrives."""
    declared = request.content_length
    return 4 * (limit if declared is None else min(declared, limit))


@dataclass(frozen=True, slots=True)
class BodyDeadlines:
    """How long a body may pause (`idle`) and take in all (`total`), in seconds."""

    idle: float
    total: float


async def read_json(request: web.Request, limit: int, deadlines: BodyDeadlines) -> Any:
    """The body as JSON (strict: `NaN` and `Infinity` are not JSON); 413 past `limit` bytes,
    refused by its `Content-Length` before any of it is read; 408 when it stalls or drips."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    body = await _read_body(request, limit, deadlines)
    check_structure(body)
    try:
        if len(body) > _THREAD_THRESHOLD:
            return await asyncio.to_thread(_loads, body)
        return _loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "The request body is not valid JSON.") from None


async def _read_body(request: web.Request, limit: int, deadlines: BodyDeadlines) -> bytearray:
    body = bytearray()
    try:
        async with asyncio.timeout(deadlines.total):
            while True:
                async with asyncio.timeout(deadlines.idle):
                    chunk = await request.content.readany()
                if not chunk:
                    return body
                body += chunk
                if len(body) > limit:
                    raise _too_large(limit)
    except TimeoutError:
        raise ApiError(
            408,
            "The request body did not arrive in time.",
            code="request_timeout",
            headers={"Connection": "close"},
        ) from None


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is too large: at most {limit} bytes are accepted.",
        code="request_too_large",
        headers={"Connection": "close"},
    )


def check_structure(body: bytes | bytearray) -> None:
    """Refuse, before parsing, JSON with more values or containers than a request can need.

    Parsing `[{},{},...]` of 60 MB builds 20 million objects (1.4 GB); 100,000 nested arrays
    exhaust the parser's recursion. Counting the structural characters outside strings costs a
    few passes over the bytes and nothing else: a request has a few dozen of them. Nesting is
    bounded too, since it can never exceed the number of containers.
    """
    values = containers = 0
    position = 0
    for string in _STRING.finditer(body):
        containers += _count(body, _CONTAINERS, position, string.start())
        values += _count(body, _SEPARATORS, position, string.start()) + 1
        position = string.end()
        if containers > MAX_CONTAINERS or values > MAX_VALUES:
            break
    else:
        containers += _count(body, _CONTAINERS, position, len(body))
        values += _count(body, _SEPARATORS, position, len(body))
    if containers > MAX_CONTAINERS or values > MAX_VALUES:
        raise ApiError(
            400,
            f"The request body has too many JSON values (at most {MAX_VALUES}, "
            f"{MAX_CONTAINERS} objects and arrays).",
            code="request_too_complex",
        )


def _count(body: bytes | bytearray, characters: tuple[bytes, ...], start: int, end: int) -> int:
    return sum(body.count(c, start, end) for c in characters)


def _loads(body: bytes | bytearray) -> Any:
    return json.loads(body, parse_constant=_no_constants)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
