"""`retouch-bot db migrate|export|import` as an operator runs them: real processes, real stores."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bots.db import dump_lines, parse_dump
from bots.discord.settings import DiscordSettings
from bots.doctor import run_doctor
from bots.telegram.settings import TelegramSettings
from core.settings import load_settings
from core.store import StoreDump, Usage
from core.store.postgres import PostgresStore
from core.store.schema import MIGRATIONS
from core.store.sqlite import SqliteStore
from tests.test_store import DAY, FILLED, FakeClock, fill
from tests.test_store import job as new_job

ROOT = Path(__file__).resolve().parent.parent
VERSION = len(MIGRATIONS)


async def cli(*args: str, cwd: Path, **env: str) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_API_KEY"))}
    base.pop("DATABASE_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        *args,
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_migrate_creates_the_configured_store_and_says_which(
    tmp_path: Path, postgres_url: str
) -> None:
    code, out, err = await cli("db", "migrate", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out == f"SQLite at data/retouch.db: schema version {VERSION} (up to date)\n"
    assert (tmp_path / "data" / "retouch.db").is_file()

    url = postgres_url.replace("postgres:@", "postgres:hunter2@")  # trust auth ignores it
    code, out, err = await cli("db", "migrate", cwd=tmp_path, DATABASE_URL=url)
    assert (code, err) == (0, "")
    assert out.startswith("PostgreSQL at postgresql://postgres:***@/retouch_test_")
    assert out.endswith(f": schema version {VERSION} (up to date)\n") and "hunter2" not in out
    code, out, _ = await cli("db", "migrate", cwd=tmp_path, DATABASE_URL=url)
    assert code == 0 and f"schema version {VERSION}" in out

    code, _, err = await cli("db", "migrate", cwd=tmp_path, DATABASE_URL="mysql://x")
    assert code == 2 and "DATABASE_URL: must be empty or a postgresql:// URL" in err


async def test_moving_a_sqlite_store_into_postgresql_keeps_everything_once(
    tmp_path: Path, postgres_url: str
) -> None:
    clock = FakeClock()
    sqlite = await SqliteStore.open(tmp_path / "data" / "retouch.db", clock=clock)
    ids = await fill(sqlite, clock)
    unfinished = await sqlite.unfinished_jobs()
    await sqlite.close()

    code, out, err = await cli("db", "export", "move.jsonl", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.startswith(
        "exported 4 daily usage, 2 chat usage, 2 credits, 2 user settings, 1 chat settings, "
        "1 purchases, 3 jobs "
        "from SQLite at data/retouch.db (export "
    )
    lines = (tmp_path / "move.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["format"] == "retouch-bot-store"
    assert json.loads(lines[-1]) == {"end": FILLED}

    pg = {"DATABASE_URL": postgres_url}
    code, out, err = await cli("db", "import", "move.jsonl", cwd=tmp_path, **pg)
    assert (code, err) == (0, "")
    assert out.startswith("imported 4 daily usage, 2 chat usage, 2 credits, 2 user settings")

    async with await PostgresStore.open(postgres_url) as postgres:
        assert await postgres.usage("telegram", "u1", DAY) == Usage(used=2, credits=14)
        assert await postgres.usage("telegram", "u1", "2026-11-25") == Usage(used=1, credits=14)
        assert await postgres.usage("discord", "d1", DAY) == Usage(used=0, credits=1)
        assert await postgres.chat_usage("telegram", "g", DAY) == 1
        assert (await postgres.get_user_settings("telegram", "u1")).default_fidelity == 0.35
        assert (await postgres.get_user_settings("discord", "d1")).default_fidelity == 0.7
        moved = await postgres.unfinished_jobs()
        assert moved == [replace(j, owner=None, heartbeat_at=None) for j in unfinished]
        assert await postgres.get_job(ids["done"]) is None

    # Twice is refused, and so is importing the export into the store it came from.
    code, out, err = await cli("db", "import", "move.jsonl", cwd=tmp_path, **pg)
    assert code == 1 and out == ""
    assert "was already imported into PostgreSQL at" in err and "Nothing changed." in err
    code, _, err = await cli("db", "import", "move.jsonl", cwd=tmp_path)
    assert code == 1 and "exported from SQLite at data/retouch.db itself" in err
    async with await PostgresStore.open(postgres_url) as postgres:
        assert await postgres.usage("telegram", "u1", DAY) == Usage(used=2, credits=14)

    # With DATABASE_URL already set, --from-sqlite still reads the old file.
    code, out, _ = await cli(
        "db", "export", "-", "--from-sqlite", "data/retouch.db", cwd=tmp_path, **pg
    )
    assert code == 0 and out.splitlines()[-1].startswith('{"end": {"daily_usage": 4')


async def test_a_damaged_export_is_refused_with_the_line(tmp_path: Path) -> None:
    code, _, _ = await cli("db", "export", "good.jsonl", cwd=tmp_path)
    assert code == 0
    lines = (tmp_path / "good.jsonl").read_text().splitlines()
    (tmp_path / "cut.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    (tmp_path / "elsewhere").mkdir()
    code, _, err = await cli("db", "import", "../cut.jsonl", cwd=tmp_path / "elsewhere")
    assert code == 2 and "cut.jsonl: line 1: the file ends early" in err
    (tmp_path / "junk.jsonl").write_text('{"hello": 1}\n')
    code, _, err = await cli("db", "import", "../junk.jsonl", cwd=tmp_path / "elsewhere")
    assert code == 2 and "line 1: not a retouch-bot store export" in err
    code, _, err = await cli("db", "import", "missing.jsonl", cwd=tmp_path)
    assert code == 2 and "missing.jsonl: No such file or directory" in err


def test_an_export_of_the_last_release_still_reads() -> None:
    """Its job lines carry `input_path`, a field jobs no longer have; it is passed over."""
    job = new_job("u2").reserved(now=1.0, day=DAY, paid="daily", chat_counted=False, owner="old")
    lines = dump_lines(StoreDump("4b" * 16, "sqlite", 2, 2.0, jobs=[job]), "sqlite:/x.db")
    records = [json.loads(line) for line in lines]
    old = [{**r, "input_path": None} if r.get("kind") == "job" else r for r in records]

    dump, _ = parse_dump(io.StringIO("\n".join(json.dumps(record) for record in old)))

    assert dump.jobs == [job]


BROKEN_STORES = {
    # DATABASE_PATH, what to put there first, what the line says
    "not a database": ("junk.db", "file", "junk.db: not a SQLite database"),
    "folder is a file": ("taken/retouch.db", "parent", "cannot create the folder taken"),
    "a folder": ("folder.db", "folder", "folder.db: cannot be opened"),
}


def _break(tmp_path: Path, path: str, how: str) -> None:
    if how == "file":
        (tmp_path / path).write_text("these are not the droids you are looking for\n")
    elif how == "parent":
        (tmp_path / Path(path).parent).write_text("a file where the folder should be\n")
    else:
        (tmp_path / path).mkdir()


STORE_COMMANDS = [
    ("db", "migrate"),
    ("db", "export", "out.jsonl"),
    ("db", "import", "export.jsonl"),
    ("quota", "show", "telegram:42"),
    ("quota", "grant", "telegram:42", "3"),
    ("jobs",),
]


async def test_every_store_command_fails_in_one_line_naming_the_setting(tmp_path: Path) -> None:
    code, _, err = await cli("db", "export", "export.jsonl", cwd=tmp_path)
    assert code == 0, err
    path, how, _ = BROKEN_STORES["not a database"]
    _break(tmp_path, path, how)
    results = await asyncio.gather(
        *(cli(*args, cwd=tmp_path, DATABASE_PATH=path) for args in STORE_COMMANDS)
    )
    for args, (code, out, err) in zip(STORE_COMMANDS, results, strict=True):
        assert (code, out) == (1, ""), (args, out, err)
        [line] = err.splitlines()
        assert line.startswith("retouch-bot: SQLite at junk.db: not a SQLite database"), args
        assert " — fix: point DATABASE_PATH at " in line, args


@pytest.mark.parametrize("case", sorted(BROKEN_STORES))
async def test_a_store_that_cannot_be_opened_is_one_line(tmp_path: Path, case: str) -> None:
    path, how, said = BROKEN_STORES[case]
    _break(tmp_path, path, how)
    code, out, err = await cli("jobs", cwd=tmp_path, DATABASE_PATH=path)
    assert (code, out) == (1, "")
    [line] = err.splitlines()
    assert said in line and "— fix: " in line and "DATABASE_PATH" in line


async def test_an_unreachable_postgresql_is_one_line_without_the_password(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://bot:hunter2@127.0.0.1:{port}/retouch"
    code, out, err = await cli("quota", "show", "discord:7", cwd=tmp_path, DATABASE_URL=url)
    assert (code, out) == (1, "")
    [line] = err.splitlines()
    assert line.startswith("retouch-bot: Cannot connect to PostgreSQL at postgresql://bot:***@")
    assert "— fix: check DATABASE_URL" in line and "hunter2" not in line


async def test_doctor_names_the_same_fix(tmp_path: Path) -> None:
    path, how, _ = BROKEN_STORES["not a database"]
    _break(tmp_path, path, how)
    lines: list[str] = []
    await run_doctor(
        load_settings(database_path=tmp_path / path),
        TelegramSettings.load(),
        DiscordSettings.load(),
        out=lines.append,
    )
    [line] = [text for text in lines if "] database:" in text]
    assert line.startswith("[FAIL] database: SQLite at ") and "not a SQLite database" in line
    assert line.count("— fix: ") == 1 and "point DATABASE_PATH at " in line
