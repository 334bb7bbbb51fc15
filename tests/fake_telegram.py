"""A fake Telegram Bot API server on 127.0.0.1 for end-to-end tests with real python-telegram-bot.

    async with FakeTelegram() as fake:
        app = (ApplicationBuilder().token(fake.token)
               .base_url(fake.base_url).base_file_url(fake.base_file_url).build())
        alice = User(1001, "Alice", username="alice")
        fake.send_photo(1001, alice, jpeg_bytes, caption="fidelity 0.3")   # queued for getUpdates
        ...                                                                # run the bot
        [call] = await fake.wait_for("sendPhoto")
        assert fake.sent_to(1001)[-1].data == expected_bytes

The fake keeps what Telegram keeps: chats, messages (ids increasing per chat), files, the update
queue (real long polling with `offset`, `timeout` and `allowed_updates`), callback queries and
commands. It enforces the limits a real bot trips over (message and caption length, 64-byte
callback data, photo size and dimensions, HTML/MarkdownV2 parse errors, "message is not
modified", unknown chats), so a test fails here the way production would. Every request is
recorded as a `Call`; waiting is done on a change signal, never by sleeping or polling.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import itertools
import json
import mimetypes
import re
import time
import warnings
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from html.parser import HTMLParser
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image

from tests.fake_telegram_limits import FloodControl, TelegramLimits, TooManyRequests

__all__ = ["TelegramLimits"]  # re-exported: part of the fake's interface

JSON = dict[str, Any]

ALBUM_MAX_ITEMS = 10
"""What one album (media group) holds at most, sent or received."""
DEFAULT_TOKEN = "123456:TEST-token-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
DEFAULT_USERNAME = "RetouchTestBot"
#: Pseudo method name under which file downloads (`GET /file/bot<token>/<path>`) are recorded;
#: fault injection accepts it like any API method.
DOWNLOAD = "download"

MAX_TEXT = 4096  # UTF-16 code units, after entity parsing
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64  # bytes
MAX_PHOTO_UPLOAD = 10 * 1024 * 1024
MAX_UPLOAD = 50 * 1024 * 1024
MAX_DOWNLOAD = 20 * 1024 * 1024  # the cloud Bot API's getFile limit
THUMBNAIL_EDGES = (90, 320, 800)

CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Form fields whose value is JSON; every other field is a string, an integer or a boolean.
JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "reply_parameters",
        "media",
        "commands",
        "allowed_updates",
        "entities",
        "caption_entities",
        "scope",
        "link_preview_options",
        "message_ids",
    }
)
# Fields that stay strings even when they look like numbers or booleans.
STRING_FIELDS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "file_id",
        "url",
        "secret_token",
        "action",
        "language_code",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
        "photo",
        "document",
        "video",
        "sticker",
        "animation",
        "audio",
        "voice",
        "emoji",
        "title",
        "description",
        "short_description",
        "name",
    }
)
INLINE_BUTTON_ACTIONS = frozenset(
    {
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    }
)
MEDIA_KINDS = ("photo", "document", "video", "sticker", "animation", "audio", "voice")
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class User:
    """A Telegram user that the tests impersonate."""

    id: int
    first_name: str = "Test"
    username: str | None = None
    last_name: str | None = None
    language_code: str | None = "en"
    is_bot: bool = False

    def to_dict(self) -> JSON:
        data: JSON = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data


@dataclass(frozen=True)
class UploadedFile:
    """One multipart file part of a request: its part name, file name, content type and bytes."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(eq=False)
class Call:
    """One HTTP request the fake received, with JSON-encoded fields decoded."""

    method: str
    params: JSON
    files: dict[str, UploadedFile]
    token_in_path: str
    headers: dict[str, str]
    http_method: str
    path: str
    time: float = field(default_factory=time.monotonic)
    status: int | None = None  # the HTTP status answered; None while pending or hanging
    response: Any = None  # the JSON (or text) answered

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")

    def file(self, reference: str) -> UploadedFile | None:
        """The uploaded part a parameter refers to, by part name or `attach://<name>`."""
        return self.files.get(reference.removeprefix("attach://"))


@dataclass(eq=False)
class StoredFile:
    """A file the fake's "cloud" holds, downloadable through getFile and the file route."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    kind: str
    file_name: str | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None


@dataclass(eq=False)
class ChatMessage:
    """One message of a chat as Telegram holds it now: edits applied, deletion flagged."""

    message: JSON
    from_bot: bool
    data: bytes | None = None  # the media bytes (the largest photo size, the document, ...)
    call: Call | None = None  # the call that created it, for the bot's messages
    upload: UploadedFile | None = None  # the uploaded part, when the bot uploaded bytes
    deleted: bool = False
    history: list[JSON] = field(default_factory=list)  # earlier versions, oldest first
    edits: list[Call] = field(default_factory=list)

    @property
    def message_id(self) -> int:
        return int(self.message["message_id"])

    @property
    def chat_id(self) -> int:
        return int(self.message["chat"]["id"])

    @property
    def kind(self) -> str:
        if "text" in self.message:
            return "text"
        return next((kind for kind in MEDIA_KINDS if kind in self.message), "other")

    @property
    def text(self) -> str | None:
        return self.message.get("text")

    @property
    def caption(self) -> str | None:
        return self.message.get("caption")

    @property
    def reply_to_message_id(self) -> int | None:
        reply = self.message.get("reply_to_message")
        return int(reply["message_id"]) if reply else None

    @property
    def reply_markup(self) -> JSON | None:
        return self.message.get("reply_markup")

    @property
    def callback_data(self) -> list[str]:
        """Every callback_data of the inline keyboard, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [b["callback_data"] for row in rows for b in row if "callback_data" in b]

    @property
    def media_group_id(self) -> str | None:
        return self.message.get("media_group_id")

    @property
    def file_name(self) -> str | None:
        name = self.message.get("document", {}).get("file_name")
        return str(name) if name is not None else None

    @property
    def mime_type(self) -> str | None:
        media = self.message.get("document") or self.message.get("video") or {}
        mime = media.get("mime_type")
        return str(mime) if mime is not None else None

    @property
    def edited(self) -> bool:
        return bool(self.history)


@dataclass(eq=False)
class Fault:
    """A scripted misbehaviour for the next calls of one method."""

    mode: str  # "error", "drop", "hang" or "garble"
    status: int = 500
    description: str | None = None
    retry_after: int | None = None
    remaining: int = 1


@dataclass(eq=False)
class WebhookDelivery:
    """One attempt to push an update to the bot's webhook."""

    update: JSON
    status: int | None
    error: str | None
    headers: dict[str, str]
    time: float = field(default_factory=time.monotonic)


class ApiError(Exception):
    """A Bot API error answer: HTTP status, description, optional `parameters`."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSON:
        body: JSON = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


class _Signal:
    """A broadcast "something changed" signal that synchronous code can fire.

    Waiters re-check their predicate on each change, so nothing sleeps or polls.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float | None,  # noqa: ASYNC109 - a deadline for the predicate, by design
    ) -> bool:
        """True once `predicate()` holds, False if `timeout` seconds pass first."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._event.wait()
        except TimeoutError:
            return predicate()
        return True


# --------------------------------------------------------------------------- text helpers


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's offsets and limits."""
    return len(text.encode("utf-16-le")) // 2


_COMMAND_RE = re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_MENTION_RE = re.compile(r"(?<![\w@/])@[A-Za-z0-9_]{5,32}")


def compute_entities(text: str) -> list[JSON]:
    """The bot_command and mention entities Telegram's clients attach, with UTF-16 offsets."""
    found: list[tuple[int, int, str]] = []
    for match in _COMMAND_RE.finditer(text):
        found.append((match.start(), match.end(), "bot_command"))
    for match in _MENTION_RE.finditer(text):
        found.append((match.start(), match.end(), "mention"))
    found.sort()
    return [
        {"type": kind, "offset": utf16_len(text[:start]), "length": utf16_len(text[start:end])}
        for start, end, kind in found
    ]


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


class _TelegramHTML(HTMLParser):
    """Telegram's HTML parse mode: the supported tags only, properly nested."""

    ALLOWED = frozenset(
        {
            "b",
            "strong",
            "i",
            "em",
            "u",
            "ins",
            "s",
            "strike",
            "del",
            "span",
            "tg-spoiler",
            "a",
            "code",
            "pre",
            "blockquote",
            "tg-emoji",
        }
    )

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.out: list[str] = []
        self.stack: list[str] = []

    def _offset(self) -> int:
        line, column = self.getpos()
        return _byte_offset(self.source, self.line_starts[line - 1] + column)

    def _error(self, what: str) -> ApiError:
        return bad_request(f"can't parse entities: {what} at byte offset {self._offset()}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.ALLOWED or (tag == "span" and ("class", "tg-spoiler") not in attrs):
            raise self._error(f'Unsupported start tag "{tag}"')
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise self._error(f'Unsupported start tag "{tag}"')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise self._error(f'Unmatched end tag "{tag}"')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.out.append(data)

    def plain(self) -> str:
        self.feed(self.source)
        self.close()
        if self.stack:
            raise bad_request(
                f"can't parse entities: Can't find end tag corresponding to start tag "
                f'"{self.stack[-1]}"'
            )
        return "".join(self.out)


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "*": "Bold",
    "_": "Italic",
    "__": "Underline",
    "~": "Strikethrough",
    "||": "Spoiler",
    "[": "TextUrl",
}


def _markdown_v2_plain(text: str) -> str:
    """Telegram's MarkdownV2: plain text, or the error Telegram gives for unescaped characters."""
    out: list[str] = []
    stack: list[tuple[str, int]] = []
    i, n = 0, len(text)

    def unclosed(name: str, start: int) -> ApiError:
        return bad_request(
            f"can't parse entities: Can't find end of {name} entity at byte offset "
            f"{_byte_offset(text, start)}"
        )

    def toggle(mark: str) -> None:
        if stack and stack[-1][0] == mark:
            stack.pop()
        elif any(open_mark == mark for open_mark, _ in stack):
            start = next(s for m, s in stack if m == mark)
            raise unclosed(_MDV2_NAMES[mark], start)
        else:
            stack.append((mark, i))

    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.append(text[i + 1])
            i += 2
        elif char == "`":
            fence = "```" if text.startswith("```", i) else "`"
            j, body = i + len(fence), []
            while j < n and not text.startswith(fence, j):
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                body.append(text[j])
                j += 1
            if j >= n:
                raise unclosed("Pre" if fence == "```" else "Code", i)
            content = "".join(body)
            if fence == "```" and "\n" in content:
                first, rest = content.split("\n", 1)
                content = rest if first and " " not in first else content
            out.append(content)
            i = j + len(fence)
        elif char in "*~":
            toggle(char)
            i += 1
        elif char == "_":
            mark = "__" if text.startswith("__", i) else "_"
            toggle(mark)
            i += len(mark)
        elif char == "|" and text.startswith("||", i):
            toggle("||")
            i += 2
        elif char == "[":
            stack.append(("[", i))
            i += 1
        elif char == "]" and stack and stack[-1][0] == "[" and text.startswith("(", i + 1):
            stack.pop()
            j = i + 2
            while j < n and text[j] != ")":
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise unclosed("TextUrl", i)
            i = j + 1
        elif char == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1
        elif char in _MDV2_RESERVED:
            raise bad_request(
                f"can't parse entities: Character '{char}' is reserved and must be escaped "
                "with the preceding '\\'"
            )
        else:
            out.append(char)
            i += 1
    if stack:
        mark, start = stack[-1]
        raise unclosed(_MDV2_NAMES[mark], start)
    return "".join(out)


def _markdown_plain(text: str) -> str:
    """Telegram's legacy Markdown: `*`, `_`, backticks and links must be closed."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            i += 2
            continue
        closer = {"*": "*", "_": "_", "`": "`", "[": "]"}.get(char)
        if closer is None:
            out.append(char)
            i += 1
            continue
        fence = "```" if text.startswith("```", i) else char
        end = text.find(fence if fence == "```" else closer, i + len(fence))
        if end < 0:
            raise bad_request(
                "can't parse entities: Can't find end of the entity starting at byte offset "
                f"{_byte_offset(text, i)}"
            )
        out.append(text[i + len(fence) : end])
        i = end + len(fence)
        if char == "[" and text.startswith("(", i):
            close = text.find(")", i)
            i = close + 1 if close >= 0 else n
    return "".join(out)


def render_text(text: str, parse_mode: str | None) -> str:
    """The plain text Telegram shows for `text` in `parse_mode`, or its parse error."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return _TelegramHTML(text).plain()
    if mode == "markdownv2":
        return _markdown_v2_plain(text)
    if mode == "markdown":
        return _markdown_plain(text)
    if mode:
        raise bad_request(f"unsupported parse_mode {parse_mode}")
    return text


# --------------------------------------------------------------------------- image helpers


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height read from the header, or None when Pillow cannot open the bytes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Exception:
        return None


def thumbnails(data: bytes) -> list[tuple[int, int, bytes]]:
    """Downscaled JPEG versions for the PhotoSize list, smallest first (as Telegram orders)."""
    size = image_size(data)
    if size is None or size[0] * size[1] > 40_000_000:
        return []
    result: list[tuple[int, int, bytes]] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                edges = [edge for edge in THUMBNAIL_EDGES if max(size) > edge]
                if not edges:
                    return []
                image.draft("RGB", (edges[-1], edges[-1]))  # JPEG: decode at a reduced scale
                full = image.convert("RGB")
            for edge in edges:
                small = full.copy()
                small.thumbnail((edge, edge))
                buffer = io.BytesIO()
                small.save(buffer, format="JPEG", quality=80)
                result.append((small.width, small.height, buffer.getvalue()))
    except Exception:
        return []
    return result


@cache
def sticker_webp() -> bytes:
    """A small real WebP image, the default sticker content."""
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 64), (250, 200, 40, 255)).save(buffer, format="WEBP")
    return buffer.getvalue()


def check_photo_upload(data: bytes) -> None:
    """Refuse a photo the way the Bot API does: size, decodability, dimensions."""
    if not data:
        raise bad_request("file must be non-empty")
    if len(data) > MAX_PHOTO_UPLOAD:
        raise bad_request("PHOTO_SAVE_FILE_INVALID")
    size = image_size(data)
    if size is None:
        raise bad_request("IMAGE_PROCESS_FAILED")
    width, height = size
    if width + height > 10_000 or max(width, height) > 20 * max(1, min(width, height)):
        raise bad_request("PHOTO_INVALID_DIMENSIONS")


# --------------------------------------------------------------------------- the server


Handler = Callable[[Call], Awaitable[Any]]


class FakeTelegram:
    """The fake Bot API: start with `async with`, point PTB at `base_url` / `base_file_url`."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        username: str = DEFAULT_USERNAME,
        first_name: str = "Retouch Test Bot",
        bot_id: int | None = None,
        can_join_groups: bool = True,
        can_read_all_group_messages: bool = False,
        supports_inline_queries: bool = False,
        strict_chats: bool = True,
        host: str = "127.0.0.1",
        enforce_limits: bool = True,
        limits: TelegramLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`strict_chats`: sending to a chat no user ever wrote in fails as on Telegram.

        `enforce_limits`: Telegram's flood limits (`limits`, by default the published ones) are
        enforced on the `clock` (seconds; a test may pass a fake one); with False they are only
        counted.
        """
        self.token = token
        prefix = token.split(":", 1)[0]
        self.bot_user: JSON = {
            "id": bot_id if bot_id is not None else int(prefix) if prefix.isdigit() else 1,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
            "can_join_groups": can_join_groups,
            "can_read_all_group_messages": can_read_all_group_messages,
            "supports_inline_queries": supports_inline_queries,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.strict_chats = strict_chats
        self.host = host
        self.limits = limits or TelegramLimits()
        self.clock = clock
        self.flood = FloodControl(self.limits, clock, self._is_group_chat, enforce=enforce_limits)

        self.calls: list[Call] = []
        self.chats: dict[int, JSON] = {}
        self.files: dict[str, StoredFile] = {}
        self.commands: dict[tuple[str, str], list[JSON]] = {}
        self.callback_answers: dict[str, JSON] = {}
        self.webhook: JSON | None = None
        self.webhook_deliveries: list[WebhookDelivery] = []

        self._messages: dict[int, list[ChatMessage]] = defaultdict(list)
        self._by_id: dict[tuple[int, int], ChatMessage] = {}
        self._next_message_id: dict[int, int] = defaultdict(lambda: 1)
        self._updates: deque[JSON] = deque()
        self._next_update_id = 10_000
        self._allowed_updates: set[str] | None = None
        self._poll_generation = 0
        self._callback_queries: dict[str, bool] = {}  # id -> answered
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._blocked: set[int] = set()
        self._counter = itertools.count(1)
        self._signal = _Signal()
        self._closing = asyncio.Event()
        self._webhook_ready = True
        self._webhook_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        # Imported here: they build on this module's records and errors.
        from tests.fake_telegram_chats import ChatMembers
        from tests.fake_telegram_payments import StarsPayments

        self.members = ChatMembers(self)
        self.stars = StarsPayments(self)
        self._handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "logOut": self._true,
            "close": self._true,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getFile": self._get_file,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "sendMediaGroup": self._send_media_group,
            "sendChatAction": self._send_chat_action,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "editMessageMedia": self._edit_message_media,
            "deleteMessage": self._delete_message,
            "deleteMessages": self._delete_messages,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            **self.members.handlers(),
            **self.stars.handlers(),
        }
        self._method_names = {name.lower(): name for name in self._handlers}

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> FakeTelegram:
        app = web.Application(client_max_size=MAX_UPLOAD + 8 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._handle_download)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release long polls and hanging calls, then stop the server."""
        self._closing.set()
        self._signal.fire()
        if self._webhook_task is not None:
            self._webhook_task.cancel()  # it may be stuck in a POST to an unresponsive bot
            await asyncio.gather(self._webhook_task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started; use `async with FakeTelegram()`")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """PTB's `base_url`: the token is appended to it."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """PTB's `base_file_url`: the token is appended to it."""
        return f"{self.url}/file/bot"

    @property
    def username(self) -> str:
        return str(self.bot_user["username"])

    # ------------------------------------------------------------------ inspection

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10,  # noqa: ASYNC109 - part of the test-facing API
    ) -> None:
        """Wait until `predicate()` holds, re-checked on every change; AssertionError on timeout."""
        if not await self._signal.wait_until(predicate, timeout):
            seen = ", ".join(call.method for call in self.calls[-20:])
            raise AssertionError(f"condition not met within {timeout}s; last calls: {seen}")

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10,  # noqa: ASYNC109 - part of the test-facing API
        predicate: Callable[[Call], bool] | None = None,
        *,
        answered: bool = False,
    ) -> list[Call]:
        """The first `count` calls of `method` (matching `predicate`), once they have arrived.

        With `answered=True`, only calls the fake has already answered count.
        """

        def matching() -> list[Call]:
            return [
                call
                for call in self.calls_to(method)
                if (predicate is None or predicate(call)) and (call.answered or not answered)
            ]

        try:
            await self.wait_until(lambda: len(matching()) >= count, timeout)
        except AssertionError:
            seen = sorted({call.method for call in self.calls})
            raise AssertionError(
                f"timed out after {timeout}s waiting for {count} {method} call(s); "
                f"got {len(matching())}; methods seen: {seen}"
            ) from None
        return matching()[:count]

    def history(self, chat_id: int) -> list[ChatMessage]:
        """Every message of a chat, the users' and the bot's, in order."""
        return list(self._messages.get(chat_id, []))

    def sent_to(self, chat_id: int, *, include_deleted: bool = True) -> list[ChatMessage]:
        """The messages the bot sent to a chat, in order (album items one by one)."""
        return [
            m
            for m in self._messages.get(chat_id, [])
            if m.from_bot and (include_deleted or not m.deleted)
        ]

    def message(self, chat_id: int, message_id: int) -> ChatMessage | None:
        return self._by_id.get((chat_id, message_id))

    def chat_actions(self, chat_id: int) -> list[str]:
        return [
            str(call.params.get("action"))
            for call in self.calls_to("sendChatAction")
            if call.chat_id == chat_id and call.ok
        ]

    @property
    def pending_updates(self) -> list[JSON]:
        """Updates queued and not yet confirmed by an `offset`."""
        return list(self._updates)

    async def wait_consumed(self, timeout: float = 10) -> None:  # noqa: ASYNC109
        """Wait until the bot has fetched and confirmed every queued update."""
        await self.wait_until(lambda: not self._updates, timeout)

    def flood_stats(self) -> dict[str, Any]:
        """What the flood limits saw: `calls` (all), `sending_calls`, `too_many_requests`,
        `calls_during_flood_wait`, `messages_by_chat` ({chat_id: messages delivered}) and
        `messages` (their sum)."""
        return self.flood.snapshot(len(self.calls))

    def assert_token_never_in(self, texts: Iterable[str]) -> None:
        """Fail if the token (or its secret half) occurs in any of the texts, without echoing it."""
        secret = self.token.split(":", 1)[-1]
        for index, text in enumerate(texts):
            if self.token in text or (len(secret) >= 8 and secret in text):
                raise AssertionError(f"the bot token occurs in text #{index}")

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 3,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` with an error (429 carries retry_after)."""
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after}"
                if status == 429
                else DEFAULT_DESCRIPTIONS.get(status, "Internal Server Error")
            )
        self._faults[method].append(
            Fault(
                "error",
                status=status,
                description=description,
                retry_after=retry_after if status == 429 else None,
                remaining=times,
            )
        )

    def fail_upload_next(
        self,
        method: str,
        *,
        drop: bool = False,
        status: int = 500,
        description: str = "Internal Server Error",
        times: int = 1,
    ) -> None:
        """After reading the whole body, answer an error or (`drop=True`) close the connection."""
        mode = "drop" if drop else "error"
        self._faults[method].append(Fault(mode, status, description, remaining=times))

    def hang_next(self, method: str, *, times: int = 1) -> None:
        """Never answer the next calls of `method`; the connection drops when the fake closes."""
        self._faults[method].append(Fault("hang", remaining=times))

    def garble_next(self, method: str, *, times: int = 1) -> None:
        """Answer 200 with a body that is not JSON."""
        self._faults[method].append(Fault("garble", status=200, remaining=times))

    def block(self, chat_id: int) -> None:
        """The user blocked the bot (private) or the bot was kicked (group): sends get 403."""
        self._blocked.add(chat_id)

    # ------------------------------------------------------------------ simulating users

    def add_chat(
        self,
        chat_id: int,
        *,
        chat_type: str | None = None,
        title: str | None = None,
        user: User | None = None,
    ) -> JSON:
        """Register a chat (the users' builders do this on first use) and return its object."""
        if chat_id in self.chats:
            return self.chats[chat_id]
        if chat_type is None:
            if chat_id > 0:
                chat_type = "private"
            else:
                chat_type = "supergroup" if str(chat_id).startswith("-100") else "group"
        chat: JSON = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            person = user or User(chat_id)
            chat["first_name"] = person.first_name
            if person.last_name:
                chat["last_name"] = person.last_name
            if person.username:
                chat["username"] = person.username
        else:
            chat["title"] = title or f"Test {chat_type} {abs(chat_id)}"
        self.chats[chat_id] = chat
        return chat

    def add_file(
        self,
        data: bytes,
        *,
        kind: str = "photo",
        file_name: str | None = None,
        mime_type: str | None = None,
    ) -> str:
        """Store bytes in the fake's cloud and return their new file_id."""
        size = image_size(data) if kind == "photo" else None
        stored = self._store_file(
            data, kind=kind, file_name=file_name, mime_type=mime_type, size=size
        )
        return stored.file_id

    def enqueue_update(self, body: JSON) -> JSON:
        """Queue any update body (e.g. `{"my_chat_member": {...}}`); an update_id is added."""
        self._next_update_id += 1
        update = {"update_id": self._next_update_id, **copy.deepcopy(body)}
        self._updates.append(update)
        self._webhook_ready = True
        self._signal.fire()
        return update

    def send_text(
        self,
        chat_id: int,
        user: User | int,
        text: str,
        *,
        chat_type: str | None = None,
        reply_to: JSON | ChatMessage | int | None = None,
        entities: list[JSON] | None = None,
    ) -> JSON:
        """A user sends text; bot_command and mention entities are computed like a client does."""
        content: JSON = {"text": text}
        found = compute_entities(text) if entities is None else entities
        if found:
            content["entities"] = found
        return self._user_message(chat_id, user, chat_type, reply_to, content)

    def send_photo(
        self,
        chat_id: int,
        user: User | int,
        data: bytes,
        caption: str | None = None,
        *,
        chat_type: str | None = None,
        media_group_id: str | None = None,
        reply_to: JSON | ChatMessage | int | None = None,
    ) -> JSON:
        """A user sends a photo: PhotoSize list of real thumbnails, the original bytes largest."""
        content: JSON = {"photo": self._photo_sizes(data, thumbnails(data))}
        self._add_caption(content, caption)
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        return self._user_message(chat_id, user, chat_type, reply_to, content, data)

    def send_document(
        self,
        chat_id: int,
        user: User | int,
        data: bytes,
        file_name: str = "image.jpg",
        mime_type: str | None = None,
        caption: str | None = None,
        *,
        chat_type: str | None = None,
        media_group_id: str | None = None,
        reply_to: JSON | ChatMessage | int | None = None,
    ) -> JSON:
        """A user sends a file; the MIME type defaults to a guess from the name, as clients do."""
        mime_type = mime_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        stored = self._store_file(data, kind="document", file_name=file_name, mime_type=mime_type)
        content: JSON = {"document": self._document(stored)}
        self._add_caption(content, caption)
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        return self._user_message(chat_id, user, chat_type, reply_to, content, data)

    def send_album(
        self,
        chat_id: int,
        user: User | int,
        images: Sequence[bytes],
        caption: str | None = None,
        *,
        chat_type: str | None = None,
    ) -> list[JSON]:
        """A user sends photos as one album: one update each, one media_group_id, caption first.
        Telegram's apps send 2 to 10 items as one album, never more."""
        if not 2 <= len(images) <= ALBUM_MAX_ITEMS:
            raise ValueError(f"an album holds 2 to {ALBUM_MAX_ITEMS} items, not {len(images)}")
        group_id = str(13_000_000_000_000_000 + next(self._counter))
        return [
            self.send_photo(
                chat_id,
                user,
                data,
                caption if index == 0 else None,
                chat_type=chat_type,
                media_group_id=group_id,
            )
            for index, data in enumerate(images)
        ]

    def send_sticker(
        self,
        chat_id: int,
        user: User | int,
        emoji: str = "🙂",
        *,
        data: bytes | None = None,
        chat_type: str | None = None,
        reply_to: JSON | ChatMessage | int | None = None,
    ) -> JSON:
        data = data if data is not None else sticker_webp()
        stored = self._store_file(data, kind="sticker", file_name=None, mime_type="image/webp")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": len(data),
        }
        return self._user_message(chat_id, user, chat_type, reply_to, {"sticker": sticker}, data)

    def send_video(
        self,
        chat_id: int,
        user: User | int,
        data: bytes = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",
        caption: str | None = None,
        *,
        width: int = 640,
        height: int = 360,
        duration: int = 3,
        chat_type: str | None = None,
        reply_to: JSON | ChatMessage | int | None = None,
    ) -> JSON:
        stored = self._store_file(data, kind="video", file_name="video.mp4", mime_type="video/mp4")
        video = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": width,
            "height": height,
            "duration": duration,
            "mime_type": "video/mp4",
            "file_size": len(data),
        }
        content: JSON = {"video": video}
        self._add_caption(content, caption)
        return self._user_message(chat_id, user, chat_type, reply_to, content, data)

    def press_button(
        self,
        chat_id: int,
        user: User | int,
        message: JSON | ChatMessage | int,
        data: str,
        *,
        strict: bool = True,
    ) -> str:
        """A user presses an inline button under one of the bot's messages; returns the query id.

        With `strict`, `data` must be one of the message's current buttons (as in a real client).
        """
        target = self._resolve_message(chat_id, message)
        if target is None or not target.from_bot:
            raise ValueError(f"no bot message {message!r} in chat {chat_id}")
        if strict and (target.deleted or data not in target.callback_data):
            raise ValueError(f"no button with callback_data {data!r} under that message")
        person = user if isinstance(user, User) else User(user)
        query_id = str(4_000_000_000_000 + next(self._counter))
        self._callback_queries[query_id] = False
        chat_instance = hashlib.sha256(f"{chat_id}".encode()).hexdigest()[:16]
        self.enqueue_update(
            {
                "callback_query": {
                    "id": query_id,
                    "from": person.to_dict(),
                    "message": target.message,
                    "chat_instance": str(int(chat_instance, 16)),
                    "data": data,
                }
            }
        )
        return query_id

    # ------------------------------------------------------------------ internals: state

    def _store_file(
        self,
        data: bytes,
        *,
        kind: str,
        file_name: str | None,
        mime_type: str | None,
        size: tuple[int, int] | None = None,
    ) -> StoredFile:
        number = next(self._counter)
        digest = hashlib.sha256(data).hexdigest()
        prefix = {"photo": "AgAC", "document": "BQAC", "video": "BAAC", "sticker": "CAAC"}
        file_id = f"{prefix.get(kind, 'BQAC')}{number:06d}{digest[:24]}"
        ext = "jpg" if kind == "photo" else "webp" if kind == "sticker" else "bin"
        if file_name and "." in file_name:
            ext = file_name.rsplit(".", 1)[1].lower()
        elif mime_type:
            ext = (mimetypes.guess_extension(mime_type) or f".{ext}").lstrip(".")
        stored = StoredFile(
            file_id=file_id,
            file_unique_id=f"AQAD{digest[:12]}",
            data=data,
            file_path=f"{kind}s/file_{number}.{ext}",
            kind=kind,
            file_name=file_name,
            mime_type=mime_type,
            width=size[0] if size else None,
            height=size[1] if size else None,
        )
        self.files[file_id] = stored
        return stored

    def _photo_sizes(self, data: bytes, thumbs: list[tuple[int, int, bytes]]) -> list[JSON]:
        width, height = image_size(data) or (0, 0)
        sizes = []
        for w, h, small in [*thumbs, (width, height, data)]:
            stored = self._store_file(
                small, kind="photo", file_name=None, mime_type="image/jpeg", size=(w, h)
            )
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "width": w,
                    "height": h,
                    "file_size": len(small),
                }
            )
        return sizes

    @staticmethod
    def _document(stored: StoredFile) -> JSON:
        document: JSON = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }
        if stored.file_name:
            document["file_name"] = stored.file_name
        if stored.mime_type:
            document["mime_type"] = stored.mime_type
        return document

    @staticmethod
    def _add_caption(content: JSON, caption: str | None) -> None:
        if caption is not None:
            content["caption"] = caption
            found = compute_entities(caption)
            if found:
                content["caption_entities"] = found

    def _resolve_message(
        self, chat_id: int, message: JSON | ChatMessage | int | None
    ) -> ChatMessage | None:
        if message is None:
            return None
        if isinstance(message, ChatMessage):
            return message
        message_id = message if isinstance(message, int) else int(message["message_id"])
        return self._by_id.get((chat_id, message_id))

    def _add_message(self, chat: JSON, record: ChatMessage, content: JSON, sender: JSON) -> None:
        chat_id = int(chat["id"])
        message_id = self._next_message_id[chat_id]
        self._next_message_id[chat_id] = message_id + 1
        record.message = {
            "message_id": message_id,
            "from": sender,
            "date": int(time.time()),
            "chat": chat,
            **content,
        }
        self._messages[chat_id].append(record)
        self._by_id[(chat_id, message_id)] = record

    def _user_message(
        self,
        chat_id: int,
        user: User | int,
        chat_type: str | None,
        reply_to: JSON | ChatMessage | int | None,
        content: JSON,
        data: bytes | None = None,
    ) -> JSON:
        person = user if isinstance(user, User) else User(user)
        chat = self.add_chat(chat_id, chat_type=chat_type, user=person)
        if reply_to is not None:
            target = self._resolve_message(chat_id, reply_to)
            if target is None:
                raise ValueError(f"no message {reply_to!r} in chat {chat_id} to reply to")
            content = {**content, "reply_to_message": _without_reply(target.message)}
        record = ChatMessage(message={}, from_bot=False, data=data)
        self._add_message(chat, record, content, person.to_dict())
        self.enqueue_update({"message": record.message})
        return copy.deepcopy(record.message)

    # ------------------------------------------------------------------ internals: HTTP

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return _json_response(ApiError(404, "Not Found").payload(), 404)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        raw_method = request.match_info["method"]
        method = self._method_names.get(raw_method.lower(), raw_method)
        params, files, errors = await _read_params(request)
        call = self._record(request, method, params, files)
        try:
            if call.token_in_path != self.token:
                raise ApiError(401, "Unauthorized")
            fault = self._take_fault(method)
            if fault is not None:
                return await self._misbehave(request, call, fault)
            handler = self._handlers.get(method)
            if handler is None:
                raise ApiError(404, "Not Found")
            if errors:
                raise errors[0]
            self._check_flood(call)
            result = await handler(call)
        except ApiError as error:
            return self._answer(call, error.payload(), error.status)
        return self._answer(call, {"ok": True, "result": result}, 200)

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        file_path = request.match_info["file_path"]
        call = self._record(request, DOWNLOAD, {"file_path": file_path}, {})
        if call.token_in_path != self.token:
            return self._answer(call, ApiError(401, "Unauthorized").payload(), 401)
        fault = self._take_fault(DOWNLOAD)
        if fault is not None:
            return await self._misbehave(request, call, fault)
        stored = next((f for f in self.files.values() if f.file_path == file_path), None)
        if stored is None:
            return self._answer(call, ApiError(404, "Not Found").payload(), 404)
        call.status, call.response = 200, f"<{len(stored.data)} bytes>"
        self._signal.fire()
        return web.Response(body=stored.data, content_type="application/octet-stream")

    def _record(
        self, request: web.Request, method: str, params: JSON, files: dict[str, UploadedFile]
    ) -> Call:
        call = Call(
            method=method,
            params=params,
            files=files,
            token_in_path=request.match_info.get("token", ""),
            headers=dict(request.headers),
            http_method=request.method,
            path=request.path,
        )
        self.calls.append(call)
        self._signal.fire()
        return call

    def _answer(self, call: Call, payload: JSON, status: int) -> web.Response:
        call.status, call.response = status, payload
        self._signal.fire()
        return _json_response(payload, status)

    def _check_flood(self, call: Call) -> None:
        try:
            self.flood.check(call.method, call.params)
        except TooManyRequests as refusal:
            parameters = {"retry_after": refusal.retry_after}
            raise ApiError(429, str(refusal), parameters) from None

    def _is_group_chat(self, chat_id: int) -> bool:
        chat = self.chats.get(chat_id)
        if chat is None:
            return chat_id < 0
        return chat.get("type") in ("group", "supergroup")

    def _take_fault(self, method: str) -> Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    async def _misbehave(self, request: web.Request, call: Call, fault: Fault) -> web.Response:
        if fault.mode == "hang":
            await self._closing.wait()
        if fault.mode in ("hang", "drop"):
            if request.transport is not None:
                request.transport.close()
            call.status, call.response = 0, "connection dropped"
            self._signal.fire()
            return web.Response(status=500)
        if fault.mode == "garble":
            call.status, call.response = 200, "<html>garbled</html>"
            self._signal.fire()
            return web.Response(text="<html>garbled</html>", content_type="text/html")
        parameters = {"retry_after": fault.retry_after} if fault.retry_after else None
        if fault.status == 429 and fault.retry_after:
            self.flood.announce(call.params, fault.retry_after)
        error = ApiError(fault.status, fault.description or "Internal Server Error", parameters)
        return self._answer(call, error.payload(), fault.status)

    # ------------------------------------------------------------------ internals: bot side

    def _bot_chat(self, chat_id: Any) -> JSON:
        """The chat the bot addresses, or the error Telegram answers for it."""
        if isinstance(chat_id, str):
            chat_id = int(chat_id) if re.fullmatch(r"-?\d+", chat_id) else None
        if not isinstance(chat_id, int):
            raise bad_request("chat not found")
        if chat_id in self._blocked:
            chat = self.chats.get(chat_id, {"type": "private" if chat_id > 0 else "group"})
            if chat["type"] == "private":
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            raise ApiError(403, "Forbidden: bot was kicked from the group chat")
        if chat_id not in self.chats:
            if not self.strict_chats:
                return self.add_chat(chat_id)
            if chat_id > 0:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            raise bad_request("chat not found")
        return self.chats[chat_id]

    def _reply_content(self, chat_id: int, params: JSON) -> JSON:
        reply = params.get("reply_parameters")
        if not isinstance(reply, dict):
            reply = {}
            if params.get("reply_to_message_id") is not None:
                reply = {
                    "message_id": params["reply_to_message_id"],
                    "allow_sending_without_reply": params.get("allow_sending_without_reply"),
                }
        if not reply or reply.get("message_id") is None:
            return {}
        target_chat = _as_int(reply.get("chat_id", chat_id))
        target = self._by_id.get((target_chat, _as_int(reply["message_id"])))
        if target is None or target.deleted:
            if reply.get("allow_sending_without_reply"):
                return {}
            raise bad_request("message to be replied not found")
        return {"reply_to_message": _without_reply(target.message)}

    def _bot_message(
        self, call: Call, content: JSON, *, data: bytes | None, upload: UploadedFile | None
    ) -> JSON:
        chat = self._bot_chat(call.params.get("chat_id"))
        full = {**content, **self._reply_content(int(chat["id"]), call.params)}
        markup = check_markup(call.params.get("reply_markup"))
        if markup is not None:
            full["reply_markup"] = markup
        record = ChatMessage(message={}, from_bot=True, data=data, call=call, upload=upload)
        self._add_message(chat, record, full, self.bot_user_short)
        self.flood.delivered(int(chat["id"]), 1)
        return copy.deepcopy(record.message)

    @property
    def bot_user_short(self) -> JSON:
        """The bot as the `from` of its messages."""
        keys = ("id", "is_bot", "first_name", "username")
        return {key: self.bot_user[key] for key in keys}

    def _resolve_input(
        self, call: Call, value: Any, part: str, kind: str
    ) -> tuple[bytes, UploadedFile | None, StoredFile | None]:
        """The bytes a media parameter designates: an upload, an attach:// part, or a file_id."""
        upload: UploadedFile | None = None
        if value is None:
            upload = call.files.get(part)
        elif isinstance(value, str) and value.startswith("attach://"):
            upload = call.file(value)
        elif isinstance(value, str) and value in self.files:
            stored = self.files[value]
            if stored.kind != kind and kind in ("photo", "document"):
                raise bad_request("type of file mismatch")
            return stored.data, None, stored
        else:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if upload is None:
            raise bad_request(f"there is no {kind} in the request")
        if not upload.data:
            raise bad_request("file must be non-empty")
        return upload.data, upload, None

    async def _photo_content(self, data: bytes, stored: StoredFile | None) -> JSON:
        if stored is not None:  # re-sent by file_id: Telegram answers the same sizes again
            size = (stored.width or 0, stored.height or 0)
            return {
                "photo": [
                    {
                        "file_id": stored.file_id,
                        "file_unique_id": stored.file_unique_id,
                        "width": size[0],
                        "height": size[1],
                        "file_size": len(stored.data),
                    }
                ]
            }
        check_photo_upload(data)
        thumbs = await asyncio.to_thread(thumbnails, data)
        return {"photo": self._photo_sizes(data, thumbs)}

    def _document_content(
        self, data: bytes, upload: UploadedFile | None, stored: StoredFile | None
    ) -> JSON:
        if stored is None:
            if len(data) > MAX_UPLOAD:
                raise ApiError(413, "Request Entity Too Large")
            name = upload.filename if upload else None
            mime = (mimetypes.guess_type(name)[0] if name else None) or (
                upload.content_type if upload else None
            )
            stored = self._store_file(
                data, kind="document", file_name=name, mime_type=mime or "application/octet-stream"
            )
        return {"document": self._document(stored)}

    def _caption(self, params: JSON) -> JSON:
        caption = params.get("caption")
        if caption is None:
            return {}
        plain = render_text(str(caption), params.get("parse_mode"))
        if utf16_len(plain) > MAX_CAPTION:
            raise bad_request("message caption is too long")
        return {"caption": plain} if plain else {}

    def _editable(self, params: JSON) -> ChatMessage | None:
        """The bot message an edit addresses; None for inline messages."""
        if params.get("inline_message_id"):
            return None
        chat_id = _as_int(params.get("chat_id"))
        record = self._by_id.get((chat_id, _as_int(params.get("message_id"))))
        if record is None or record.deleted:
            raise bad_request("message to edit not found")
        if not record.from_bot:
            raise bad_request("message can't be edited")
        return record

    def _apply_edit(self, record: ChatMessage, call: Call, changes: JSON) -> JSON:
        markup = check_markup(call.params.get("reply_markup"))
        new = {k: v for k, v in record.message.items() if k not in ("reply_markup", "edit_date")}
        new.update(changes)
        for key in [k for k, v in changes.items() if v is None]:
            new.pop(key)
        if markup is not None:
            new["reply_markup"] = markup
        old = {k: v for k, v in record.message.items() if k != "edit_date"}
        if new == old:
            raise bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        record.history.append(copy.deepcopy(record.message))
        record.edits.append(call)
        new["edit_date"] = int(time.time())
        record.message = new
        return copy.deepcopy(new)

    # ------------------------------------------------------------------ API methods

    async def _true(self, call: Call) -> bool:
        return True

    async def _get_me(self, call: Call) -> JSON:
        return dict(self.bot_user)

    async def _get_updates(self, call: Call) -> list[JSON]:
        if self.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        params = call.params
        offset = _as_int(params.get("offset") or 0)
        limit = min(100, max(1, _as_int(params.get("limit") or 100)))
        timeout = max(0.0, float(params.get("timeout") or 0))
        if "allowed_updates" in params:
            allowed = params["allowed_updates"]
            self._allowed_updates = set(allowed) if allowed else None
        self._confirm(offset)
        self._poll_generation += 1
        generation = self._poll_generation
        self._signal.fire()  # an older long poll of the same bot ends with 409

        def ready() -> bool:
            return (
                self._closing.is_set()
                or generation != self._poll_generation
                or bool(self._deliverable(limit))
            )

        await self._signal.wait_until(ready, timeout)
        if generation != self._poll_generation and not self._closing.is_set():
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; "
                "make sure that only one bot instance is running",
            )
        updates = self._deliverable(limit)
        return copy.deepcopy(updates)

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            while len(self._updates) > -offset:
                self._updates.popleft()
        else:
            while self._updates and self._updates[0]["update_id"] < offset:
                self._updates.popleft()
        self._signal.fire()

    def _deliverable(self, limit: int = 100) -> list[JSON]:
        allowed = self._allowed_updates
        found = [
            update
            for update in self._updates
            if allowed is None or any(key in allowed for key in update if key != "update_id")
        ]
        return found[:limit]

    async def _set_webhook(self, call: Call) -> bool:
        url = str(call.params.get("url") or "")
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        if not url:
            self.webhook = None
            return True
        if not url.startswith(("http://", "https://")):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook = {
            "url": url,
            "secret_token": call.params.get("secret_token"),
            "allowed_updates": call.params.get("allowed_updates"),
            "max_connections": call.params.get("max_connections", 40),
        }
        if call.params.get("allowed_updates") is not None:
            self._allowed_updates = set(call.params["allowed_updates"]) or None
        self._webhook_ready = True
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.create_task(self._webhook_loop())
        self._signal.fire()
        return True

    async def _delete_webhook(self, call: Call) -> bool:
        self.webhook = None
        if call.params.get("drop_pending_updates"):
            self._updates.clear()
        self._signal.fire()
        return True

    async def _get_webhook_info(self, call: Call) -> JSON:
        info: JSON = {
            "url": self.webhook["url"] if self.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook:
            info["max_connections"] = self.webhook["max_connections"]
            failures = [d for d in self.webhook_deliveries if d.status != 200]
            if failures:
                info["last_error_date"] = int(time.time())
                info["last_error_message"] = failures[-1].error or f"HTTP {failures[-1].status}"
        return info

    async def _webhook_loop(self) -> None:
        """Push queued updates to the webhook in order; after a failure, wait for a new update."""
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                await self._signal.wait_until(
                    lambda: (
                        self._closing.is_set()
                        or self.webhook is None
                        or (self._webhook_ready and bool(self._deliverable(1)))
                    ),
                    None,
                )
                if self._closing.is_set() or self.webhook is None:
                    return
                update = self._deliverable(1)[0]
                headers = {"Content-Type": "application/json"}
                if self.webhook.get("secret_token"):
                    headers["X-Telegram-Bot-Api-Secret-Token"] = str(self.webhook["secret_token"])
                status: int | None = None
                error: str | None = None
                try:
                    async with session.post(
                        self.webhook["url"], data=json.dumps(update), headers=headers
                    ) as response:
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                self.webhook_deliveries.append(WebhookDelivery(update, status, error, headers))
                if status is not None and 200 <= status < 300:
                    self._updates.remove(update)
                else:
                    self._webhook_ready = False
                self._signal.fire()

    async def _get_file(self, call: Call) -> JSON:
        stored = self.files.get(str(call.params.get("file_id", "")))
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    async def _send_message(self, call: Call) -> JSON:
        params = call.params
        text = render_text(str(params.get("text") or ""), params.get("parse_mode"))
        if not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise bad_request("message is too long")
        return self._bot_message(call, {"text": text}, data=None, upload=None)

    async def _send_photo(self, call: Call) -> JSON:
        data, upload, stored = self._resolve_input(call, call.params.get("photo"), "photo", "photo")
        self._bot_chat(call.params.get("chat_id"))
        content = {**await self._photo_content(data, stored), **self._caption(call.params)}
        return self._bot_message(call, content, data=data, upload=upload)

    async def _send_document(self, call: Call) -> JSON:
        value = call.params.get("document")
        data, upload, stored = self._resolve_input(call, value, "document", "document")
        self._bot_chat(call.params.get("chat_id"))
        content = {**self._document_content(data, upload, stored), **self._caption(call.params)}
        return self._bot_message(call, content, data=data, upload=upload)

    async def _send_media_group(self, call: Call) -> list[JSON]:
        media = call.params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= ALBUM_MAX_ITEMS:
            raise bad_request("wrong number of media items; an album takes 2 to 10")
        self._bot_chat(call.params.get("chat_id"))
        kinds = {item.get("type") for item in media if isinstance(item, dict)}
        if "document" in kinds and len(kinds) > 1:
            raise bad_request("documents can't be mixed with other media types")
        group_id = str(13_000_000_000_000_000 + next(self._counter))
        prepared: list[tuple[JSON, bytes, UploadedFile | None]] = []
        for item in media:  # validate everything before any message exists
            if not isinstance(item, dict) or item.get("type") not in ("photo", "document"):
                raise bad_request("unsupported media type in the album")
            kind = str(item["type"])
            data, upload, stored = self._resolve_input(call, item.get("media"), "", kind)
            if kind == "photo":
                content = await self._photo_content(data, stored)
            else:
                content = self._document_content(data, upload, stored)
            content.update(self._caption(item))
            content["media_group_id"] = group_id
            prepared.append((content, data, upload))
        # Every message of the album replies to the same message, as Telegram shows it.
        results = [
            self._bot_message(call, content, data=data, upload=upload)
            for content, data, upload in prepared
        ]
        return results

    async def _send_chat_action(self, call: Call) -> bool:
        self._bot_chat(call.params.get("chat_id"))
        if call.params.get("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    async def _edit_message_text(self, call: Call) -> JSON | bool:
        record = self._editable(call.params)
        text = render_text(str(call.params.get("text") or ""), call.params.get("parse_mode"))
        if not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > MAX_TEXT:
            raise bad_request("MESSAGE_TOO_LONG")
        if record is None:
            return True
        if "text" not in record.message:
            raise bad_request("there is no text in the message to edit")
        return self._apply_edit(record, call, {"text": text})

    async def _edit_message_caption(self, call: Call) -> JSON | bool:
        record = self._editable(call.params)
        caption = self._caption(call.params)
        if record is None:
            return True
        if "text" in record.message:
            raise bad_request("there is no caption in the message to edit")
        return self._apply_edit(record, call, {"caption": caption.get("caption")})

    async def _edit_message_reply_markup(self, call: Call) -> JSON | bool:
        record = self._editable(call.params)
        if record is None:
            return True
        return self._apply_edit(record, call, {})

    async def _edit_message_media(self, call: Call) -> JSON | bool:
        record = self._editable(call.params)
        item = call.params.get("media")
        if not isinstance(item, dict) or item.get("type") not in ("photo", "document"):
            raise bad_request("can't parse InputMedia JSON object")
        kind = str(item["type"])
        data, upload, stored = self._resolve_input(call, item.get("media"), "", kind)
        if kind == "photo":
            content = await self._photo_content(data, stored)
        else:
            content = self._document_content(data, upload, stored)
        if record is None:
            return True
        if "text" in record.message:
            raise bad_request("there is no media in the message to edit")
        changes: JSON = {key: None for key in MEDIA_KINDS if key in record.message}
        changes.update(content)
        changes["caption"] = self._caption(item).get("caption")
        result = self._apply_edit(record, call, changes)
        record.data, record.upload = data, upload
        return result

    async def _delete_message(self, call: Call) -> bool:
        key = (_as_int(call.params.get("chat_id")), _as_int(call.params.get("message_id")))
        record = self._by_id.get(key)
        if record is None or record.deleted:
            raise bad_request("message to delete not found")
        record.deleted = True
        return True

    async def _delete_messages(self, call: Call) -> bool:
        chat_id = _as_int(call.params.get("chat_id"))
        for message_id in call.params.get("message_ids") or []:
            record = self._by_id.get((chat_id, _as_int(message_id)))
            if record is not None:
                record.deleted = True
        return True

    async def _answer_callback_query(self, call: Call) -> bool:
        query_id = str(call.params.get("callback_query_id", ""))
        if self._callback_queries.get(query_id, True):
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        self._callback_queries[query_id] = True
        self.callback_answers[query_id] = dict(call.params)
        return True

    @staticmethod
    def _commands_key(params: JSON) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    async def _set_my_commands(self, call: Call) -> bool:
        commands = call.params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("can't parse commands JSON object")
        for command in commands:
            name = str(command.get("command", "")) if isinstance(command, dict) else ""
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("command description must be 1-256 characters")
        self.commands[self._commands_key(call.params)] = commands
        return True

    async def _get_my_commands(self, call: Call) -> list[JSON]:
        return list(self.commands.get(self._commands_key(call.params), []))

    async def _delete_my_commands(self, call: Call) -> bool:
        self.commands.pop(self._commands_key(call.params), None)
        return True


# --------------------------------------------------------------------------- module helpers


def _json_response(payload: JSON, status: int) -> web.Response:
    return web.json_response(payload, status=status)


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid integer value {value!r}") from None


def _without_reply(message: JSON) -> JSON:
    """A message as it appears in `reply_to_message`: Telegram does not nest replies further."""
    return {k: copy.deepcopy(v) for k, v in message.items() if k != "reply_to_message"}


def check_markup(markup: Any) -> JSON | None:
    """Validate an inline keyboard like Telegram and return what it echoes in the message."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return None  # reply keyboards, removals and force_reply are not echoed
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request('can\'t parse inline keyboard button: field "inline_keyboard"')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                raise bad_request("can't parse inline keyboard button: Text must be non-empty")
            if "callback_data" in button:
                size = len(str(button["callback_data"]).encode())
                if not 1 <= size <= MAX_CALLBACK_DATA:
                    raise bad_request("BUTTON_DATA_INVALID")
            elif not INLINE_BUTTON_ACTIONS & button.keys():
                raise bad_request("text buttons are unallowed in the inline keyboard")
    return markup


def _decode_value(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in JSON_FIELDS:
        return json.loads(value)
    if name in STRING_FIELDS:
        return value
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if re.fullmatch(r"-?\d+\.\d+", value):
        return float(value)
    if value in ("true", "false"):
        return value == "true"
    return value


async def _read_params(
    request: web.Request,
) -> tuple[JSON, dict[str, UploadedFile], list[ApiError]]:
    """Query, JSON, urlencoded or multipart parameters, decoded; parse problems as API errors."""
    raw: JSON = dict(request.query)
    files: dict[str, UploadedFile] = {}
    errors: list[ApiError] = []
    content_type = request.content_type
    try:
        if content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                errors.append(bad_request("parameters must be a JSON object"))
            else:
                raw.update(body)
        elif content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = UploadedFile(
                        key, value.filename, value.content_type, value.file.read()
                    )
                else:
                    raw[key] = value
        else:
            await request.read()
    except web.HTTPRequestEntityTooLarge:
        errors.append(ApiError(413, "Request Entity Too Large"))
    except (ValueError, UnicodeDecodeError):
        errors.append(bad_request("can't parse request body"))
    params: JSON = {}
    for key, value in raw.items():
        try:
            params[key] = _decode_value(key, value)
        except ValueError:
            params[key] = value
            what = "reply keyboard markup" if key == "reply_markup" else key
            errors.append(bad_request(f"can't parse {what} JSON object"))
    return params, files, errors
