"""A fake of the hosted retouch API on 127.0.0.1 with scripted faults, for tests of every layer.

    async with FakeUpstream() as upstream:
        upstream.script(RateLimited(retry_after="3"), Success())   # answers to the next two calls
        backend = ApiBackend(client, base_url=upstream.base_url, api_key=SecretStr("sk-test"))
        ...
        assert upstream.calls[0].json["model"] == "retouch"

Calls beyond the script get `upstream.default` (a `Success` with a small PNG unless changed).
Result URLs point at the fake's own `/files/<name>` route, whose behaviour a `FakeFile` describes.
Every request (completions and file downloads) is recorded with its headers and body. Hanging
answers wait on an event that only `close()` sets, so client timeouts fire without any sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import itertools
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from functools import cache
from types import TracebackType
from typing import Any

from aiohttp import web
from PIL import Image

CHUNK = 64 * 1024
CONTRACT_IMAGE_REQUIRED = "retouch模型需要图片,请在请求中包含图片"


@cache
def sample_png(width: int = 32, height: int = 24) -> bytes:
    """A small real PNG, the fake's default result."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 150, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


@cache
def sample_jpeg(width: int = 32, height: int = 24) -> bytes:
    """A small real JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 150, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


@dataclass
class RecordedRequest:
    """One request the fake received, as it arrived."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    received_at: float = field(default_factory=time.monotonic)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    def data_url(self) -> str | None:
        """The first `image_url.url` of the chat-completions body, if any."""
        try:
            for message in self.json["messages"]:
                for part in message["content"]:
                    if isinstance(part, dict) and part.get("type") == "image_url":
                        return str(part["image_url"]["url"])
        except (KeyError, TypeError):
            return None
        return None

    def image(self) -> tuple[str, bytes] | None:
        """(MIME type, bytes) decoded from a base64 data URL in the body, if there is one."""
        url = self.data_url()
        if not url or not url.startswith("data:"):
            return None
        header, _, payload = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if encoding != "base64":
            return None
        try:
            return mime or "application/octet-stream", base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return None


@dataclass
class FakeFile:
    """How `/files/<name>` answers: a body, or a fault."""

    data: bytes = b""
    content_type: str | None = "image/png"
    status: int = 200
    location: str | None = None
    """With a 3xx `status`: the redirect target."""
    declared_length: int | None = None
    """A Content-Length to announce instead of the real one (use with `hang_after`)."""
    chunked: bool = False
    hang_before: bool = False
    """Never answer at all (until the fake closes)."""
    hang_after: bool = False
    """Send headers and `data`, then stall instead of finishing the body."""
    fail_first: list[int] = field(default_factory=list)
    """Statuses to answer with, one per request, before serving normally."""
    headers: dict[str, str] = field(default_factory=dict)


class Reply:
    """One scripted answer to `POST /v1/chat/completions`."""

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        raise NotImplementedError


def completion(content: Any, model: str = "retouch") -> dict[str, Any]:
    """A success body exactly as in the contract."""
    now = int(time.time())
    return {
        "id": f"xty-{now * 1000}",
        "object": "chat.completion",
        "created": now,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def error_body(message: str, type_: str = "invalid_request_error", code: Any = None) -> Any:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class Content(Reply):
    """A 200 completion whose `choices[0].message.content` is `content` as given."""

    def __init__(self, content: Any) -> None:
        self.content = content

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        model = call.json.get("model", "retouch") if isinstance(call.json, dict) else "retouch"
        return web.json_response(completion(self.content, model))


class ResultFile(Reply):
    """A 200 completion whose result URL serves `file` from the fake's `/files/` route."""

    def __init__(self, file: FakeFile) -> None:
        self.file = file

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        return await Content(fake.add_file(self.file)).respond(fake, call)


class Success(ResultFile):
    """The normal answer: a result URL serving a real image (the fake's default PNG)."""

    def __init__(self, image: bytes | None = None, content_type: str = "image/png") -> None:
        super().__init__(FakeFile(data=image or b"", content_type=content_type))

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        if not self.file.data:
            self.file = FakeFile(data=fake.image, content_type=self.file.content_type)
        return await super().respond(fake, call)


class Echo(Reply):
    """Success whose result is the input image itself, decoded from the request's data URL."""

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        image = call.image()
        if image is None:
            return await ErrorJson(400, CONTRACT_IMAGE_REQUIRED).respond(fake, call)
        mime, data = image
        return await ResultFile(FakeFile(data=data, content_type=mime)).respond(fake, call)


class Gate(Reply):
    """Holds each answer until the test opens the gate, then echoes the input image."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.entered = 0
        self._changed = asyncio.Condition()

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        async with self._changed:
            self.entered += 1
            self._changed.notify_all()
        await self.opened.wait()
        return await Echo().respond(fake, call)

    async def wait_entered(self, count: int = 1, within: float = 30) -> None:
        """Wait until `count` requests are held at the gate."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: self.entered >= count)


class ResultMissing(ResultFile):
    """A result URL that is already gone (404, or 410)."""

    def __init__(self, status: int = 404) -> None:
        super().__init__(FakeFile(status=status, content_type="application/json"))


class ResultHtml(ResultFile):
    """A result URL serving an HTML page (a login wall, an error page)."""

    def __init__(self) -> None:
        super().__init__(FakeFile(b"<!doctype html><title>oops</title>", "text/html"))


class ResultNotImage(ResultFile):
    """A result URL that claims `image/png` but serves bytes that are no image."""

    def __init__(self) -> None:
        super().__init__(FakeFile(b"definitely not a PNG\n" * 10, "image/png"))


class ResultTooLarge(ResultFile):
    """A result over `size` bytes that never finishes: only a client that stops early returns.

    By default it announces `Content-Length: size` and sends nothing; with `chunked` it streams
    `size` bytes of a PNG-looking body without a length, then stalls.
    """

    def __init__(self, size: int, *, chunked: bool = False) -> None:
        if chunked:
            body = sample_png()[:16] + bytes(size)
            file = FakeFile(body, "image/png", chunked=True, hang_after=True)
        else:
            file = FakeFile(b"", "image/png", declared_length=size, hang_after=True)
        super().__init__(file)


class ErrorJson(Reply):
    """The contract's error JSON with any status."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = error_body(message, type, code)
        self.headers = headers or {}

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        return web.json_response(self.body, status=self.status, headers=self.headers)


class RateLimited(ErrorJson):
    """429, with a `Retry-After` header unless it is None."""

    def __init__(self, retry_after: str | None = "1", message: str = "rate limit exceeded") -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        super().__init__(429, message, "rate_limit_error", "rate_limit_exceeded", headers)


class ServerError(ErrorJson):
    """A 5xx with the contract's error JSON."""

    def __init__(self, status: int = 500, retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        super().__init__(status, "internal server error", "server_error", None, headers)


class Malformed(Reply):
    """A body that is not the contract's JSON."""

    def __init__(
        self,
        body: bytes = b'{"choices": [',
        content_type: str = "application/json",
        status: int = 200,
    ) -> None:
        self.body, self.content_type, self.status = body, content_type, status

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        return web.Response(
            body=self.body, status=self.status, headers={"Content-Type": self.content_type}
        )


class Hang(Reply):
    """Never answer (until the fake closes): a client timeout must fire."""

    async def respond(self, fake: FakeUpstream, call: RecordedRequest) -> web.StreamResponse:
        await fake.released.wait()
        return web.Response(status=503)


class FakeUpstream:
    """The fake API server; an async context manager that listens on 127.0.0.1, port 0."""

    def __init__(
        self,
        *,
        default: Reply | None = None,
        api_key: str | None = None,
        latency: float = 0.0,
        image: bytes | None = None,
    ) -> None:
        self.default: Reply = default or Success()
        self.api_key = api_key
        """When set, a completion without `Authorization: Bearer <api_key>` gets 401."""
        self.latency = latency
        """Seconds each completion takes (a real `asyncio.sleep` in the handler), 0 for none."""
        self.image = image or sample_png()
        self.requests: list[RecordedRequest] = []
        self.files: dict[str, FakeFile] = {}
        self.bytes_sent: defaultdict[str, int] = defaultdict(int)
        self.released = asyncio.Event()
        self._script: deque[Reply] = deque()
        self._names = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- scripting and inspection ---------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next completion calls, in order."""
        self._script.extend(replies)

    @property
    def base_url(self) -> str:
        """What to configure as `RETOUCH_API_BASE_URL`."""
        return f"{self.url}/v1"

    @property
    def calls(self) -> list[RecordedRequest]:
        """The chat-completions requests, in order."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def file_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith("/files/")]

    def add_file(self, file: FakeFile, name: str | None = None) -> str:
        """Serve `file` at `/files/<name>`; returns its absolute URL."""
        name = name or f"result-{next(self._names)}.bin"
        self.files[name] = file
        return self.file_url(name)

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{name}"

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/files/{name}", self._file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        self.released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- handlers -------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> RecordedRequest:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=parsed,
        )
        self.requests.append(recorded)
        return recorded

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if self.api_key is not None and call.authorization != f"Bearer {self.api_key}":
            return await ErrorJson(
                401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key"
            ).respond(self, call)
        reply = self._script.popleft() if self._script else self.default
        return await reply.respond(self, call)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        name = request.match_info["name"]
        file = self.files.get(name)
        if file is None:
            return web.json_response(error_body("file not found"), status=404)
        if file.hang_before:
            await self.released.wait()
            return web.Response(status=503)
        if file.fail_first:
            return web.Response(status=file.fail_first.pop(0), text="try again later")
        headers = dict(file.headers)
        if file.location is not None:
            headers["Location"] = file.location
        if file.content_type is not None:
            headers["Content-Type"] = file.content_type
        if file.status != 200 or not (file.chunked or file.hang_after):
            return web.Response(body=file.data, status=file.status, headers=headers)

        response = web.StreamResponse(status=file.status, headers=headers)
        if file.declared_length is not None:
            response.content_length = file.declared_length
        elif file.chunked:
            response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for start in range(0, len(file.data), CHUNK):
                piece = file.data[start : start + CHUNK]
                await response.write(piece)
                self.bytes_sent[name] += len(piece)
            if file.hang_after:
                await self.released.wait()
                return response
            await response.write_eof()
        except ConnectionError:
            pass
        return response
