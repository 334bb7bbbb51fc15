"""The embedded `JobStore`: one SQLite file in WAL mode.

Writes go through `core.store.sqlite_writer.Writer` (one connection on a thread of its own, group
commit, checkpoints in the background). Reads use an aiosqlite connection that sees committed
data only. Other processes' writers are waited for (`busy_timeout`), and a transaction SQLite
still refuses as locked is retried.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict, TypeVar, Unpack

import aiosqlite

from core.errors import StoreError
from core.store.dialect import SQLITE, Dialect, Row
from core.store.sql_store import Clock, SqlStore, Work
from core.store.sqlite_writer import Writer, retry_while_busy

T = TypeVar("T")
Synchronous = Literal["NORMAL", "FULL"]


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """The statement with SQLite's numbered placeholders: `$3` becomes `?3`."""
    return re.sub(r"\$(\d+)", r"?\1", sql)


class SqliteTx:
    """`Tx` on the writer's connection, inside the writer's transaction, on its thread."""

    dialect: Dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        return self._conn.execute(numbered(sql), params).fetchall()

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        row: Row | None = self._conn.execute(numbered(sql), params).fetchone()
        return row

    async def fetchval(self, sql: str, *params: Any) -> Any:
        row = await self.fetchrow(sql, *params)
        return None if row is None else row[0]

    async def execute(self, sql: str, *params: Any) -> int:
        return self._conn.execute(numbered(sql), params).rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(numbered(sql), rows)


def run_at_once(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never waits: every await in it completes at once.

    So the store's async transaction code runs on the writer thread, as the plain function the
    writer expects: `SqliteTx` only ever calls sqlite3, which blocks instead of waiting.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a SQLite transaction waited for something other than SQLite")


class SqliteOptions(TypedDict, total=False):
    """How `SqliteStore.open` opens the file (the keywords of `SqliteStore`)."""

    clock: Clock
    busy_timeout: float
    """Seconds to wait for another process's write lock (SQLite's `busy_timeout`)."""
    synchronous: Synchronous


class SqliteStore(SqlStore):
    """`JobStore` on one SQLite file; open it with `await SqliteStore.open(path)`."""

    dialect = SQLITE

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = time.time,
        busy_timeout: float = 5.0,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        super().__init__(clock=clock, where=str(path))
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._writer = Writer()
        self._reader: aiosqlite.Connection | None = None

    @classmethod
    async def open(cls, path: str | Path, **options: Unpack[SqliteOptions]) -> SqliteStore:
        """Open (creating the folder and file if needed) and migrate the schema to the latest.

        `synchronous="NORMAL"` in WAL mode survives process crashes; "FULL" also power loss.
        """
        store = cls(path, **options)
        try:
            store.path.parent.mkdir(parents=True, exist_ok=True)
            await store._writer.start(store._connect_writer)
            await store._migrate()
            # timeout= is SQLite's busy_timeout; isolation_level=None: no implicit transactions
            store._reader = await aiosqlite.connect(
                store.path, timeout=store._busy_timeout, isolation_level=None
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

    async def close(self) -> None:
        """Close both connections; safe to call twice."""
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
        await self._writer.close()

    async def _fetch(self, sql: str, *params: Any) -> list[Row]:
        if self._reader is None:
            raise StoreError("The store is closed.")
        return list(await self._reader.execute_fetchall(numbered(sql), params))

    async def _write(self, sql: str, *params: Any) -> list[Row]:
        statement = numbered(sql)
        return await self._writer.run(lambda conn: conn.execute(statement, params).fetchall())

    async def _transaction(self, work: Work[T]) -> T:
        return await self._writer.run(lambda conn: run_at_once(work(SqliteTx(conn))))
