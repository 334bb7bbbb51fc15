"""`ApiBackend` against the fake upstream over real HTTP on 127.0.0.1: contract, retries, errors."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from core.api_backend import RETRYABLE_STATUS, ApiBackend
from core.backend import RetouchBackend
from core.errors import (
    AnimatedImageError,
    FidelityError,
    ImageTooLargeError,
    NoFaceError,
    NotAnImageError,
    ResultExpiredError,
    ResultInvalidError,
    ResultTooLargeError,
    RetouchError,
    UpstreamAuthError,
    UpstreamBadResponseError,
    UpstreamRateLimitedError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from core.formats import PreparedImage
from core.http import (
    create_http_client,
    http_client,
    parse_retry_after,
    quiet_http_loggers,
    url_origin,
)
from core.settings import load_settings
from tests.upstream_fakes import (
    CONTRACT_IMAGE_REQUIRED,
    Content,
    Echo,
    ErrorJson,
    FakeFile,
    FakeUpstream,
    Hang,
    Malformed,
    RateLimited,
    ResultFile,
    ResultHtml,
    ResultMissing,
    ResultNotImage,
    ResultTooLarge,
    ServerError,
    Success,
    sample_png,
)

KEY = "sk-test-0123456789abcdefSECRET"
CAP = 200_000


class RecordingSleep:
    """Stands in for `asyncio.sleep`: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def image(portrait_bytes: bytes) -> PreparedImage:
    return PreparedImage(portrait_bytes, "jpeg", 512, 512)


def make_backend(
    client: httpx.AsyncClient, base_url: str, sleep: RecordingSleep, **options: Any
) -> ApiBackend:
    options.setdefault("max_result_bytes", CAP)
    return ApiBackend(client, base_url=base_url, api_key=SecretStr(KEY), sleep=sleep, **options)


@pytest.fixture
def backend(client: httpx.AsyncClient, upstream: FakeUpstream, sleep: RecordingSleep) -> ApiBackend:
    return make_backend(client, upstream.base_url, sleep)


# --- the request --------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["retouch", '模型 "x"', "@@retouch-image-slot-5f1c9a@@"])
def test_the_body_is_the_payload_as_json(
    client: httpx.AsyncClient, sleep: RecordingSleep, image: PreparedImage, model: str
) -> None:
    """The body is spliced around the base64 for speed; it is exactly the payload's JSON."""
    backend = make_backend(client, "http://upstream.test/v1", sleep, model=model)
    assert json.loads(backend.build_body(image, 0.3)) == backend.build_payload(image, 0.3)


@pytest.mark.parametrize("fidelity", [0.1, 0.3, 0, 1])
async def test_request_matches_the_contract(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage, fidelity: float
) -> None:
    result = await backend.retouch(image, fidelity)

    assert result == sample_png()
    [call] = upstream.calls
    assert call.method == "POST"
    assert call.path == "/v1/chat/completions"
    assert call.query == ""
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.headers["content-type"] == "application/json"
    assert call.json == {
        "model": "retouch",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a person"},
                    {"type": "image_url", "image_url": {"url": image.data_url()}},
                ],
            }
        ],
        "extra_body": {"codeformer_fidelity": float(fidelity)},
        "codeformer_fidelity": float(fidelity),
    }
    # A JSON float in both places, never a string or an integer.
    assert isinstance(call.json["extra_body"]["codeformer_fidelity"], float)
    assert isinstance(call.json["codeformer_fidelity"], float)
    assert call.image() == ("image/jpeg", image.data)


async def test_key_only_in_the_authorization_header_of_the_api_call(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage
) -> None:
    await backend.retouch(image, 0.1)
    [call, download] = upstream.requests
    assert KEY not in call.body.decode()
    others = {k: v for k, v in call.headers.items() if k != "authorization"}
    assert KEY not in json.dumps(others)
    assert KEY not in call.path + call.query
    # The result host gets no credentials at all.
    assert download.path.startswith("/files/")
    assert "authorization" not in download.headers
    assert KEY not in json.dumps(download.headers)


async def test_echo_mode_returns_the_input(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage
) -> None:
    upstream.default = Echo()
    assert await backend.retouch(image, 0.5) == image.data


async def test_model_and_base_url_are_configurable(
    client: httpx.AsyncClient, upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    backend = make_backend(client, upstream.base_url + "/", sleep, model="retouch-v2")
    await backend.retouch(image, 0.1)
    assert upstream.calls[0].path == "/v1/chat/completions"
    assert upstream.calls[0].json["model"] == "retouch-v2"


@pytest.mark.parametrize("fidelity", [-0.1, 1.5, float("nan"), "0.3"])
async def test_bad_fidelity_is_refused_before_any_call(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage, fidelity: Any
) -> None:
    with pytest.raises(FidelityError):
        await backend.retouch(image, fidelity)
    assert upstream.requests == []


# --- retries ------------------------------------------------------------------------------


async def test_429_then_success_waits_retry_after(
    backend: ApiBackend, upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    upstream.script(RateLimited(retry_after="7"), Success())
    assert await backend.retouch(image, 0.1) == sample_png()
    assert len(upstream.calls) == 2
    assert sleep.delays == [7.0]


async def test_429_without_retry_after_uses_jittered_backoff(
    backend: ApiBackend, upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    upstream.script(RateLimited(retry_after=None), RateLimited(retry_after="soon"), Success())
    await backend.retouch(image, 0.1)
    assert len(sleep.delays) == 2
    assert 0.0 <= sleep.delays[0] <= 1.0
    assert 0.0 <= sleep.delays[1] <= 2.0


async def test_retry_after_as_http_date(
    backend: ApiBackend, upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=12), usegmt=True)
    upstream.script(RateLimited(retry_after=when), Success())
    await backend.retouch(image, 0.1)
    [delay] = sleep.delays
    assert 9.0 <= delay <= 12.0


async def test_retry_after_is_capped(
    client: httpx.AsyncClient, upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    backend = make_backend(client, upstream.base_url, sleep, backoff_max=5.0)
    upstream.script(RateLimited(retry_after="3600"), ServerError(503, retry_after="2"), Success())
    await backend.retouch(image, 0.1)
    assert sleep.delays == [5.0, 2.0]


async def test_429_every_time_is_rate_limited(
    backend: ApiBackend, upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    upstream.default = RateLimited(retry_after="1")
    with pytest.raises(UpstreamRateLimitedError):
        await backend.retouch(image, 0.1)
    assert len(upstream.calls) == 4
    assert sleep.delays == [1.0, 1.0, 1.0]


async def test_repeated_500_exhausts_retries_with_jittered_backoff(
    client: httpx.AsyncClient, upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    backend = make_backend(client, upstream.base_url, sleep, backoff_base=1.0, backoff_max=3.0)
    upstream.default = ServerError(500)
    with pytest.raises(UpstreamUnavailableError) as caught:
        await backend.retouch(image, 0.1)
    assert len(upstream.calls) == 4
    assert caught.value.params["status"] == 500
    assert len(sleep.delays) == 3
    for attempt, delay in enumerate(sleep.delays, start=1):
        assert 0.0 <= delay <= min(3.0, 2 ** (attempt - 1))
    assert upstream.file_requests == []


@pytest.mark.parametrize("retries", [0, 1])
async def test_max_retries_is_respected(
    client: httpx.AsyncClient,
    upstream: FakeUpstream,
    sleep: RecordingSleep,
    image: PreparedImage,
    retries: int,
) -> None:
    backend = make_backend(client, upstream.base_url, sleep, max_retries=retries)
    upstream.default = ServerError(502)
    with pytest.raises(UpstreamUnavailableError):
        await backend.retouch(image, 0.1)
    assert len(upstream.calls) == retries + 1


async def test_5xx_then_success(
    backend: ApiBackend, upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    upstream.script(ServerError(500), ServerError(504), Success())
    assert await backend.retouch(image, 0.1) == sample_png()
    assert len(upstream.calls) == 3
    assert len(sleep.delays) == 2


async def test_non_retryable_5xx_is_not_retried(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage
) -> None:
    assert 501 not in RETRYABLE_STATUS
    upstream.script(ServerError(501))
    with pytest.raises(UpstreamUnavailableError):
        await backend.retouch(image, 0.1)
    assert len(upstream.calls) == 1


async def test_timeout_is_retried_then_reported(
    upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    upstream.default = Hang()
    async with http_client(0.2) as http:
        backend = make_backend(http, upstream.base_url, sleep, max_retries=1)
        with pytest.raises(UpstreamTimeoutError):
            await backend.retouch(image, 0.1)
    assert len(upstream.calls) == 2
    assert len(sleep.delays) == 1


async def test_timeout_then_success(
    upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    upstream.script(Hang(), Success())
    async with http_client(0.2) as http:
        backend = make_backend(http, upstream.base_url, sleep)
        assert await backend.retouch(image, 0.1) == sample_png()


async def test_connection_refused_is_unavailable(
    client: httpx.AsyncClient, sleep: RecordingSleep, image: PreparedImage
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make_backend(client, f"http://127.0.0.1:{port}/v1", sleep, max_retries=2)
    with pytest.raises(UpstreamUnavailableError):
        await backend.retouch(image, 0.1)
    assert len(sleep.delays) == 2


# --- error mapping ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_are_not_retried(
    backend: ApiBackend,
    upstream: FakeUpstream,
    sleep: RecordingSleep,
    image: PreparedImage,
    status: int,
) -> None:
    upstream.script(ErrorJson(status, "Incorrect API key provided", code="invalid_api_key"))
    with pytest.raises(UpstreamAuthError) as caught:
        await backend.retouch(image, 0.1)
    assert not caught.value.user_fault
    assert len(upstream.calls) == 1
    assert sleep.delays == []


@pytest.mark.parametrize(
    "reply",
    [
        ErrorJson(400, "no face detected", code="no_face"),
        ErrorJson(400, "未检测到人脸,请上传包含清晰人脸的图片"),
        ErrorJson(400, "No face found in the image"),
        ErrorJson(422, "Faces could not be located", code="face_not_found"),
    ],
)
async def test_no_face_is_the_users_error_and_not_retried(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage, reply: ErrorJson
) -> None:
    upstream.script(reply)
    with pytest.raises(NoFaceError) as caught:
        await backend.retouch(image, 0.1)
    assert caught.value.user_fault
    assert len(upstream.calls) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (ErrorJson(400, CONTRACT_IMAGE_REQUIRED), UpstreamRejectedError),
        (ErrorJson(400, "model retouch requires an image"), UpstreamRejectedError),
        (ErrorJson(400, "invalid image format", code="invalid_image"), NotAnImageError),
        (ErrorJson(400, "cannot decode the image"), NotAnImageError),
        (ErrorJson(400, "图片格式不支持"), NotAnImageError),
        (ErrorJson(413, "image too large, max 10MB"), ImageTooLargeError),
        (ErrorJson(400, "invalid value for temperature"), UpstreamRejectedError),
        # The codes this project's own `serve-api` answers with.
        (ErrorJson(400, "不是图片", code="not_an_image"), NotAnImageError),
        (ErrorJson(400, "animated", code="animated_image"), AnimatedImageError),
        (ErrorJson(400, "too many pixels", code="image_too_large"), ImageTooLargeError),
        (ErrorJson(404, "model not found"), UpstreamRejectedError),
        (Malformed(b"Bad Request", "text/plain", status=400), UpstreamRejectedError),
    ],
)
async def test_other_4xx_mapping_without_retry(
    backend: ApiBackend,
    upstream: FakeUpstream,
    image: PreparedImage,
    reply: ErrorJson,
    error: type[RetouchError],
) -> None:
    upstream.script(reply)
    with pytest.raises(RetouchError) as caught:
        await backend.retouch(image, 0.1)
    assert type(caught.value) is error
    assert len(upstream.calls) == 1


async def test_error_json_with_http_200_is_mapped(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage
) -> None:
    upstream.script(Malformed(json.dumps({"error": {"message": "no face in photo"}}).encode()))
    with pytest.raises(NoFaceError):
        await backend.retouch(image, 0.1)


@pytest.mark.parametrize(
    "reply",
    [
        Malformed(),
        Malformed(b"<html>502 Bad Gateway</html>", "text/html"),
        Malformed(b"[]"),
        Malformed(json.dumps({"choices": []}).encode()),
        Malformed(json.dumps({"choices": [{"message": {}}]}).encode()),
        Content(None),
        Content(""),
        Content("Here is your image!"),
        Content("ftp://files.example/x.png"),
        Content("javascript:alert(1)"),
        Content(["https://files.example/x.png"]),
    ],
)
async def test_malformed_answers_are_bad_responses_not_retried(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage, reply: Any
) -> None:
    upstream.script(reply)
    with pytest.raises(UpstreamBadResponseError):
        await backend.retouch(image, 0.1)
    assert len(upstream.calls) == 1
    assert upstream.file_requests == []


async def test_oversized_json_answer_is_a_bad_response(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage
) -> None:
    upstream.script(Malformed(b"[" + b"0," * 1_000_000 + b"0]"))
    with pytest.raises(UpstreamBadResponseError):
        await backend.retouch(image, 0.1)


# --- the result download ------------------------------------------------------------------


async def test_expired_result(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage
) -> None:
    upstream.script(ResultMissing())
    with pytest.raises(ResultExpiredError):
        await backend.retouch(image, 0.1)
    assert len(upstream.file_requests) == 1


@pytest.mark.parametrize("reply", [ResultHtml(), ResultNotImage()])
async def test_result_that_is_not_an_image(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage, reply: Any
) -> None:
    upstream.script(reply)
    with pytest.raises(ResultInvalidError):
        await backend.retouch(image, 0.1)


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_result_stops_reading(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage, chunked: bool
) -> None:
    # The body never finishes, so only a client that stops at the cap gets this error
    # (reading on would end in a timeout).
    upstream.script(ResultTooLarge(CAP * 5, chunked=chunked))
    with pytest.raises(ResultTooLargeError):
        await backend.retouch(image, 0.1)
    assert len(upstream.file_requests) == 1


async def test_result_download_is_retried_on_5xx(
    backend: ApiBackend, upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    upstream.script(ResultFile(FakeFile(sample_png(), fail_first=[503, 502])))
    assert await backend.retouch(image, 0.1) == sample_png()
    assert len(upstream.calls) == 1
    assert len(upstream.file_requests) == 3
    assert len(sleep.delays) == 2


async def test_result_download_gives_up_after_a_few_attempts(
    backend: ApiBackend, upstream: FakeUpstream, image: PreparedImage
) -> None:
    upstream.script(ResultFile(FakeFile(sample_png(), fail_first=[500] * 10)))
    with pytest.raises(UpstreamUnavailableError):
        await backend.retouch(image, 0.1)
    assert len(upstream.calls) == 1
    assert len(upstream.file_requests) == 3


async def test_result_download_timeout(
    upstream: FakeUpstream, sleep: RecordingSleep, image: PreparedImage
) -> None:
    upstream.default = ResultFile(FakeFile(hang_before=True))
    async with http_client(0.2) as http:
        backend = make_backend(http, upstream.base_url, sleep)
        with pytest.raises(UpstreamTimeoutError):
            await backend.retouch(image, 0.1)
    assert len(upstream.calls) == 1


# --- secrets ------------------------------------------------------------------------------


async def test_key_and_image_never_logged_nor_in_errors(
    backend: ApiBackend,
    upstream: FakeUpstream,
    image: PreparedImage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream.script(
        RateLimited(retry_after="1"),
        Success(),
        ErrorJson(401, f"Incorrect API key provided: {KEY}. Bearer {KEY}", code=KEY),
        ErrorJson(400, f"bad request for key sk-{KEY[8:]} and data:image/jpeg;base64,AAAA"),
        ServerError(500),
        ServerError(500),
        ServerError(500),
        ServerError(500),
        ResultMissing(),
    )
    errors: list[RetouchError] = []
    assert await backend.retouch(image, 0.1)
    for _ in range(3):
        with pytest.raises(RetouchError) as caught:
            await backend.retouch(image, 0.1)
        errors.append(caught.value)

    assert [type(e) for e in errors] == [
        UpstreamAuthError,
        UpstreamRejectedError,
        UpstreamUnavailableError,
    ]
    secrets = [KEY, KEY[8:], image.data_url()[:80], image.data_url()[-80:]]
    texts = [record.getMessage() for record in caplog.records]
    texts += [f"{e} {e.params!r} {e!r}" for e in errors]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert any(record.name == "retouch.api" for record in caplog.records)
    assert "Incorrect API key provided" in str(errors[0])


# --- wiring -------------------------------------------------------------------------------


async def test_is_a_retouch_backend_and_does_not_close_the_shared_client(
    backend: ApiBackend, client: httpx.AsyncClient
) -> None:
    assert isinstance(backend, RetouchBackend)
    assert backend.name == "api"
    await backend.aclose()
    assert not client.is_closed


async def test_from_settings_with_the_shared_client(
    upstream: FakeUpstream, image: PreparedImage
) -> None:
    settings = load_settings(
        retouch_api_key=SecretStr(KEY),
        retouch_api_base_url=upstream.base_url,
        retouch_timeout_seconds=5,
    )
    async with create_http_client(settings) as http:
        backend = ApiBackend.from_settings(settings, http)
        assert await backend.retouch(image, 0.3) == sample_png()
    call = upstream.calls[0]
    assert call.headers["user-agent"].startswith("retouch-bot/")
    assert call.headers["authorization"] == f"Bearer {KEY}"


async def test_fake_upstream_can_require_a_key(
    client: httpx.AsyncClient, sleep: RecordingSleep, image: PreparedImage
) -> None:
    async with FakeUpstream(api_key="sk-other") as fake:
        backend = make_backend(client, fake.base_url, sleep)
        with pytest.raises(UpstreamAuthError):
            await backend.retouch(image, 0.1)


def test_http_client_settings() -> None:
    settings = load_settings(retouch_timeout_seconds=45, retouch_connect_timeout_seconds=7)
    client = create_http_client(settings)
    assert client.timeout == httpx.Timeout(connect=7, read=45, write=60, pool=30)
    assert client.follow_redirects is False
    assert client.headers["user-agent"].startswith("retouch-bot/")


def test_quiet_http_loggers() -> None:
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    quiet_http_loggers()
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("httpcore").level == logging.WARNING


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), ("", None), (None, None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://file.xty.app/docs/retouch.png?sig=abc", "https://file.xty.app"),
        ("http://user:pw@127.0.0.1:8080/x?y", "http://127.0.0.1:8080"),
        ("http://[::1]:9/x", "http://[::1]:9"),
    ],
)
def test_url_origin(url: str, origin: str) -> None:
    assert url_origin(url) == origin
