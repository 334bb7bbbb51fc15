"""Operator commands on the store: `quota show`, `quota grant` and `jobs`."""

from __future__ import annotations

import sys
import time
from datetime import datetime

from bots import messages as m
from bots.store_access import with_store
from core.platform_ids import parse_platform_id
from core.quota import QuotaPolicy, zone
from core.settings import Settings
from core.store import JobStore


class UserArgError(ValueError):
    """A USER argument that is not `platform:id`."""


def parse_user(text: str) -> tuple[str, str]:
    """`telegram:123` -> ("telegram", "123")."""
    parsed = parse_platform_id(text)
    if parsed is None:
        raise UserArgError(
            f"{text!r} is not a user; write it as telegram:123 or discord:456 (the numeric id)"
        )
    return parsed


def _user_or_exit(text: str) -> tuple[str, str] | None:
    """The user `text` names, or None having said on stderr why it names none."""
    try:
        return parse_user(text)
    except UserArgError as exc:
        print(f"retouch-bot: {exc}", file=sys.stderr)
        return None


def _when(ts: float, tz: str = "UTC") -> str:
    """A moment for the operator: date and time in `tz` (the quota's zone for resets)."""
    return datetime.fromtimestamp(ts, zone(tz)).strftime(f"%Y-%m-%d %H:%M {tz}")


def _policy(settings: Settings) -> QuotaPolicy:
    return QuotaPolicy.from_settings(settings)


async def quota_show(settings: Settings, user: str) -> int:
    """Print used, left, credits and the reset time of one user's quota today."""
    who = _user_or_exit(user)
    if who is None:
        return 2
    platform, user_id = who
    policy = _policy(settings)
    now = time.time()

    async def show(store: JobStore) -> int:
        usage = await store.usage(platform, user_id, policy.day_key(now))
        purchases = await store.purchases(platform, user_id)
        status = policy.status(usage, now, platform=platform, user_id=user_id)
        limit = "unlimited" if status.limit is None else str(status.limit)
        left = "unlimited" if status.left is None else str(status.left)
        left_in = m.time_left(status.resets_at - now, "en")
        print(f"user:     {platform}:{user_id}")
        print(f"used:     {status.used} of {limit} today")
        print(f"left:     {left}")
        print(f"credits:  {status.credits} (granted, spent after the daily allowance)")
        print(f"resets:   {_when(status.resets_at, settings.quota_timezone)} ({left_in})")
        print(f"bought:   {len(purchases)} purchases" + (":" if purchases else ""))
        for purchase in purchases:
            refunded = f", {purchase.state}" if purchase.state != "paid" else ""
            print(
                f"  {_when(purchase.created_at)}  {purchase.credits} photos for "
                f"{purchase.amount} {purchase.currency}  charge {purchase.charge_id}{refunded}"
            )
        return 0

    return await with_store(settings, show)


async def quota_grant(settings: Settings, user: str, credits: int) -> int:
    """Add (or with a negative number take back) extra credits for one user."""
    who = _user_or_exit(user)
    if who is None:
        return 2
    platform, user_id = who

    async def grant(store: JobStore) -> int:
        balance = await store.grant(platform, user_id, credits)
        print(f"{platform}:{user_id} now has {balance} extra credits")
        return 0

    return await with_store(settings, grant)


async def list_jobs(settings: Settings, limit: int, user: str | None) -> int:
    """Print the newest jobs, one line each."""
    who = _user_or_exit(user) if user else None
    if user and who is None:
        return 2

    async def listing(store: JobStore) -> int:
        jobs = await store.recent_jobs(limit, user=who)
        if not jobs:
            print("no jobs")
            return 0
        print(f"{'job':32}  {'state':10}  {'user':22}  {'fidelity':8}  {'updated':20}  error")
        for job in jobs:
            print(
                f"{job.id:32}  {job.state:10}  {job.platform + ':' + job.user_id:22}  "
                f"{job.fidelity:<8g}  {_when(job.updated_at):20}  {job.error_code or ''}"
            )
        return 0

    return await with_store(settings, listing)
