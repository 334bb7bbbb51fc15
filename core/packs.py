"""The packs of credits on sale (`PAYMENTS_STARS_PACKS`), and the invoice payload naming one.

Apart from `core.payments` so the settings can parse packs without importing the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

_PAYLOAD = re.compile(r"credits:(?P<photos>\d{1,6}):(?P<stars>\d{1,7})")
MAX_PACKS: Final = 6
MAX_AMOUNT: Final = 100_000


@dataclass(frozen=True, slots=True)
class Pack:
    """`photos` extra retouches for `stars` Telegram Stars."""

    photos: int
    stars: int

    @property
    def payload(self) -> str:
        """The invoice payload that comes back with the payment."""
        return f"credits:{self.photos}:{self.stars}"

    @classmethod
    def from_payload(cls, payload: str) -> Pack | None:
        """The pack an invoice payload names, or None when it is not one of ours."""
        match = _PAYLOAD.fullmatch(payload)
        if match is None or int(match["photos"]) < 1:
            return None
        return cls(int(match["photos"]), int(match["stars"]))


def parse_packs(value: Any) -> Any:
    """`10:50,50:200` -> packs of 10 photos for 50 Stars and 50 for 200; empty: none."""
    if not isinstance(value, str):
        return value
    packs: list[Pack] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        photos, sep, stars = item.partition(":")
        if not (sep and f"{photos}{stars}".isascii() and photos.isdigit() and stars.isdigit()):
            raise ValueError(f"{item!r} is not photos:stars, e.g. 10:50,50:200")
        pack = Pack(int(photos), int(stars))
        if not (1 <= pack.photos <= MAX_AMOUNT and 1 <= pack.stars <= MAX_AMOUNT):
            raise ValueError(f"{item!r}: photos and stars must be between 1 and {MAX_AMOUNT}")
        if any(p.photos == pack.photos for p in packs):
            raise ValueError(f"two packs of {pack.photos} photos")
        packs.append(pack)
    if len(packs) > MAX_PACKS:
        raise ValueError(f"at most {MAX_PACKS} packs")
    return sorted(packs, key=lambda p: p.photos)
