"""`retouch-bot db`: create or upgrade the store's schema, and move a store into another.

    retouch-bot db migrate            # the configured store: create or upgrade, print the version
    retouch-bot db export FILE        # quotas, grants, settings and unfinished jobs, as JSON lines
    retouch-bot db import FILE        # into the configured store, once

Moving from SQLite to PostgreSQL: stop the bot, `db export` with the SQLite settings, set
`DATABASE_URL`, `db import`, start the replicas. The file is JSON lines: a header naming the
export, one line per row (`kind` says which), and an end line with the counts, so a truncated
file is refused. An export can be imported into a store once; a second time is refused (the
store remembers the export's id), and so is importing a store into itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import SecretStr

from bots.atomic import write_atomically
from bots.store_access import failure_line, with_store
from core.errors import AlreadyImportedError, StoreError
from core.jobs import Job
from core.logs import redact_url
from core.settings import Settings
from core.store import DUMP_TABLES, JobStore, StoreDump, describe_store

FORMAT = "retouch-bot-store"
FORMAT_VERSION = 1
_FIELDS = {table.name: table.columns for table in DUMP_TABLES}
KINDS = (*_FIELDS, "job")
_JOB_FIELDS = tuple(field.name for field in dataclasses.fields(Job))


class DumpFormatError(ValueError):
    """The file is not a complete export in this format."""


def store_identity(settings: Settings) -> str:
    """Which database the settings name, the same from any folder; no password."""
    url = settings.database_url.get_secret_value()
    if url:
        return f"postgresql:{redact_url(url)}"
    return f"sqlite:{settings.database_path.resolve()}"


def dump_lines(dump: StoreDump, store: str) -> Iterator[str]:
    """The export as JSON lines: header, rows, end. `store` names the source database."""
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "export_id": dump.export_id,
        "source": dump.source,
        "store": store,
        "schema_version": dump.schema_version,
        "exported_at": dump.exported_at,
    }
    yield json.dumps(header)
    for kind in _FIELDS:
        for row in getattr(dump, kind):
            yield json.dumps({"kind": kind, **dict(zip(_FIELDS[kind], row, strict=True))})
    for job in dump.jobs:
        yield json.dumps({"kind": "job", **dataclasses.asdict(job)})
    yield json.dumps({"end": dump.counts()})


def parse_dump(lines: TextIO) -> tuple[StoreDump, dict[str, Any]]:
    """Read an export back: the dump and its header; `DumpFormatError` naming the bad line."""
    header: dict[str, Any] | None = None
    rows: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    end: dict[str, Any] | None = None
    number = 0
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        if end is not None:
            raise DumpFormatError(f"line {number}: data after the end line")
        try:
            record = json.loads(text)
            if not isinstance(record, dict):
                raise TypeError("not a JSON object")
            if header is None:
                if record.get("format") != FORMAT:
                    raise DumpFormatError("not a retouch-bot store export")
                if record.get("version") != FORMAT_VERSION:
                    raise DumpFormatError(f"export format version {record.get('version')!r}")
                header = record
            elif "end" in record:
                end = record["end"]
            elif record.get("kind") == "job":
                values = {name: record[name] for name in _JOB_FIELDS if name in record}
                rows["job"].append(Job(**values))
            elif record.get("kind") in _FIELDS:
                rows[record["kind"]].append(tuple(record[f] for f in _FIELDS[record["kind"]]))
            else:
                raise DumpFormatError(f"unknown kind {record.get('kind')!r}")
        except DumpFormatError as exc:
            raise DumpFormatError(f"line {number}: {exc}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise DumpFormatError(f"line {number}: {type(exc).__name__}: {exc}") from None
    if header is None:
        raise DumpFormatError("empty file")
    if end is None:
        raise DumpFormatError(f"line {number}: the file ends early (no end line): truncated?")
    dump = StoreDump(
        export_id=str(header["export_id"]),
        source=str(header["source"]),
        schema_version=int(header["schema_version"]),
        exported_at=float(header["exported_at"]),
        **{kind: rows[kind] for kind in _FIELDS},
        jobs=rows["job"],
    )
    if dump.counts() != end:
        raise DumpFormatError(f"the rows ({dump.counts()}) do not match the end line ({end})")
    return dump, header


def _encoded(lines: Iterator[str]) -> Iterator[bytes]:
    return ((line + "\n").encode("utf-8") for line in lines)


def _read(file: str) -> tuple[StoreDump, dict[str, Any]]:
    if file == "-":
        return parse_dump(sys.stdin)
    with open(file, encoding="utf-8") as lines:
        return parse_dump(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items())


async def db_migrate(settings: Settings) -> int:
    """Create or upgrade the configured store's schema; print where and which version."""

    async def migrated(store: JobStore) -> int:
        version = await store.schema_version()
        print(f"{describe_store(settings)}: schema version {version} (up to date)")
        return 0

    return await with_store(settings, migrated)


async def db_export(settings: Settings, file: str, from_sqlite: Path | None) -> int:
    """Write the configured store (or the SQLite file `from_sqlite`) to `file` (`-`: stdout)."""
    if from_sqlite is not None:
        if not await asyncio.to_thread(from_sqlite.is_file):
            print(f"retouch-bot: {from_sqlite}: no such SQLite file", file=sys.stderr)
            return 2
        settings = settings.model_copy(
            update={"database_path": from_sqlite, "database_url": SecretStr("")}
        )
    where = describe_store(settings)

    async def export(store: JobStore) -> int:
        dump = await store.export_dump()
        lines = dump_lines(dump, store_identity(settings))
        if file == "-":
            for line in lines:
                sys.stdout.write(line + "\n")
        else:
            await asyncio.to_thread(write_atomically, Path(file), _encoded(lines))
        print(
            f"exported {_counts(dump.counts())} from {where} (export {dump.export_id})",
            file=sys.stderr if file == "-" else sys.stdout,
        )
        return 0

    return await with_store(settings, export)


async def db_import(settings: Settings, file: str) -> int:
    """Add an export to the configured store, once."""
    try:
        dump, header = await asyncio.to_thread(_read, file)
    except OSError as exc:
        print(f"retouch-bot: {file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except DumpFormatError as exc:
        print(f"retouch-bot: {file}: {exc}", file=sys.stderr)
        return 2
    where = describe_store(settings)
    if header.get("store") == store_identity(settings):
        print(
            f"retouch-bot: {file} was exported from {where} itself; importing it there would "
            "count everything twice. Nothing changed.",
            file=sys.stderr,
        )
        return 1

    async def add(store: JobStore) -> int:
        try:
            counts = await store.import_dump(dump)
        except AlreadyImportedError as exc:
            when = datetime.fromtimestamp(float(exc.params["imported_at"]), UTC)
            print(
                f"retouch-bot: {file} (export {dump.export_id}) was already imported into "
                f"{where} on {when:%Y-%m-%d %H:%M} UTC. Nothing changed.",
                file=sys.stderr,
            )
            return 1
        except StoreError as exc:
            print(f"retouch-bot: {failure_line(exc)} Nothing changed.", file=sys.stderr)
            return 1
        print(f"imported {_counts(counts)} into {where} (export {dump.export_id})")
        skipped = {k: dump.counts()[k] - n for k, n in counts.items() if dump.counts()[k] != n}
        if skipped:
            print(f"kept what {where} already had: {_counts(skipped)} from the file not taken")
        return 0

    return await with_store(settings, add)
