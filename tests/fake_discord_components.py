"""The fake Discord's checks of message components, from Discord's documentation.

At most 5 action rows; a row holds up to 5 buttons or exactly one select menu; a `custom_id` is
1-100 characters and unique in its message; a button label at most 80 characters; a string select
has 1-25 options (label and value 1-100 characters, at most one default unless `max_values`
allows more) and a placeholder of at most 150. A message breaking one is refused (50035).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tests.fake_discord import _invalid_form

ACTION_ROW, BUTTON, STRING_SELECT = 1, 2, 3
SELECTS = frozenset({3, 5, 6, 7, 8})


def check_components(rows: Sequence[Any] | None) -> None:
    """Refuse components Discord would refuse."""
    if not rows:
        return
    if len(rows) > 5:
        raise _invalid_form("components", "Must be 5 or fewer in length.")
    seen: set[str] = set()
    for r, row in enumerate(rows):
        if not isinstance(row, dict) or row.get("type") != ACTION_ROW:
            raise _invalid_form(f"components.{r}", "Top-level components must be action rows.")
        items = row.get("components") or []
        selects = [i for i in items if i.get("type") in SELECTS]
        if not items or len(items) > 5 or (selects and len(items) != 1):
            raise _invalid_form(f"components.{r}", "A row holds 1-5 buttons or one select menu.")
        for item in items:
            _check_item(item, f"components.{r}", seen)


def _check_item(item: dict[str, Any], where: str, seen: set[str]) -> None:
    custom_id = item.get("custom_id")
    if custom_id is not None:
        if not 1 <= len(str(custom_id)) <= 100 or custom_id in seen:
            raise _invalid_form(f"{where}.custom_id", "Must be 1-100 characters and unique.")
        seen.add(str(custom_id))
    if item.get("type") == BUTTON and len(str(item.get("label") or "")) > 80:
        raise _invalid_form(f"{where}.label", "Must be 80 or fewer in length.")
    if item.get("type") != STRING_SELECT:
        return
    options = item.get("options") or []
    if not 1 <= len(options) <= 25:
        raise _invalid_form(f"{where}.options", "Must be between 1 and 25 in length.")
    for option in options:
        for key in ("label", "value"):
            if not 1 <= len(str(option.get(key) or "")) <= 100:
                raise _invalid_form(f"{where}.options.{key}", "Must be 1-100 characters.")
    defaults = sum(bool(o.get("default")) for o in options)
    if defaults > int(item.get("max_values") or 1):
        raise _invalid_form(f"{where}.options", "Too many default options.")
    if len(str(item.get("placeholder") or "")) > 150:
        raise _invalid_form(f"{where}.placeholder", "Must be 150 or fewer in length.")
