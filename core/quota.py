"""The quota policy: which limits apply to whom, and when a quota day starts and ends.

A quota day is a calendar day in one configured IANA time zone, so "resets at midnight" means the
same instant for every user and the store can key its counters by a plain date string.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.store import Usage

if TYPE_CHECKING:
    from core.settings import Settings


@lru_cache(maxsize=32)
def zone(tz: str) -> ZoneInfo:
    """The IANA zone named `tz`; ValueError with a clear message when there is none."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r} (use an IANA name such as 'UTC')") from None


def day_key(now: float, tz: str = "UTC") -> str:
    """The quota day containing unix time `now` in zone `tz`, as "YYYY-MM-DD"."""
    return datetime.fromtimestamp(now, zone(tz)).date().isoformat()


def next_reset(now: float, tz: str = "UTC") -> float:
    """Unix time of the next local midnight after `now`: when today's quota day ends.

    Days with a DST change are 23 or 25 hours long. Where midnight itself falls in a DST gap the
    day starts at the transition, which is what `fold=0` resolves the missing wall time to.
    """
    tzinfo = zone(tz)
    tomorrow = datetime.fromtimestamp(now, tzinfo).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=tzinfo).timestamp()


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    """What `/quota` shows: `limit`/`left` None means unlimited; credits come after `left`."""

    used: int
    limit: int | None
    left: int | None
    credits: int
    resets_at: float
    tz: str = "UTC"
    """The zone whose midnight `resets_at` is, to show it in."""
    now: float | None = None
    """When the status was taken (for the time left until the reset)."""


@dataclass(frozen=True, slots=True, init=False)
class QuotaPolicy:
    """Daily limits per user and per group chat (0 = unlimited), admins exempt, one time zone."""

    per_user_per_day: int
    per_chat_per_day: int
    admin_ids: frozenset[str]
    tz: str

    def __init__(
        self,
        per_user_per_day: int,
        per_chat_per_day: int = 0,
        admin_ids: Collection[str] = (),
        tz: str = "UTC",
    ) -> None:
        if per_user_per_day < 0 or per_chat_per_day < 0:
            raise ValueError("quota limits must be 0 (unlimited) or more")
        zone(tz)
        object.__setattr__(self, "per_user_per_day", per_user_per_day)
        object.__setattr__(self, "per_chat_per_day", per_chat_per_day)
        object.__setattr__(self, "admin_ids", frozenset(admin_ids))
        object.__setattr__(self, "tz", tz)

    @classmethod
    def from_settings(cls, settings: Settings) -> QuotaPolicy:
        """The policy the `QUOTA_*` and `ADMIN_IDS` settings describe."""
        return cls(
            settings.quota_per_user_per_day,
            settings.quota_per_chat_per_day,
            settings.admin_ids,
            settings.quota_timezone,
        )

    def is_admin(self, platform: str, user_id: str) -> bool:
        """Whether `platform:user_id` is listed as an admin (e.g. "telegram:123")."""
        return f"{platform}:{user_id}" in self.admin_ids

    def limits_for(
        self,
        platform: str,
        user_id: str,
        chat_id: str,
        is_group: bool,
        chat_limit: int | None = None,
    ) -> tuple[int | None, int | None]:
        """`(user_limit, chat_limit)` for `JobStore.reserve`; None means no limit.

        A group's limit is the smaller of `per_chat_per_day` and the chat's own `chat_limit`
        (its admins' setting): a group can spend less than the operator allows, never more.
        """
        del chat_id  # the same rule in every chat; the chat's own limit comes as `chat_limit`
        if self.is_admin(platform, user_id):
            return None, None
        user_limit = self.per_user_per_day or None
        if not is_group:
            return user_limit, None
        limits = [limit for limit in (self.per_chat_per_day, chat_limit) if limit]
        return user_limit, min(limits) if limits else None

    def day_key(self, now: float) -> str:
        """The quota day of `now` in the policy's zone."""
        return day_key(now, self.tz)

    def next_reset(self, now: float) -> float:
        """When the quota day of `now` ends."""
        return next_reset(now, self.tz)

    def status(self, usage: Usage, now: float, *, platform: str, user_id: str) -> QuotaStatus:
        """The user's quota as of `now`, from the store's `usage` of today's day key."""
        limit, _ = self.limits_for(platform, user_id, "", is_group=False)
        left = None if limit is None else max(0, limit - usage.used)
        reset = self.next_reset(now)
        return QuotaStatus(usage.used, limit, left, usage.credits, reset, self.tz, now)
