"""Caption parsing: free text from a chat message to retouch options.

Accepted forms (case-insensitive, full-width characters folded): `fidelity 0.3`,
`fidelity=0.3`, `fidelity: 30%`, `f 0.3`, `f=.3`, `fid 0,3`, a bare `0.3` or `30%`, Chinese
`保真度 0.3` / `保真度0.3`, and a leading `/retouch 0.3` or `/retouch@BotName 0.3`. Unrelated
text is ignored. A fidelity that is clearly meant but is out of range or unreadable raises
`FidelityError`, never a silent default.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from core.errors import FidelityError

COMMAND = "retouch"

_NUMBER = r"[+-]?(?:\d+(?:[.,]\d+)?|[.,]\d+)"
_VALUE = re.compile(rf"\s*(?P<num>{_NUMBER})\s*(?P<pct>%)?(?![A-Za-z\d_.,%])")
_BARE = re.compile(rf"(?P<num>{_NUMBER})\s*(?P<pct>%)?")
# Long keys announce a fidelity for sure: an unreadable value after them is an error. The short
# ones (`f`, `fid`) could be ordinary words, so they count only when a number follows.
_STRICT_KEY = re.compile(r"(?<![^\W\d_])fidelity\b\s*[:=]?|保真度?\s*[:=]?", re.IGNORECASE)
_SHORT_KEY = re.compile(r"(?<![\w.])(?:fid|f)(?:\s*[:=]\s*|\s+)(?=[+\-.,\d])", re.IGNORECASE)
_COMMAND = re.compile(r"^/(?P<name>\w+)(?:@(?P<bot>\w+))?(?=\s|$)", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@(?P<bot>\w{3,})")


@dataclass(frozen=True, slots=True)
class Caption:
    """What a caption asks for and whom it addresses."""

    fidelity: float | None = None
    command: bool = False
    """The text starts with `/retouch` (for this bot or for no bot in particular)."""
    mentioned: bool = False
    """The text mentions `@bot_username`."""
    other_bot: bool = False
    """The text starts with `/retouch@SomeOtherBot`: not for us."""

    @property
    def addressed(self) -> bool:
        """Whether a group message with this caption is meant for the bot."""
        return (self.command or self.mentioned) and not self.other_bot


def parse_caption(text: str | None, *, bot_username: str | None = None) -> Caption:
    """Parse `text`; `bot_username` (without `@`) tells mentions of this bot from others."""
    if not text:
        return Caption()
    address, rest = _address(text, bot_username)
    fidelity = _find_fidelity(rest, leading_number=address.command)
    return Caption(fidelity, address.command, address.mentioned, address.other_bot)


def addressing(text: str | None, *, bot_username: str | None = None) -> Caption:
    """Only whom `text` addresses (never raises): for deciding whether a group message is ours."""
    return _address(text, bot_username)[0] if text else Caption()


def _address(text: str, bot_username: str | None) -> tuple[Caption, str]:
    text = unicodedata.normalize("NFKC", text).strip()
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
    return Caption(None, command, mentioned, other_bot), rest


def parse_fidelity(text: str) -> float:
    """Parse a value given on its own (a `/fidelity 0.3` argument, a slash-command option)."""
    value = _find_fidelity(unicodedata.normalize("NFKC", text).strip(), leading_number=True)
    if value is None:
        raise FidelityError(f"{text.strip()!r} is not a fidelity.", value=text.strip())
    return value


def _find_fidelity(text: str, *, leading_number: bool) -> float | None:
    """The fidelity in `text`; `leading_number` takes `0.3 please` (a command's first argument)."""
    bare = _BARE.fullmatch(text)
    if bare is None and leading_number and _starts_with_number(text):
        bare = _BARE.match(text)
    if bare:
        return _to_fidelity(bare["num"], bool(bare["pct"]))
    for key in (_STRICT_KEY, _SHORT_KEY):
        found = key.search(text)
        if found is None:
            continue
        value = _VALUE.match(text, found.end())
        if value:
            return _to_fidelity(value["num"], bool(value["pct"]))
        if key is _STRICT_KEY:
            shown = text[found.end() :].split(maxsplit=1)[:1]
            raise FidelityError(
                "Fidelity must be a number between 0 and 1, like 0.3 or 30%.",
                value=shown[0] if shown else "",
            )
    return None


def _starts_with_number(text: str) -> bool:
    first = text.split(maxsplit=1)[:1]
    return bool(first) and _BARE.fullmatch(first[0]) is not None


def _to_fidelity(number: str, percent: bool) -> float:
    value = float(number.replace(",", "."))
    if percent:
        value /= 100
    if not 0.0 <= value <= 1.0:
        shown = f"{number}%" if percent else number
        raise FidelityError(
            f"Fidelity {shown} is out of range: use a number between 0 and 1, like 0.3 (or 30%).",
            value=shown,
        )
    return round(value, 4)
