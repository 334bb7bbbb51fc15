"""An httpx transport over aiohttp's connection pool, for the process-wide `httpx.AsyncClient`.

httpx stays the API (timeouts, redirects, headers, cookies, errors); aiohttp moves the bytes. With
200 jobs at once against a local server, httpcore's pool and HTTP/1.1 parser cost about 5 ms of
CPU per job (a 270 KB POST and a 200 KB download) where aiohttp's cost under 2 ms. Errors come out
as the httpx exceptions httpcore would raise, so callers catch `httpx.TimeoutException` and
`httpx.TransportError` as before. One difference: httpx's write timeout becomes part of a deadline
for the whole exchange (see `handle_async_request`).

A request whose `extensions` carry an `AddressPolicy` (`ADDRESS_POLICY`) goes through a pool of
its own whose resolver checks every address before connecting (`core.netguard`), and a literal
address in its URL is checked too; a refusal raises `ForbiddenUrlError`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx

from core.logs import strip_url_queries
from core.netguard import AddressPolicy, PinningResolver

ADDRESS_POLICY = "retouch.address_policy"
"""The request extension naming the `AddressPolicy` a fetch of an untrusted URL connects by."""

_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    # Most specific first: several aiohttp errors subclass each other.
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (TimeoutError, httpx.TimeoutException),  # the whole exchange's deadline
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientError, httpx.NetworkError),
    # aiohttp refuses some requests with ValueError (a URL's credentials beside an
    # Authorization header, a newline in a header): the request is at fault, not the network.
    (ValueError, httpx.LocalProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                # aiohttp's messages, and so its exceptions, quote the URL, whose query may be
                # a signature: the chain is cut here and the message kept without queries.
                detail = strip_url_queries(str(exc)) or f"{request.method} {request.url.host}"
                raise target(f"{type(exc).__name__}: {detail}", request=request) from None
        raise  # pragma: no cover - ClientError is the last entry


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as httpx reads it; closing it returns or drops the connection."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body read to the end frees the connection for reuse; one cut short closes it.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one `aiohttp.ClientSession`, opened on first use.

    `limits.max_connections` caps open connections (0 or None: no cap) and idle ones close after
    `limits.keepalive_expiry`. httpx keeps its own cookies and decodes bodies itself, so aiohttp
    does neither.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits = httpx.Limits(),  # noqa: B008 - immutable, as in httpx itself
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._limits = limits
        self._ssl = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        self._sessions: dict[AddressPolicy | None, aiohttp.ClientSession] = {}

    def _open(self, policy: AddressPolicy | None) -> aiohttp.ClientSession:
        session = self._sessions.get(policy)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                limit_per_host=0,
                keepalive_timeout=self._limits.keepalive_expiry or 15.0,
                ssl=self._ssl,
                resolver=None if policy is None else PinningResolver(policy),
            )
            session = self._sessions[policy] = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        connect, read, pool = timeouts.get("connect"), timeouts.get("read"), timeouts.get("pool")
        parts = (connect, read, pool, timeouts.get("write"))
        timeout = aiohttp.ClientTimeout(
            # aiohttp has no per-write timeout (its read timeout starts once the body is sent),
            # so a server that stops reading an upload is caught by a deadline for the whole
            # exchange, body included: the sum of httpx's four timeouts.
            total=None if None in parts else sum(p or 0.0 for p in parts),
            # aiohttp's `connect` spans waiting for a pooled connection and opening a new one.
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect,
            sock_read=read,
        )
        data: bytes | AsyncIterator[bytes] | None
        headers = request.headers
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            data = _stream(request)
            headers = headers.copy()
            headers.pop("transfer-encoding", None)  # aiohttp chunks the body itself
        policy = request.extensions.get(ADDRESS_POLICY)
        if policy is not None:
            host, port = request.url.host, request.url.port or _DEFAULT_PORTS[request.url.scheme]
            # aiohttp connects to a literal address without asking the resolver.
            if _is_literal(host):
                policy.check_address(host, port, host)
        with _as_httpx_errors(request):
            response = await self._open(policy).request(
                request.method,
                str(request.url),
                headers=headers.multi_items(),
                data=data,
                allow_redirects=False,
                timeout=timeout,
            )
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("ascii", "replace")
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _stream(request: httpx.Request) -> AsyncIterator[bytes]:
    assert isinstance(request.stream, httpx.AsyncByteStream)
    async for chunk in request.stream:
        yield chunk
