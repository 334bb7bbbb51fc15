"""Logging set-up with secret redaction: tokens and keys never reach a log line.

Known secrets (from the settings) are replaced wherever they appear, and so is anything shaped like
a Telegram bot token, a bearer credential, an `sk-` key or the signature of a signed URL
(`X-Amz-Signature=...`, `sig=...`), in messages, arguments and tracebacks.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from core.settings import Settings

REDACTED = "[REDACTED]"

current_job: ContextVar[str | None] = ContextVar("current_job", default=None)
"""The job the running task works on; set by the service, added to every log line."""

_PATTERNS = (
    re.compile(r"\d{5,12}:[A-Za-z0-9_-]{30,}"),  # Telegram bot token
    re.compile(r"(?i)(bearer\s+)[^\s'\",]+"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)(postgres(?:ql)?://[^:/\s]+:)[^@\s]+(@)"),
    # A signed URL's credentials: X-Amz-Signature, X-Amz-Credential, X-Goog-Signature, sig,
    # access_token, api_key, ... (the parameter kept, its value gone).
    re.compile(
        r"(?i)([?&][\w.-]*(?:signature|sig|token|credential|secret|password|key|auth)[\w.-]*=)"
        r"[^&\s'\"#]+"
    ),
)
_URL_QUERY = re.compile(r"(https?://[^\s?#\"']+)[?#][^\s\"']*")


class Redactor:
    """Replaces secrets in text; the known ones first, then anything shaped like one."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(_keep_prefix, text)
        return text


def _keep_prefix(match: re.Match[str]) -> str:
    groups = [g for g in match.groups() if g is not None]
    if len(groups) == 2:
        return f"{groups[0]}{REDACTED}{groups[1]}"
    return f"{groups[0]}{REDACTED}" if groups else REDACTED


def strip_url_queries(text: str) -> str:
    """`text` with every http(s) URL's query and fragment cut off: they may hold signatures."""
    return _URL_QUERY.sub(r"\1", text)


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs (a database URL, say)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://(unparsable URL)"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def secrets_of(*settings: BaseSettings) -> list[str]:
    """Every secret value the settings hold: each `SecretStr` field, alone or in a list."""
    values: list[SecretStr] = []
    for group in settings:
        for name in type(group).model_fields:
            value = getattr(group, name)
            items = value if isinstance(value, list | tuple) else [value]
            values += [item for item in items if isinstance(item, SecretStr)]
    return [v.get_secret_value() for v in values if v.get_secret_value()]


class RedactingFilter(logging.Filter):
    """A handler filter that rewrites each record with its secrets redacted."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            record.job_id = current_job.get()
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class TextFormatter(logging.Formatter):
    """`time level logger: message`, with `[job <id>]` when the line belongs to a job."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(job)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        record.job = f"[job {job_id}] " if job_id else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job_id and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            entry["job_id"] = job_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(
    settings: Settings, *more: BaseSettings, stream: TextIO | None = None
) -> RedactingFilter:
    """Log to stderr (text or JSON lines), redacted, with the chatty HTTP loggers quietened.

    The secrets of `settings` and of every further settings group (`more`) are redacted.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    redacting = RedactingFilter(Redactor(secrets_of(settings, *more)))
    handler.addFilter(redacting)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # httpx logs every request URL at INFO, and Telegram URLs carry the bot token.
    for name in ("httpx", "httpcore", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return redacting
