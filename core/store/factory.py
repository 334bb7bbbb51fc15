"""Which store the settings name, opened: PostgreSQL when `DATABASE_URL` is set, else SQLite.

A store that cannot be opened raises `StoreError` naming the store, the setting and the fix
(`params["fix"]`), whichever driver failed and why: the one wording every command shows.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core.errors import StoreError
from core.logs import redact_url
from core.settings import Settings
from core.store.protocol import JobStore

POSTGRES_FIX = "check DATABASE_URL (host, port, user, password, database) and that the server runs"


def describe_store(settings: Settings) -> str:
    """Which store the settings name, for people: the URL without its password, or the path."""
    url = settings.database_url.get_secret_value()
    if url:
        return f"PostgreSQL at {redact_url(url)}"
    return f"SQLite at {settings.database_path}"


async def open_store(settings: Settings) -> JobStore:
    """The store the settings name, its schema created or migrated to this program's version.

    Each store's driver is imported only when that store is opened.
    """
    url = settings.database_url.get_secret_value()
    if url:
        from core.store.postgres import PostgresStore

        try:
            return await PostgresStore.open(url, max_size=settings.database_pool_size)
        except StoreError as exc:
            fix = _newer_fix(exc, "DATABASE_URL") or POSTGRES_FIX
            raise StoreError(exc.message, fix=fix) from exc
    from core.store.sqlite import SqliteStore

    try:
        return await SqliteStore.open(settings.database_path)
    except (OSError, sqlite3.Error, StoreError) as exc:
        raise sqlite_failure(describe_store(settings), settings.database_path, exc) from None


def sqlite_failure(where: str, path: Path, exc: BaseException) -> StoreError:
    """Why the SQLite file at `path` cannot be used, and what to do about it."""
    fix = _newer_fix(exc, "DATABASE_PATH")
    if isinstance(exc, StoreError) and fix:
        return StoreError(exc.message, fix=fix)
    cause = exc.__cause__ if isinstance(exc, StoreError) and exc.__cause__ else exc
    writable = "set DATABASE_PATH to a file in a folder this user may write"
    if isinstance(cause, OSError):
        blocked = isinstance(cause, (FileExistsError, NotADirectoryError))
        why = "a file is in the way" if blocked else cause.strerror or str(cause)
        return StoreError(f"{where}: cannot create the folder {path.parent}: {why}", fix=writable)
    if isinstance(cause, sqlite3.DatabaseError) and not isinstance(cause, sqlite3.OperationalError):
        return StoreError(
            f"{where}: not a SQLite database ({cause})",
            fix="point DATABASE_PATH at the bot's database, or move that file away to start afresh",
        )
    return StoreError(f"{where}: cannot be opened ({cause})", fix=writable)


def _newer_fix(exc: BaseException, setting: str) -> str:
    """The fix for a database whose schema is newer than this program; "" for other errors."""
    if isinstance(exc, StoreError) and "version" in exc.params:
        return f"upgrade retouch-bot, or point {setting} at another database"
    return ""
