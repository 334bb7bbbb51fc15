"""The shared `JobStore`: PostgreSQL through an asyncpg connection pool, for several replicas.

Every operation is one transaction (or one statement) on a pooled connection, so any number of
processes can share the database and each sees the others' commits at once.

Quotas stay exact with row locks, not SERIALIZABLE: a reservation counts the job with conditional
upserts (`INSERT ... ON CONFLICT DO UPDATE ... WHERE used < limit`, see `core.store.ledger`),
which lock the counter row and re-read its latest committed value, so concurrent reservations of
one user queue on the row and each sees the count the previous one left: no lost update, no
over-admission, no retries. In the common case (the daily allowance pays, no chat limit) that
upsert and the job's insert are one statement, so the row stays locked for one statement and
its commit. Under SERIALIZABLE the same 200 simultaneous requests from one user would mostly end
in serialization failures, each retried (a retry storm on exactly the hot row). A deadlock or
serialization failure (which the ledger's lock order should never produce) is retried all the
same.

Claims: a job's `owner` is the replica that holds it and `heartbeat_at` when it last said so;
`claim_stale` picks its jobs with `FOR UPDATE SKIP LOCKED`, so two replicas looking at once never
get the same job. Times are unix seconds (`double precision`) from the store's clock, as in the
SQLite store; replicas need clocks kept in step (NTP), far closer than `JOBS_STALE_AFTER_SECONDS`.

The schema version is a `schema_version` row; migrations run in one transaction under a
transaction-scoped advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import asyncpg

from core.errors import StoreError
from core.jobs import Job
from core.logs import redact_url
from core.store.dialect import POSTGRESQL, Dialect, Row, Tx, placeholders
from core.store.ledger import COUNT_USER, COUNT_USER_IF_ROOM, Reservation
from core.store.schema import JOB_COLUMN_COUNT, JOB_COLUMNS, job_params
from core.store.sql_store import Clock, SqlStore, Work

T = TypeVar("T")
Connection = Any  # asyncpg.Connection (or a pool's proxy of one); asyncpg ships no types

_RETRIES: Final = 5
_RETRYABLE = (asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError)

RESERVE_DAILY: Final = (
    f"WITH counted AS ({COUNT_USER}) INSERT INTO jobs ({JOB_COLUMNS}) "  # noqa: S608
    f"SELECT {placeholders(JOB_COLUMN_COUNT, first=5)} FROM counted RETURNING true"
)
"""One statement: count the job against the user's day as `COUNT_USER` ($1..$4) and insert it
($5... as `job_params`), both or neither; no row when the day is full."""
RESERVE_DAILY_IF_ROOM: Final = (
    f"WITH counted AS ({COUNT_USER_IF_ROOM}) INSERT INTO jobs ({JOB_COLUMNS}) "  # noqa: S608
    f"SELECT {placeholders(JOB_COLUMN_COUNT, first=8)} FROM counted RETURNING true"
)
"""`RESERVE_DAILY` while the user has room (`core.store.ledger.ROOM`, $1..$7; the job from $8);
run with the user locked, so the counts are the latest."""


def _dsn(url: str) -> str:
    """asyncpg's DSN: SQLAlchemy-style `postgresql+asyncpg://` is accepted too."""
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("postgresql+") else url


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


class PgTx:
    """`Tx` on one pooled connection (inside a transaction the store opened on it)."""

    dialect: Dialect = POSTGRESQL

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        return list(await self._conn.fetch(sql, *params))

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        row: Row | None = await self._conn.fetchrow(sql, *params)
        return row

    async def fetchval(self, sql: str, *params: Any) -> Any:
        return await self._conn.fetchval(sql, *params)

    async def execute(self, sql: str, *params: Any) -> int:
        return _rowcount(await self._conn.execute(sql, *params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)


class PostgresStore(SqlStore):
    """`JobStore` on PostgreSQL; open it with `await PostgresStore.open(url)`."""

    dialect = POSTGRESQL

    def __init__(self, pool: Any, *, clock: Clock = time.time, where: str = "") -> None:
        super().__init__(clock=clock, where=where)
        self._pool = pool
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

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        if self._closed:
            raise StoreError("The store is closed.")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if self._closed:
                raise StoreError("The store is closed.") from exc
            raise _failure(exc) from exc

    async def _fetch(self, sql: str, *params: Any) -> list[Row]:
        async with self._connection() as conn:
            return list(await conn.fetch(sql, *params))

    async def _write(self, sql: str, *params: Any) -> list[Row]:
        return await self._fetch(sql, *params)  # one statement commits on its own

    async def _transaction(self, work: Work[T]) -> T:
        """`work` in a transaction, again (after a pause) if the server aborts it as a deadlock
        or serialization failure."""
        for attempt in range(_RETRIES):
            try:
                async with self._connection() as conn, conn.transaction():
                    return await work(PgTx(conn))
            except StoreError as exc:
                if not isinstance(exc.__cause__, _RETRYABLE) or attempt == _RETRIES - 1:
                    raise
            await asyncio.sleep(min(0.2, 0.005 * 2**attempt) * random.uniform(0.5, 1.0))  # noqa: S311
        raise AssertionError("unreachable")

    async def _snapshot(self, work: Work[T]) -> T:
        async with (
            self._connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await work(PgTx(conn))

    async def _reserve_at_once(self, reservation: Reservation) -> Job | None:
        """The daily allowance (or no limit) pays and no chat limit applies: one statement, after
        the user's lock when their load is checked."""
        r = reservation
        if r.chat_limit is not None or r.user_limit == 0 or r.job.source_update is not None:
            return None
        job = r.row("free" if r.user_limit is None else "daily")
        params = job_params(job, self.dialect)
        if not r.limits_load:
            counted = await self._fetch(RESERVE_DAILY, *r.room_params()[:4], *params)
            return job if counted else None

        async def work(tx: Tx) -> bool:
            await tx.fetchval(self.dialect.lock_user, job.platform, job.user_id)
            return await tx.fetchval(RESERVE_DAILY_IF_ROOM, *r.room_params(), *params) is not None

        # Refused (a full day, or the load): `reserve_job` finds out which, in a transaction
        # of its own.
        return job if await self._transaction(work) else None
