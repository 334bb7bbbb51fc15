"""`platform:id`, how a user or chat is named across platforms: in ADMIN_IDS, the CLI and /grant."""

from __future__ import annotations

from core.jobs import PLATFORMS, Platform


def parse_platform_id(text: str, *, default: Platform | None = None) -> tuple[Platform, str] | None:
    """`telegram:123` -> ("telegram", "123"); a bare `123` too when `default` names the platform.

    The id must be an integer (Telegram's group chats have negative ones); None when it is not,
    or the platform is unknown. Callers word the refusal for their audience.
    """
    platform, sep, ident = text.strip().partition(":")
    if not sep:
        if default is None:
            return None
        platform, ident = default, platform
    digits = ident.removeprefix("-")
    if platform not in PLATFORMS or not (digits.isascii() and digits.isdigit()):
        return None
    return platform, ident
