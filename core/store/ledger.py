"""The quota ledger in SQL, for both databases: paying for a job, refunding it, granting credits.

Each step is a conditional write that says whether it took (a row comes back or not) rather than
a read followed by a write, so it stays exact when many transactions of one user run at once:
on PostgreSQL the upsert locks the counter row and re-reads its latest value; on SQLite one
writer runs at a time anyway. Rows are always taken in the order user day -> credits -> chat day
(a refund locks the job row first), so two transactions never wait for each other in a cycle.

The user's load (jobs in flight, admissions in the last minute) is counted in the same
transaction, after a per-user lock (`Dialect.lock_user`, taken before any row) on PostgreSQL, so
any number of replicas together admit exactly the limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from core.errors import (
    ChatQuotaExceededError,
    QuotaExceededError,
    RateLimitedError,
    TooManyInFlightError,
)
from core.jobs import Job, NewJob, Paid
from core.store.dialect import UNFINISHED_SQL, Row, Tx
from core.store.inbox import TAKE_UPDATE
from core.store.protocol import Usage
from core.store.schema import INSERT_JOB, job_params

# $4 is the limit, NULL for none. The increment happens only below it: no row comes back when
# the limit is reached (or is 0).
COUNT_USER: Final = (
    "INSERT INTO daily_usage AS u (platform, user_id, day, used) "
    "SELECT $1, $2, $3, 1 WHERE CAST($4 AS integer) IS NULL OR CAST($4 AS integer) > 0 "
    "ON CONFLICT (platform, user_id, day) DO UPDATE SET used = u.used + 1 "
    "WHERE CAST($4 AS integer) IS NULL OR u.used < CAST($4 AS integer) RETURNING used"
)
IN_FLIGHT: Final = (
    "(SELECT COUNT(*) FROM jobs WHERE platform = $1 AND user_id = $2 "  # noqa: S608
    f"AND state IN ({UNFINISHED_SQL}))"
)
"""The user's ($1, $2) unfinished jobs."""
IN_FLIGHT_ROOM: Final = (
    "(CAST(${limit} AS integer) IS NULL OR " + IN_FLIGHT + " < CAST(${limit} AS integer))"
)
"""Fewer than `${limit}` unfinished jobs (a NULL limit always holds): the in-flight limit's one
rule, its placeholder's number formatted in."""
RECENT_ROOM: Final = (
    "(CAST(${limit} AS integer) IS NULL OR (SELECT COUNT(*) FROM jobs WHERE platform = $1 "
    "AND user_id = $2 AND created_at > ${since}) < CAST(${limit} AS integer))"
)
"""Fewer than `${limit}` jobs created after `${since}`: the burst limit's one rule."""
ROOM: Final = f"{IN_FLIGHT_ROOM.format(limit=5)} AND {RECENT_ROOM.format(since=6, limit=7)}"
"""The user ($1, $2) is below both limits: $5 in flight, $7 created after $6."""
COUNT_USER_IF_ROOM: Final = (
    "INSERT INTO daily_usage AS u (platform, user_id, day, used) "
    "SELECT $1, $2, $3, 1 WHERE (CAST($4 AS integer) IS NULL OR CAST($4 AS integer) > 0) "
    f"AND {ROOM} "
    "ON CONFLICT (platform, user_id, day) DO UPDATE SET used = u.used + 1 "
    "WHERE CAST($4 AS integer) IS NULL OR u.used < CAST($4 AS integer) RETURNING used"
)
"""`COUNT_USER`, only while the user has `ROOM`: no row comes back when either is full."""
COUNT_CHAT: Final = (
    "INSERT INTO chat_usage AS c (platform, chat_id, day, used) "
    "SELECT $1, $2, $3, 1 WHERE CAST($4 AS integer) > 0 "
    "ON CONFLICT (platform, chat_id, day) DO UPDATE SET used = c.used + 1 "
    "WHERE c.used < CAST($4 AS integer) RETURNING used"
)
SPEND_CREDIT: Final = (
    "UPDATE credits SET balance = balance - 1 "
    "WHERE platform = $1 AND user_id = $2 AND balance > 0 RETURNING balance"
)
GRANT: Final = (
    "INSERT INTO credits AS c (platform, user_id, balance) "
    "VALUES ($1, $2, CASE WHEN CAST($3 AS integer) > 0 THEN CAST($3 AS integer) ELSE 0 END) "
    "ON CONFLICT (platform, user_id) DO UPDATE SET balance = CASE "
    "WHEN c.balance + CAST($3 AS integer) > 0 THEN c.balance + CAST($3 AS integer) ELSE 0 END "
    "RETURNING balance"
)
"""Add $3 credits (negative takes back, never below 0); the new balance comes back."""
USAGE: Final = (
    "SELECT (SELECT used FROM daily_usage WHERE platform = $1 AND user_id = $2 AND day = $3), "
    "(SELECT balance FROM credits WHERE platform = $1 AND user_id = $2)"
)
"""A user's count on a day and credit balance, each NULL when there is no row."""
CHAT_USAGE: Final = "SELECT used FROM chat_usage WHERE platform = $1 AND chat_id = $2 AND day = $3"
USER_LOAD: Final = (
    f"SELECT {IN_FLIGHT_ROOM.format(limit=3)}, {RECENT_ROOM.format(since=4, limit=5)}, "  # noqa: S608
    f"{IN_FLIGHT}, (SELECT MIN(created_at) FROM jobs "
    "WHERE platform = $1 AND user_id = $2 AND created_at > $4)"
)
"""Which of the user's limits ($3 in flight, $5 created after $4) has room, their jobs in flight,
and when the oldest of those created after $4 was."""
BURST_WINDOW: Final = 60.0
"""Seconds the burst limit looks back."""


def usage_from(row: Row | None) -> Usage:
    """The `Usage` in a row of `USAGE` (no row, or NULL, is 0)."""
    used, credits = row if row is not None else (None, None)
    return Usage(used=used or 0, credits=credits or 0)


@dataclass(frozen=True, slots=True)
class Reservation:
    """One call of `JobStore.reserve`: the job and what it is paid from, and when."""

    job: NewJob
    day: str
    user_limit: int | None
    chat_limit: int | None
    owner: str | None
    now: float
    max_in_flight: int | None = None
    """The user's unfinished jobs allowed, this one included; None for no limit."""
    max_per_minute: int | None = None
    """The user's jobs allowed in the last `BURST_WINDOW` seconds, this one included."""

    @property
    def limits_load(self) -> bool:
        """Whether the user's load (in flight, last minute) is checked."""
        return self.max_in_flight is not None or self.max_per_minute is not None

    def room_params(self) -> tuple[object, ...]:
        """The parameters $1...$7 of `COUNT_USER_IF_ROOM`."""
        since = self.now - BURST_WINDOW
        user = (self.job.platform, self.job.user_id)
        return (*user, self.day, self.user_limit, self.max_in_flight, since, self.max_per_minute)

    def row(self, paid: Paid) -> Job:
        """The queued job as it is inserted, paid `paid`."""
        return self.job.reserved(
            now=self.now,
            day=self.day,
            paid=paid,
            chat_counted=self.chat_limit is not None,
            owner=self.owner,
        )


async def reserve_job(tx: Tx, r: Reservation) -> Job:
    """Pay for the job (daily allowance, else a credit; and the chat's allowance) and insert it.

    Raises `TooManyInFlightError` / `RateLimitedError` (see `check_load`), `QuotaExceededError`
    / `ChatQuotaExceededError`; the caller's transaction then rolls back whatever was counted.
    """
    user = (r.job.platform, r.job.user_id)
    if not r.limits_load:
        counted = await tx.fetchval(COUNT_USER, *user, r.day, r.user_limit) is not None
    else:
        if tx.dialect.lock_user:
            await tx.fetchval(tx.dialect.lock_user, *user)
        counted = await tx.fetchval(COUNT_USER_IF_ROOM, *r.room_params()) is not None
        if not counted:  # the day is full, or the user's load: refused if it is the load
            await check_load(tx, r)
    paid: Paid
    if r.user_limit is None:  # counted all the same
        paid = "free"
    elif counted:
        paid = "daily"
    elif await tx.fetchval(SPEND_CREDIT, *user) is not None:
        paid = "credit"
    else:
        usage = usage_from(await tx.fetchrow(USAGE, *user, r.day))
        raise QuotaExceededError(
            f"Daily quota used up ({usage.used} of {r.user_limit}) and no credits left.",
            used=usage.used,
            limit=r.user_limit,
            credits=usage.credits,
        )
    chat = (r.job.platform, r.job.chat_id)
    if (
        r.chat_limit is not None
        and await tx.fetchval(COUNT_CHAT, *chat, r.day, r.chat_limit) is None
    ):
        chat_used = await tx.fetchval(CHAT_USAGE, *chat, r.day) or 0
        credits = usage_from(await tx.fetchrow(USAGE, *user, r.day)).credits
        raise ChatQuotaExceededError(
            f"This chat's daily quota is used up ({chat_used} of {r.chat_limit}).",
            used=chat_used,
            limit=r.chat_limit,
            # The balance the user keeps: the credit spent above comes back with the rollback.
            credits=credits + (paid == "credit"),
        )
    job = r.row(paid)
    await tx.execute(INSERT_JOB, *job_params(job, tx.dialect))
    if r.job.source_update is not None:  # the update that asked is handled with it, at once
        await tx.execute(TAKE_UPDATE, r.job.platform, r.job.source_update)
    return job


async def check_load(tx: Tx, r: Reservation) -> None:
    """Refuse the job if the user has `max_in_flight` jobs unfinished, or `max_per_minute`
    created within the last minute (the user already locked where the database needs it)."""
    user = (r.job.platform, r.job.user_id)
    since = r.now - BURST_WINDOW
    row = await tx.fetchrow(USER_LOAD, *user, r.max_in_flight, since, r.max_per_minute)
    in_flight_room, recent_room, in_flight, oldest = row or (True, True, 0, r.now)
    if not in_flight_room:
        raise TooManyInFlightError(
            f"You already have {in_flight} photos in progress; wait for them to finish.",
            limit=r.max_in_flight,
        )
    if not recent_room:
        retry_after = max(1, round(float(oldest) + BURST_WINDOW - r.now))
        raise RateLimitedError(
            f"Too many photos in a minute; try again in {retry_after} s.",
            retry_after=retry_after,
            limit=r.max_per_minute,
        )


async def refund_job(tx: Tx, job_id: str, now: float) -> bool:
    """Give the job's payment back where it came from; False if already refunded or unknown."""
    row = await tx.fetchrow(
        "SELECT platform, user_id, chat_id, day, paid, chat_counted FROM jobs "  # noqa: S608
        f"WHERE id = $1{tx.dialect.lock_row}",
        job_id,
    )
    if row is None or row[4] is None:
        return False
    platform, user_id, chat_id, day, paid, chat_counted = row
    if paid == "credit":
        await tx.execute(
            "INSERT INTO credits (platform, user_id, balance) VALUES ($1, $2, 1) "
            "ON CONFLICT (platform, user_id) DO UPDATE SET balance = credits.balance + 1",
            platform,
            user_id,
        )
    else:
        await tx.execute(
            "UPDATE daily_usage SET used = used - 1 "
            "WHERE platform = $1 AND user_id = $2 AND day = $3 AND used > 0",
            platform,
            user_id,
            day,
        )
    if chat_counted:
        await tx.execute(
            "UPDATE chat_usage SET used = used - 1 "
            "WHERE platform = $1 AND chat_id = $2 AND day = $3 AND used > 0",
            platform,
            chat_id,
            day,
        )
    await tx.execute(
        "UPDATE jobs SET paid = NULL, chat_counted = false, updated_at = $2 WHERE id = $1",
        job_id,
        now,
    )
    return True
