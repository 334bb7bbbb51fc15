"""A real PostgreSQL server for the tests, with no system install and no Docker.

One server per test session: the binaries come from the `pgserver` wheel (a dev dependency) and
the data lives in a temporary folder deleted at the end. When `RETOUCH_TEST_DATABASE_URL` names
a server (a role that may create databases), the tests use that one instead. Either way each
test gets a database of its own, dropped afterwards.

PostgreSQL refuses to run as root. pgserver deals with that itself: as root it creates a system
user `pgserver` (with `useradd`) and runs the server as that user, on a Unix socket in the data
folder, after opening the folder's parents for traversal. So the tests run as root in CI too.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ENV = "RETOUCH_TEST_DATABASE_URL"


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` (the path of the URL), query and all kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass
class PgServer:
    """The session's PostgreSQL server and the databases made on it."""

    url: str
    """An admin connection URL (database `postgres`, or the operator's)."""
    handle: Any = None
    folder: Path | None = None
    made: list[str] = field(default_factory=list)

    @classmethod
    def start(cls) -> PgServer:
        url = os.environ.get(ENV, "").strip()
        if url:
            return cls(url)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
                from pgserver.postgres_server import get_server
        except ImportError as exc:  # pragma: no cover - the dev extra brings it
            raise RuntimeError(
                f"the PostgreSQL tests need pgserver (pip install -e '.[dev]') or {ENV}"
            ) from exc
        folder = Path(tempfile.mkdtemp(prefix="retouch-pg-"))
        handle = get_server(folder, cleanup_mode="delete")
        server = cls(handle.get_uri(), handle=handle, folder=folder)
        # A throw-away server: durability buys nothing here, and CREATE DATABASE gets fast.
        handle.psql(
            "ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off;"
            "ALTER SYSTEM SET full_page_writes = off; SELECT pg_reload_conf();"
        )
        return server

    async def create_database(self) -> str:
        """A fresh empty database; its URL."""
        name = f"retouch_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.made.append(name)
        return with_database(self.url, name)

    async def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        if name in self.made:
            self.made.remove(name)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cleanup()
            self.handle = None
