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


def recalled_failure(code: str) -> RetouchError:
    """A failure read back from the store (only its code is kept), to tell the user after a
    restart what the process could not tell before it stopped."""
    kind: type[RetouchError] = type("RecalledFailure", (RetouchError,), {"code": code})
    return kind(f"failed before a restart ({code})")


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


# --- the store ------------------------------------------------------------------------------


class StoreError(RetouchError):
    """The store cannot be used as it is (e.g. its schema is newer than this code)."""

    code = "store"


class AlreadyImportedError(StoreError):
    """This export was imported into this store before; importing it again would double it."""

    code = "already_imported"


class PaymentError(StoreError):
    """A purchase cannot be recorded or refunded as asked."""

    code = "payment"


class PurchaseNotFoundError(PaymentError):
    """No purchase with that charge id is recorded."""

    code = "purchase_not_found"


class AlreadyRefundedError(PaymentError):
    """The purchase was refunded before."""

    code = "already_refunded"


class CreditsSpentError(PaymentError):
    """The credits a purchase bought are (partly) spent, so they cannot be taken back."""

    code = "credits_spent"


class QuotaExceededError(RetouchError):
    """The user's daily allowance is used up and no granted credits are left."""

    code = "quota_exceeded"
    user_fault = True

    def __init__(self, message: str, *, used: int, limit: int, credits: int) -> None:
        super().__init__(message, used=used, limit=limit, credits=credits)
        self.used = used
        self.limit = limit
        self.credits = credits


class ChatQuotaExceededError(QuotaExceededError):
    """The group chat's daily allowance is used up; personal credits do not lift it."""

    code = "chat_quota_exceeded"


# --- admission and delivery -------------------------------------------------------------------


class AdmissionError(RetouchError):
    """A request turned away before it cost anything."""

    code = "rejected"
    user_fault = True


class AccessDeniedError(AdmissionError):
    """The user or chat is not on the configured allow-list."""

    code = "access_denied"


class TooManyInFlightError(AdmissionError):
    """The user already has as many jobs waiting or running as allowed."""

    code = "too_many_in_flight"


class RateLimitedError(AdmissionError):
    """The user sent more requests in the last minute than allowed."""

    code = "rate_limited"


class ShuttingDownError(AdmissionError):
    """The service is stopping and takes no new jobs."""

    code = "shutting_down"
    user_fault = False


class InputGoneError(RetouchError):
    """The input of a resumed job can no longer be fetched from its platform."""

    code = "input_gone"


class DeliveryError(RetouchError):
    """The adapter could not deliver a result; `permanent` means retrying cannot help."""

    code = "delivery_failed"

    def __init__(self, message: str, *, permanent: bool = False, **params: object) -> None:
        super().__init__(message, **params)
        self.permanent = permanent


class CancelledJobError(RetouchError):
    """The job was cancelled by its requester."""

    code = "cancelled"
