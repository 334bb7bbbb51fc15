"""The message catalog: both languages say the same things, with the same placeholders."""

from __future__ import annotations

import string

import pytest

from bots import messages as m
from core.errors import NoFaceError, UpstreamTimeoutError
from core.store import QuotaExceededError


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_languages_have_every_line_with_the_same_placeholders() -> None:
    assert set(m.CATALOG["en"]) == set(m.CATALOG["zh"])
    for key, english in m.CATALOG["en"].items():
        assert placeholders(english) == placeholders(m.CATALOG["zh"][key]), key


@pytest.mark.parametrize(
    ("code", "lang"), [("zh-hans", "zh"), ("zh-CN", "zh"), ("en-US", "en"), (None, "en")]
)
def test_language_from_platform_codes(code: str | None, lang: str) -> None:
    assert m.lang_for(code) == lang


def test_failures_and_rejections_read_well() -> None:
    assert "face" in m.failure(NoFaceError("x"), "en") and "Nothing was charged" in m.failure(
        NoFaceError("x"), "en"
    )
    assert "超时" in m.failure(UpstreamTimeoutError("x"), "zh")
    error = QuotaExceededError("x", used=5, limit=5, credits=0)
    error.params["resets_at"] = 1_800_057_600.0  # 2027-01-16 00:00 UTC
    assert m.rejection(error, "en") == (
        "You've used all 5 photos for today. Your quota resets at 00:00 UTC."
    )
    assert "00:00" in m.rejection(error, "zh")
