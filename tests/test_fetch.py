"""`download_image` against a real local HTTP server: caps, types, statuses, redirects, timeouts."""

from __future__ import annotations

import socket

import httpx
import pytest

from core.errors import (
    ForbiddenUrlError,
    ResultExpiredError,
    ResultInvalidError,
    ResultTooLargeError,
    UpstreamRateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from core.fetch import download_image
from core.http import http_client
from core.netguard import AddressPolicy
from tests.upstream_fakes import FakeFile, FakeUpstream, sample_jpeg, sample_png

CAP = 100_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (sample_png(), "image/png"),
        (sample_jpeg(), "image/jpeg"),
        (sample_png(), "application/octet-stream"),
        (sample_jpeg(), "image/jpeg; charset=binary"),
    ],
    ids=["png", "jpeg", "octet-stream", "type-with-parameters"],
)
async def test_downloads_an_image(
    upstream: FakeUpstream, client: httpx.AsyncClient, data: bytes, content_type: str
) -> None:
    url = upstream.add_file(FakeFile(data, content_type))
    assert await download_image(client, url, max_bytes=CAP) == data


async def test_body_exactly_at_the_cap_is_accepted(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    data = sample_png()
    url = upstream.add_file(FakeFile(data, chunked=True))
    assert await download_image(client, url, max_bytes=len(data)) == data
    with pytest.raises(ResultTooLargeError):
        await download_image(client, url, max_bytes=len(data) - 1)


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/x.png", "file:///etc/passwd", "javascript:alert(1)", "/relative.png", ""],
)
async def test_only_http_urls(client: httpx.AsyncClient, url: str) -> None:
    with pytest.raises(ResultInvalidError):
        await download_image(client, url, max_bytes=CAP)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, ResultExpiredError),
        (410, ResultExpiredError),
        (403, ResultExpiredError),
        (400, ResultInvalidError),
        (429, UpstreamRateLimitedError),
        (500, UpstreamUnavailableError),
        (503, UpstreamUnavailableError),
    ],
)
async def test_status_mapping(
    upstream: FakeUpstream, client: httpx.AsyncClient, status: int, error: type[Exception]
) -> None:
    url = upstream.add_file(FakeFile(sample_png(), status=status))
    with pytest.raises(error):
        await download_image(client, url, max_bytes=CAP)


async def test_rate_limit_carries_retry_after(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    url = upstream.add_file(FakeFile(status=429, headers={"Retry-After": "4"}))
    with pytest.raises(UpstreamRateLimitedError) as caught:
        await download_image(client, url, max_bytes=CAP)
    assert caught.value.params["retry_after"] == 4.0


@pytest.mark.parametrize(
    "file",
    [
        FakeFile(b"<html>login</html>", "text/html"),
        FakeFile(sample_png(), "text/html"),
        FakeFile(sample_png(), "application/json"),
        FakeFile(b"GIF? no. just text", "image/png"),
        FakeFile(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        FakeFile(b"", "image/png"),
    ],
    ids=["html", "png-as-html", "png-as-json", "garbage-as-png", "svg", "empty"],
)
async def test_not_an_image(
    upstream: FakeUpstream, client: httpx.AsyncClient, file: FakeFile
) -> None:
    url = upstream.add_file(file)
    with pytest.raises(ResultInvalidError):
        await download_image(client, url, max_bytes=CAP)


async def test_too_large_by_content_length_reads_no_body(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    # The server announces the length and then stalls: only a check of the header returns.
    url = upstream.add_file(FakeFile(b"", declared_length=CAP * 10, hang_after=True))
    with pytest.raises(ResultTooLargeError):
        await download_image(client, url, max_bytes=CAP)


async def test_too_large_streamed_stops_at_the_cap(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    # Chunked, no length, and the body never ends: reading it all would time out instead.
    body = sample_png()[:16] + bytes(CAP * 5)
    url = upstream.add_file(FakeFile(body, chunked=True, hang_after=True), name="big.png")
    with pytest.raises(ResultTooLargeError):
        await download_image(client, url, max_bytes=CAP)


async def test_follows_redirects_manually(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    final = upstream.add_file(FakeFile(sample_png()), name="final.png")
    hop = upstream.add_file(FakeFile(status=302, location="/files/final.png"), name="hop")
    start = upstream.add_file(FakeFile(status=301, location=hop), name="start")
    assert await download_image(client, start, max_bytes=CAP) == sample_png()
    assert [r.path for r in upstream.file_requests] == [
        "/files/start",
        "/files/hop",
        "/files/final.png",
    ]
    assert final.endswith("/files/final.png")


async def test_too_many_redirects(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    upstream.add_file(FakeFile(status=302, location="/files/loop"), name="loop")
    with pytest.raises(ResultInvalidError, match="redirects"):
        await download_image(client, upstream.file_url("loop"), max_bytes=CAP, max_redirects=3)
    assert len(upstream.file_requests) == 4


async def test_redirect_to_another_scheme_is_refused(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    url = upstream.add_file(FakeFile(status=302, location="file:///etc/passwd"))
    with pytest.raises(ResultInvalidError):
        await download_image(client, url, max_bytes=CAP)


async def test_the_policy_vets_every_hop(upstream: FakeUpstream, client: httpx.AsyncClient) -> None:
    port = httpx.URL(upstream.base_url).port
    inner = f"http://127.0.0.2:{port}/files/inner"
    url = upstream.add_file(FakeFile(status=307, location=inner))
    policy = AddressPolicy.trusting(upstream.base_url)
    with pytest.raises(ForbiddenUrlError):
        await download_image(client, url, max_bytes=CAP, policy=policy)
    assert len(upstream.file_requests) == 1


async def test_client_timeout(upstream: FakeUpstream) -> None:
    url = upstream.add_file(FakeFile(hang_before=True))
    async with http_client(0.2) as http:
        with pytest.raises(UpstreamTimeoutError):
            await download_image(http, url, max_bytes=CAP)


async def test_overall_deadline_beats_a_dripping_server(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    # Headers and some bytes arrive, then nothing: the per-read timeout (2 s) is not what ends it.
    url = upstream.add_file(FakeFile(sample_png()[:20], declared_length=1000, hang_after=True))
    with pytest.raises(UpstreamTimeoutError):
        await download_image(client, url, max_bytes=CAP, timeout=0.2)


async def test_connection_refused(client: httpx.AsyncClient) -> None:
    with pytest.raises(UpstreamUnavailableError):
        await download_image(client, f"http://127.0.0.1:{free_port()}/x.png", max_bytes=CAP)


async def test_errors_never_show_the_url_path_or_query(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.add_file(FakeFile(status=404), name="secret-path")
    url = upstream.file_url("secret-path") + "?Signature=TOPSECRET&Expires=1"
    with pytest.raises(ResultExpiredError) as caught:
        await download_image(client, url, max_bytes=CAP)
    text = f"{caught.value} {caught.value.params}"
    assert "TOPSECRET" not in text
    assert "secret-path" not in text
    assert upstream.url in text
