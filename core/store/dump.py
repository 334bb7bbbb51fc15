"""Moving a store: what an export holds (`DUMP_TABLES`, unfinished jobs) and how it goes in again.

Both databases export and import with the same statements. An import adds counters and credits
to what is there, keeps the settings already saved, brings the jobs in unowned, and records the
export's id first, so a second import of one export waits for the first and is then refused.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Final

from core.errors import AlreadyImportedError
from core.jobs import Job
from core.store.chats import CHAT_COLUMNS
from core.store.dialect import Tx, placeholders
from core.store.protocol import StoreDump
from core.store.purchases import PURCHASE_COLUMNS
from core.store.schema import (
    INSERT_JOB,
    UNFINISHED_JOBS,
    job_from_row,
    job_params,
    read_version,
)


@dataclass(frozen=True, slots=True)
class DumpTable:
    """A table an export carries whole (the `StoreDump` field of its name), as rows of `columns`.

    The first `key` columns name a row. An `additive` table's last column is a count: rows of
    0 are left out, and an import adds to the count already there; otherwise the row already
    there wins.
    """

    name: str
    columns: tuple[str, ...]
    key: int
    additive: bool

    def select(self) -> str:
        """The export's query: the rows worth carrying, in key order."""
        where = f" WHERE {self.columns[-1]} > 0" if self.additive else ""
        order = ", ".join(self.columns[: self.key])
        return f"SELECT {', '.join(self.columns)} FROM {self.name}{where} ORDER BY {order}"  # noqa: S608

    def insert(self) -> str:
        """The import's statement for one row (its columns as `$1...`)."""
        merge = "DO NOTHING"
        if self.additive:
            count = self.columns[-1]
            merge = f"DO UPDATE SET {count} = t.{count} + excluded.{count}"
        values = placeholders(len(self.columns))
        return (
            f"INSERT INTO {self.name} AS t ({', '.join(self.columns)}) VALUES ({values}) "  # noqa: S608
            f"ON CONFLICT ({', '.join(self.columns[: self.key])}) {merge}"
        )


DUMP_TABLES: Final = (
    DumpTable("daily_usage", ("platform", "user_id", "day", "used"), key=3, additive=True),
    DumpTable("chat_usage", ("platform", "chat_id", "day", "used"), key=3, additive=True),
    DumpTable("credits", ("platform", "user_id", "balance"), key=2, additive=True),
    DumpTable(
        "user_settings",
        ("platform", "user_id", "default_fidelity", "locale"),
        key=2,
        additive=False,
    ),
    DumpTable(
        "chat_settings", ("platform", "chat_id", *CHAT_COLUMNS, "updated_at"), key=2, additive=False
    ),
    # Purchases move with the credits they bought: a payment reported again counts once.
    DumpTable("purchases", PURCHASE_COLUMNS, key=2, additive=False),
)


def unowned(job: Job) -> Job:
    """The job as an import writes it: held by no replica, for any of them to adopt."""
    return dataclasses.replace(job, owner=None, heartbeat_at=None)


async def export_rows(tx: Tx, now: float) -> StoreDump:
    """The dump of what `tx` sees: counters, credits, settings and unfinished jobs."""
    dump = StoreDump(
        export_id=uuid.uuid4().hex,
        source=tx.dialect.name,
        schema_version=await read_version(tx),
        exported_at=now,
        jobs=[job_from_row(row, tx.dialect) for row in await tx.fetch(UNFINISHED_JOBS)],
    )
    for table in DUMP_TABLES:  # into the dump's field of the table's name
        getattr(dump, table.name).extend(tuple(row) for row in await tx.fetch(table.select()))
    return dump


async def import_rows(tx: Tx, dump: StoreDump, now: float) -> dict[str, int]:
    """Add the dump's rows; the rows taken per kind. `AlreadyImportedError` if done before."""
    first = await tx.fetchval(
        "INSERT INTO store_imports (export_id, source, imported_at, counts) "
        "VALUES ($1, $2, $3, '{}') ON CONFLICT (export_id) DO NOTHING RETURNING 1",
        dump.export_id,
        dump.source,
        now,
    )
    if first is None:
        imported_at = await tx.fetchval(
            "SELECT imported_at FROM store_imports WHERE export_id = $1", dump.export_id
        )
        raise AlreadyImportedError(
            f"Export {dump.export_id} was already imported into this store; "
            "importing it again would count its quotas twice.",
            export_id=dump.export_id,
            imported_at=imported_at,
        )
    counts = dump.counts()
    for table in DUMP_TABLES:
        rows = getattr(dump, table.name)
        if table.additive:
            await tx.executemany(table.insert(), rows)
        else:
            counts[table.name] = sum([await tx.execute(table.insert(), *row) for row in rows])
    jobs = 0
    for job in dump.jobs:
        params = job_params(unowned(job), tx.dialect)
        jobs += await tx.execute(f"{INSERT_JOB} ON CONFLICT (id) DO NOTHING", *params)
    counts["jobs"] = jobs
    await tx.execute(
        "UPDATE store_imports SET counts = $2 WHERE export_id = $1",
        dump.export_id,
        tx.dialect.json_param(counts),
    )
    return counts
