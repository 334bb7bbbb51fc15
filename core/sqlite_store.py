"""The embedded `JobStore`: one SQLite file in WAL mode.

Writes go through `core.sqlite_writer.Writer` (one connection on a thread of its own, group
commit, checkpoints in the background). Reads use an aiosqlite connection that sees committed
data only. Other processes' writers are waited for (`busy_timeout`), and a transaction SQLite
still refuses as locked is retried.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import aiosqlite

from core.jobs import JOB_STATES, UNFINISHED_STATES, Job, JobState, NewJob, Paid
from core.sqlite_writer import Writer, retry_while_busy
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

Clock = Callable[[], float]
Synchronous = Literal["NORMAL", "FULL"]

_STATES_SQL = ", ".join(f"'{state}'" for state in JOB_STATES)

MIGRATIONS: Final[list[tuple[str, ...]]] = [
    # 1: jobs with their reservation, usage counters, credits, user settings.
    (
        f"""CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            platform TEXT NOT NULL CHECK (platform IN ('telegram', 'discord', 'cli')),
            user_id TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            reply_target TEXT NOT NULL,
            input_ref TEXT NOT NULL,
            fidelity REAL NOT NULL,
            state TEXT NOT NULL CHECK (state IN ({_STATES_SQL})),
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            error_code TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            result_path TEXT,
            input_path TEXT,
            day TEXT NOT NULL,
            paid TEXT CHECK (paid IN ('daily', 'credit', 'free')),
            chat_counted INTEGER NOT NULL DEFAULT 0,
            owner TEXT,
            heartbeat_at REAL
        )""",
        "CREATE INDEX jobs_by_state ON jobs (state)",
        "CREATE INDEX jobs_by_user ON jobs (platform, user_id, created_at)",
        "CREATE INDEX jobs_by_created ON jobs (created_at)",
        "CREATE INDEX jobs_by_day ON jobs (day)",
        """CREATE TABLE daily_usage (
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            day TEXT NOT NULL,
            used INTEGER NOT NULL CHECK (used >= 0),
            PRIMARY KEY (platform, user_id, day)
        )""",
        """CREATE TABLE chat_usage (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            day TEXT NOT NULL,
            used INTEGER NOT NULL CHECK (used >= 0),
            PRIMARY KEY (platform, chat_id, day)
        )""",
        """CREATE TABLE credits (
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            balance INTEGER NOT NULL CHECK (balance >= 0),
            PRIMARY KEY (platform, user_id)
        )""",
        """CREATE TABLE user_settings (
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            default_fidelity REAL,
            locale TEXT,
            PRIMARY KEY (platform, user_id)
        )""",
    ),
    # 2: which exports (`retouch-bot db import`) went into this store, so none goes in twice.
    (
        """CREATE TABLE store_imports (
            export_id TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            imported_at REAL NOT NULL,
            counts TEXT NOT NULL
        )""",
    ),
]
"""Schema changes in order; after applying them all, `PRAGMA user_version` is `len(MIGRATIONS)`."""

_JOB_COLUMNS = (
    "id, platform, user_id, chat_id, reply_target, input_ref, fidelity, state, created_at, "
    "updated_at, day, paid, chat_counted, attempts, error_code, result_path, input_path, owner, "
    "heartbeat_at"
)
# Only constants are formatted into SQL here and below; every value is a bound parameter.
_INSERT_JOB = f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 19)})"  # noqa: S608
_INSERT_JOB_ONCE = f"{_INSERT_JOB} ON CONFLICT (id) DO NOTHING"
_SELECT_JOBS = f"SELECT {_JOB_COLUMNS} FROM jobs"  # noqa: S608
_COUNT_USER = (
    "INSERT INTO daily_usage (platform, user_id, day, used) VALUES (?, ?, ?, 1) "
    "ON CONFLICT (platform, user_id, day) DO UPDATE SET used = daily_usage.used + 1"
)
_COUNT_CHAT = (
    "INSERT INTO chat_usage (platform, chat_id, day, used) VALUES (?, ?, ?, 1) "
    "ON CONFLICT (platform, chat_id, day) DO UPDATE SET used = chat_usage.used + 1"
)
_UNFINISHED_SQL = ", ".join(f"'{state}'" for state in sorted(UNFINISHED_STATES))


def _row_to_job(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0],
        platform=row[1],
        user_id=row[2],
        chat_id=row[3],
        reply_target=json.loads(row[4]),
        input_ref=json.loads(row[5]),
        fidelity=row[6],
        state=row[7],
        created_at=row[8],
        updated_at=row[9],
        day=row[10],
        paid=row[11],
        chat_counted=bool(row[12]),
        attempts=row[13],
        error_code=row[14],
        result_path=row[15],
        input_path=row[16],
        owner=row[17],
        heartbeat_at=row[18],
    )


class SqliteStore:
    """`JobStore` on one SQLite file; open it with `await SqliteStore.open(path)`."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = time.time,
        busy_timeout: float = 5.0,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._writer = Writer()
        self._reader: aiosqlite.Connection | None = None

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock = time.time,
        busy_timeout: float = 5.0,
        synchronous: Synchronous = "NORMAL",
    ) -> SqliteStore:
        """Open (creating the folder and file if needed) and migrate the schema to the latest.

        `synchronous="NORMAL"` in WAL mode survives process crashes; "FULL" also power loss.
        """
        store = cls(path, clock=clock, busy_timeout=busy_timeout, synchronous=synchronous)
        try:
            store.path.parent.mkdir(parents=True, exist_ok=True)
            await store._writer.start(store._connect_writer)
            await store._writer.run(store._migrate)
            # timeout= is SQLite's busy_timeout; isolation_level=None: no implicit transactions
            store._reader = await aiosqlite.connect(
                store.path, timeout=busy_timeout, isolation_level=None
            )
            await store._reader.execute_fetchall("PRAGMA query_only = ON")
        except BaseException:
            await store.close()
            raise
        return store

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        # Two processes opening a new file at once race to switch it to WAL.
        retry_while_busy(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchall())
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = _user_version(conn)
        if version > len(MIGRATIONS):
            raise StoreError(
                f"The database {self.path} has schema version {version}, newer than this "
                f"program's {len(MIGRATIONS)}; upgrade the program.",
                version=version,
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        if version < len(MIGRATIONS):
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    async def schema_version(self) -> int:
        """The schema version of the open file (`PRAGMA user_version`)."""
        rows = await self._fetch("PRAGMA user_version")
        return int(rows[0][0])

    async def close(self) -> None:
        """Close both connections; safe to call twice."""
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
        await self._writer.close()

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _fetch(self, sql: str, params: Iterable[Any] = ()) -> list[Sequence[Any]]:
        if self._reader is None:
            raise StoreError("The store is closed.")
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

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
        """Pay for `job` (daily allowance, then credits) and insert it as queued, atomically."""
        now = self._clock()
        user, chat = (job.platform, job.user_id), (job.platform, job.chat_id)

        def work(conn: sqlite3.Connection) -> Job:
            row = conn.execute(
                "SELECT (SELECT used FROM daily_usage WHERE platform = ? AND user_id = ? "
                "AND day = ?), (SELECT balance FROM credits WHERE platform = ? AND user_id = ?), "
                "(SELECT used FROM chat_usage WHERE platform = ? AND chat_id = ? AND day = ?)",
                (*user, day, *user, *chat, day),
            ).fetchone()
            used, credits, chat_used = (value or 0 for value in row)
            paid: Paid
            if user_limit is None:
                paid = "free"
            elif used < user_limit:
                paid = "daily"
            elif credits > 0:
                paid = "credit"
            else:
                raise QuotaExceededError(
                    f"Daily quota used up ({used} of {user_limit}) and no credits left.",
                    used=used,
                    limit=user_limit,
                    credits=credits,
                )
            if chat_limit is not None and chat_used >= chat_limit:
                raise ChatQuotaExceededError(
                    f"This chat's daily quota is used up ({chat_used} of {chat_limit}).",
                    used=chat_used,
                    limit=chat_limit,
                    credits=credits,
                )
            if paid == "credit":
                conn.execute(
                    "UPDATE credits SET balance = balance - 1 WHERE platform = ? AND user_id = ?",
                    user,
                )
            else:
                conn.execute(_COUNT_USER, (*user, day))
            if chat_limit is not None:
                conn.execute(_COUNT_CHAT, (*chat, day))
            reserved = job.reserved(
                now=now, day=day, paid=paid, chat_counted=chat_limit is not None, owner=owner
            )
            conn.execute(_INSERT_JOB, _job_params(reserved))
            return reserved

        return await self._writer.run(work)

    async def refund(self, job_id: str) -> bool:
        """Return the job's daily slot or credit (and chat slot); False if nothing to return."""
        now = self._clock()

        def work(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT platform, user_id, chat_id, day, paid, chat_counted FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
            if row is None or row[4] is None:
                return False
            platform, user_id, chat_id, day, paid, chat_counted = row
            if paid == "credit":
                conn.execute(
                    "INSERT INTO credits (platform, user_id, balance) VALUES (?, ?, 1) "
                    "ON CONFLICT (platform, user_id) DO UPDATE SET balance = credits.balance + 1",
                    (platform, user_id),
                )
            else:
                conn.execute(
                    "UPDATE daily_usage SET used = used - 1 "
                    "WHERE platform = ? AND user_id = ? AND day = ? AND used > 0",
                    (platform, user_id, day),
                )
            if chat_counted:
                conn.execute(
                    "UPDATE chat_usage SET used = used - 1 "
                    "WHERE platform = ? AND chat_id = ? AND day = ? AND used > 0",
                    (platform, chat_id, day),
                )
            conn.execute(
                "UPDATE jobs SET paid = NULL, chat_counted = 0, updated_at = ? WHERE id = ?",
                (now, job_id),
            )
            return True

        return await self._writer.run(work)

    async def usage(self, platform: str, user_id: str, day: str) -> Usage:
        """Counted jobs on `day` and the credit balance of one user."""
        rows = await self._fetch(
            "SELECT (SELECT used FROM daily_usage WHERE platform = ? AND user_id = ? "
            "AND day = ?), (SELECT balance FROM credits WHERE platform = ? AND user_id = ?)",
            (platform, user_id, day, platform, user_id),
        )
        used, credits = rows[0]
        return Usage(used=used or 0, credits=credits or 0)

    async def chat_usage(self, platform: str, chat_id: str, day: str) -> int:
        """Jobs counted against a chat's allowance on `day`."""
        rows = await self._fetch(
            "SELECT used FROM chat_usage WHERE platform = ? AND chat_id = ? AND day = ?",
            (platform, chat_id, day),
        )
        return int(rows[0][0]) if rows else 0

    async def grant(self, platform: str, user_id: str, n: int) -> int:
        """Add `n` credits (negative takes back, floored at 0); returns the new balance."""

        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT balance FROM credits WHERE platform = ? AND user_id = ?",
                (platform, user_id),
            ).fetchone()
            balance = max(0, (row[0] if row else 0) + n)
            conn.execute(
                "INSERT INTO credits (platform, user_id, balance) VALUES (?, ?, ?) "
                "ON CONFLICT (platform, user_id) DO UPDATE SET balance = excluded.balance",
                (platform, user_id, balance),
            )
            return balance

        return await self._writer.run(work)

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
        assignments = "".join(f", {name} = ?" for name in names)
        marks = ", ".join("?" * len(expect))
        held = "" if expect_owner is None else " AND owner = ?"
        sql = (
            f"UPDATE jobs SET state = ?, updated_at = ?{assignments} "  # noqa: S608
            f"WHERE id = ? AND state IN ({marks}){held} RETURNING {_JOB_COLUMNS}"
        )
        params = (to_state, self._clock(), *(fields[n] for n in names), job_id, *expect)
        if expect_owner is not None:
            params = (*params, expect_owner)

        def work(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(sql, params).fetchone()
            return _row_to_job(row) if row else None

        return await self._writer.run(work)

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
        kinds = sorted(platforms)
        sql = (
            f"UPDATE jobs SET owner = ?, heartbeat_at = ? WHERE id IN ("  # noqa: S608
            f"SELECT id FROM jobs WHERE state IN ({_UNFINISHED_SQL}) "
            f"AND platform IN ({', '.join('?' * len(kinds))}) "
            "AND (owner IS NULL OR heartbeat_at IS NULL OR heartbeat_at < ? OR owner = ?) "
            "AND (? OR owner IS NULL OR owner != ?) "
            f"ORDER BY created_at, id LIMIT ?) RETURNING {_JOB_COLUMNS}"
        )
        params = (owner, now, *kinds, now - stale_after, owner, include_own, owner, limit)

        def work(conn: sqlite3.Connection) -> list[Job]:
            return [_row_to_job(row) for row in conn.execute(sql, params).fetchall()]

        jobs = await self._writer.run(work)
        return sorted(jobs, key=lambda job: (job.created_at, job.id))

    async def heartbeat(self, owner: str, job_ids: Sequence[str]) -> list[str]:
        """Refresh `owner`'s heartbeat on these jobs; the ids it still holds, unfinished."""
        if not job_ids:
            return []
        now = self._clock()
        sql = (
            "UPDATE jobs SET heartbeat_at = ? WHERE owner = ? "  # noqa: S608
            f"AND state IN ({_UNFINISHED_SQL}) AND id IN (SELECT value FROM json_each(?)) "
            "RETURNING id"
        )
        params = (now, owner, json.dumps(list(job_ids)))

        def work(conn: sqlite3.Connection) -> list[str]:
            return [row[0] for row in conn.execute(sql, params).fetchall()]

        return await self._writer.run(work)

    async def release(self, owner: str, job_ids: Sequence[str]) -> int:
        """Unclaim `owner`'s unfinished jobs among `job_ids`; how many were released."""
        if not job_ids:
            return 0
        sql = (
            "UPDATE jobs SET owner = NULL, heartbeat_at = NULL WHERE owner = ? "  # noqa: S608
            f"AND state IN ({_UNFINISHED_SQL}) AND id IN (SELECT value FROM json_each(?))"
        )
        params = (owner, json.dumps(list(job_ids)))

        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, params).rowcount

        return await self._writer.run(work)

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        rows = await self._fetch(f"{_SELECT_JOBS} WHERE id = ?", (job_id,))
        return _row_to_job(rows[0]) if rows else None

    async def recent_jobs(self, limit: int = 20, user: tuple[str, str] | None = None) -> list[Job]:
        """The newest `limit` jobs, of everyone or of one `(platform, user_id)`."""
        if user is None:
            rows = await self._fetch(
                f"{_SELECT_JOBS} ORDER BY created_at DESC, id LIMIT ?", (limit,)
            )
        else:
            rows = await self._fetch(
                f"{_SELECT_JOBS} WHERE platform = ? AND user_id = ? "
                "ORDER BY created_at DESC, id LIMIT ?",
                (*user, limit),
            )
        return [_row_to_job(row) for row in rows]

    async def unfinished_jobs(self) -> list[Job]:
        """Queued, running and delivering jobs, oldest first."""
        states = sorted(UNFINISHED_STATES)
        rows = await self._fetch(
            f"{_SELECT_JOBS} WHERE state IN ({', '.join('?' * len(states))}) "
            "ORDER BY created_at, id",
            states,
        )
        return [_row_to_job(row) for row in rows]

    # --- users ------------------------------------------------------------------------------

    async def get_user_settings(self, platform: str, user_id: str) -> UserSettings:
        """Saved settings of one user (all None when none are saved)."""
        rows = await self._fetch(
            "SELECT default_fidelity, locale FROM user_settings WHERE platform = ? AND user_id = ?",
            (platform, user_id),
        )
        return UserSettings(*rows[0]) if rows else UserSettings()

    async def set_default_fidelity(
        self, platform: str, user_id: str, fidelity: float | None
    ) -> None:
        """Save (or with None clear) the user's default fidelity."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO user_settings (platform, user_id, default_fidelity) VALUES (?, ?, ?) "
                "ON CONFLICT (platform, user_id) DO UPDATE "
                "SET default_fidelity = excluded.default_fidelity",
                (platform, user_id, fidelity),
            )

        await self._writer.run(work)

    async def forget(self, platform: str, user_id: str, *, today: str) -> list[str]:
        """Delete the user's jobs, settings and past counters; returns their jobs' file paths."""
        who = (platform, user_id)

        def work(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT input_path, result_path FROM jobs WHERE platform = ? AND user_id = ?", who
            ).fetchall()
            conn.execute("DELETE FROM jobs WHERE platform = ? AND user_id = ?", who)
            conn.execute("DELETE FROM user_settings WHERE platform = ? AND user_id = ?", who)
            conn.execute(
                "DELETE FROM daily_usage WHERE platform = ? AND user_id = ? AND day < ?",
                (*who, today),
            )
            return [path for row in rows for path in row if path]

        return await self._writer.run(work)

    async def stats(self, day: str) -> Stats:
        """Jobs of quota day `day` by state and platform, and the number of distinct users."""
        rows = await self._fetch(
            "SELECT state, platform, COUNT(*) FROM jobs WHERE day = ? GROUP BY state, platform",
            (day,),
        )
        by_state: dict[str, int] = {}
        by_platform: dict[str, int] = {}
        for state, platform, count in rows:
            by_state[state] = by_state.get(state, 0) + count
            by_platform[platform] = by_platform.get(platform, 0) + count
        users = await self._fetch(
            "SELECT COUNT(*) FROM (SELECT DISTINCT platform, user_id FROM jobs WHERE day = ?) u",
            (day,),
        )
        return Stats(
            day=day,
            jobs=sum(by_state.values()),
            by_state=by_state,
            by_platform=by_platform,
            users=int(users[0][0]),
        )

    # --- moving a store ------------------------------------------------------------------

    async def export_dump(self) -> StoreDump:
        """Counters, credits, settings and unfinished jobs, read in one transaction."""
        now = self._clock()

        def work(conn: sqlite3.Connection) -> StoreDump:
            def rows(sql: str) -> list[Any]:
                return [tuple(row) for row in conn.execute(sql).fetchall()]

            return StoreDump(
                export_id=new_export_id(),
                source="sqlite",
                schema_version=_user_version(conn),
                exported_at=now,
                daily_usage=rows(
                    "SELECT platform, user_id, day, used FROM daily_usage "
                    "WHERE used > 0 ORDER BY platform, user_id, day"
                ),
                chat_usage=rows(
                    "SELECT platform, chat_id, day, used FROM chat_usage "
                    "WHERE used > 0 ORDER BY platform, chat_id, day"
                ),
                credits=rows(
                    "SELECT platform, user_id, balance FROM credits "
                    "WHERE balance > 0 ORDER BY platform, user_id"
                ),
                user_settings=rows(
                    "SELECT platform, user_id, default_fidelity, locale FROM user_settings "
                    "ORDER BY platform, user_id"
                ),
                jobs=[
                    _row_to_job(row)
                    for row in conn.execute(
                        f"{_SELECT_JOBS} WHERE state IN ({_UNFINISHED_SQL}) ORDER BY created_at, id"
                    ).fetchall()
                ],
            )

        return await self._writer.run(work)

    async def import_dump(self, dump: StoreDump) -> dict[str, int]:
        """Add the dump's rows in one transaction; refuses an export imported before."""
        now = self._clock()

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            done = conn.execute(
                "SELECT imported_at FROM store_imports WHERE export_id = ?", (dump.export_id,)
            ).fetchone()
            if done is not None:
                raise AlreadyImportedError(
                    f"Export {dump.export_id} was already imported into this store; "
                    "importing it again would count its quotas twice.",
                    export_id=dump.export_id,
                    imported_at=done[0],
                )
            conn.executemany(
                "INSERT INTO daily_usage (platform, user_id, day, used) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (platform, user_id, day) "
                "DO UPDATE SET used = daily_usage.used + excluded.used",
                dump.daily_usage,
            )
            conn.executemany(
                "INSERT INTO chat_usage (platform, chat_id, day, used) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (platform, chat_id, day) "
                "DO UPDATE SET used = chat_usage.used + excluded.used",
                dump.chat_usage,
            )
            conn.executemany(
                "INSERT INTO credits (platform, user_id, balance) VALUES (?, ?, ?) "
                "ON CONFLICT (platform, user_id) "
                "DO UPDATE SET balance = credits.balance + excluded.balance",
                dump.credits,
            )
            settings = 0
            for row in dump.user_settings:
                settings += conn.execute(
                    "INSERT INTO user_settings (platform, user_id, default_fidelity, locale) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (platform, user_id) DO NOTHING",
                    row,
                ).rowcount
            jobs = 0
            for job in dump.jobs:
                params = _job_params(unowned(job))
                jobs += conn.execute(_INSERT_JOB_ONCE, params).rowcount
            counts = {
                **dump.counts(),
                "user_settings": settings,
                "jobs": jobs,
            }
            conn.execute(
                "INSERT INTO store_imports (export_id, source, imported_at, counts) "
                "VALUES (?, ?, ?, ?)",
                (dump.export_id, dump.source, now, json.dumps(counts)),
            )
            return counts

        return await self._writer.run(work)


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _job_params(job: Job) -> tuple[Any, ...]:
    return (
        job.id,
        job.platform,
        job.user_id,
        job.chat_id,
        json.dumps(job.reply_target),
        json.dumps(job.input_ref),
        job.fidelity,
        job.state,
        job.created_at,
        job.updated_at,
        job.day,
        job.paid,
        int(job.chat_counted),
        job.attempts,
        job.error_code,
        job.result_path,
        job.input_path,
        job.owner,
        job.heartbeat_at,
    )
