"""The quota policy: day keys and reset times in a configured zone (DST included), and limits."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from core.quota import QuotaPolicy, QuotaStatus, day_key, next_reset
from core.store import Usage


def at(
    tz: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0
) -> float:
    """Unix time of a local wall-clock time in `tz`."""
    return datetime(year, month, day, hour, minute, sec, tzinfo=ZoneInfo(tz)).timestamp()


def test_day_key_is_the_local_calendar_day() -> None:
    now = at("UTC", 2026, 11, 27, 16, 30)
    assert day_key(now) == "2026-11-27"
    assert day_key(now, "Asia/Shanghai") == "2026-11-28"  # 00:30 the next day
    assert day_key(now, "America/Los_Angeles") == "2026-11-27"


def test_next_reset_is_the_next_local_midnight() -> None:
    now = at("UTC", 2026, 11, 27, 15, 59, 59)
    assert next_reset(now, "Asia/Shanghai") == now + 1  # 16:00 UTC is midnight in Shanghai
    assert next_reset(now + 1, "Asia/Shanghai") == now + 1 + 86_400
    assert next_reset(now, "UTC") == at("UTC", 2026, 11, 28)
    assert next_reset(at("UTC", 2026, 11, 28), "UTC") == at("UTC", 2026, 11, 29)


@pytest.mark.parametrize(
    ("day", "hours"), [((2026, 3, 29), 23), ((2026, 10, 25), 25), ((2026, 7, 1), 24)]
)
def test_berlin_dst_days_have_23_or_25_hours(day: tuple[int, int, int], hours: int) -> None:
    start = at("Europe/Berlin", *day)
    end = next_reset(start, "Europe/Berlin")
    assert end - start == hours * 3600
    assert next_reset(end - 1, "Europe/Berlin") == end
    # 02:30 does not exist on the spring day and exists twice on the autumn day
    assert next_reset(start + 2.5 * 3600, "Europe/Berlin") == end


@pytest.mark.parametrize(
    ("tz", "first", "last"),
    [
        ("Europe/Berlin", (2026, 3, 27), (2026, 3, 31)),
        ("Europe/Berlin", (2026, 10, 23), (2026, 10, 27)),
        ("America/Santiago", (2026, 4, 3), (2026, 4, 7)),  # DST ends at midnight
        ("America/Santiago", (2026, 9, 4), (2026, 9, 8)),  # DST starts at midnight: no 00:00
        ("America/Havana", (2026, 3, 6), (2026, 3, 10)),
        ("Australia/Lord_Howe", (2026, 4, 3), (2026, 4, 7)),  # a 30-minute shift
        ("Pacific/Apia", (2011, 12, 28), (2012, 1, 1)),  # 2011-12-30 never happened there
        ("Asia/Kolkata", (2026, 1, 1), (2026, 1, 3)),
    ],
)
def test_next_reset_starts_the_next_day_at_every_instant(
    tz: str, first: tuple[int, int, int], last: tuple[int, int, int]
) -> None:
    start, end = at("UTC", *first), at("UTC", *last)
    for now in range(int(start), int(end), 599):
        reset = next_reset(now, tz)
        assert reset > now
        assert day_key(reset - 1, tz) == day_key(now, tz), (tz, now)
        assert day_key(reset, tz) > day_key(now, tz), (tz, now)


def test_day_keys_sort_like_days() -> None:
    keys = [day_key(1_767_225_600 + i * 86_400, "Europe/Berlin") for i in range(800)]
    assert keys == sorted(keys) and len(set(keys)) == 800


def test_unknown_time_zone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        QuotaPolicy(per_user_per_day=5, tz="Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        day_key(0.0, "../etc/passwd")
    with pytest.raises(ValueError, match="0 \\(unlimited\\) or more"):
        QuotaPolicy(per_user_per_day=-1)


def test_limits_for_users_groups_and_admins() -> None:
    policy = QuotaPolicy(
        per_user_per_day=20, per_chat_per_day=50, admin_ids={"telegram:1"}, tz="Asia/Shanghai"
    )
    assert policy.limits_for("telegram", "2", "2", is_group=False) == (20, None)
    assert policy.limits_for("telegram", "2", "-100", is_group=True) == (20, 50)
    assert policy.limits_for("telegram", "1", "-100", is_group=True) == (None, None)
    assert policy.limits_for("discord", "1", "9", is_group=True) == (20, 50)
    assert policy.is_admin("telegram", "1") and not policy.is_admin("discord", "1")


def test_a_groups_own_limit_only_lowers_the_operators() -> None:
    policy = QuotaPolicy(per_user_per_day=20, per_chat_per_day=50, admin_ids={"telegram:1"})
    assert policy.limits_for("telegram", "2", "-100", True, chat_limit=10) == (20, 10)
    assert policy.limits_for("telegram", "2", "-100", True, chat_limit=80) == (20, 50)
    assert policy.limits_for("telegram", "2", "2", False, chat_limit=10) == (20, None)
    assert policy.limits_for("telegram", "1", "-100", True, chat_limit=10) == (None, None)
    unlimited = QuotaPolicy(per_user_per_day=20)
    assert unlimited.limits_for("discord", "2", "9", True, chat_limit=30) == (20, 30)


def test_zero_means_unlimited() -> None:
    policy = QuotaPolicy(per_user_per_day=0, per_chat_per_day=0)
    assert policy.limits_for("discord", "7", "8", is_group=True) == (None, None)
    assert QuotaPolicy(per_user_per_day=3).limits_for("cli", "me", "me", True) == (3, None)


def test_status_shows_used_left_credits_and_reset() -> None:
    policy = QuotaPolicy(per_user_per_day=5, admin_ids=["discord:42"], tz="Europe/Berlin")
    now = at("Europe/Berlin", 2026, 11, 27, 18, 0)
    midnight = at("Europe/Berlin", 2026, 11, 28)
    status = policy.status(Usage(used=3, credits=2), now, platform="telegram", user_id="7")
    assert status == QuotaStatus(
        used=3, limit=5, left=2, credits=2, resets_at=midnight, tz="Europe/Berlin", now=now
    )
    over = policy.status(Usage(used=9), now, platform="telegram", user_id="7")
    assert (over.left, over.credits) == (0, 0)
    admin = policy.status(Usage(used=40), now, platform="discord", user_id="42")
    assert (admin.used, admin.limit, admin.left) == (40, None, None)
    assert policy.day_key(now) == "2026-11-27" and policy.next_reset(now) == midnight
