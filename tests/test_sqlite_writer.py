"""`core.store.sqlite_writer.Writer`: group commit, with WAL checkpoints off the commit path."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.store.sqlite_writer import BACKSTOP_PAGES, CHECKPOINT_EVERY, Writer


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        return conn

    writer = Writer()
    await writer.start(connect)
    yield writer
    await writer.close()


def rows_in_database_file(tmp_path: Path) -> int | None:
    """Rows of `t` in the database file alone, without its WAL: what checkpoints put there."""
    copy = tmp_path / "copy.db"
    shutil.copyfile(tmp_path / "w.db", copy)
    with sqlite3.connect(copy) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
        except sqlite3.OperationalError:  # no such table: not checkpointed yet
            return None


def insert(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO t (v) VALUES ('x')")


async def test_commits_leave_checkpoints_to_the_background(writer: Writer, tmp_path: Path) -> None:
    pages = await writer.run(lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    assert pages == BACKSTOP_PAGES  # commits checkpoint only if the background falls behind
    await writer.run(lambda conn: conn.execute("CREATE TABLE t (v TEXT)"))
    for _ in range(CHECKPOINT_EVERY - 3):  # with the two above: one commit short of a checkpoint
        await writer.run(insert)
    await writer.settle()
    assert rows_in_database_file(tmp_path) is None  # all of it still only in the WAL

    await writer.run(insert)  # commit number CHECKPOINT_EVERY
    await writer.settle()
    assert rows_in_database_file(tmp_path) == CHECKPOINT_EVERY - 2


async def test_a_batch_of_concurrent_requests_is_one_commit(writer: Writer, tmp_path: Path) -> None:
    await writer.run(lambda conn: conn.execute("CREATE TABLE t (v TEXT)"))
    await asyncio.gather(*(writer.run(insert) for _ in range(CHECKPOINT_EVERY * 3)))
    await writer.settle()
    assert rows_in_database_file(tmp_path) is None  # 2 commits: far from a checkpoint
