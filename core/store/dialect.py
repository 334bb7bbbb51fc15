"""What the shared store code needs of a database: a transaction (`Tx`) and the SQL that differs.

Statements are written once, with PostgreSQL's numbered placeholders (`$1`, `$2`, ...; a number
may stand more than once), which SQLite reads as `?1`, `?2`. The rest of what differs between the
two is small and lives here side by side: column types, how a bound list is matched, row locks,
where the schema version is kept, and how JSON columns travel.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from core.jobs import JOB_STATES, UNFINISHED_STATES

Row = Sequence[Any]

STATES_SQL: Final = ", ".join(f"'{state}'" for state in JOB_STATES)
UNFINISHED_SQL: Final = ", ".join(f"'{state}'" for state in sorted(UNFINISHED_STATES))
MIGRATION_LOCK: Final = 0x7265746F756368  # "retouch": PostgreSQL's advisory lock for migrations
USER_LOCK: Final = 0x72657475  # "retu": the first key of PostgreSQL's per-user advisory locks


def placeholders(count: int, first: int = 1) -> str:
    """`$first, ..., $(first + count - 1)`: the parameters of a VALUES list or SELECT list."""
    return ", ".join(f"${n}" for n in range(first, first + count))


class Tx(Protocol):
    """One transaction on one connection; every statement uses `$n` placeholders."""

    dialect: Dialect

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        """Every row the statement returns."""
        ...

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        """The first row the statement returns, or None."""
        ...

    async def fetchval(self, sql: str, *params: Any) -> Any:
        """The first column of the first row, or None when there is no row."""
        ...

    async def execute(self, sql: str, *params: Any) -> int:
        """Run a statement that returns no rows; how many rows it touched."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run the statement once for each row of parameters."""
        ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL one database speaks where the two differ."""

    name: str
    """How a dump names its source: "sqlite" or "postgresql"."""
    ddl: Mapping[str, str]
    """The words the schema templates (`core.store.schema.MIGRATIONS`) are filled with."""
    version_setup: tuple[str, ...]
    """Run first in the migration transaction, so the version can be read."""
    version_query: str
    set_version: str
    """Sets the schema version to `{version}` (a whole number formatted in)."""
    lock_row: str
    """Appended to the SELECT that reads a row the transaction goes on to change."""
    lock_user: str
    """Holds the user `($1, $2)` until the transaction ends, so what it counts of theirs stays
    true until it commits; empty where one writer runs at a time anyway."""
    skip_locked: str
    """Appended to the subquery that picks jobs to claim: rows another claim holds are skipped."""
    in_list: str
    """`{column}` is one of the strings in the list bound at `${n}`."""
    list_param: Callable[[Sequence[str]], Any]
    json_param: Callable[[Any], Any]
    """A Python value as a JSON column takes it."""
    json_value: Callable[[Any], Any]
    """A JSON column's value as Python."""

    def one_of(self, column: str, n: int) -> str:
        """SQL testing that `column` is in the list bound at placeholder `n` (see `list_param`)."""
        return self.in_list.format(column=column, n=n)


def _same(value: Any) -> Any:
    return value


SQLITE: Final = Dialect(
    name="sqlite",
    ddl={
        "text": "TEXT",
        "real": "REAL",
        "integer": "INTEGER",
        "bigint": "INTEGER",
        "json": "TEXT",
        "boolean": "INTEGER",
        "false": "0",
        "states": STATES_SQL,
        "unfinished_index": "CREATE INDEX jobs_by_state ON jobs (state)",
    },
    version_setup=(),
    version_query="PRAGMA user_version",
    set_version="PRAGMA user_version = {version}",
    # One writer at a time (BEGIN IMMEDIATE): what a transaction reads nobody else changes.
    lock_row="",
    lock_user="",
    skip_locked="",
    in_list="{column} IN (SELECT value FROM json_each(${n}))",
    list_param=lambda values: json.dumps(list(values)),
    json_param=json.dumps,
    json_value=json.loads,
)

POSTGRESQL: Final = Dialect(
    name="postgresql",
    ddl={
        "text": "text",
        "real": "double precision",
        "integer": "integer",
        "bigint": "bigint",
        "json": "jsonb",
        "boolean": "boolean",
        "false": "false",
        "states": STATES_SQL,
        "unfinished_index": (
            "CREATE INDEX jobs_unfinished ON jobs (created_at, id) "
            f"WHERE state IN ({UNFINISHED_SQL})"
        ),
    },
    version_setup=(
        f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})",
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)",
        "INSERT INTO schema_version (version) VALUES (0) ON CONFLICT DO NOTHING",
    ),
    version_query="SELECT version FROM schema_version",
    set_version="UPDATE schema_version SET version = {version}",
    lock_row=" FOR UPDATE",
    lock_user=(
        f"SELECT pg_advisory_xact_lock({USER_LOCK}, "
        "hashtext(CAST($1 AS text) || ':' || CAST($2 AS text)))"
    ),
    skip_locked=" FOR UPDATE SKIP LOCKED",
    in_list="{column} = ANY(${n}::text[])",
    list_param=list,
    # The pool's connections encode and decode jsonb themselves.
    json_param=_same,
    json_value=_same,
)
