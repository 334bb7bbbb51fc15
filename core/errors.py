"""Typed errors shared by every layer, each with a stable code the adapters translate for users.

`user_fault` says whether the person who sent the request caused it (bad caption, not a photo):
such jobs are not refunded; everything else is the service's problem and is refunded.
Messages never contain secrets: they are safe to log and to show.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RetouchError(Exception):
    """Base of every error the core raises on purpose."""

    code: ClassVar[str] = "internal"
    user_fault: ClassVar[bool] = False

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message)
        self.message = message
        self.params = params

    def __str__(self) -> str:
        return self.message


class ConfigError(RetouchError):
    """A setting is missing or has a bad value; the message names the setting."""

    code = "config"


# --- the user's input -------------------------------------------------------------------------


class UserInputError(RetouchError):
    """Something about the request itself; the user can fix it and try again."""

    code = "bad_input"
    user_fault = True


class FidelityError(UserInputError):
    """A fidelity that is not a number between 0 and 1."""

    code = "bad_fidelity"


class NotAnImageError(UserInputError):
    """The bytes are not an image format we understand."""

    code = "not_an_image"


class AnimatedImageError(UserInputError):
    """GIF, animated WebP or APNG: a portrait must be a still image."""

    code = "animated_image"


class ImageTooLargeError(UserInputError):
    """Too many pixels (a decompression bomb) or too many bytes to read."""

    code = "image_too_large"


class ForbiddenUrlError(UserInputError):
    """An image URL we refuse to fetch: not http(s), or a loopback/private address."""

    code = "forbidden_url"


class NoFaceError(UserInputError):
    """No face was found in the photo (the local engine, or the upstream said so)."""

    code = "no_face"


# --- the upstream and the engine --------------------------------------------------------------


class BackendError(RetouchError):
    """The retouch backend could not produce a result; not the user's fault."""

    code = "backend"


class UpstreamAuthError(BackendError):
    """The upstream refused our API key (401/403): an operator must fix the configuration."""

    code = "upstream_auth"


class UpstreamRejectedError(BackendError):
    """The upstream answered 4xx to a request we believed valid."""

    code = "upstream_rejected"


class UpstreamRateLimitedError(BackendError):
    """Still rate-limited (429) after every retry."""

    code = "upstream_rate_limited"


class UpstreamUnavailableError(BackendError):
    """5xx or connection failures after every retry."""

    code = "upstream_unavailable"


class UpstreamTimeoutError(BackendError):
    """The upstream did not answer in time, after every retry."""

    code = "upstream_timeout"


class UpstreamBadResponseError(BackendError):
    """The upstream answered with something that is not the contract's JSON."""

    code = "upstream_bad_response"


class ResultExpiredError(BackendError):
    """The result URL is gone (404/410): it expired before it was downloaded."""

    code = "result_expired"


class ResultInvalidError(BackendError):
    """The result is not an image (wrong content type or magic bytes), or a URL we won't fetch."""

    code = "result_invalid"


class ResultTooLargeError(BackendError):
    """The result is larger than the configured cap."""

    code = "result_too_large"


class BusyError(BackendError):
    """The local engine's queue is full; try again shortly."""

    code = "busy"
