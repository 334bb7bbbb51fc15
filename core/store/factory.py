"""Which store the settings name, opened: PostgreSQL when `DATABASE_URL` is set, else SQLite."""

from __future__ import annotations

from core.logs import redact_url
from core.settings import Settings
from core.store.protocol import JobStore


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

        return await PostgresStore.open(url, max_size=settings.database_pool_size)
    from core.store.sqlite import SqliteStore

    return await SqliteStore.open(settings.database_path)
