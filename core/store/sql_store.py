"""`SqlStore`: the `JobStore` written once in SQL both databases run; subclasses connect it.

A subclass supplies the database (its `Dialect`) and four ways to reach it: a read outside any
transaction (`_fetch`), one statement that writes and commits alone (`_write`), a transaction
(`_transaction`) and a consistent snapshot for exports (`_snapshot`). Everything else, what the
statements say and what their rows mean, is here and in the modules it calls.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from typing import Any, ClassVar, Self, TypeVar

from core.crash import crash_point
from core.jobs import REFUNDED_STATES, Job, JobState, NewJob
from core.store.access import Clock, Work
from core.store.chats import ChatRows
from core.store.dialect import UNFINISHED_SQL, Dialect, Row, Tx
from core.store.dump import export_rows, import_rows
from core.store.inbox import InboxRows
from core.store.ledger import (
    CHAT_USAGE,
    GRANT,
    USAGE,
    Reservation,
    refund_job,
    reserve_job,
    usage_from,
)
from core.store.protocol import Stats, StoreDump, Usage, UserSettings, check_transition
from core.store.purchases import PurchaseRows
from core.store.schema import (
    ENDINGS_SQL,
    JOB_COLUMNS,
    SELECT_JOBS,
    TOLD,
    UNFINISHED_JOBS,
    job_from_row,
    migrate,
)

__all__ = ["Clock", "SqlStore", "Work"]

T = TypeVar("T")


class SqlStore(ChatRows, PurchaseRows, InboxRows, ABC):
    """`JobStore` on a SQL database; see the subclasses for how each one is opened."""

    dialect: ClassVar[Dialect]

    def __init__(self, *, clock: Clock = time.time, where: str) -> None:
        self._clock = clock
        self.where = where
        """The database, for people: a path, or a URL without its password."""

    # --- what a subclass provides ------------------------------------------------------------

    @abstractmethod
    async def _fetch(self, sql: str, *params: Any) -> list[Row]:
        """The rows of a read, outside any transaction; it sees what is committed."""

    @abstractmethod
    async def _write(self, sql: str, *params: Any) -> list[Row]:
        """The rows (RETURNING) of one statement that writes, committed on its own."""

    @abstractmethod
    async def _transaction(self, work: Work[T]) -> T:
        """`work` in one transaction: committed when it returns, rolled back when it raises."""

    async def _snapshot(self, work: Work[T]) -> T:
        """`work` reading one consistent state of the whole database."""
        return await self._transaction(work)

    async def _reserve_at_once(self, reservation: Reservation) -> Job | None:
        """A faster reservation of the common case, where the database has one; None when it
        does not apply (then `reserve_job` runs in a transaction)."""
        return None

    @abstractmethod
    async def close(self) -> None:
        """Release the connections; safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _migrate(self) -> None:
        """Create the schema, or bring it to this program's version."""
        await self._transaction(lambda tx: migrate(tx, self.where))

    async def _fetchrow(self, sql: str, *params: Any) -> Row | None:
        rows = await self._fetch(sql, *params)
        return rows[0] if rows else None

    def _jobs(self, rows: list[Row]) -> list[Job]:
        return [job_from_row(row, self.dialect) for row in rows]

    async def schema_version(self) -> int:
        """The schema version of the database (the number of migrations applied)."""
        row = await self._fetchrow(self.dialect.version_query)
        return int(row[0]) if row else 0

    # --- quota ------------------------------------------------------------------------------

    async def reserve(
        self,
        job: NewJob,
        *,
        day: str,
        user_limit: int | None,
        chat_limit: int | None,
        owner: str | None = None,
        max_in_flight: int | None = None,
        max_per_minute: int | None = None,
    ) -> Job:
        """Check the user's load, pay for `job` (daily allowance, then credits) and insert it as
        queued, atomically."""
        reservation = Reservation(
            job, day, user_limit, chat_limit, owner, self._clock(), max_in_flight, max_per_minute
        )
        reserved = await self._reserve_at_once(reservation)
        if reserved is None:
            reserved = await self._transaction(lambda tx: reserve_job(tx, reservation))
        crash_point("state:queued")
        return reserved

    async def refund(self, job_id: str) -> bool:
        """Return the job's daily slot or credit (and chat slot); False if nothing to return.

        A job moved to `failed` or `cancelled` is refunded by that `transition` itself."""
        now = self._clock()
        return await self._transaction(lambda tx: refund_job(tx, job_id, now))

    async def usage(self, platform: str, user_id: str, day: str) -> Usage:
        """Counted jobs on `day` and the credit balance of one user."""
        return usage_from(await self._fetchrow(USAGE, platform, user_id, day))

    async def chat_usage(self, platform: str, chat_id: str, day: str) -> int:
        """Jobs counted against a chat's allowance on `day`."""
        row = await self._fetchrow(CHAT_USAGE, platform, chat_id, day)
        return int(row[0]) if row else 0

    async def grant(self, platform: str, user_id: str, n: int) -> int:
        """Add `n` credits (negative takes back, floored at 0); returns the new balance."""
        rows = await self._write(GRANT, platform, user_id, n)
        return int(rows[0][0])

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
            f"WHERE id = $3 AND {self.dialect.one_of('state', 4)}{held} RETURNING {JOB_COLUMNS}"
        )
        now = self._clock()
        params = [to_state, now, job_id, self.dialect.list_param(list(expect))]
        params += [fields[name] for name in names]
        if expect_owner is not None:
            params.append(expect_owner)
        if to_state in REFUNDED_STATES:
            job = await self._transaction(lambda tx: _end_refunded(tx, sql, params, now))
        else:
            jobs = self._jobs(await self._write(sql, *params))
            job = jobs[0] if jobs else None
        if job is not None:
            crash_point(f"state:{to_state}")
        return job

    async def record_told(self, job_id: str) -> bool:
        """Note that the failed or cancelled job's user was told; False if it is neither, or
        this was noted before."""
        rows = await self._write(
            f"UPDATE jobs SET sent_ref = $2 WHERE id = $1 AND state IN ({ENDINGS_SQL}) "  # noqa: S608
            "AND sent_ref IS NULL RETURNING id",
            job_id,
            TOLD,
        )
        return bool(rows)

    async def untold_endings(self, owner: str, limit: int = 100) -> list[Job]:
        """`owner`'s failed or cancelled jobs whose users were never told (it stopped first),
        oldest first."""
        return self._jobs(
            await self._fetch(
                f"{SELECT_JOBS} WHERE state IN ({ENDINGS_SQL}) AND sent_ref IS NULL "
                "AND owner = $1 ORDER BY created_at, id LIMIT $2",
                owner,
                limit,
            )
        )

    async def record_sent(self, job_id: str, sent_ref: str) -> bool:
        """Note the platform's id of the job's delivered result; False unless it is delivering."""
        rows = await self._write(
            "UPDATE jobs SET sent_ref = $2, updated_at = $3 "
            "WHERE id = $1 AND state = 'delivering' RETURNING id",
            job_id,
            sent_ref,
            self._clock(),
        )
        return bool(rows)

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        jobs = self._jobs(await self._fetch(f"{SELECT_JOBS} WHERE id = $1", job_id))
        return jobs[0] if jobs else None

    async def recent_jobs(self, limit: int = 20, user: tuple[str, str] | None = None) -> list[Job]:
        """The newest `limit` jobs, of everyone or of one `(platform, user_id)`."""
        if user is None:
            return self._jobs(
                await self._fetch(f"{SELECT_JOBS} ORDER BY created_at DESC, id LIMIT $1", limit)
            )
        return self._jobs(
            await self._fetch(
                f"{SELECT_JOBS} WHERE platform = $1 AND user_id = $2 "
                "ORDER BY created_at DESC, id LIMIT $3",
                *user,
                limit,
            )
        )

    async def unfinished_jobs(self) -> list[Job]:
        """Queued, running and delivering jobs, oldest first."""
        return self._jobs(await self._fetch(UNFINISHED_JOBS))

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
        rows = await self._write(
            "UPDATE jobs SET owner = $1, heartbeat_at = $2 WHERE id IN ("  # noqa: S608
            f"SELECT id FROM jobs WHERE state IN ({UNFINISHED_SQL}) "
            f"AND {self.dialect.one_of('platform', 3)} "
            "AND (owner IS NULL OR heartbeat_at IS NULL OR heartbeat_at < $4 "
            "OR ($5 AND owner = $1)) "
            f"ORDER BY created_at, id LIMIT $6{self.dialect.skip_locked}) "
            f"RETURNING {JOB_COLUMNS}",
            owner,
            now,
            self.dialect.list_param(sorted(platforms)),
            now - stale_after,
            include_own,
            limit,
        )
        return sorted(self._jobs(rows), key=lambda job: (job.created_at, job.id))

    async def heartbeat(self, owner: str, job_ids: Sequence[str]) -> list[str]:
        """Refresh `owner`'s heartbeat on these jobs; the ids it still holds, unfinished."""
        if not job_ids:
            return []
        rows = await self._write(
            "UPDATE jobs SET heartbeat_at = $1 WHERE owner = $2 "  # noqa: S608
            f"AND state IN ({UNFINISHED_SQL}) AND {self.dialect.one_of('id', 3)} RETURNING id",
            self._clock(),
            owner,
            self.dialect.list_param(job_ids),
        )
        return [row[0] for row in rows]

    async def release(self, owner: str, job_ids: Sequence[str]) -> int:
        """Unclaim `owner`'s unfinished jobs among `job_ids`; how many were released."""
        if not job_ids:
            return 0
        rows = await self._write(
            "UPDATE jobs SET owner = NULL, heartbeat_at = NULL WHERE owner = $1 "  # noqa: S608
            f"AND state IN ({UNFINISHED_SQL}) AND {self.dialect.one_of('id', 2)} RETURNING id",
            owner,
            self.dialect.list_param(job_ids),
        )
        return len(rows)

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
        await self._set_user_setting("default_fidelity", platform, user_id, fidelity)

    async def set_locale(self, platform: str, user_id: str, locale: str | None) -> None:
        """Save (or with None clear) the user's chosen language."""
        await self._set_user_setting("locale", platform, user_id, locale)

    async def _set_user_setting(
        self, column: str, platform: str, user_id: str, value: object
    ) -> None:
        assert column in ("default_fidelity", "locale")
        await self._write(
            f"INSERT INTO user_settings (platform, user_id, {column}) "  # noqa: S608
            "VALUES ($1, $2, $3) ON CONFLICT (platform, user_id) "
            f"DO UPDATE SET {column} = excluded.{column}",
            platform,
            user_id,
            value,
        )

    # --- retention --------------------------------------------------------------------------

    async def erase_platform_refs(self, before: float, limit: int = 1000) -> int:
        """Blank the reply targets and input refs of finished jobs created before `before`."""
        rows = await self._write(
            "UPDATE jobs SET reply_target = $1, input_ref = $1, refs_erased_at = $2 "  # noqa: S608
            "WHERE id IN (SELECT id FROM jobs WHERE refs_erased_at IS NULL "
            f"AND state NOT IN ({UNFINISHED_SQL}) AND created_at < $3 "
            "ORDER BY created_at LIMIT $4) RETURNING id",
            self.dialect.json_param({}),
            self._clock(),
            before,
            limit,
        )
        return len(rows)

    async def forget(self, platform: str, user_id: str, *, today: str) -> list[str]:
        """Delete the user's jobs, settings and past counters; returns their results' paths."""

        async def work(tx: Tx) -> list[str]:
            rows = await tx.fetch(
                "DELETE FROM jobs WHERE platform = $1 AND user_id = $2 RETURNING result_path",
                platform,
                user_id,
            )
            await tx.execute(
                "DELETE FROM user_settings WHERE platform = $1 AND user_id = $2", platform, user_id
            )
            await tx.execute(
                "DELETE FROM daily_usage WHERE platform = $1 AND user_id = $2 AND day < $3",
                platform,
                user_id,
                today,
            )
            return [row[0] for row in rows if row[0]]

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
            users=int(users[0]) if users else 0,
        )

    # --- moving a store ------------------------------------------------------------------

    async def export_dump(self) -> StoreDump:
        """Counters, credits, settings and unfinished jobs, from one consistent state."""
        now = self._clock()
        return await self._snapshot(lambda tx: export_rows(tx, now))

    async def import_dump(self, dump: StoreDump) -> dict[str, int]:
        """Add the dump's rows in one transaction; refuses an export imported before."""
        now = self._clock()
        return await self._transaction(lambda tx: import_rows(tx, dump, now))


async def _end_refunded(tx: Tx, sql: str, params: list[Any], now: float) -> Job | None:
    """The compare-and-set of `transition` to a refunded end state, and its refund, at once:
    a process killed in between would otherwise charge the user for a photo never delivered."""
    rows = await tx.fetch(sql, *params)
    if not rows:
        return None
    job = job_from_row(rows[0], tx.dialect)
    await refund_job(tx, job.id, now)
    return dataclasses.replace(job, paid=None, chat_counted=False, updated_at=now)
