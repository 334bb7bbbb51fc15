"""Whom a Telegram message speaks to: `/retouch`, `/retouch@ThisBot`, or a mention `@ThisBot`.

In groups the bot answers only when addressed. Once the command and the mentions are taken out,
what is left is the caption proper, which core's caption parsing reads for a fidelity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.captions import normalize, parse_caption

COMMAND = "retouch"

_COMMAND = re.compile(r"^/(?P<name>\w+)(?:@(?P<bot>\w+))?(?=\s|$)", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@(?P<bot>\w{3,})")


@dataclass(frozen=True, slots=True)
class Address:
    """Whom a caption addresses, and the caption without the command and mentions."""

    command: bool = False
    """The text starts with `/retouch` (for this bot or for no bot in particular)."""
    mentioned: bool = False
    """The text mentions `@bot_username`."""
    other_bot: bool = False
    """The text starts with `/retouch@SomeOtherBot`: not for us."""
    rest: str = ""

    @property
    def addressed(self) -> bool:
        """Whether a group message with this caption is meant for the bot."""
        return (self.command or self.mentioned) and not self.other_bot

    def fidelity(self) -> float | None:
        """The fidelity the rest of the caption asks for; `FidelityError` when it is bad."""
        return parse_caption(self.rest, after_command=self.command)


def address(text: str | None, bot_username: str | None = None) -> Address:
    """Read `text`; `bot_username` (with or without `@`) tells mentions of this bot from others."""
    if not text:
        return Address()
    text = normalize(text)
    me = (bot_username or "").lstrip("@").casefold()
    command = other_bot = False
    match = _COMMAND.match(text)
    if match and match["name"].casefold() == COMMAND:
        addressee = (match["bot"] or "").casefold()
        if addressee and me and addressee != me:
            other_bot = True
        else:
            command = True
        text = text[match.end() :]
    mentioned = bool(me) and any(m["bot"].casefold() == me for m in _MENTION.finditer(text))
    rest = _MENTION.sub(" ", text).strip()
    return Address(command, mentioned, other_bot, rest)
