"""The shared `JobStore`: PostgreSQL through an asyncpg connection pool, for several replicas.

Every operation is one transaction (or one statement) on a pooled connection, so any number of
processes can share the database and each sees the others' commits at once.

Quotas stay exact with row locks, not SERIALIZABLE. A reservation increments the user's day
counter with one conditional upsert (`INSERT ... ON CONFLICT DO UPDATE ... WHERE used < limit`),
which locks that row and re-reads its latest committed value, so concurrent reservations of one
user queue on the row and each sees the count the previous one left: no lost update, no
over-admission, and no retries. In the common case that upsert and the job's insert are one
statement, so the row stays locked for one statement and its commit. Under SERIALIZABLE the same
200 simultaneous requests from one user would mostly end in serialization failures, each
retried (a retry storm on exactly the hot row), while requests of different users never touch
the same rows either way. Credits and the chat's counter are taken the same way (`UPDATE ...
WHERE balance > 0`, a conditional upsert), always in the order user day -> credits -> chat day,
and refunds lock the job row first and then the counters in that same order, so two
transactions never wait for each other in a cycle. A deadlock or serialization failure (which
this order should never produce) is retried all the same.

Claims: a job's `owner` is the replica that holds it and `heartbeat_at` when it last said so.
`claim` is a single `UPDATE ... WHERE owner IS NULL OR owner = me OR heartbeat_at < stale
RETURNING`, and `claim_stale` picks its jobs with `FOR UPDATE SKIP LOCKED`, so two replicas
looking at once never get the same job.

Times are unix seconds (`double precision`) from the store's clock, as in the SQLite store;
replicas need clocks kept in step (NTP), far closer than `JOBS_STALE_AFTER_SECONDS`.

The schema is created and migrated on open with the same scheme as SQLite's `user_version`: a
`schema_version` row and an ordered list of migrations, applied in one transaction under a
transaction-scoped advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from core.jobs import JOB_STATES, UNFINISHED_STATES, Job, JobState, NewJob, Paid
from core.store import (
    AlreadyImportedError,
    ChatQuotaExceededError,
    QuotaExceededError,
    Stats,
    StoreDump,
    StoreError,
    Usage,
    UserSettings,
    check_transition,
    new_export_id,
    unowned,
)

T = TypeVar("T")
Clock = Callable[[], float]
Connection = Any  # asyncpg.Connection (or a pool's proxy of one); asyncpg ships no types

_STATES_SQL = ", ".join(f"'{state}'" for state in JOB_STATES)
_UNFINISHED_SQL = ", ".join(f"'{state}'" for state in sorted(UNFINISHED_STATES))

MIGRATIONS: Final[list[tuple[str, ...]]] = [
    # 1: jobs with their reservation, usage counters, credits, user settings.
    (
        f"""CREATE TABLE jobs (
            id text PRIMARY KEY,
            platform text NOT NULL CHECK (platform IN ('telegram', 'discord', 'cli')),
            user_id text NOT NULL,
            chat_id text NOT NULL,
            reply_target jsonb NOT NULL,
            input_ref jsonb NOT NULL,
            fidelity double precision NOT NULL,
            state text NOT NULL CHECK (state IN ({_STATES_SQL})),
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            error_code text,
            attempts integer NOT NULL DEFAULT 0,
            result_path text,
            input_path text,
            day text NOT NULL,
            paid text CHECK (paid IN ('daily', 'credit', 'free')),
            chat_counted boolean NOT NULL DEFAULT false,
            owner text,
            heartbeat_at double precision
        )""",
        "CREATE INDEX jobs_by_user ON jobs (platform, user_id, created_at)",
        "CREATE INDEX jobs_by_created ON jobs (created_at)",
        "CREATE INDEX jobs_by_day ON jobs (day)",
        f"CREATE INDEX jobs_unfinished ON jobs (created_at, id) WHERE state IN ({_UNFINISHED_SQL})",
        """CREATE TABLE daily_usage (
            platform text NOT NULL,
            user_id text NOT NULL,
            day text NOT NULL,
            used integer NOT NULL CHECK (used >= 0),
            PRIMARY KEY (platform, user_id, day)
        )""",
        """CREATE TABLE chat_usage (
            platform text NOT NULL,
            chat_id text NOT NULL,
            day text NOT NULL,
            used integer NOT NULL CHECK (used >= 0),
            PRIMARY KEY (platform, chat_id, day)
        )""",
        """CREATE TABLE credits (
            platform text NOT NULL,
            user_id text NOT NULL,
            balance integer NOT NULL CHECK (balance >= 0),
            PRIMARY KEY (platform, user_id)
        )""",
        """CREATE TABLE user_settings (
            platform text NOT NULL,
            user_id text NOT NULL,
            default_fidelity double precision,
            locale text,
            PRIMARY KEY (platform, user_id)
        )""",
    ),
    # 2: which exports (`retouch-bot db import`) went into this store, so none goes in twice.
    (
        """CREATE TABLE store_imports (
            export_id text PRIMARY KEY,
            source text NOT NULL,
            imported_at double precision NOT NULL,
            counts jsonb NOT NULL
        )""",
    ),
]
"""Schema changes in order; after applying them all, `schema_version.version` is their count."""

MIGRATION_LOCK: Final = 0x7265746F756368  # "retouch": the advisory lock migrations run under
_RETRIES: Final = 5
_RETRYABLE = (asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError)

_JOB_COLUMNS = (
    "id, platform, user_id, chat_id, reply_target, input_ref, fidelity, state, created_at, "
    "updated_at, day, paid, chat_counted, attempts, error_code, result_path, input_path, owner, "
    "heartbeat_at"
)
# Only constants are formatted into SQL here and below; every value is a bound parameter.
_INSERT_JOB = (
    f"INSERT INTO jobs ({_JOB_COLUMNS}) "  # noqa: S608
    f"VALUES ({', '.join(f'${n}' for n in range(1, 20))})"
)
_SELECT_JOBS = f"SELECT {_JOB_COLUMNS} FROM jobs"  # noqa: S608
_COUNT_USER = (
    "INSERT INTO daily_usage (platform, user_id, day, used) VALUES ($1, $2, $3, 1) "
    "ON CONFLICT (platform, user_id, day) DO UPDATE SET used = daily_usage.used + 1"
)
# The increment happens only below the limit; no row comes back when the limit is reached.
_COUNT_USER_BELOW = (
    "INSERT INTO daily_usage AS u (platform, user_id, day, used) "
    "SELECT $1, $2, $3, 1 WHERE $4::integer > 0 "
    "ON CONFLICT (platform, user_id, day) DO UPDATE SET used = u.used + 1 "
    "WHERE u.used < $4::integer RETURNING used"
)
_COUNT_CHAT_BELOW = (
    "INSERT INTO chat_usage AS c (platform, chat_id, day, used) "
    "SELECT $1, $2, $3, 1 WHERE $4::integer > 0 "
    "ON CONFLICT (platform, chat_id, day) DO UPDATE SET used = c.used + 1 "
    "WHERE c.used < $4::integer RETURNING used"
)
# One statement: count the job against the user's day (only below the limit, $20; NULL is no
# limit) and insert it ($1..$19 as `_job_params`), both or neither; no row when the day is full.
_RESERVE_DAILY = (
    "WITH counted AS ("  # noqa: S608
    "INSERT INTO daily_usage AS u (platform, user_id, day, used) "
    "SELECT $2, $3, $11, 1 WHERE $20::integer IS NULL OR $20::integer > 0 "
    "ON CONFLICT (platform, user_id, day) DO UPDATE SET used = u.used + 1 "
    "WHERE $20::integer IS NULL OR u.used < $20::integer RETURNING used) "
    f"INSERT INTO jobs ({_JOB_COLUMNS}) "
    f"SELECT {', '.join(f'${n}' for n in range(1, 20))} FROM counted RETURNING true"
)
_SPEND_CREDIT = (
    "UPDATE credits SET balance = balance - 1 "
    "WHERE platform = $1 AND user_id = $2 AND balance > 0 RETURNING balance"
)


def redact_url(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://(unparsable URL)"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _dsn(url: str) -> str:
    """asyncpg's DSN: SQLAlchemy-style `postgresql+asyncpg://` is accepted too."""
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("postgresql+") else url


def _row_to_job(row: Any) -> Job:
    return Job(
        id=row[0],
        platform=row[1],
        user_id=row[2],
        chat_id=row[3],
        reply_target=row[4],
        input_ref=row[5],
        fidelity=row[6],
        state=row[7],
        created_at=row[8],
        updated_at=row[9],
        day=row[10],
        paid=row[11],
        chat_counted=row[12],
        attempts=row[13],
        error_code=row[14],
        result_path=row[15],
        input_path=row[16],
        owner=row[17],
        heartbeat_at=row[18],
    )


def _job_params(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.platform,
        job.user_id,
        job.chat_id,
        job.reply_target,
        job.input_ref,
        job.fidelity,
        job.state,
        job.created_at,
        job.updated_at,
        job.day,
        job.paid,
        job.chat_counted,
        job.attempts,
        job.error_code,
        job.result_path,
        job.input_path,
        job.owner,
        job.heartbeat_at,
    )


def _rowcount(status: str) -> int:
    """Rows touched, from a command status such as "UPDATE 3" or "INSERT 0 1"."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def _init_connection(conn: Connection) -> None:
    """JSON columns come and go as Python values."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: Connection) -> None:
    """A connection goes back to the pool as it is: the store keeps no session state (no SET,
    LISTEN, cursors or session locks), so asyncpg's reset query would be a wasted round trip.
    asyncpg still rolls back a transaction left open."""


def _failure(exc: BaseException) -> StoreError:
    """A database error as the store's error, its cause chained; never the URL or password."""
    if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
        message = f"The database refused the write: UNIQUE constraint failed ({exc})"
    elif isinstance(exc, asyncpg.PostgresError):
        message = f"The database could not be written: {exc}"
    else:
        message = f"The database is unreachable: {type(exc).__name__}: {exc}"
    error = StoreError(message)
    error.__cause__ = exc
    return error


class PostgresStore:
    """`JobStore` on PostgreSQL; open it with `await PostgresStore.open(url)`."""

    def __init__(self, pool: Any, *, clock: Clock = time.time, where: str = "") -> None:
        self._pool = pool
        self._clock = clock
        self.where = where
        self._closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Clock = time.time,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> PostgresStore:
        """Connect a pool and create or migrate the schema to the latest version."""
        where = redact_url(url)
        try:
            pool = await asyncpg.create_pool(
                _dsn(url),
                min_size=min(min_size, max_size),
                max_size=max_size,
                init=_init_connection,
                reset=_keep_session,
                timeout=connect_timeout,
                command_timeout=60,
            )
        except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as exc:
            raise StoreError(
                f"Cannot connect to PostgreSQL at {where}: {type(exc).__name__}: {exc}"
            ) from None
        store = cls(pool, clock=clock, where=where)
        try:
            await store._migrate()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Close the pool (waiting briefly for connections in use); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._pool.close(), 10)
        except TimeoutError:
            self._pool.terminate()

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- plumbing -------------------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        if self._closed:
            raise StoreError("The store is closed.")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except (StoreError, QuotaExceededError):
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if self._closed:
                raise StoreError("The store is closed.") from exc
            raise _failure(exc) from exc

    async def _transaction(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Run `work` in a transaction, again (after a pause) if the server aborts it as a
        deadlock or serialization failure."""
        for attempt in range(_RETRIES):
            try:
                async with self._connection() as conn, conn.transaction():
                    return await work(conn)
            except StoreError as exc:
                if not isinstance(exc.__cause__, _RETRYABLE) or attempt == _RETRIES - 1:
                    raise
            await asyncio.sleep(min(0.2, 0.005 * 2**attempt) * random.uniform(0.5, 1.0))  # noqa: S311
        raise AssertionError("unreachable")

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._connection() as conn:
            return list(await conn.fetch(sql, *args))

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        async with self._connection() as conn:
            return await conn.fetchrow(sql, *args)

    async def _migrate(self) -> None:
        async def work(conn: Connection) -> None:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)"
            )
            await conn.execute(
                "INSERT INTO schema_version (version) VALUES (0) ON CONFLICT DO NOTHING"
            )
            version = int(await conn.fetchval("SELECT version FROM schema_version"))
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"The database at {self.where} has schema version {version}, newer than "
                    f"this program's {len(MIGRATIONS)}; upgrade the program.",
                    version=version,
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    await conn.execute(statement)
            if version < len(MIGRATIONS):
                await conn.execute("UPDATE schema_version SET version = $1", len(MIGRATIONS))

        await self._transaction(work)

    async def schema_version(self) -> int:
        """The schema version of the database (`schema_version.version`)."""
        row = await self._fetchrow("SELECT version FROM schema_version")
        return int(row[0])

    # --- quota ------------------------------------------------------------------------------

    async def reserve(
        self,
        job: NewJob,
        *,
        day: str,
        user_limit: int | None,
        chat_limit: int | None,
        owner: str | None = None,
    ) -> Job:
        """Pay for `job` (daily allowance, then credits) and insert it as queued, atomically.

        The common case (the daily allowance pays, no chat limit) is one statement: the counter
        upsert and the job insert commit together or not at all. Anything else (credits, a chat
        limit, a refusal) is a transaction of a few statements.
        """
        now = self._clock()
        user = (job.platform, job.user_id)
        chat = (job.platform, job.chat_id)

        def reserved(paid: Paid) -> Job:
            return job.reserved(
                now=now, day=day, paid=paid, chat_counted=chat_limit is not None, owner=owner
            )

        if chat_limit is None and (user_limit is None or user_limit > 0):
            fast = reserved("free" if user_limit is None else "daily")
            async with self._connection() as conn:
                if await conn.fetchval(_RESERVE_DAILY, *_job_params(fast), user_limit):
                    return fast

        async def work(conn: Connection) -> Job:
            paid: Paid
            if user_limit is None:
                await conn.execute(_COUNT_USER, *user, day)
                paid = "free"
            elif await conn.fetchval(_COUNT_USER_BELOW, *user, day, user_limit) is not None:
                paid = "daily"
            elif await conn.fetchval(_SPEND_CREDIT, *user) is not None:
                paid = "credit"
            else:
                used = await conn.fetchval(
                    "SELECT used FROM daily_usage WHERE platform = $1 AND user_id = $2 "
                    "AND day = $3",
                    *user,
                    day,
                )
                raise QuotaExceededError(
                    f"Daily quota used up ({used or 0} of {user_limit}) and no credits left.",
                    used=used or 0,
                    limit=user_limit,
                    credits=0,
                )
            if (
                chat_limit is not None
                and await conn.fetchval(_COUNT_CHAT_BELOW, *chat, day, chat_limit) is None
            ):
                row = await conn.fetchrow(
                    "SELECT (SELECT used FROM chat_usage WHERE platform = $1 AND chat_id = $2 "
                    "AND day = $3), (SELECT balance FROM credits WHERE platform = $1 "
                    "AND user_id = $4)",
                    *chat,
                    day,
                    job.user_id,
                )
                chat_used, credits = row[0] or 0, row[1] or 0
                raise ChatQuotaExceededError(
                    f"This chat's daily quota is used up ({chat_used} of {chat_limit}).",
                    used=chat_used,
                    limit=chat_limit,
                    credits=credits,
                )
            job_row = reserved(paid)
            await conn.execute(_INSERT_JOB, *_job_params(job_row))
            return job_row

        return await self._transaction(work)

    async def refund(self, job_id: str) -> bool:
        """Return the job's daily slot or credit (and chat slot); False if nothing to return."""
        now = self._clock()

        async def work(conn: Connection) -> bool:
            row = await conn.fetchrow(
                "SELECT platform, user_id, chat_id, day, paid, chat_counted FROM jobs "
                "WHERE id = $1 FOR UPDATE",
                job_id,
            )
            if row is None or row["paid"] is None:
                return False
            platform, user_id, chat_id, day, paid, chat_counted = row
            if paid == "credit":
                await conn.execute(
                    "INSERT INTO credits (platform, user_id, balance) VALUES ($1, $2, 1) "
                    "ON CONFLICT (platform, user_id) DO UPDATE SET balance = credits.balance + 1",
                    platform,
                    user_id,
                )
            else:
                await conn.execute(
                    "UPDATE daily_usage SET used = used - 1 "
                    "WHERE platform = $1 AND user_id = $2 AND day = $3 AND used > 0",
                    platform,
                    user_id,
                    day,
                )
            if chat_counted:
                await conn.execute(
                    "UPDATE chat_usage SET used = used - 1 "
                    "WHERE platform = $1 AND chat_id = $2 AND day = $3 AND used > 0",
                    platform,
                    chat_id,
                    day,
                )
            await conn.execute(
                "UPDATE jobs SET paid = NULL, chat_counted = false, updated_at = $2 WHERE id = $1",
                job_id,
                now,
            )
            return True

        return await self._transaction(work)

    async def usage(self, platform: str, user_id: str, day: str) -> Usage:
        """Counted jobs on `day` and the credit balance of one user."""
        row = await self._fetchrow(
            "SELECT (SELECT used FROM daily_usage WHERE platform = $1 AND user_id = $2 "
            "AND day = $3), (SELECT balance FROM credits WHERE platform = $1 AND user_id = $2)",
            platform,
            user_id,
            day,
        )
        return Usage(used=row[0] or 0, credits=row[1] or 0)

    async def chat_usage(self, platform: str, chat_id: str, day: str) -> int:
        """Jobs counted against a chat's allowance on `day`."""
        row = await self._fetchrow(
            "SELECT used FROM chat_usage WHERE platform = $1 AND chat_id = $2 AND day = $3",
            platform,
            chat_id,
            day,
        )
        return int(row[0]) if row else 0

    async def grant(self, platform: str, user_id: str, n: int) -> int:
        """Add `n` credits (negative takes back, floored at 0); returns the new balance."""

        async def work(conn: Connection) -> int:
            return int(
                await conn.fetchval(
                    "INSERT INTO credits AS c (platform, user_id, balance) "
                    "VALUES ($1, $2, GREATEST(0, $3::integer)) ON CONFLICT (platform, user_id) "
                    "DO UPDATE SET balance = GREATEST(0, c.balance + $3::integer) "
                    "RETURNING balance",
                    platform,
                    user_id,
                    n,
                )
            )

        return await self._transaction(work)

    # --- jobs -------------------------------------------------------------------------------

    async def transition(
        self,
        job_id: str,
        to_state: JobState,
        *,
        expect: Collection[JobState],
        expect_owner: str | None = None,
        **fields: Any,
    ) -> Job | None:
        """Compare-and-set the job's state (and `fields`); None if its state is not in `expect`.

        With `expect_owner`, also None unless that replica holds the job.
        """
        check_transition(to_state, expect, fields)
        names = sorted(fields)
        assignments = "".join(f", {name} = ${n}" for n, name in enumerate(names, start=5))
        held = "" if expect_owner is None else f" AND owner = ${5 + len(names)}"
        sql = (
            f"UPDATE jobs SET state = $1, updated_at = $2{assignments} "  # noqa: S608
            f"WHERE id = $3 AND state = ANY($4::text[]){held} RETURNING {_JOB_COLUMNS}"
        )
        args: list[Any] = [to_state, self._clock(), job_id, list(expect)]
        args += [fields[name] for name in names]
        if expect_owner is not None:
            args.append(expect_owner)
        row = await self._fetchrow(sql, *args)
        return _row_to_job(row) if row else None

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        row = await self._fetchrow(f"{_SELECT_JOBS} WHERE id = $1", job_id)
        return _row_to_job(row) if row else None

    async def recent_jobs(self, limit: int = 20, user: tuple[str, str] | None = None) -> list[Job]:
        """The newest `limit` jobs, of everyone or of one `(platform, user_id)`."""
        if user is None:
            rows = await self._fetch(f"{_SELECT_JOBS} ORDER BY created_at DESC, id LIMIT $1", limit)
        else:
            rows = await self._fetch(
                f"{_SELECT_JOBS} WHERE platform = $1 AND user_id = $2 "
                "ORDER BY created_at DESC, id LIMIT $3",
                *user,
                limit,
            )
        return [_row_to_job(row) for row in rows]

    async def unfinished_jobs(self) -> list[Job]:
        """Queued, running and delivering jobs, oldest first."""
        rows = await self._fetch(
            f"{_SELECT_JOBS} WHERE state IN ({_UNFINISHED_SQL}) ORDER BY created_at, id"
        )
        return [_row_to_job(row) for row in rows]

    # --- claims (which replica holds which job) ------------------------------------------

    async def claim_stale(
        self,
        owner: str,
        *,
        stale_after: float,
        platforms: Collection[str],
        include_own: bool = False,
        limit: int = 100,
    ) -> list[Job]:
        """Claim unfinished jobs nobody holds (or whose holder went silent), oldest first."""
        if not platforms or limit <= 0:
            return []
        now = self._clock()
        rows = await self._fetch(
            "UPDATE jobs SET owner = $1, heartbeat_at = $2 WHERE id IN ("  # noqa: S608
            f"SELECT id FROM jobs WHERE state IN ({_UNFINISHED_SQL}) "
            "AND platform = ANY($3::text[]) "
            "AND (owner IS NULL OR heartbeat_at IS NULL OR heartbeat_at < $4 "
            "OR ($5 AND owner = $1)) "
            "ORDER BY created_at, id LIMIT $6 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {_JOB_COLUMNS}",
            owner,
            now,
            sorted(platforms),
            now - stale_after,
            include_own,
            limit,
        )
        jobs = [_row_to_job(row) for row in rows]
        return sorted(jobs, key=lambda job: (job.created_at, job.id))

    async def heartbeat(self, owner: str, job_ids: Sequence[str]) -> list[str]:
        """Refresh `owner`'s heartbeat on these jobs; the ids it still holds, unfinished."""
        if not job_ids:
            return []
        rows = await self._fetch(
            "UPDATE jobs SET heartbeat_at = $1 WHERE owner = $2 "  # noqa: S608
            f"AND state IN ({_UNFINISHED_SQL}) AND id = ANY($3::text[]) RETURNING id",
            self._clock(),
            owner,
            list(job_ids),
        )
        return [row[0] for row in rows]

    async def release(self, owner: str, job_ids: Sequence[str]) -> int:
        """Unclaim `owner`'s unfinished jobs among `job_ids`; how many were released."""
        if not job_ids:
            return 0
        async with self._connection() as conn:
            status = await conn.execute(
                "UPDATE jobs SET owner = NULL, heartbeat_at = NULL WHERE owner = $1 "  # noqa: S608
                f"AND state IN ({_UNFINISHED_SQL}) AND id = ANY($2::text[])",
                owner,
                list(job_ids),
            )
        return _rowcount(status)

    # --- users ------------------------------------------------------------------------------

    async def get_user_settings(self, platform: str, user_id: str) -> UserSettings:
        """Saved settings of one user (all None when none are saved)."""
        row = await self._fetchrow(
            "SELECT default_fidelity, locale FROM user_settings "
            "WHERE platform = $1 AND user_id = $2",
            platform,
            user_id,
        )
        return UserSettings(row[0], row[1]) if row else UserSettings()

    async def set_default_fidelity(
        self, platform: str, user_id: str, fidelity: float | None
    ) -> None:
        """Save (or with None clear) the user's default fidelity."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO user_settings (platform, user_id, default_fidelity) "
                "VALUES ($1, $2, $3) ON CONFLICT (platform, user_id) "
                "DO UPDATE SET default_fidelity = excluded.default_fidelity",
                platform,
                user_id,
                fidelity,
            )

    async def forget(self, platform: str, user_id: str, *, today: str) -> list[str]:
        """Delete the user's jobs, settings and past counters; returns their jobs' file paths."""

        async def work(conn: Connection) -> list[str]:
            rows = await conn.fetch(
                "DELETE FROM jobs WHERE platform = $1 AND user_id = $2 "
                "RETURNING input_path, result_path",
                platform,
                user_id,
            )
            await conn.execute(
                "DELETE FROM user_settings WHERE platform = $1 AND user_id = $2",
                platform,
                user_id,
            )
            await conn.execute(
                "DELETE FROM daily_usage WHERE platform = $1 AND user_id = $2 AND day < $3",
                platform,
                user_id,
                today,
            )
            return [path for row in rows for path in row if path]

        return await self._transaction(work)

    async def stats(self, day: str) -> Stats:
        """Jobs of quota day `day` by state and platform, and the number of distinct users."""
        rows = await self._fetch(
            "SELECT state, platform, COUNT(*) FROM jobs WHERE day = $1 GROUP BY state, platform",
            day,
        )
        by_state: dict[str, int] = {}
        by_platform: dict[str, int] = {}
        for state, platform, count in rows:
            by_state[state] = by_state.get(state, 0) + count
            by_platform[platform] = by_platform.get(platform, 0) + count
        users = await self._fetchrow(
            "SELECT COUNT(*) FROM (SELECT DISTINCT platform, user_id FROM jobs WHERE day = $1) u",
            day,
        )
        return Stats(
            day=day,
            jobs=sum(by_state.values()),
            by_state=by_state,
            by_platform=by_platform,
            users=int(users[0]),
        )

    # --- moving a store ------------------------------------------------------------------

    async def export_dump(self) -> StoreDump:
        """Counters, credits, settings and unfinished jobs, from one snapshot."""
        now = self._clock()
        async with (
            self._connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):

            async def rows(sql: str) -> list[Any]:
                return [tuple(row) for row in await conn.fetch(sql)]

            version = int(await conn.fetchval("SELECT version FROM schema_version"))
            return StoreDump(
                export_id=new_export_id(),
                source="postgresql",
                schema_version=version,
                exported_at=now,
                daily_usage=await rows(
                    "SELECT platform, user_id, day, used FROM daily_usage "
                    "WHERE used > 0 ORDER BY platform, user_id, day"
                ),
                chat_usage=await rows(
                    "SELECT platform, chat_id, day, used FROM chat_usage "
                    "WHERE used > 0 ORDER BY platform, chat_id, day"
                ),
                credits=await rows(
                    "SELECT platform, user_id, balance FROM credits "
                    "WHERE balance > 0 ORDER BY platform, user_id"
                ),
                user_settings=await rows(
                    "SELECT platform, user_id, default_fidelity, locale FROM user_settings "
                    "ORDER BY platform, user_id"
                ),
                jobs=[
                    _row_to_job(row)
                    for row in await conn.fetch(
                        f"{_SELECT_JOBS} WHERE state IN ({_UNFINISHED_SQL}) ORDER BY created_at, id"
                    )
                ],
            )

    async def import_dump(self, dump: StoreDump) -> dict[str, int]:
        """Add the dump's rows in one transaction; refuses an export imported before."""
        now = self._clock()

        async def work(conn: Connection) -> dict[str, int]:
            # First, so that a second import of the same export waits for this one, then fails.
            first = await conn.fetchval(
                "INSERT INTO store_imports (export_id, source, imported_at, counts) "
                "VALUES ($1, $2, $3, '{}') ON CONFLICT (export_id) DO NOTHING RETURNING 1",
                dump.export_id,
                dump.source,
                now,
            )
            if first is None:
                imported_at = await conn.fetchval(
                    "SELECT imported_at FROM store_imports WHERE export_id = $1", dump.export_id
                )
                raise AlreadyImportedError(
                    f"Export {dump.export_id} was already imported into this store; "
                    "importing it again would count its quotas twice.",
                    export_id=dump.export_id,
                    imported_at=imported_at,
                )
            await conn.executemany(
                "INSERT INTO daily_usage AS u (platform, user_id, day, used) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (platform, user_id, day) "
                "DO UPDATE SET used = u.used + excluded.used",
                dump.daily_usage,
            )
            await conn.executemany(
                "INSERT INTO chat_usage AS c (platform, chat_id, day, used) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (platform, chat_id, day) "
                "DO UPDATE SET used = c.used + excluded.used",
                dump.chat_usage,
            )
            await conn.executemany(
                "INSERT INTO credits AS c (platform, user_id, balance) VALUES ($1, $2, $3) "
                "ON CONFLICT (platform, user_id) "
                "DO UPDATE SET balance = c.balance + excluded.balance",
                dump.credits,
            )
            settings = 0
            for row in dump.user_settings:
                settings += _rowcount(
                    await conn.execute(
                        "INSERT INTO user_settings (platform, user_id, default_fidelity, locale) "
                        "VALUES ($1, $2, $3, $4) ON CONFLICT (platform, user_id) DO NOTHING",
                        *row,
                    )
                )
            jobs = 0
            for job in dump.jobs:
                jobs += _rowcount(
                    await conn.execute(
                        f"{_INSERT_JOB} ON CONFLICT (id) DO NOTHING", *_job_params(unowned(job))
                    )
                )
            counts = {**dump.counts(), "user_settings": settings, "jobs": jobs}
            await conn.execute(
                "UPDATE store_imports SET counts = $2 WHERE export_id = $1",
                dump.export_id,
                counts,
            )
            return counts

        return await self._transaction(work)
