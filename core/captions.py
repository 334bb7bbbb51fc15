"""Caption parsing: free text from a chat message to a fidelity.

Accepted forms (case-insensitive, full-width characters folded): `fidelity 0.3`,
`fidelity=0.3`, `fidelity: 30%`, `f 0.3`, `f=.3`, `fid 0,3`, a bare `0.3` or `30%`, Chinese
`保真度 0.3` / `保真度0.3`. Unrelated text is ignored. A fidelity that is clearly meant but is out
of range or unreadable raises `FidelityError`, never a silent default.

Whom a message addresses (a `/retouch@BotName` command, a mention) is the platform's business:
the adapter takes that out and hands over the rest, saying whether it followed a command.
"""

from __future__ import annotations

import re
import unicodedata

from core.errors import FidelityError
from core.fidelity import check_fidelity

_NUMBER = r"[+-]?(?:\d+(?:[.,]\d+)?|[.,]\d+)"
_VALUE = re.compile(rf"\s*(?P<num>{_NUMBER})\s*(?P<pct>%)?(?![A-Za-z\d_.,%])")
_BARE = re.compile(rf"(?P<num>{_NUMBER})\s*(?P<pct>%)?")
# A number run into junk and more digits (`0;3`, `0·3`, `0 .3`, `0/3`, `1e309`): meant as a
# fidelity, but not one we can read. Refused, never read as its first digits.
_MALFORMED = re.compile(rf"\s*(?>{_NUMBER})(?:\s*[^\w\s%]+\s*|\s+[.,]?|[eE][+-]?)\d\S*(?=\s|$)")
# Long keys announce a fidelity for sure: an unreadable value after them is an error. The short
# ones (`f`, `fid`) could be ordinary words, so they count only when a number follows.
_STRICT_KEY = re.compile(r"(?<![^\W\d_])fidelity\b\s*[:=]?|保真度?\s*[:=]?", re.IGNORECASE)
_SHORT_KEY = re.compile(r"(?<![\w.])(?:fid|f)(?:\s*[:=]\s*|\s+)(?=[+\-.,\d])", re.IGNORECASE)


def normalize(text: str) -> str:
    """Text as the parser reads it: NFKC-folded (full-width digits, signs, letters) and trimmed."""
    return unicodedata.normalize("NFKC", text).strip()


def parse_caption(text: str | None, *, after_command: bool = False) -> float | None:
    """The fidelity `text` asks for, or None when it asks for none.

    `after_command`: the text followed a command, so a leading number counts (`0.3 please`).
    """
    if not text:
        return None
    return _find_fidelity(normalize(text), leading_number=after_command)


def parse_fidelity(text: str) -> float:
    """Parse a value given on its own (a `/fidelity 0.3` argument, a command-line option)."""
    value = _find_fidelity(normalize(text), leading_number=True)
    if value is None:
        raise FidelityError(f"{text.strip()!r} is not a fidelity.", value=text.strip())
    return value


def _find_fidelity(text: str, *, leading_number: bool) -> float | None:
    """The fidelity in `text`; `leading_number` takes `0.3 please` (a command's first argument)."""
    if _MALFORMED.fullmatch(text) or (leading_number and _MALFORMED.match(text)):
        raise _unreadable(text)
    bare = _BARE.fullmatch(text)
    if bare is None and leading_number and _starts_with_number(text):
        bare = _BARE.match(text)
    if bare:
        return _to_fidelity(bare["num"], bool(bare["pct"]))
    for key in (_STRICT_KEY, _SHORT_KEY):
        found = key.search(text)
        if found is None:
            continue
        if _MALFORMED.match(text, found.end()):
            raise _unreadable(text[found.end() :])
        value = _VALUE.match(text, found.end())
        if value:
            return _to_fidelity(value["num"], bool(value["pct"]))
        if key is _STRICT_KEY:
            raise _unreadable(text[found.end() :])
    return None


def _unreadable(rest: str) -> FidelityError:
    """The error for a fidelity that is meant but can't be read; it shows the first word."""
    shown = rest.split(maxsplit=1)[:1]
    return FidelityError(
        "Fidelity must be a number between 0 and 1, like 0.3 or 30%.",
        value=shown[0] if shown else "",
    )


def _starts_with_number(text: str) -> bool:
    first = text.split(maxsplit=1)[:1]
    return bool(first) and _BARE.fullmatch(first[0]) is not None


def _to_fidelity(number: str, percent: bool) -> float:
    """The number as written (`0,3`, `30` with `%`) through the one fidelity rule."""
    value = float(number.replace(",", "."))
    try:
        return check_fidelity(value / 100 if percent else value)
    except FidelityError:
        shown = f"{number}%" if percent else number
        raise FidelityError(
            f"Fidelity {shown} is out of range: use a number between 0 and 1, like 0.3 (or 30%).",
            value=shown,
        ) from None
