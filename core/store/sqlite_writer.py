"""The SQLite store's write path: one connection on a thread of its own, committing in batches.

Whatever is pending goes into one `BEGIN IMMEDIATE` transaction (group commit), each request in a
savepoint of its own so a refused or failing request undoes only itself; a transaction SQLite
refuses as locked is retried. The WAL is copied into the database file by a second connection
on another thread (a passive checkpoint every `CHECKPOINT_EVERY` commits), not by a commit: a
checkpoint waits for the disk (fsync), which under load stalled commits for 40-300 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from core.errors import StoreError

log = logging.getLogger("retouch.store")

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]
Connect = Callable[[], sqlite3.Connection]

CHECKPOINT_EVERY: Final = 32
"""Commits between background checkpoints: a few hundred WAL pages under load, few when idle."""
BACKSTOP_PAGES: Final = 16_000
"""WAL pages (~64 MB) at which a commit checkpoints by itself, if the background falls behind."""
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_RETRY_SECONDS: Final = 30.0
_MAX_BATCH: Final = 256


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _pause(attempt: int) -> None:
    """Back off (on the writer thread) before retrying a transaction SQLite refused as busy."""
    time.sleep(min(0.2, 0.002 * 2**attempt) * random.uniform(0.5, 1.0))  # noqa: S311


@dataclass(slots=True)
class _Request(Generic[T]):
    work: Work[T]
    future: asyncio.Future[T]


Outcome = tuple[Any, BaseException | None]


class Writer:
    """The one write connection, on a thread of its own, committing pending requests in batches.

    A flusher task, started when requests arrive and ended when none are left, takes everything
    pending into one transaction at a time. A request either never starts (its caller was
    cancelled first) or completes, even if its caller is cancelled meanwhile.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[_Request[Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-wal")
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpoint: asyncio.Task[None] | None = None
        self._commits = 0
        """Commits since the last background checkpoint began."""

    async def start(self, connect: Connect) -> None:
        """Open the write connection and the checkpointer's, each on its own thread."""
        self._conn = await self._in_thread(connect)
        await self._in_thread(functools.partial(_set_autocheckpoint, self._conn, BACKSTOP_PAGES))
        loop = asyncio.get_running_loop()
        self._checkpoint_conn = await loop.run_in_executor(self._checkpointer, connect)

    async def close(self) -> None:
        if self._flusher is not None:
            await self._flusher
        await self.settle()
        loop = asyncio.get_running_loop()
        spare, self._checkpoint_conn = self._checkpoint_conn, None
        if spare is not None:
            await loop.run_in_executor(self._checkpointer, spare.close)
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._in_thread(conn.close)
        self._executor.shutdown(wait=False)
        self._checkpointer.shutdown(wait=False)

    async def settle(self) -> None:
        """Wait for a background checkpoint under way, if any."""
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _committed(self) -> None:
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY and self._checkpoint is None:
            self._commits = 0
            self._checkpoint = asyncio.create_task(self._checkpoint_in_background())

    async def _checkpoint_in_background(self) -> None:
        conn = self._checkpoint_conn
        try:
            if conn is not None:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._checkpointer, _checkpoint, conn)
        except sqlite3.Error as exc:  # the next one will try again; commits go on meanwhile
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._checkpoint = None

    async def run(self, work: Work[T]) -> T:
        """Run `work` in a transaction (shared with other pending requests); its result."""
        if self._conn is None:
            raise StoreError("The store is closed.")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(work, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:_MAX_BATCH]
                del self._pending[:_MAX_BATCH]
                try:
                    outcomes = await self._in_thread(functools.partial(self._commit, batch))
                except asyncio.CancelledError:
                    self._pending[:0] = batch
                    raise
                except Exception as exc:
                    outcomes = [(None, _failure(exc)) for _ in batch]
                else:
                    self._committed()
                for request, (result, error) in zip(batch, outcomes, strict=True):
                    if request.future.done():
                        continue  # its caller was cancelled
                    if error is None:
                        request.future.set_result(result)
                    else:
                        request.future.set_exception(error)
        finally:
            self._flusher = None
            for request in self._pending:  # left only when the loop itself is shutting down
                request.future.cancel()

    def _commit(self, batch: list[_Request[Any]]) -> list[Outcome]:
        """On the writer thread: run the batch, retrying while SQLite says busy."""
        return retry_while_busy(functools.partial(self._transaction, batch))

    def _transaction(self, batch: list[_Request[Any]]) -> list[Outcome]:
        conn = self._conn
        if conn is None:
            raise StoreError("The store is closed.")
        outcomes: list[Outcome] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for request in batch:
                if request.future.done():
                    outcomes.append((None, None))
                    continue
                conn.execute("SAVEPOINT request")
                try:
                    outcomes.append((request.work(conn), None))
                except Exception as exc:
                    conn.execute("ROLLBACK TO request")
                    outcomes.append(
                        (None, _failure(exc) if isinstance(exc, sqlite3.Error) else exc)
                    )
                conn.execute("RELEASE request")
            conn.execute("COMMIT")
        except BaseException:
            # No transaction is open any more when COMMIT itself went through.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return outcomes


def retry_while_busy(fn: Callable[[], T], seconds: float = _RETRY_SECONDS) -> T:
    """`fn()`, tried again after a short pause while SQLite says another connection has the lock.

    Needed beyond `busy_timeout`: SQLite refuses some lock upgrades (switching a new file to WAL,
    a write after a read) at once rather than wait, where waiting could deadlock.
    """
    deadline = time.monotonic() + seconds
    attempt = 0
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        _pause(attempt)
        attempt += 1


def _failure(exc: BaseException) -> BaseException:
    """The error every caller of a failed batch gets: its own instance, the cause chained."""
    if isinstance(exc, StoreError):
        return StoreError(exc.message, **exc.params)
    error = StoreError(f"The database could not be written: {exc}")
    error.__cause__ = exc
    return error


def _set_autocheckpoint(conn: sqlite3.Connection, pages: int) -> None:
    conn.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}").fetchall()


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy what the WAL holds into the database file, never waiting for readers or writers."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
