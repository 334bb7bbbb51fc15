"""Secrets never reach a log line: known values and anything shaped like a token are redacted."""

from __future__ import annotations

import io
import logging
from typing import Annotated

import pytest
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from core.logs import REDACTED, Redactor, redact_url, setup_logging
from core.settings import EnvSettings, load_settings, split_csv

# Put together here so that no string shaped like a real bot token is committed.
TOKEN = ":".join(("1234567", "AAHfakeTokenForTestsOnly_" + "x" * 14))


def test_redactor_hides_known_and_token_shaped_secrets() -> None:
    redact = Redactor(["my-very-secret"])
    text = (
        f"GET https://api.telegram.org/bot{TOKEN}/getMe my-very-secret "
        "Authorization: Bearer abc.def sk-abcdefghijklmnop postgresql://bot:pw@db/retouch"
    )
    out = redact(text)
    for secret in (TOKEN, "my-very-secret", "abc.def", "sk-abcdefghijklmnop", ":pw@"):
        assert secret not in out
    assert out.count(REDACTED) == 5
    assert "postgresql://bot:[REDACTED]@db/retouch" in out


def test_setup_logging_redacts_messages_args_and_tracebacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETOUCH_API_KEY", "key-from-settings")
    stream = io.StringIO()
    setup_logging(load_settings(), stream=stream)
    log = logging.getLogger("retouch.test")
    log.warning("calling with %s", "key-from-settings")
    try:
        raise RuntimeError(f"failed https://api.telegram.org/bot{TOKEN}/sendPhoto")
    except RuntimeError:
        log.exception("upload failed")
    output = stream.getvalue()
    assert "key-from-settings" not in output and TOKEN not in output
    assert output.count(REDACTED) == 2
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_job_ids_and_redaction_in_both_formats(
    monkeypatch: pytest.MonkeyPatch, log_format: str
) -> None:
    import json

    from core.logs import current_job

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("LOG_FORMAT", log_format)
    stream = io.StringIO()
    setup_logging(load_settings(), stream=stream)
    token = current_job.set("job123")
    try:
        logging.getLogger("retouch.test").info("posting to bot%s/sendPhoto", TOKEN)
    finally:
        current_job.reset(token)
    logging.getLogger("retouch.test").info("no job here")
    first, second = stream.getvalue().splitlines()
    assert TOKEN not in stream.getvalue()
    if log_format == "json":
        entry = json.loads(first)
        assert entry["job_id"] == "job123" and REDACTED in entry["message"]
        assert "job_id" not in json.loads(second)
    else:
        assert "[job job123] posting to bot[REDACTED]/sendPhoto" in first
        assert "[job" not in second


def test_database_urls_lose_only_their_password() -> None:
    assert redact_url("postgresql://u:pw@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_url("postgresql://db/x") == "postgresql://db/x"
    assert redact_url("postgres://u@db/x?sslmode=require") == "postgres://u@db/x?sslmode=require"


class _MoreSettings(EnvSettings):
    """A settings group of its own, as an adapter or serve-api declares beside its code."""

    extra_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    extra_token: SecretStr = SecretStr("")

    @field_validator("extra_keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        return split_csv(value)


def test_the_secrets_of_every_settings_group_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRA_KEYS", "group-key-one,group-key-two")
    monkeypatch.setenv("EXTRA_TOKEN", "group-token-value")
    stream = io.StringIO()
    setup_logging(load_settings(), _MoreSettings(), stream=stream)
    logging.getLogger("retouch.test").warning(
        "keys %s %s, token %s", "group-key-one", "group-key-two", "group-token-value"
    )
    output = stream.getvalue()
    assert "group-" not in output
    assert output.count(REDACTED) == 3
