"""The message catalog: both languages say the same things, with the same placeholders."""

from __future__ import annotations

import re
import string

import pytest

from bots import messages as m
from core.errors import NoFaceError, UpstreamTimeoutError
from core.quota import QuotaStatus
from core.store import PurchaseTotals, QuotaExceededError


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
    assert "face" in m.failure(NoFaceError("x"), "en")
    assert "It didn't count against your quota." in m.failure(NoFaceError("x"), "en")
    assert "超时" in m.failure(UpstreamTimeoutError("x"), "zh")
    assert "不计入你的次数" in m.failure(UpstreamTimeoutError("x"), "zh")
    error = QuotaExceededError("x", used=5, limit=5, credits=0)
    # 2027-01-16 00:00 UTC, asked 5 h 20 min before
    error.params.update(resets_at=1_800_057_600.0, now=1_800_057_600.0 - 5 * 3600 - 20 * 60)
    assert m.rejection(error, "en") == (
        "You've used all 5 photos for today. Your quota resets at 00:00 UTC (in 5 h 20 min)."
    )
    assert m.rejection(error, "zh") == (
        "你今天的 5 次已用完，将于 UTC 时间 00:00（5 小时 20 分钟后）重置。"
    )


def test_resets_are_shown_in_the_quota_zone_with_the_time_left() -> None:
    midnight = 1_800_028_800.0  # 2027-01-16 00:00 in Asia/Shanghai
    status = QuotaStatus(3, 5, 2, 4, midnight, "Asia/Shanghai", midnight - 40 * 60)
    assert m.quota_line(status, "en") == (
        "Today you've used 3 of 5; 2 left (plus 4 extra credits). "
        "Resets at 00:00 Asia/Shanghai (in 40 min)."
    )
    bought = PurchaseTotals(count=2, credits=60, amount=250)
    assert m.quota_line(status, "zh", bought) == (
        "今天已用 3/5 次，剩余 2 次（另有 4 次额外额度）。"
        "将于 Asia/Shanghai 时间 00:00（40 分钟后）重置。你用 Stars 购买了 60 次（2 笔）。"
    )
    assert m.time_left(30, "en") == "in 1 min" and m.time_left(7200, "en") == "in 2 h 0 min"


def test_telegram_gets_the_catalogs_markup_as_escaped_html() -> None:
    assert m.to_html(m.text("whoami", "en", user="telegram:1001")).startswith(
        "Your id is <code>telegram:1001</code>."
    )
    assert m.to_html("**Settings of <b>&Co</b>** `a<b`") == (
        "<b>Settings of &lt;b&gt;&amp;Co&lt;/b&gt;</b> <code>a&lt;b</code>"
    )
    assert m.to_html("/grant <user> <n>") == "/grant &lt;user&gt; &lt;n&gt;"
    # What a user wrote stays text: a group called "**Us** `&` <i>them</i> \\*".
    title = m.text("settings_title", "en", chat="**Us** `&` <i>them</i> \\*")
    assert title.startswith("**Settings of \\*\\*Us\\*\\* \\`&\\` <i>them</i> \\\\\\***")
    assert m.to_html(title).startswith(
        "<b>Settings of **Us** `&amp;` &lt;i&gt;them&lt;/i&gt; \\*</b> (only"
    )


_CODE_OR_PLACEHOLDER = re.compile(r"`[^`]*`|\{[^}]*\}")
_ASCII_PUNCTUATION = re.compile(r"[,!?;:()]")


def test_chinese_lines_use_full_width_punctuation() -> None:
    for key, line in m.CATALOG["zh"].items():
        prose = _CODE_OR_PLACEHOLDER.sub("", line)
        # Commands, ids and settings names stay as they are typed (/grant discord:42 5).
        prose = re.sub(r"[/@]?[A-Za-z_]+:\w+|ADMIN_IDS|[a-z]+:\d+", "", prose)
        found = _ASCII_PUNCTUATION.findall(prose)
        assert not found, (key, found, line)
