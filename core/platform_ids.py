"""`platform:id`, how a user or chat is named across platforms: in ADMIN_IDS, the CLI and /grant."""

from __future__ import annotations

from typing import Final, Literal

from core.jobs import Platform

Kind = Literal["user", "chat"]

CHAT_PLATFORMS: Final[frozenset[Platform]] = frozenset({"telegram", "discord"})
"""The platforms whose people and chats have ids (the CLI's jobs have none)."""
_MAX_ID: Final = 2**63 - 1
"""Telegram's and Discord's ids both fit a signed 64-bit integer."""


def parse_platform_id(
    text: str, *, default: Platform | None = None, kind: Kind = "user"
) -> tuple[Platform, str] | None:
    """`telegram:123` -> ("telegram", "123"); a bare `123` too when `default` names the platform.

    The id is written as the platform writes it: digits, no sign, space or leading zero, so that
    one person has one key. Only Telegram's group chats are negative (`kind="chat"`). None when
    the text is no such id (`telegram:@alice`, `telegram: 123`, `cli:1`); callers word the
    refusal for their audience.
    """
    platform, sep, ident = text.strip().partition(":")
    if not sep:
        if default is None:
            return None
        platform, ident = default, platform
    if platform not in CHAT_PLATFORMS:
        return None
    digits = ident.removeprefix("-") if kind == "chat" and platform == "telegram" else ident
    if not (digits.isascii() and digits.isdigit()) or digits.startswith("0"):
        return None
    if int(digits) > _MAX_ID:
        return None
    return platform, ident
