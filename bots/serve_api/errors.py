"""serve-api's answers in the OpenAI error shape, and the core's typed errors mapped onto them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from core.errors import BusyError, FidelityError, NoFaceError, RetouchError, UserInputError

NO_FACE_MESSAGE: Final = "未检测到人脸,请上传包含清晰正脸的图片 (no face found in the image)"
FIDELITY_PARAM: Final = "codeformer_fidelity"


class ApiError(Exception):
    """An answer in the OpenAI error shape: `{"error": {message, type, param, code}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return json_response(body, status=self.status, headers=self.headers)


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`data` as JSON with its non-ASCII text kept (the contract's messages are Chinese)."""
    return web.json_response(
        data, status=status, headers=headers, dumps=lambda d: json.dumps(d, ensure_ascii=False)
    )


def busy_error(message: str, retry_after: int) -> ApiError:
    """A 429 asking the client to come back in `retry_after` seconds."""
    return ApiError(
        429,
        message,
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(retry_after)},
    )


def from_retouch_error(exc: RetouchError, retry_after: int) -> ApiError:
    """Typed core errors as HTTP answers: the user's fault is a 400, ours a 429 or 500."""
    if isinstance(exc, NoFaceError):
        return ApiError(400, NO_FACE_MESSAGE, code=exc.code)
    if isinstance(exc, FidelityError):
        shown = json.dumps(exc.params.get("value"), default=repr)[:40]
        return ApiError(
            400,
            f"{FIDELITY_PARAM} must be a JSON number between 0.0 and 1.0 (got {shown}).",
            param=FIDELITY_PARAM,
            code=exc.code,
        )
    if isinstance(exc, UserInputError):
        return ApiError(400, exc.message, code=exc.code)
    if isinstance(exc, BusyError):
        return busy_error(exc.message, retry_after)
    return ApiError(500, exc.message, type="server_error", code=exc.code)
