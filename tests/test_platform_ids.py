"""`platform:id`: one spelling per person or chat, as the platforms write their ids."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.platform_ids import parse_platform_id
from core.settings import load_settings


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("telegram:123", None, ("telegram", "123")),
        (" discord:456 ", None, ("discord", "456")),
        ("discord:1234567890123456789", None, ("discord", "1234567890123456789")),
        ("123", "telegram", ("telegram", "123")),
        ("discord:42", "telegram", ("discord", "42")),
        ("123", None, None),
        ("tg:1", None, None),
        ("Telegram:1", None, None),
        ("telegram:", None, None),
        ("telegram:abc", None, None),
        ("telegram:١٢٣", None, None),
        ("", "telegram", None),
        ("@alice", "telegram", None),
    ],
)
def test_platform_ids(text: str, default: str | None, expected: tuple[str, str] | None) -> None:
    assert parse_platform_id(text, default=default) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "telegram:@alice",  # a username is not an id
        "telegram: 123",
        "telegram :123",
        "telegram:12 3",
        "telegram:+123",
        "telegram:0123",  # the same person as telegram:123, under a second key
        "telegram:0",
        "telegram:-5",  # negative ids are group chats, never people
        "discord:-5",
        "cli:1",  # the command line's jobs belong to nobody
        "telegram:99999999999999999999",
    ],
)
def test_what_names_no_user(text: str) -> None:
    assert parse_platform_id(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("telegram:-1001234567890", ("telegram", "-1001234567890")),
        ("telegram:42", ("telegram", "42")),
        ("discord:42", ("discord", "42")),
        ("discord:-42", None),
        ("telegram:-0", None),
        ("telegram:-", None),
    ],
)
def test_chats(text: str, expected: tuple[str, str] | None) -> None:
    assert parse_platform_id(text, kind="chat") == expected


def test_settings_take_group_chats_but_no_negative_users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCESS_ALLOWED_CHATS", "telegram:-1001234, discord:7")
    assert load_settings().access_allowed_chats == ["telegram:-1001234", "discord:7"]
    for name in ("ADMIN_IDS", "ACCESS_ALLOWED_USERS"):
        monkeypatch.setenv(name, "telegram:-1001234")
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert str(caught.value).startswith(f"{name}: 'telegram:-1001234' is not platform:id")
        monkeypatch.delenv(name)
