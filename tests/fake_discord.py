"""A fake Discord (REST API, gateway, CDN) on 127.0.0.1 for end-to-end tests of the discord.py bot.

    async with FakeDiscord() as fake:
        fake.patch(monkeypatch)        # Route.BASE and DiscordWebSocket.DEFAULT_GATEWAY -> the fake
        client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        await client.login(fake.token)
        task = asyncio.create_task(client.connect(reconnect=False))
        ...                             # wait for on_ready, then:
        image = fake.attachment("face.jpg", jpeg_bytes)
        interaction = await fake.slash_command("retouch", {"image": image, "fidelity": 0.3})
        [followup] = await fake.wait_for(("POST", FOLLOWUP))
        assert followup.files[0].data.startswith(b"\\xff\\xd8")

discord.py quirks this fake is built around (2.7):
- A plain `Client` never asks `GET /gateway`: it dials `DiscordWebSocket.DEFAULT_GATEWAY`
  (wss://gateway.discord.gg/), so `patch()` points that at the fake too. `AutoShardedClient`
  does ask `GET /gateway/bot`. After READY it reconnects to `resume_gateway_url`.
- It connects with `?v=10&encoding=json&compress=zlib-stream` (`zstd-stream` when `zstandard` is
  installed); the fake compresses frames accordingly, or sends text when no compression is asked.
- A 429 without a `Via` header is taken for a Cloudflare ban and raised, not retried: every answer
  carries `Via: 1.1 google` as Discord's do. 5xx answers are retried after 1, 3, 5... seconds.
- Startup calls: `GET /users/@me` (login), `GET /oauth2/applications/@me`, then the gateway.
  `on_ready` fires `guild_ready_timeout` (2 s by default) after the last GUILD_CREATE.
- Every IDENTIFY but the first waits 5 s in `Client.before_identify_hook`; override it in tests.
- Interaction callbacks, follow-ups and `@original` go through `discord.webhook.async_`, which
  also builds its URLs from `Route.BASE` and sends no Authorization header.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import mimetypes
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from aiohttp import BodyPartReader, WSMsgType, web

from tests.fake_discord_limits import DiscordLimits, RateLimiter, Unlimited, Verdict

if TYPE_CHECKING:
    import pytest

JSON = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ADMINISTRATOR = 1 << 3
ALL_PERMISSIONS = (1 << 51) - 1
DEFAULT_PERMISSIONS = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)

# Channel types.
GUILD_TEXT = 0
DM = 1
PUBLIC_THREAD = 11
THREAD_TYPES = (10, 11, 12)

# Gateway intents the fake cares about.
INTENT_GUILDS = 1 << 0
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)

# Message flags.
EPHEMERAL = 1 << 6
LOADING = 1 << 7

# A message nonce (https://discord.com/developers/docs/resources/message#create-message): at
# most 25 characters; with `enforce_nonce` the same author's same nonce in a channel within the
# past few minutes returns the message it created instead of a new one.
NONCE_MAX_LENGTH = 25
NONCE_WINDOW = 5 * 60.0

# Path regexes for `fail_next` and `wait_for` (paths are relative to the API base).
CALLBACK = r"^/interactions/\d+/[^/]+/callback$"
FOLLOWUP = r"^/webhooks/\d+/[^/]+$"
ORIGINAL = r"^/webhooks/\d+/[^/]+/messages/@original$"
WEBHOOK_MESSAGE = r"^/webhooks/\d+/[^/]+/messages/\d+$"
CHANNEL_MESSAGES = r"^/channels/\d+/messages$"
GLOBAL_COMMANDS = r"^/applications/\d+/commands$"
GUILD_COMMANDS = r"^/applications/\d+/guilds/\d+/commands$"
CDN = r"^/(ephemeral-)?attachments/"


def now_iso() -> str:
    """The current time as Discord formats timestamps."""
    return datetime.now(UTC).isoformat()


class Snowflakes:
    """Increasing Discord snowflakes built from the current time, so `created_at` is realistic."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(candidate, self._last + 1)
        return self._last


class UploadedFile(NamedTuple):
    """One multipart file as the client sent it."""

    filename: str
    data: bytes
    content_type: str


@dataclass
class Call:
    """One HTTP request the fake received, and what it answered."""

    method: str
    path: str  # relative to the API base (`/channels/1/messages`), or the CDN path
    route: str  # the matched template, e.g. `/channels/{channel_id}/messages`
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None  # the JSON body, or the multipart `payload_json`
    files: list[UploadedFile] = field(default_factory=list)
    status: int = 0
    response: Any = None
    at: float = 0.0  # when it arrived, on the fake's clock

    def header(self, name: str) -> str | None:
        """A request header, looked up case-insensitively."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    @property
    def authorization(self) -> str | None:
        return self.header("Authorization")

    @property
    def token(self) -> str | None:
        """The interaction token of a webhook or callback route."""
        return self.params.get("token")


@dataclass
class Frame:
    """One gateway payload, sent (`out`) or received (`in`), with the shard it belongs to."""

    direction: str
    shard_id: int | None
    payload: JSON

    @property
    def op(self) -> int:
        return int(self.payload.get("op", -1))

    @property
    def event(self) -> str | None:
        return self.payload.get("t")

    @property
    def data(self) -> Any:
        return self.payload.get("d")


@dataclass
class ChannelSpec:
    """A channel or thread of a fake guild; `deny` holds permission bits the bot lacks in it."""

    name: str
    type: int = GUILD_TEXT
    parent: str | None = None  # the parent channel's name, for threads
    deny: int = 0
    id: int = 0


@dataclass
class GuildSpec:
    """A fake guild: its channels and what the bot's role may do guild-wide."""

    name: str = "Retouch Test Guild"
    channels: list[ChannelSpec] = field(
        default_factory=lambda: [
            ChannelSpec("general"),
            ChannelSpec("no-files", deny=ATTACH_FILES),
            ChannelSpec("retouch-thread", type=PUBLIC_THREAD, parent="general"),
        ]
    )
    bot_permissions: int = DEFAULT_PERMISSIONS
    everyone_permissions: int = DEFAULT_PERMISSIONS
    id: int = 0
    bot_role_id: int = 0

    def channel(self, name: str) -> ChannelSpec:
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(name)


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    retry_after: float
    global_: bool
    remaining: int
    body: Any


@dataclass
class _Hold:
    matches: Callable[[Call], bool]
    remaining: int
    release: asyncio.Event


@dataclass
class _Interaction:
    payload: JSON
    channel_id: int
    guild_id: int | None
    callback_type: int | None = None
    original_id: int | None = None
    message_ids: list[int] = field(default_factory=list)
    expired: bool = False


class ApiError(Exception):
    """An error answer of a REST handler, in Discord's JSON shape."""

    def __init__(self, status: int, message: str, code: int = 0, errors: JSON | None = None):
        super().__init__(message)
        self.status = status
        self.body: JSON = {"message": message, "code": code}
        if errors:
            self.body["errors"] = errors


def _unknown(what: str, code: int) -> ApiError:
    return ApiError(404, f"Unknown {what}", code)


class _Connection:
    """One gateway websocket and its (per-connection) compression stream."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None, path: str) -> None:
        self.ws = ws
        self.compress = compress
        self.path = path
        self.session: _Session | None = None
        self.client_close_code: int | None = None
        self.finished = asyncio.Event()
        self.lock = asyncio.Lock()
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._zstd: Any = None
        if compress == "zstd-stream":
            import zstandard  # only when the client has it too

            self._zstd = zstandard.ZstdCompressor().compressobj()

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason.encode())

    async def send(self, payload: JSON) -> None:
        text = json.dumps(payload)
        async with self.lock:
            if self.ws.closed:
                return
            if self._zlib is not None:
                data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(data)
            elif self._zstd is not None:
                import zstandard

                flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
                await self.ws.send_bytes(
                    self._zstd.compress(text.encode()) + self._zstd.flush(flush)
                )
            else:
                await self.ws.send_str(text)


@dataclass
class _Session:
    id: str
    shard: tuple[int, int]
    token: str
    intents: int
    connection: _Connection | None = None
    seq: int = 0
    events: list[JSON] = field(default_factory=list)
    resumable: bool = True
    ready: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_Handler = Callable[[Call], Awaitable[tuple[int, Any]]]


@dataclass
class _Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: _Handler
    kind: str  # "bot" (needs `Bot <token>`), "webhook" (must carry none), "open" (either)


class FakeDiscord:
    """Discord's REST API, gateway and attachment CDN on 127.0.0.1, recording everything.

    Drive it with `slash_command`, `message_command`, `press_button` and `dispatch`; inspect
    `calls`, `frames`, `responses_for`, `channel_messages`; inject faults with `fail_next`.
    """

    def __init__(
        self,
        token: str = "fake-discord-token",
        application_id: int = 0,
        bot_user_id: int = 0,
        *,
        guilds: Sequence[GuildSpec] | None = None,
        heartbeat_interval: int = 41250,
        shards: int = 1,
        allow_privileged_intents: bool = True,
        application_flags: int = (1 << 19) | (1 << 23),
        enforce_limits: bool = True,
        limits: DiscordLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`enforce_limits=False` is for the few tests that need no rate limit (they say why);
        `limits` (e.g. `DiscordLimits().scaled(0.02)`) and `clock` shape the ones enforced."""
        self.snowflake = Snowflakes()
        self.clock = clock
        chosen = limits or DiscordLimits()
        self.limiter = RateLimiter(chosen, clock) if enforce_limits else Unlimited(chosen, clock)
        self.token = token
        self.application_id = application_id or self.snowflake()
        self.bot_user_id = bot_user_id or self.application_id
        self.heartbeat_interval = heartbeat_interval
        self.shards = shards
        self.allow_privileged_intents = allow_privileged_intents
        self.application_flags = application_flags
        self.bot_user: JSON = {
            "id": str(self.bot_user_id),
            "username": "RetouchBot",
            "discriminator": "0",
            "global_name": None,
            "avatar": None,
            "bot": True,
            "system": False,
            "mfa_enabled": False,
            "verified": True,
            "email": None,
            "flags": 0,
            "public_flags": 0,
            "banner": None,
            "accent_color": None,
        }
        self.users: dict[int, JSON] = {self.bot_user_id: self.bot_user}
        self.owner = self.make_user("guild-owner")
        self.default_user = self.make_user("alice")
        self.guilds: list[GuildSpec] = list(guilds) if guilds is not None else [GuildSpec()]
        for guild in self.guilds:
            guild.id = guild.id or self.snowflake()
            guild.bot_role_id = guild.bot_role_id or self.snowflake()
            for channel in guild.channels:
                channel.id = channel.id or self.snowflake()
        self._joined_at = now_iso()

        self.calls: list[Call] = []
        self.frames: list[Frame] = []
        self.violations: list[tuple[Call, str]] = []
        self.errors: list[BaseException] = []
        self.commands: dict[int | None, list[JSON]] = {}
        self.messages: dict[int, JSON] = {}
        self._channel_order: dict[int, list[int]] = {}
        self._dm_channels: dict[int, JSON] = {}
        self._cdn: dict[int, UploadedFile] = {}
        self._expired_cdn: set[int] = set()
        self._interactions: dict[str, _Interaction] = {}
        self._faults: list[_Fault] = []
        self._holds: list[_Hold] = []
        self._nonces: dict[tuple[int, str, str], tuple[int, float]] = {}
        self._sessions: dict[str, _Session] = {}
        self._connections: list[_Connection] = []
        self.gateway_urls: list[str] = []  # path and query of every websocket the client opened
        self._routes: list[_Route] = []
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        # Imported here: they build on this module's records and errors.
        from tests.fake_discord_components import check_components
        from tests.fake_discord_members import MemberPermissions

        self.members = MemberPermissions(self)
        self._check_components = check_components
        self._register_routes()

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        """What `discord.http.Route.BASE` must be set to."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws"

    @property
    def resume_gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws-resume"

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point discord.py's REST base and its default gateway at this fake."""
        import discord.gateway
        import discord.http
        import yarl

        monkeypatch.setattr(discord.http.Route, "BASE", self.api_base)
        monkeypatch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(self.gateway_url + "/")
        )

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/v{version:\\d+}/{tail:.*}", self._api)
        app.router.add_get(
            "/{kind:(?:ephemeral-)?attachments}/{scope}/{id}/{filename}", self._cdn_get
        )
        app.router.add_get("/ws{tail:.*}", self._gateway)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        for connection in list(self._connections):
            await connection.close(1001, "fake shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- test data -----------------------------------------------------------------------

    @property
    def guild(self) -> GuildSpec:
        """The first configured guild."""
        return self.guilds[0]

    def channel_id(self, name: str, guild: GuildSpec | None = None) -> int:
        """The id of a configured channel or thread, by name."""
        return (guild or self.guild).channel(name).id

    def make_user(self, username: str, *, user_id: int = 0) -> JSON:
        """A human user (a member of every guild that is sent after this call)."""
        user: JSON = {
            "id": str(user_id or self.snowflake()),
            "username": username,
            "discriminator": "0",
            "global_name": username.title(),
            "avatar": None,
            "bot": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }
        self.users[int(user["id"])] = user
        return user

    def attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        channel_id: int | None = None,
    ) -> JSON:
        """Store bytes on the fake CDN and return their attachment object.

        Without `channel_id` it is an ephemeral attachment, as slash-command options carry.
        """
        return self._store_attachment(UploadedFile(filename, data, content_type or ""), channel_id)

    def expire_attachment(self, attachment: Mapping[str, Any]) -> None:
        """Make the CDN answer 404 for this attachment, as for an expired signed URL."""
        self._expired_cdn.add(int(attachment["id"]))

    def add_message(
        self,
        channel_id: int,
        author: Mapping[str, Any] | None = None,
        content: str = "",
        *,
        attachments: Iterable[tuple[str, bytes, str] | Mapping[str, Any]] = (),
        embeds: Sequence[JSON] = (),
        components: Sequence[JSON] = (),
    ) -> JSON:
        """Create a message by a user (default: alice) that commands and buttons can target."""
        stored = [
            dict(item)
            if isinstance(item, Mapping)
            else self._store_attachment(UploadedFile(*item), channel_id)
            for item in attachments
        ]
        message = self._new_message(
            channel_id,
            dict(author or self.default_user),
            {"content": content, "embeds": list(embeds), "components": list(components)},
            [],
        )
        message["attachments"] = stored
        return message

    def channel_messages(self, channel_id: int, *, ephemeral: bool = True) -> list[JSON]:
        """The messages in a channel, oldest first (deleted ones left out)."""
        return [
            self.messages[mid]
            for mid in self._channel_order.get(channel_id, [])
            if mid in self.messages and (ephemeral or not self.messages[mid]["flags"] & EPHEMERAL)
        ]

    def dm_channel_id(self, user: Mapping[str, Any]) -> int:
        """The id of the bot's DM channel with a user (created on first use)."""
        return int(self._dm_channel(user)["id"])

    # --- inspection ----------------------------------------------------------------------

    def calls_to(self, method: str, path_prefix: str) -> list[Call]:
        """Calls with this method whose path starts with the prefix."""
        return [
            c for c in self.calls if c.method == method.upper() and c.path.startswith(path_prefix)
        ]

    def responses_for(self, interaction: Mapping[str, Any]) -> list[Call]:
        """The callback, `@original` and follow-up calls of one interaction, in order."""
        return [c for c in self.calls if c.token == interaction["token"]]

    def messages_for(self, interaction: Mapping[str, Any]) -> list[JSON]:
        """The messages an interaction's responses created, as they stand now (deleted left out)."""
        state = self._interactions[interaction["token"]]
        return [self.messages[mid] for mid in state.message_ids if mid in self.messages]

    def received_frames(self, op: int | None = None) -> list[JSON]:
        """Gateway payloads the client sent, optionally of one opcode."""
        return [
            f.payload for f in self.frames if f.direction == "in" and (op is None or f.op == op)
        ]

    async def wait_for(
        self,
        what: Callable[[Call], bool] | tuple[str, str],
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - part of the test-facing API
    ) -> list[Call]:
        """Wait until `count` recorded calls match (a predicate or `(method, path_regex)`)."""
        if callable(what):
            predicate = what
        else:
            method, pattern = what
            regex = re.compile(pattern)

            def predicate(call: Call) -> bool:
                return call.method == method.upper() and (
                    bool(regex.search(call.path)) or bool(regex.search(call.route))
                )

        def matches() -> list[Call]:
            return [c for c in self.calls if predicate(c)]

        await self._wait(lambda: len(matches()) >= count, timeout, f"{count} call(s) {what!r}")
        return matches()[:count]

    async def wait_for_frame(
        self,
        what: Callable[[Frame], bool] | int,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - part of the test-facing API
    ) -> list[Frame]:
        """Wait until `count` received gateway frames match (a predicate or an opcode)."""
        if callable(what):
            predicate = what
        else:
            opcode = what

            def predicate(frame: Frame) -> bool:
                return frame.op == opcode

        def matches() -> list[Frame]:
            return [f for f in self.frames if f.direction == "in" and predicate(f)]

        await self._wait(lambda: len(matches()) >= count, timeout, f"{count} frame(s) {what!r}")
        return matches()[:count]

    async def wait_ready(self, sessions: int = 1, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until this many gateway sessions got READY and their GUILD_CREATEs."""
        await self._wait(
            lambda: sum(1 for s in self._sessions.values() if s.ready and s.connection) >= sessions,
            timeout,
            f"{sessions} ready gateway session(s)",
        )

    async def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
        assert self._changed is not None, "the fake is not started"
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(ready)
        except TimeoutError:
            seen = "\n".join(f"  {c.method} {c.path} -> {c.status}" for c in self.calls)
            raise AssertionError(f"timed out waiting for {what}; calls so far:\n{seen}") from None

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    def rate_limit_stats(self) -> dict[str, Any]:
        """Requests the limiter saw, 429s (its own and injected), requests during a wait."""
        return self.limiter.stats.as_dict()

    def assert_limits_kept(self) -> None:
        """The client met no 429 but injected ones, and sent nothing during an announced wait."""
        stats = self.limiter.stats
        refused = stats.too_many_requests - stats.injected_too_many_requests
        assert refused == 0, f"{refused} request(s) refused by the rate limits: {stats}"
        assert stats.requests_during_wait == 0, f"requests during a rate-limit wait: {stats}"

    # --- fault injection -----------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 429,
        *,
        retry_after: float = 0.01,
        global_: bool = False,
        times: int = 1,
        body: Any = None,
    ) -> None:
        """Answer the next `times` matching calls with an error instead of handling them.

        `body` overrides the JSON (or, as str/bytes, the raw text: e.g. malformed JSON).
        """
        self._faults.append(
            _Fault(
                method.upper(), re.compile(path_regex), status, retry_after, global_, times, body
            )
        )

    def hold_answers(
        self, what: Callable[[Call], bool] | tuple[str, str], *, times: int = 1
    ) -> asyncio.Event:
        """Carry out the next matching calls (a predicate or `(method, path_regex)`) but keep
        their answers until the event is set.

        The call is recorded (and `wait_for` sees it) as soon as it took effect: what a client
        killed between sending a request and reading its answer leaves behind, or a slow answer.
        """
        if callable(what):
            matches = what
        else:
            method, pattern = what[0].upper(), re.compile(what[1])

            def matches(call: Call) -> bool:
                return call.method == method and bool(pattern.search(call.path))

        hold = _Hold(matches, times, asyncio.Event())
        self._holds.append(hold)
        return hold.release

    def _take_hold(self, call: Call) -> asyncio.Event | None:
        for hold in self._holds:
            if hold.remaining > 0 and hold.matches(call):
                hold.remaining -= 1
                return hold.release
        return None

    def expire(self, interaction: Mapping[str, Any]) -> None:
        """Expire an interaction's token, as Discord does after 15 minutes."""
        self._interactions[interaction["token"]].expired = True

    def _take_fault(self, call: Call) -> _Fault | None:
        for fault in self._faults:
            if not (fault.remaining > 0 and fault.method in (call.method, "*")):
                continue
            if fault.pattern.search(call.path) or fault.pattern.search(call.route):
                fault.remaining -= 1
                return fault
        return None

    def _fault_response(self, fault: _Fault, call: Call) -> web.Response:
        headers = {"Via": "1.1 google"}
        body: Any = fault.body
        if fault.status == 429:
            self.limiter.announce(
                call.method, call.route, call.params, fault.retry_after, global_=fault.global_
            )
            headers.update(
                {
                    "Retry-After": str(max(1, int(fault.retry_after + 0.999))),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
                    "X-RateLimit-Bucket": _bucket(call.route),
                    "X-RateLimit-Scope": "global" if fault.global_ else "user",
                }
            )
            if fault.global_:
                headers["X-RateLimit-Global"] = "true"
            if body is None:
                body = {
                    "message": "You are being rate limited.",
                    "retry_after": fault.retry_after,
                    "global": fault.global_,
                }
        elif body is None:
            body = _default_error(fault.status, call.path)
        call.status = fault.status
        call.response = body
        if isinstance(body, str | bytes):
            raw = body.encode() if isinstance(body, str) else body
            return web.Response(status=fault.status, body=raw, headers=headers)
        return _json_response(body, status=fault.status, headers=headers)

    # --- gateway control -----------------------------------------------------------------

    async def dispatch(self, event: str, data: JSON, *, shard_id: int | None = None) -> None:
        """Send a DISPATCH event to the session(s) of the shard owning `data["guild_id"]`.

        Events for a disconnected but resumable session are kept and replayed on RESUME.
        """
        sessions = [s for s in self._sessions.values() if s.resumable]
        sent = False
        for session in sessions:
            index, count = session.shard
            if shard_id is not None:
                owner = shard_id
            elif data.get("guild_id"):
                owner = (int(data["guild_id"]) >> 22) % count
            else:
                owner = 0
            if owner == index:
                await self._send_dispatch(session, event, data)
                sent = True
        if not sent:
            raise RuntimeError(f"no gateway session for {event}: wait for on_ready first")

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT on every connection (the client then RESUMEs)."""
        for connection in list(self._connections):
            await self._send(connection, {"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_sessions(self, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION on every connection."""
        for connection in list(self._connections):
            if connection.session is not None and not resumable:
                connection.session.resumable = False
            await self._send(connection, {"op": 9, "d": resumable, "s": None, "t": None})

    async def drop_connections(self, code: int = 4000) -> None:
        """Close every gateway websocket from the server side, and wait until each is gone.

        Events dispatched afterwards are kept for the session and replayed when it RESUMEs.
        """
        dropped = list(self._connections)
        for connection in dropped:
            await connection.close(code, "dropped by the fake")
        async with asyncio.timeout(10):
            for connection in dropped:
                await connection.finished.wait()

    async def _send(self, connection: _Connection, payload: JSON) -> None:
        shard = connection.session.shard[0] if connection.session else None
        self.frames.append(Frame("out", shard, payload))
        await connection.send(payload)

    async def _send_dispatch(self, session: _Session, event: str, data: JSON) -> None:
        async with session.lock:
            session.seq += 1
            payload = {"op": 0, "t": event, "s": session.seq, "d": data}
            session.events.append(payload)
            if session.connection is not None:
                await self._send(session.connection, payload)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress")
        self.gateway_urls.append(str(request.rel_url))
        connection = _Connection(ws, compress, request.path)
        self._connections.append(connection)
        try:
            if request.query.get("encoding", "json") != "json":
                await ws.close(code=4002, message=b"Error while decoding payload.")
                return ws
            hello = {"heartbeat_interval": self.heartbeat_interval, "_trace": ["fake-gateway"]}
            await self._send(connection, {"op": 10, "d": hello, "s": None, "t": None})
            while True:
                message = await ws.receive()
                if message.type == WSMsgType.TEXT:
                    payload = json.loads(message.data)
                elif message.type == WSMsgType.BINARY:
                    payload = json.loads(zlib.decompress(message.data))
                else:
                    if message.type == WSMsgType.CLOSE:
                        connection.client_close_code = message.data
                    break
                shard = connection.session.shard[0] if connection.session else None
                self.frames.append(Frame("in", shard, payload))
                await self._on_frame(connection, payload)
                await self._notify()
        finally:
            self._connections.remove(connection)
            session = connection.session
            if session is not None and session.connection is connection:
                session.connection = None
                if connection.client_close_code in (1000, 1001):
                    session.resumable = False  # Discord ends a session the client closed cleanly
            connection.finished.set()
            await self._notify()
        return ws

    async def _on_frame(self, connection: _Connection, payload: JSON) -> None:
        op = payload.get("op")
        data = payload.get("d") or {}
        if op == 1:
            await self._send(connection, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(connection, data)
        elif op == 6:
            await self._resume(connection, data)
        elif connection.session is None:
            await connection.close(4003, "Not authenticated.")
        elif op == 8:
            await self._send_member_chunk(connection.session, data)
        elif op not in (3, 4):
            await connection.close(4001, "Unknown opcode.")

    async def _identify(self, connection: _Connection, data: JSON) -> None:
        if connection.session is not None:
            await connection.close(4005, "Already authenticated.")
            return
        if data.get("token") != self.token:
            await connection.close(4004, "Authentication failed.")
            return
        shard_id, shard_count = data.get("shard") or (0, 1)
        if not 0 <= shard_id < shard_count:
            await connection.close(4010, "Invalid shard.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int):
            await connection.close(4013, "Invalid intent(s).")
            return
        if intents & PRIVILEGED_INTENTS and not self.allow_privileged_intents:
            await connection.close(4014, "Disallowed intent(s).")
            return
        session = _Session(secrets.token_hex(16), (shard_id, shard_count), data["token"], intents)
        self._sessions[session.id] = session
        connection.session = session
        session.connection = connection
        guilds = [g for g in self.guilds if (g.id >> 22) % shard_count == shard_id]
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_gateway_url,
            "shard": [shard_id, shard_count],
            "application": {"id": str(self.application_id), "flags": self.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["fake"],
            "auth": {},
            "_trace": ["fake-gateway"],
        }
        await self._send_dispatch(session, "READY", ready)
        if intents & INTENT_GUILDS:
            for guild in guilds:
                await self._send_dispatch(session, "GUILD_CREATE", self.guild_payload(guild))
        session.ready = True
        await self._notify()

    async def _resume(self, connection: _Connection, data: JSON) -> None:
        session = self._sessions.get(data.get("session_id", ""))
        if session is None or not session.resumable or data.get("token") != session.token:
            await self._send(connection, {"op": 9, "d": False, "s": None, "t": None})
            return
        async with session.lock:
            if session.connection is not None:
                await session.connection.close(4000, "Session resumed elsewhere.")
            connection.session = session
            session.connection = connection
            seq = data.get("seq") or 0
            for payload in session.events:
                if payload["s"] > seq:
                    await self._send(connection, payload)
        await self._send_dispatch(session, "RESUMED", {"_trace": ["fake-gateway"]})
        await self._notify()

    async def _send_member_chunk(self, session: _Session, data: JSON) -> None:
        guild = next(g for g in self.guilds if g.id == int(data["guild_id"]))
        chunk = {
            "guild_id": str(guild.id),
            "members": self._members(guild),
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    # --- payload builders ----------------------------------------------------------------

    def _member(self, user: Mapping[str, Any], guild: GuildSpec) -> JSON:
        bot = int(user["id"]) == self.bot_user_id
        return {
            "user": dict(user),
            "roles": [str(guild.bot_role_id)] if bot else [],
            "joined_at": self._joined_at,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "banner": None,
            "premium_since": None,
            "communication_disabled_until": None,
        }

    def _members(self, guild: GuildSpec) -> list[JSON]:
        return [self._member(user, guild) for user in self.users.values()]

    def _find_channel(self, channel_id: int) -> tuple[GuildSpec, ChannelSpec] | None:
        for guild in self.guilds:
            for channel in guild.channels:
                if channel.id == channel_id:
                    return guild, channel
        return None

    def bot_permissions(self, channel_id: int) -> int:
        """What the bot may do in a channel: its role's permissions minus the channel's denies."""
        found = self._find_channel(channel_id)
        if found is None:
            return VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
        guild, channel = found
        allowed = guild.everyone_permissions | guild.bot_permissions
        if allowed & ADMINISTRATOR:
            return ALL_PERMISSIONS
        deny = channel.deny
        if channel.parent:
            deny |= guild.channel(channel.parent).deny
        return allowed & ~deny

    def channel_payload(self, guild: GuildSpec, channel: ChannelSpec, position: int = 0) -> JSON:
        """A channel or thread object as Discord sends it."""
        payload: JSON = {
            "id": str(channel.id),
            "type": channel.type,
            "guild_id": str(guild.id),
            "name": channel.name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
            "nsfw": False,
        }
        if channel.type in THREAD_TYPES:
            payload.update(
                {
                    "parent_id": str(guild.channel(channel.parent or "").id),
                    "owner_id": self.default_user["id"],
                    "message_count": 0,
                    "member_count": 2,
                    "total_message_sent": 0,
                    "thread_metadata": {
                        "archived": False,
                        "auto_archive_duration": 1440,
                        "archive_timestamp": self._joined_at,
                        "locked": False,
                        "create_timestamp": self._joined_at,
                    },
                }
            )
            return payload
        overwrites = []
        if channel.deny:
            overwrites.append(
                {"id": str(self.bot_user_id), "type": 1, "allow": "0", "deny": str(channel.deny)}
            )
        payload.update(
            {
                "position": position,
                "parent_id": None,
                "topic": None,
                "permission_overwrites": overwrites,
                "default_auto_archive_duration": 1440,
            }
        )
        return payload

    def guild_payload(self, guild: GuildSpec) -> JSON:
        """The GUILD_CREATE payload of a guild: roles, channels, threads, members incl. the bot."""
        channels = [c for c in guild.channels if c.type not in THREAD_TYPES]
        threads = [c for c in guild.channels if c.type in THREAD_TYPES]
        members = self._members(guild)
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": self.owner["id"],
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "features": [],
            "application_id": None,
            "system_channel_id": str(channels[0].id) if channels else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "roles": [
                _role(guild.id, "@everyone", guild.everyone_permissions, 0),
                {
                    **_role(guild.bot_role_id, "RetouchBot", guild.bot_permissions, 1),
                    "managed": True,
                    "tags": {"bot_id": str(self.bot_user_id)},
                },
            ],
            "emojis": [],
            "stickers": [],
            "joined_at": self._joined_at,
            "large": False,
            "lazy": True,
            "unavailable": False,
            "member_count": len(members),
            "members": members,
            "channels": [self.channel_payload(guild, c, i) for i, c in enumerate(channels)],
            "threads": [self.channel_payload(guild, c) for c in threads],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _dm_channel(self, user: Mapping[str, Any]) -> JSON:
        user_id = int(user["id"])
        if user_id not in self._dm_channels:
            self._dm_channels[user_id] = {
                "id": str(self.snowflake()),
                "type": DM,
                "last_message_id": None,
                "flags": 0,
                "recipients": [dict(user)],
            }
        return self._dm_channels[user_id]

    def _dm_by_id(self, channel_id: int) -> JSON | None:
        return next((c for c in self._dm_channels.values() if int(c["id"]) == channel_id), None)

    def _store_attachment(self, file: UploadedFile, channel_id: int | None) -> JSON:
        attachment_id = self.snowflake()
        content_type = _content_type(file.filename, file.data, file.content_type)
        self._cdn[attachment_id] = UploadedFile(file.filename, file.data, content_type)
        if channel_id is None:
            path = f"/ephemeral-attachments/{self.application_id}/{attachment_id}"
        else:
            path = f"/attachments/{channel_id}/{attachment_id}"
        expires = int(time.time()) + 24 * 3600
        signature = hashlib.sha256(f"{attachment_id}{expires}".encode()).hexdigest()
        url = (
            f"{self.base_url}{path}/{quote(file.filename)}"
            f"?ex={expires:x}&is={int(time.time()):x}&hm={signature}&"
        )
        attachment: JSON = {
            "id": str(attachment_id),
            "filename": file.filename,
            "size": len(file.data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }
        size = _image_size(file.data) if content_type.startswith("image/") else None
        if size is not None:
            attachment["width"], attachment["height"] = size
        if channel_id is None:
            attachment["ephemeral"] = True
        return attachment

    def _new_message(
        self,
        channel_id: int,
        author: JSON,
        payload: Mapping[str, Any],
        files: Sequence[UploadedFile],
        *,
        message_type: int = 0,
        flags: int = 0,
        interaction: _Interaction | None = None,
    ) -> JSON:
        message_id = self.snowflake()
        message: JSON = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "author": author,
            "content": payload.get("content") or "",
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": bool(payload.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": list(payload.get("components") or []),
            "pinned": False,
            "type": message_type,
            "flags": flags | (int(payload.get("flags") or 0) & (EPHEMERAL | 4 | 4096)),
        }
        found = self._find_channel(channel_id)
        if found is not None:
            message["guild_id"] = str(found[0].id)
        if payload.get("nonce") is not None:
            message["nonce"] = payload["nonce"]
        if interaction is not None:
            message["webhook_id"] = str(self.application_id)
            message["application_id"] = str(self.application_id)
            message["interaction_metadata"] = self._interaction_metadata(interaction)
        self._apply_content(message, payload, files, creating=True)
        self.messages[message_id] = message
        self._channel_order.setdefault(channel_id, []).append(message_id)
        return message

    def _interaction_metadata(self, interaction: _Interaction) -> JSON:
        payload = interaction.payload
        user = payload["member"]["user"] if "member" in payload else payload["user"]
        metadata: JSON = {
            "id": payload["id"],
            "type": payload["type"],
            "user": user,
            "authorizing_integration_owners": payload["authorizing_integration_owners"],
        }
        if payload["type"] == 2:
            metadata["name"] = payload["data"]["name"]
            metadata["command_type"] = payload["data"].get("type", 1)
        if interaction.original_id is not None:
            metadata["original_response_message_id"] = str(interaction.original_id)
        if payload["type"] == 3:
            metadata["interacted_message_id"] = payload["message"]["id"]
        return metadata

    def _apply_content(
        self,
        message: JSON,
        payload: Mapping[str, Any],
        files: Sequence[UploadedFile],
        *,
        creating: bool,
    ) -> None:
        """Apply message fields of a create/edit payload, attachments included, as Discord does."""
        self._check_components(payload.get("components"))
        channel_id = int(message["channel_id"])
        if not creating:
            for key in ("content", "components"):
                if key in payload and payload[key] is not None:
                    message[key] = payload[key]
            if "flags" in payload and payload["flags"] is not None:
                message["flags"] = (message["flags"] & ~4) | (int(payload["flags"]) & 4)
        if "attachments" in payload and payload["attachments"] is not None:
            kept: list[JSON] = []
            for entry in payload["attachments"]:
                entry_id = int(entry["id"])
                if entry_id < len(files):
                    uploaded = files[entry_id]
                    name = entry.get("filename") or uploaded.filename
                    stored = self._store_attachment(uploaded._replace(filename=name), channel_id)
                    if entry.get("description"):
                        stored["description"] = entry["description"]
                    kept.append(stored)
                else:
                    old = next(
                        (a for a in message["attachments"] if int(a["id"]) == entry_id), None
                    )
                    if old is not None:
                        kept.append(old)
            message["attachments"] = kept
        elif files:
            message["attachments"] = [
                *([] if creating else message["attachments"]),
                *(self._store_attachment(f, channel_id) for f in files),
            ]
        if "embeds" in payload and payload["embeds"] is not None:
            message["embeds"] = [self._embed(e, message["attachments"]) for e in payload["embeds"]]
        if not creating:
            message["edited_timestamp"] = now_iso()

    def _embed(self, embed: Mapping[str, Any], attachments: Sequence[JSON]) -> JSON:
        result = {"type": "rich", **embed}
        for key in ("image", "thumbnail"):
            media = result.get(key)
            if isinstance(media, Mapping) and str(media.get("url", "")).startswith("attachment://"):
                name = str(media["url"]).removeprefix("attachment://")
                match = next((a for a in attachments if a["filename"] == name), None)
                if match is not None:
                    result[key] = {
                        "url": match["url"],
                        "proxy_url": match["proxy_url"],
                        **{k: match[k] for k in ("width", "height") if k in match},
                    }
        return result

    # --- interactions --------------------------------------------------------------------

    def _interaction_base(
        self,
        interaction_type: int,
        *,
        user: Mapping[str, Any] | None,
        channel_id: int | None,
        dm: bool,
        locale: str,
        app_permissions: int | None,
        guild_id: int | None = None,
    ) -> tuple[JSON, _Interaction]:
        """The common part of an interaction: ids, token, channel, member or user, permissions.

        The channel is `channel_id`, else the first text channel of `guild_id` (default: the
        first guild), or the user's DM channel with `dm=True`.
        """
        user = dict(user or self.default_user)
        interaction_id = self.snowflake()
        raw_token = f"interaction:{interaction_id}:{secrets.token_urlsafe(48)}"
        token = base64.urlsafe_b64encode(raw_token.encode()).decode().rstrip("=")
        payload: JSON = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": interaction_type,
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if dm:
            channel = self._dm_channel(user)
            cid = int(channel["id"])
            payload.update(
                {
                    "channel_id": channel["id"],
                    "channel": channel,
                    "user": user,
                    "context": 1,
                    "authorizing_integration_owners": {"0": "0"},
                }
            )
            guild_id = None
        else:
            if channel_id is None:
                guild = next((g for g in self.guilds if g.id == guild_id), self.guild)
                channel_id = next(c.id for c in guild.channels if c.type == GUILD_TEXT)
            cid = channel_id
            found = self._find_channel(cid)
            if found is None:
                raise KeyError(f"no guild channel {cid}; pass dm=True for a DM")
            guild, spec = found
            guild_id = guild.id
            payload.update(
                {
                    "guild_id": str(guild.id),
                    "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
                    "guild_locale": "en-US",
                    "channel_id": str(cid),
                    "channel": {
                        **self.channel_payload(guild, spec),
                        "permissions": str(guild.everyone_permissions & ~spec.deny),
                    },
                    "member": {
                        **self._member(user, guild),
                        "permissions": str(self.members.of(user, guild)),
                    },
                    "context": 0,
                    "authorizing_integration_owners": {"0": str(guild.id)},
                }
            )
        permissions = self.bot_permissions(cid) if app_permissions is None else app_permissions
        payload["app_permissions"] = str(permissions)
        state = _Interaction(payload, cid, guild_id)
        self._interactions[token] = state
        return payload, state

    def _command_named(self, name: str, command_type: int, guild_id: int | None) -> JSON | None:
        """The synced command of that name and type (a guild's first, then the global one)."""
        for scope in (guild_id, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == command_type:
                    return command
        return None

    def _command_data(self, name: str, command_type: int, guild_id: int | None) -> JSON:
        for scope in (guild_id, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == command_type:
                    data: JSON = {"id": command["id"], "name": name, "type": command_type}
                    if scope is not None:
                        data["guild_id"] = str(scope)
                    return data
        return {"id": str(self.snowflake()), "name": name, "type": command_type}

    async def slash_command(
        self,
        name: str,
        options: Mapping[str, Any] | Sequence[JSON] | None = None,
        *,
        user: Mapping[str, Any] | None = None,
        channel_id: int | None = None,
        guild_id: int | None = None,
        dm: bool = False,
        attachments: Mapping[str | int, JSON] | None = None,
        locale: str = "en-US",
        app_permissions: int | None = None,
        dispatch: bool = True,
    ) -> JSON:
        """Build and dispatch a chat-input INTERACTION_CREATE; returns the interaction.

        `options` maps names to values (str, int, float, bool, or an attachment object from
        `attachment()`), or is a raw option list; `attachments` adds to `resolved.attachments`.
        """
        payload, state = self._interaction_base(
            2,
            user=user,
            channel_id=channel_id,
            guild_id=guild_id,
            dm=dm,
            locale=locale,
            app_permissions=app_permissions,
        )
        data = self._command_data(name, 1, state.guild_id)
        self.members.check_command(self._command_named(name, 1, state.guild_id), payload)
        resolved: dict[str, JSON] = {str(k): dict(v) for k, v in (attachments or {}).items()}
        if isinstance(options, Mapping):
            option_list = []
            for key, value in options.items():
                if isinstance(value, Mapping):
                    resolved[str(value["id"])] = dict(value)
                    option_list.append({"name": key, "type": 11, "value": str(value["id"])})
                else:
                    option_list.append({"name": key, "type": _option_type(value), "value": value})
        else:
            option_list = [dict(o) for o in options or []]
        if option_list:
            data["options"] = option_list
        if resolved:
            data["resolved"] = {"attachments": resolved}
        payload["data"] = data
        if dispatch:
            await self.dispatch("INTERACTION_CREATE", payload, shard_id=self._shard_of(state))
        return payload

    async def message_command(
        self,
        name: str,
        target_message: Mapping[str, Any],
        *,
        user: Mapping[str, Any] | None = None,
        locale: str = "en-US",
        app_permissions: int | None = None,
        dispatch: bool = True,
    ) -> JSON:
        """Build and dispatch a message context-menu INTERACTION_CREATE (data.type 3)."""
        channel_id = int(target_message["channel_id"])
        payload, state = self._interaction_base(
            2,
            user=user,
            channel_id=channel_id,
            dm=self._dm_by_id(channel_id) is not None,
            locale=locale,
            app_permissions=app_permissions,
        )
        data = self._command_data(name, 3, state.guild_id)
        self.members.check_command(self._command_named(name, 3, state.guild_id), payload)
        data["target_id"] = target_message["id"]
        data["resolved"] = {"messages": {target_message["id"]: dict(target_message)}}
        payload["data"] = data
        if dispatch:
            await self.dispatch("INTERACTION_CREATE", payload, shard_id=self._shard_of(state))
        return payload

    async def press_button(
        self,
        custom_id: str,
        message: Mapping[str, Any],
        *,
        user: Mapping[str, Any] | None = None,
        component_type: int = 2,
        values: Sequence[str] | None = None,
        locale: str = "en-US",
        app_permissions: int | None = None,
        dispatch: bool = True,
    ) -> JSON:
        """Build and dispatch a component INTERACTION_CREATE (type 3) on a message."""
        channel_id = int(message["channel_id"])
        payload, state = self._interaction_base(
            3,
            user=user,
            channel_id=channel_id,
            dm=self._dm_by_id(channel_id) is not None,
            locale=locale,
            app_permissions=app_permissions,
        )
        data: JSON = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = list(values)
        payload["data"] = data
        live = self.messages.get(int(message["id"]))
        payload["message"] = dict(live if live is not None else message)
        if dispatch:
            await self.dispatch("INTERACTION_CREATE", payload, shard_id=self._shard_of(state))
        return payload

    def _shard_of(self, state: _Interaction) -> int | None:
        return None if state.guild_id else 0

    # --- HTTP ----------------------------------------------------------------------------

    def _register_routes(self) -> None:
        bot, hook = "bot", "webhook"
        table: list[tuple[str, str, _Handler, str]] = [
            ("GET", "/gateway", self._get_gateway, "open"),
            ("GET", "/gateway/bot", self._get_gateway_bot, bot),
            ("GET", "/users/@me", self._get_me, bot),
            ("POST", "/users/@me/channels", self._create_dm, bot),
            ("GET", "/users/{user_id}", self._get_user, bot),
            ("GET", "/oauth2/applications/@me", self._get_application, bot),
            ("GET", "/applications/@me", self._get_application, bot),
            ("GET", "/applications/{application_id}/commands", self._get_commands, bot),
            ("PUT", "/applications/{application_id}/commands", self._put_commands, bot),
            ("POST", "/applications/{application_id}/commands", self._post_command, bot),
            (
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._get_commands,
                bot,
            ),
            (
                "PUT",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._put_commands,
                bot,
            ),
            (
                "POST",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._post_command,
                bot,
            ),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback, hook),
            ("POST", "/webhooks/{application_id}/{token}", self._followup, hook),
            ("GET", "/webhooks/{application_id}/{token}/messages/@original", self._hook_get, hook),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/@original",
                self._hook_edit,
                hook,
            ),
            (
                "DELETE",
                "/webhooks/{application_id}/{token}/messages/@original",
                self._hook_delete,
                hook,
            ),
            (
                "GET",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._hook_get,
                hook,
            ),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._hook_edit,
                hook,
            ),
            (
                "DELETE",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._hook_delete,
                hook,
            ),
            ("GET", "/channels/{channel_id}", self._get_channel, bot),
            ("GET", "/channels/{channel_id}/messages", self._get_messages, bot),
            ("POST", "/channels/{channel_id}/messages", self._post_message, bot),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message, bot),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message, bot),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message, bot),
            ("POST", "/channels/{channel_id}/typing", self._no_content, bot),
            (
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._no_content,
                bot,
            ),
            (
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self._no_content,
                bot,
            ),
            ("GET", "/guilds/{guild_id}", self._get_guild, bot),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, bot),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member, bot),
        ]
        for method, template, handler, kind in table:
            pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template))
            self._routes.append(_Route(method, template, re.compile(f"^{pattern}$"), handler, kind))

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            found = route.regex.match(path)
            if found and route.method == method:
                return route, found.groupdict()
        return None, {}

    async def _read_body(self, request: web.Request, call: Call) -> None:
        content_type = request.headers.get("Content-Type", "")
        if content_type.startswith("multipart/"):
            indexed: dict[int, UploadedFile] = {}
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                data = bytes(await part.read(decode=False))
                call.body += data
                if part.name == "payload_json":
                    call.json = json.loads(data)
                elif part.filename is not None:
                    index = re.fullmatch(r"files\[(\d+)\]", part.name or "")
                    key = int(index.group(1)) if index else len(indexed)
                    part_type = part.headers.get("Content-Type", "application/octet-stream")
                    indexed[key] = UploadedFile(part.filename, data, part_type)
            call.files = [indexed[k] for k in sorted(indexed)]
            return
        call.body = await request.read()
        if call.body:
            try:
                call.json = json.loads(call.body)
            except ValueError:
                raise ApiError(400, "The request body contains invalid JSON.", 50109) from None

    def _check_auth(self, call: Call, kind: str) -> ApiError | None:
        raw = call.path + "?" + "&".join(f"{k}={v}" for k, v in call.query.items())
        if self.token in raw or self.token.encode() in call.body:
            self.violations.append((call, "bot token in the URL or body"))
        if kind == "bot":
            if call.authorization != f"Bot {self.token}":
                self.violations.append((call, "bot route without 'Bot <token>'"))
                return ApiError(401, "401: Unauthorized", 0)
        elif kind != "open" and call.authorization is not None:
            self.violations.append((call, f"Authorization header on a {kind} route"))
        return None

    async def _api(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        route, params = self._match(request.method, path)
        call = Call(
            method=request.method,
            path=path,
            route=route.template if route else path,
            params=params,
            query=dict(request.query),
            headers=dict(request.headers),
            body=b"",
            at=self.clock(),
        )
        verdict: Verdict | None = None
        try:
            await self._read_body(request, call)
            error = self._check_auth(call, route.kind if route else "bot")
            if error is not None:
                raise error
            verdict = self.limiter.check(call.method, call.route, call.params)
            if verdict.refusal is not None:
                call.status, call.response = 429, verdict.refusal
                return _json_response(
                    verdict.refusal, status=429, headers={"Via": "1.1 google", **verdict.headers}
                )
            fault = self._take_fault(call)
            if fault is not None:
                return self._fault_response(fault, call)
            if route is None:
                raise ApiError(404, "404: Not Found", 0)
            call.status, call.response = await route.handler(call)
        except ApiError as exc:
            call.status, call.response = exc.status, exc.body
        except Exception as exc:
            # A bug in the fake: answer 400 (5xx would make discord.py retry for seconds).
            self.errors.append(exc)
            call.status, call.response = 400, {"message": f"fake_discord bug: {exc!r}", "code": 0}
        finally:
            self.calls.append(call)
            await self._notify()
        release = self._take_hold(call)
        if release is not None:
            await release.wait()
        headers = {"Via": "1.1 google", **(verdict.headers if verdict else {})}
        if call.response is None:
            return web.Response(status=call.status or 204, headers=headers)
        return _json_response(call.response, status=call.status, headers=headers)

    async def _cdn_get(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        call = Call(
            method="GET",
            path=request.path,
            route="/{kind}/{scope}/{attachment_id}/{filename}",
            params=dict(info),
            query=dict(request.query),
            headers=dict(request.headers),
            body=b"",
            at=self.clock(),
        )
        try:
            self._check_auth(call, "cdn")
            fault = self._take_fault(call)
            if fault is not None:
                return self._fault_response(fault, call)
            try:
                attachment_id = int(info["id"])
            except ValueError:
                attachment_id = -1
            stored = self._cdn.get(attachment_id)
            if stored is None or attachment_id in self._expired_cdn:
                call.status = 404
                return web.Response(status=404, text="This content is no longer available.")
            call.status = 200
            return web.Response(body=stored.data, content_type=stored.content_type)
        finally:
            self.calls.append(call)
            await self._notify()

    # --- REST handlers -------------------------------------------------------------------

    async def _no_content(self, call: Call) -> tuple[int, Any]:
        return 204, None

    async def _get_gateway(self, call: Call) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    async def _get_gateway_bot(self, call: Call) -> tuple[int, Any]:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return 200, {"url": self.gateway_url, "shards": self.shards, "session_start_limit": limit}

    async def _get_me(self, call: Call) -> tuple[int, Any]:
        return 200, self.bot_user

    async def _get_user(self, call: Call) -> tuple[int, Any]:
        user = self.users.get(_int(call.params["user_id"]))
        if user is None:
            raise _unknown("User", 10013)
        return 200, user

    async def _create_dm(self, call: Call) -> tuple[int, Any]:
        user = self.users.get(_int((call.json or {}).get("recipient_id")))
        if user is None:
            raise _unknown("User", 10013)
        return 200, self._dm_channel(user)

    async def _get_application(self, call: Call) -> tuple[int, Any]:
        return 200, {
            "id": str(self.application_id),
            "name": "RetouchBot",
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": self.application_flags,
            "owner": self.owner,
            "team": None,
            "hook": True,
            "bot": self.bot_user,
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "tags": [],
            "approximate_guild_count": len(self.guilds),
            "integration_types_config": {"0": {}},
        }

    def _command_scope(self, call: Call) -> int | None:
        if _int(call.params["application_id"]) != self.application_id:
            raise ApiError(403, "Missing Access", 50001)
        if "guild_id" not in call.params:
            return None
        guild_id = _int(call.params["guild_id"])
        if guild_id not in {g.id for g in self.guilds}:
            raise ApiError(403, "Missing Access", 50001)
        return guild_id

    def _command_object(self, data: Mapping[str, Any], scope: int | None, old: JSON | None) -> JSON:
        name = data.get("name")
        command_type = int(data.get("type", 1))
        description = data.get("description", "")
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            raise _invalid_form("name", "Must be between 1 and 32 in length.")
        if command_type == 1 and (name != name.lower() or not re.fullmatch(r"[-_\w]+", name)):
            raise _invalid_form("name", "Command name is invalid")
        if command_type == 1 and not 1 <= len(description) <= 100:
            raise _invalid_form("description", "Must be between 1 and 100 in length.")
        self.members.check_definition(data)
        command = {
            "id": old["id"] if old else str(self.snowflake()),
            "application_id": str(self.application_id),
            "version": str(self.snowflake()),
            "default_member_permissions": None,
            "type": command_type,
            "nsfw": False,
            "integration_types": [0],
            **data,
            "name": name,
            "description": description,
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        return command

    async def _get_commands(self, call: Call) -> tuple[int, Any]:
        return 200, self.commands.get(self._command_scope(call), [])

    async def _put_commands(self, call: Call) -> tuple[int, Any]:
        scope = self._command_scope(call)
        if not isinstance(call.json, list):
            raise _invalid_form("_root", "Must be an array.")
        existing = {(c["name"], c["type"]): c for c in self.commands.get(scope, [])}
        result: list[JSON] = []
        seen: set[tuple[str, int]] = set()
        for data in call.json:
            key = (data.get("name"), int(data.get("type", 1)))
            if key in seen:
                raise _invalid_form("_root", "Application command names must be unique")
            seen.add(key)
            result.append(self._command_object(data, scope, existing.get(key)))
        self.commands[scope] = result
        return 200, result

    async def _post_command(self, call: Call) -> tuple[int, Any]:
        scope = self._command_scope(call)
        commands = self.commands.setdefault(scope, [])
        data = call.json or {}
        key = (data.get("name"), int(data.get("type", 1)))
        old = next((c for c in commands if (c["name"], c["type"]) == key), None)
        command = self._command_object(data, scope, old)
        if old is not None:
            commands[commands.index(old)] = command
            return 200, command
        commands.append(command)
        return 201, command

    def _interaction_for(self, call: Call, *, callback: bool) -> _Interaction:
        state = self._interactions.get(call.params["token"])
        if callback:
            if (
                state is None
                or state.expired
                or state.payload["id"] != call.params["interaction_id"]
            ):
                raise _unknown("interaction", 10062)
        elif (
            state is None
            or state.expired
            or _int(call.params["application_id"]) != self.application_id
        ):
            raise _unknown("Webhook", 10015)
        return state

    def _response_type(self, state: _Interaction) -> int:
        if state.payload["type"] != 2:
            return 0
        return 23 if state.payload["data"].get("type", 1) != 1 else 20

    async def _callback(self, call: Call) -> tuple[int, Any]:
        state = self._interaction_for(call, callback=True)
        if state.callback_type is not None:
            raise ApiError(400, "Interaction has already been acknowledged.", 40060)
        body = call.json or {}
        callback_type = int(body.get("type", 0))
        data = body.get("data") or {}
        component = state.payload["type"] in (3, 5)
        valid = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}
        if callback_type not in valid.get(state.payload["type"], set()):
            raise _invalid_form("type", "Interaction response type is not valid here.")
        message: JSON | None = None
        if callback_type in (4, 5):
            flags = LOADING if callback_type == 5 else 0
            content = data if callback_type == 4 else {"flags": data.get("flags")}
            files = call.files if callback_type == 4 else []
            message = self._new_message(
                state.channel_id,
                self.bot_user,
                content,
                files,
                message_type=self._response_type(state),
                flags=flags,
                interaction=state,
            )
            state.original_id = int(message["id"])
            state.message_ids.append(state.original_id)
        elif callback_type in (6, 7) and component:
            state.original_id = int(state.payload["message"]["id"])
            target = self.messages.get(state.original_id)
            if callback_type == 7 and target is not None:
                self._apply_content(target, data, call.files, creating=False)
                message = target
        state.callback_type = callback_type
        if call.query.get("with_response") not in ("1", "true", "True"):
            return 204, None
        result: JSON = {"interaction": {"id": state.payload["id"], "type": state.payload["type"]}}
        if message is not None:
            result["interaction"].update(
                {
                    "response_message_id": message["id"],
                    "response_message_loading": callback_type == 5,
                    "response_message_ephemeral": bool(message["flags"] & EPHEMERAL),
                }
            )
            result["resource"] = {"type": callback_type, "message": message}
        else:
            result["resource"] = {"type": callback_type}
        return 200, result

    async def _followup(self, call: Call) -> tuple[int, Any]:
        state = self._interaction_for(call, callback=False)
        if state.callback_type is None:
            raise _unknown("Webhook", 10015)
        body = call.json or {}
        message = self._new_message(
            state.channel_id,
            self.bot_user,
            body,
            call.files,
            message_type=self._response_type(state) or 0,
            interaction=state,
        )
        state.message_ids.append(int(message["id"]))
        if call.query.get("wait") in ("1", "true", "True"):
            return 200, message
        return 204, None

    def _hook_message(self, call: Call, state: _Interaction) -> JSON:
        raw = call.params.get("message_id", "@original")
        message_id = state.original_id if raw == "@original" else _int(raw)
        allowed = {*state.message_ids, state.original_id}
        if message_id is None or message_id not in allowed or message_id not in self.messages:
            raise _unknown("Message", 10008)
        return self.messages[message_id]

    async def _hook_get(self, call: Call) -> tuple[int, Any]:
        state = self._interaction_for(call, callback=False)
        return 200, self._hook_message(call, state)

    async def _hook_edit(self, call: Call) -> tuple[int, Any]:
        state = self._interaction_for(call, callback=False)
        message = self._hook_message(call, state)
        loading = bool(message["flags"] & LOADING)
        self._apply_content(message, call.json or {}, call.files, creating=False)
        if loading:
            message["flags"] &= ~LOADING
            message["edited_timestamp"] = None
        return 200, message

    async def _hook_delete(self, call: Call) -> tuple[int, Any]:
        state = self._interaction_for(call, callback=False)
        message = self._hook_message(call, state)
        del self.messages[int(message["id"])]
        return 204, None

    def _channel(self, call: Call) -> tuple[int, JSON]:
        channel_id = _int(call.params["channel_id"])
        found = self._find_channel(channel_id)
        if found is not None:
            return channel_id, self.channel_payload(*found)
        dm = self._dm_by_id(channel_id)
        if dm is None:
            raise _unknown("Channel", 10003)
        return channel_id, dm

    def _require(self, channel_id: int, bits: int) -> None:
        allowed = self.bot_permissions(channel_id)
        if not allowed & VIEW_CHANNEL:
            raise ApiError(403, "Missing Access", 50001)
        if allowed & bits != bits:
            raise ApiError(403, "Missing Permissions", 50013)

    async def _get_channel(self, call: Call) -> tuple[int, Any]:
        channel_id, channel = self._channel(call)
        self._require(channel_id, VIEW_CHANNEL)
        return 200, channel

    async def _get_messages(self, call: Call) -> tuple[int, Any]:
        channel_id, _ = self._channel(call)
        self._require(channel_id, READ_MESSAGE_HISTORY)
        limit = int(call.query.get("limit", 50))
        before = _int(call.query.get("before", 1 << 63))
        after = _int(call.query.get("after", 0))
        newest_first = [
            m
            for m in reversed(self.channel_messages(channel_id, ephemeral=False))
            if after < int(m["id"]) < before
        ]
        if "after" in call.query and "before" not in call.query:
            return 200, list(reversed(newest_first))[:limit][::-1]
        return 200, newest_first[:limit]

    async def _post_message(self, call: Call) -> tuple[int, Any]:
        channel_id, channel = self._channel(call)
        body = call.json or {}
        needed = SEND_MESSAGES_IN_THREADS if channel["type"] in THREAD_TYPES else SEND_MESSAGES
        if call.files:
            needed |= ATTACH_FILES
        self._require(channel_id, needed)
        if not (body.get("content") or body.get("embeds") or call.files or body.get("components")):
            raise ApiError(400, "Cannot send an empty message", 50006)
        nonce = self._nonce_of(body)
        if nonce is not None and body.get("enforce_nonce"):
            earlier = self._nonces.get((channel_id, self.bot_user["id"], nonce))
            if earlier is not None and self.clock() - earlier[1] < NONCE_WINDOW:
                original = self.messages.get(earlier[0])
                if original is not None:
                    return 200, original  # Discord returns the message the nonce created
        message = self._new_message(channel_id, self.bot_user, body, call.files)
        if nonce is not None:
            key = (channel_id, self.bot_user["id"], nonce)
            self._nonces[key] = (int(message["id"]), self.clock())
        reference = body.get("message_reference")
        if reference:
            target = self.messages.get(_int(reference.get("message_id")))
            if target is None and reference.get("fail_if_not_exists", True):
                del self.messages[int(message["id"])]
                raise _invalid_form("message_reference", "Unknown message")
            message["type"] = 19
            message["message_reference"] = {
                "type": 0,
                "message_id": str(reference.get("message_id")),
                "channel_id": str(channel_id),
                **({"guild_id": message["guild_id"]} if "guild_id" in message else {}),
            }
            message["referenced_message"] = target
        return 200, message

    @staticmethod
    def _nonce_of(body: Mapping[str, Any]) -> str | None:
        """A message's nonce: an integer or a string of at most 25 characters."""
        nonce = body.get("nonce")
        if nonce is None:
            return None
        if isinstance(nonce, bool) or not isinstance(nonce, int | str):
            raise _invalid_form("nonce", "Must be an integer or a string.")
        if isinstance(nonce, str) and len(nonce) > NONCE_MAX_LENGTH:
            raise _invalid_form("nonce", f"Must be {NONCE_MAX_LENGTH} or fewer in length.")
        return str(nonce)

    def _channel_message(self, call: Call) -> tuple[int, JSON]:
        channel_id, _ = self._channel(call)
        message = self.messages.get(_int(call.params["message_id"]))
        if message is None or int(message["channel_id"]) != channel_id:
            raise _unknown("Message", 10008)
        return channel_id, message

    async def _get_message(self, call: Call) -> tuple[int, Any]:
        channel_id, message = self._channel_message(call)
        self._require(channel_id, READ_MESSAGE_HISTORY)
        return 200, message

    async def _edit_message(self, call: Call) -> tuple[int, Any]:
        _, message = self._channel_message(call)
        if int(message["author"]["id"]) != self.bot_user_id:
            raise ApiError(403, "Cannot edit a message authored by another user", 50005)
        self._apply_content(message, call.json or {}, call.files, creating=False)
        return 200, message

    async def _delete_message(self, call: Call) -> tuple[int, Any]:
        _, message = self._channel_message(call)
        del self.messages[int(message["id"])]
        return 204, None

    def _guild(self, call: Call) -> GuildSpec:
        guild = next((g for g in self.guilds if g.id == _int(call.params["guild_id"])), None)
        if guild is None:
            raise _unknown("Guild", 10004)
        return guild

    async def _get_guild(self, call: Call) -> tuple[int, Any]:
        payload = self.guild_payload(self._guild(call))
        for key in ("channels", "threads", "members", "presences", "voice_states", "joined_at"):
            payload.pop(key)
        return 200, payload

    async def _get_guild_channels(self, call: Call) -> tuple[int, Any]:
        guild = self._guild(call)
        return 200, [
            self.channel_payload(guild, c, i)
            for i, c in enumerate(guild.channels)
            if c.type not in THREAD_TYPES
        ]

    async def _get_member(self, call: Call) -> tuple[int, Any]:
        guild = self._guild(call)
        user = self.users.get(_int(call.params["user_id"]))
        if user is None:
            raise _unknown("Member", 10007)
        return 200, self._member(user, guild)


# --- helpers -------------------------------------------------------------------------------


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _role(role_id: int, name: str, permissions: int, position: int) -> JSON:
    return {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": str(permissions),
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def _invalid_form(field_name: str, message: str) -> ApiError:
    errors = {field_name: {"_errors": [{"code": "BASE_TYPE_INVALID", "message": message}]}}
    return ApiError(400, "Invalid Form Body", 50035, errors)


def _default_error(status: int, path: str) -> JSON:
    if status == 403:
        return {"message": "Missing Permissions", "code": 50013}
    if status == 404:
        if path.startswith("/interactions/"):
            return {"message": "Unknown interaction", "code": 10062}
        if path.startswith("/webhooks/"):
            return {"message": "Unknown Webhook", "code": 10015}
        return {"message": "Unknown Message", "code": 10008}
    if status >= 500:
        return {"message": f"{status}: Internal Server Error", "code": 0}
    return {"message": f"{status}: Error", "code": 0}


def _json_response(body: Any, status: int, headers: Mapping[str, str]) -> web.Response:
    """JSON with exactly `Content-Type: application/json`: discord.py parses nothing else."""
    data = json.dumps(body).encode()
    return web.Response(
        body=data, status=status, headers={**headers, "Content-Type": "application/json"}
    )


def _bucket(route: str) -> str:
    return hashlib.sha1(route.encode(), usedforsecurity=False).hexdigest()[:32]


def _option_type(value: Any) -> int:
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    return 3


_MAGIC = [
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF8", "image/gif"),
]


def _content_type(filename: str, data: bytes, declared: str) -> str:
    """Discord's view of a file's type: a specific declared type, else the name, else the bytes."""
    if declared and declared != "application/octet-stream":
        return declared
    guessed = mimetypes.guess_type(filename)[0]
    if guessed:
        return guessed
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return "application/octet-stream"


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None
