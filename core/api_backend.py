"""The hosted retouch API (OpenAI-style chat completions) as a `RetouchBackend`.

One POST per job, retried with backoff and full jitter only on timeouts, connection errors, 429
and 5xx (honouring `Retry-After`), then an immediate download of the result URL, which expires
after one hour. Neither the key, the Authorization header nor the image data URL is ever logged.

Each attempt, POST or download, has one deadline for the whole exchange (connecting, sending,
the answer to its last byte), and the job has one for all its attempts and pauses together. The
result URL is fetched under the address guard: public addresses, or the API's own host and port.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import httpx
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from core.crash import crash_point
from core.errors import (
    AnimatedImageError,
    ForbiddenUrlError,
    ImageTooLargeError,
    NoFaceError,
    NotAnImageError,
    RetouchError,
    UpstreamAuthError,
    UpstreamBadResponseError,
    UpstreamRateLimitedError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    UserInputError,
)
from core.fetch import download_image, read_capped
from core.fidelity import check_fidelity
from core.formats import PreparedImage
from core.http import parse_retry_after, url_origin
from core.logs import strip_url_queries
from core.netguard import AddressPolicy
from core.settings import Settings

logger = logging.getLogger("retouch.api")

RETRYABLE_STATUS: Final = frozenset({429, 500, 502, 503, 504})
DOWNLOAD_ATTEMPTS: Final = 3
MAX_RESPONSE_BYTES: Final = 1_000_000
"""A chat-completions answer is a few hundred bytes; anything much larger is not the contract."""

PROMPT: Final = "a person"
_IMAGE_SLOT: Final = "@@retouch-image-slot-5f1c9a@@"
"""Where `build_body` splices in the image (checked to occur once in the encoded JSON)."""

# Error codes that name the user's image; the first four are also what `serve-api` sends.
_USER_ERROR_CODES: Final[dict[str, type[UserInputError]]] = {
    "no_face": NoFaceError,
    "not_an_image": NotAnImageError,
    "animated_image": AnimatedImageError,
    "image_too_large": ImageTooLargeError,
    "no_face_detected": NoFaceError,
    "face_not_found": NoFaceError,
    "face_not_detected": NoFaceError,
    "invalid_image": NotAnImageError,
    "invalid_image_format": NotAnImageError,
    "unsupported_image": NotAnImageError,
    "bad_image": NotAnImageError,
}
_USER_ERROR_TEXT: Final[dict[type[UserInputError], str]] = {
    NoFaceError: "no face was found in the photo",
    NotAnImageError: "the retouch service cannot read this image",
    AnimatedImageError: "the retouch service does not take animated images",
    ImageTooLargeError: "the image is too large for the retouch service",
}
_NO_FACE = re.compile(r"\bfaces?\b|人脸|脸部|面部", re.IGNORECASE)
_IMAGE_REQUIRED = re.compile(
    r"需要图片|包含图片|缺少图片|"
    r"\b(image|picture) (is )?(required|missing)\b|\b(requires?|include|needs?) an? image\b|"
    r"\bno image\b",
    re.IGNORECASE,
)
_IMAGE_TOO_LARGE = re.compile(
    r"(图片|图像).*(过大|太大|超过)|\b(image|file|picture)\b.*\b(too (large|big)|exceeds?)\b",
    re.IGNORECASE,
)
_BAD_IMAGE = re.compile(
    r"(图片|图像).*(无效|错误|损坏|不支持|无法)|无法(识别|解析|读取|处理|解码).*(图片|图像)|"
    r"\b(invalid|unsupported|corrupt(ed)?|malformed|unreadable|bad) (image|picture|photo)\b|"
    r"\b(cannot|can't|could not|couldn't|unable to|failed to) "
    r"(decode|identify|read|open|load|process) (the )?(image|picture|photo)\b",
    re.IGNORECASE,
)
_SECRETISH = re.compile(
    r"(?i:bearer)\s+\S+|\bsk-[A-Za-z0-9_\-]{4,}|\b[A-Za-z0-9_\-]{32,}\b|data:[^\s\"']+"
)


class ApiBackend:
    """Retouches through the hosted API over a shared client that its owner closes."""

    name = "api"

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: SecretStr,
        model: str = "retouch",
        max_retries: int = 3,
        max_result_bytes: int = 50_000_000,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        download_timeout: float | None = 300.0,
        attempt_timeout: float | None = None,
        total_timeout: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._on_retry = on_retry
        self._endpoint = f"{base_url.rstrip('/')}/chat/completions"
        self._origin = url_origin(base_url)
        self._api_key = api_key
        self._model = model
        self._max_retries = max(0, max_retries)
        self._max_result_bytes = max_result_bytes
        self._backoff_max = backoff_max
        self._jitter = wait_random_exponential(multiplier=backoff_base, max=backoff_max)
        self._download_timeout = download_timeout
        self._attempt_timeout = attempt_timeout
        self._total_timeout = total_timeout
        self._result_policy = AddressPolicy.trusting(base_url)
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        client: httpx.AsyncClient,
        *,
        on_retry: Callable[[], None] | None = None,
    ) -> ApiBackend:
        """The backend the settings describe, over the process-wide `client`."""
        return cls(
            client,
            base_url=settings.retouch_api_base_url,
            api_key=settings.retouch_api_key,
            model=settings.retouch_model,
            max_retries=settings.retouch_max_retries,
            max_result_bytes=settings.retouch_max_result_bytes,
            download_timeout=settings.retouch_timeout_seconds,
            attempt_timeout=settings.retouch_timeout_seconds,
            total_timeout=settings.retouch_total_timeout_seconds,
            on_retry=on_retry,
        )

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        """Send `image` upstream, then download the result at once (its URL lives one hour)."""
        try:
            async with asyncio.timeout(self._total_timeout):
                return await self._retouch(image, fidelity)
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"the retouch service at {self._origin} took more than "
                f"{self._total_timeout:g} s in all",
                retryable=False,
            ) from None

    async def _retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        fidelity = check_fidelity(fidelity)
        body = self.build_body(image, fidelity)
        logger.debug(
            "retouch request: %s %dx%d, %d bytes, fidelity %.2f",
            image.format,
            image.width,
            image.height,
            len(image.data),
            fidelity,
        )
        result_url = ""
        async for attempt in self._retrying(self._max_retries + 1):
            with attempt:
                result_url = await self._complete(body, attempt.retry_state.attempt_number)
        crash_point("upstream_answered")
        started = time.monotonic()
        data = b""
        async for attempt in self._retrying(DOWNLOAD_ATTEMPTS):
            with attempt:
                data = await self._download(result_url)
        crash_point("result_downloaded")
        logger.info(
            "downloaded result from %s: %d bytes in %.2fs",
            url_origin(result_url),
            len(data),
            time.monotonic() - started,
        )
        return data

    async def aclose(self) -> None:
        """Nothing to release: the shared HTTP client belongs to whoever created it."""

    def build_payload(self, image: PreparedImage, fidelity: float) -> dict[str, Any]:
        """The request body of the contract; fidelity goes in `extra_body` and at the top level."""
        return self._payload(image.data_url(), fidelity)

    def build_body(self, image: PreparedImage, fidelity: float) -> bytes:
        """`build_payload` as JSON bytes, made without a JSON pass over the image.

        The image is most of the body (hundreds of KB of base64, which needs no JSON escaping):
        the rest is encoded around a placeholder and the base64 spliced in, one copy in all.
        """
        text = json.dumps(self._payload(_IMAGE_SLOT, fidelity))
        if text.count(_IMAGE_SLOT) != 1:  # only if the model name held the slot itself
            return json.dumps(self.build_payload(image, fidelity)).encode()
        head, _, tail = text.partition(_IMAGE_SLOT)
        prefix = f"data:{image.mime};base64,"
        encoded = base64.b64encode(image.data)
        return b"".join((head.encode(), prefix.encode(), encoded, tail.encode()))

    def _payload(self, image_url: str, fidelity: float) -> dict[str, Any]:
        return {
            "model": self._model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": PROMPT},
                        {"type": "image_url", "image_url": {"url": image_url}},
                    ],
                }
            ],
            "extra_body": {"codeformer_fidelity": fidelity},
            "codeformer_fidelity": fidelity,
        }

    # --- one attempt ----------------------------------------------------------------------

    async def _download(self, url: str) -> bytes:
        """The result, from public addresses or the API's own host only."""
        try:
            return await download_image(
                self._client,
                url,
                max_bytes=self._max_result_bytes,
                timeout=self._download_timeout,
                policy=self._result_policy,
            )
        except ForbiddenUrlError:
            raise UpstreamBadResponseError(
                "the retouch service answered with a result URL on a private or reserved "
                "address, other than its own: it was not fetched"
            ) from None

    async def _complete(self, body: bytes, attempt: int) -> str:
        """POST once within the attempt's deadline; the result URL, or a typed error the retry
        policy then judges."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._attempt_timeout):
                return await self._post(body, attempt, started)
        except TimeoutError:
            logger.info(
                "upstream %s took over %.2fs (attempt %d)",
                self._origin,
                time.monotonic() - started,
                attempt,
            )
            raise UpstreamTimeoutError(
                f"the retouch service at {self._origin} did not answer in time", retryable=True
            ) from None

    async def _post(self, body: bytes, attempt: int, started: float) -> str:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if secret := self._api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {secret}"
        logger.debug("POST %s/chat/completions (attempt %d)", self._origin, attempt)
        try:
            async with self._client.stream(
                "POST", self._endpoint, content=body, headers=headers, follow_redirects=False
            ) as response:
                body = await read_capped(
                    response,
                    MAX_RESPONSE_BYTES,
                    UpstreamBadResponseError(
                        f"the retouch service's answer is over {MAX_RESPONSE_BYTES} bytes"
                    ),
                )
        except httpx.TimeoutException as exc:
            logger.info(
                "upstream %s timed out after %.2fs (attempt %d, %s)",
                self._origin,
                time.monotonic() - started,
                attempt,
                type(exc).__name__,
            )
            raise UpstreamTimeoutError(
                f"the retouch service at {self._origin} did not answer in time", retryable=True
            ) from exc
        except httpx.TransportError as exc:
            logger.info(
                "cannot reach upstream %s (attempt %d, %s)",
                self._origin,
                attempt,
                type(exc).__name__,
            )
            raise UpstreamUnavailableError(
                f"cannot reach the retouch service at {self._origin} ({type(exc).__name__})",
                retryable=True,
            ) from exc
        status = response.status_code
        logger.info(
            "upstream %s answered HTTP %d in %.2fs (attempt %d)",
            self._origin,
            status,
            time.monotonic() - started,
            attempt,
        )
        if not response.is_success:
            raise self._error_for(status, body, response.headers.get("retry-after"))
        return self._result_url(body)

    def _result_url(self, body: bytes) -> str:
        try:
            answer = json.loads(body)
        except ValueError:
            raise UpstreamBadResponseError(
                "the retouch service answered with invalid JSON"
            ) from None
        if isinstance(answer, dict) and "error" in answer and not answer.get("choices"):
            # Some OpenAI-style gateways report errors with HTTP 200.
            raise self._error_for(400, body, None)
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise UpstreamBadResponseError(
                "the retouch service's answer has no choices[0].message.content"
            ) from None
        url = content.strip() if isinstance(content, str) else ""
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise UpstreamBadResponseError("the retouch service's answer is not an http(s) URL")
        return url

    def _error_for(self, status: int, body: bytes, retry_after: str | None) -> RetouchError:
        """The typed error for an upstream error answer (the contract's `{"error": {...}}`)."""
        message, code = _error_fields(body)
        shown = self._scrub(message) if message else ""
        detail = f": {shown}" if shown else ""
        params: dict[str, Any] = {"status": status}
        if shown:
            params["upstream_message"] = shown
        if code:
            params["upstream_code"] = self._scrub(code)
        if status in (401, 403):
            return UpstreamAuthError(
                f"the retouch service refused the API key (HTTP {status}){detail}", **params
            )
        if status == 429:
            wait = parse_retry_after(retry_after)
            return UpstreamRateLimitedError(
                f"the retouch service is rate-limiting us (HTTP 429){detail}",
                retry_after=wait,
                retryable=True,
                **params,
            )
        if status >= 500:
            return UpstreamUnavailableError(
                f"the retouch service failed (HTTP {status}){detail}",
                retry_after=parse_retry_after(retry_after),
                retryable=status in RETRYABLE_STATUS,
                **params,
            )
        kind = _USER_ERROR_CODES.get((code or "").lower()) or _user_error_in(message or "")
        if kind is not None:
            return kind(f"{_USER_ERROR_TEXT[kind]}{detail}", **params)
        return UpstreamRejectedError(
            f"the retouch service rejected the request (HTTP {status}){detail}", **params
        )

    def _scrub(self, text: str) -> str:
        """An upstream message made safe to log and show: no key, token, data URL or URL query."""
        secret = self._api_key.get_secret_value()
        if secret:
            text = text.replace(secret, "[redacted]")
        text = _SECRETISH.sub("[redacted]", text)
        text = strip_url_queries(text)
        text = " ".join(text.split())
        return text[:200] + ("…" if len(text) > 200 else "")

    # --- retries --------------------------------------------------------------------------

    def _before_retry(self, state: RetryCallState) -> None:
        _log_retry(state)
        if self._on_retry is not None:
            self._on_retry()

    def _retrying(self, attempts: int) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._before_retry,
            sleep=self._sleep,
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        """`Retry-After` when the upstream gave one (capped), else exponential full jitter."""
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, RetouchError):
            retry_after = error.params.get("retry_after")
            if isinstance(retry_after, int | float) and math.isfinite(retry_after):
                return min(max(0.0, float(retry_after)), self._backoff_max)
        return float(self._jitter(state))


def _is_retryable(error: BaseException) -> bool:
    """Timeouts, connection errors, 429 and 5xx only; an error may opt out with `retryable`."""
    if not isinstance(
        error, UpstreamTimeoutError | UpstreamUnavailableError | UpstreamRateLimitedError
    ):
        return False
    return bool(error.params.get("retryable", True))


def _user_error_in(message: str) -> type[UserInputError] | None:
    """The user's-fault error an upstream message clearly describes, if any.

    "An image is required" is not one: we always send an image, so that is our bug.
    """
    if _IMAGE_REQUIRED.search(message):
        return None
    if _NO_FACE.search(message):
        return NoFaceError
    if _IMAGE_TOO_LARGE.search(message):
        return ImageTooLargeError
    if _BAD_IMAGE.search(message):
        return NotAnImageError
    return None


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    """`error.message` and `error.code` from an error body, tolerating non-JSON bodies."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None, None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):
        return error, None
    if not isinstance(error, dict):
        return None, None
    message = error.get("message")
    code = error.get("code")
    return (
        message if isinstance(message, str) else None,
        str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
    )


def _log_retry(state: RetryCallState) -> None:
    """Say which attempt failed and how long the pause is (no URL, key or image in it)."""
    error = state.outcome.exception() if state.outcome is not None else None
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    logger.warning(
        "attempt %d failed (%s: %s); retrying in %.1fs",
        state.attempt_number,
        type(error).__name__,
        error,
        delay,
    )
