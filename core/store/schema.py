"""The store's tables, written once for both databases: migrations, job columns, row <-> `Job`.

A migration is a list of statement templates filled with the dialect's words (`{text}`, `{json}`,
...), so SQLite and PostgreSQL get the same tables in their own types. Both keep the number of
migrations applied (SQLite in `PRAGMA user_version`, PostgreSQL in a `schema_version` row) and
apply the missing ones in order, in one transaction, on open.
"""

from __future__ import annotations

from typing import Any, Final

from core.errors import StoreError
from core.jobs import REFUNDED_STATES, Job
from core.store.dialect import UNFINISHED_SQL, Dialect, Row, Tx, placeholders

TOLD: Final = "told"
"""The `sent_ref` of a failed or cancelled job whose user was told (a result's is the
message's id)."""
ENDINGS_SQL: Final = ", ".join(f"'{state}'" for state in sorted(REFUNDED_STATES))
"""The refunded end states, as an SQL list: the endings a user is told of."""

MIGRATIONS: Final[list[tuple[str, ...]]] = [
    # 1: jobs with their reservation, usage counters, credits, user settings.
    (
        """CREATE TABLE jobs (
            id {text} PRIMARY KEY,
            platform {text} NOT NULL CHECK (platform IN ('telegram', 'discord', 'cli')),
            user_id {text} NOT NULL,
            chat_id {text} NOT NULL,
            reply_target {json} NOT NULL,
            input_ref {json} NOT NULL,
            fidelity {real} NOT NULL,
            state {text} NOT NULL CHECK (state IN ({states})),
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL,
            error_code {text},
            attempts {integer} NOT NULL DEFAULT 0,
            result_path {text},
            input_path {text},
            day {text} NOT NULL,
            paid {text} CHECK (paid IN ('daily', 'credit', 'free')),
            chat_counted {boolean} NOT NULL DEFAULT {false},
            owner {text},
            heartbeat_at {real}
        )""",
        # What finds the unfinished jobs: SQLite indexes the state, PostgreSQL only those jobs.
        "{unfinished_index}",
        "CREATE INDEX jobs_by_user ON jobs (platform, user_id, created_at)",
        "CREATE INDEX jobs_by_created ON jobs (created_at)",
        "CREATE INDEX jobs_by_day ON jobs (day)",
        """CREATE TABLE daily_usage (
            platform {text} NOT NULL,
            user_id {text} NOT NULL,
            day {text} NOT NULL,
            used {integer} NOT NULL CHECK (used >= 0),
            PRIMARY KEY (platform, user_id, day)
        )""",
        """CREATE TABLE chat_usage (
            platform {text} NOT NULL,
            chat_id {text} NOT NULL,
            day {text} NOT NULL,
            used {integer} NOT NULL CHECK (used >= 0),
            PRIMARY KEY (platform, chat_id, day)
        )""",
        """CREATE TABLE credits (
            platform {text} NOT NULL,
            user_id {text} NOT NULL,
            balance {integer} NOT NULL CHECK (balance >= 0),
            PRIMARY KEY (platform, user_id)
        )""",
        """CREATE TABLE user_settings (
            platform {text} NOT NULL,
            user_id {text} NOT NULL,
            default_fidelity {real},
            locale {text},
            PRIMARY KEY (platform, user_id)
        )""",
    ),
    # 2: which exports (`retouch-bot db import`) went into this store, so none goes in twice.
    (
        """CREATE TABLE store_imports (
            export_id {text} PRIMARY KEY,
            source {text} NOT NULL,
            imported_at {real} NOT NULL,
            counts {json} NOT NULL
        )""",
    ),
    # 3: group chats' own settings, Telegram Stars purchases (one row per charge id, so a
    # payment reported twice counts once), how far the platform's payment history was checked,
    # and when a job's platform references were erased (`JOBS_RETENTION_DAYS`).
    (
        # Flags are integers 0/1 here, so an export moves between the two databases unchanged.
        """CREATE TABLE chat_settings (
            platform {text} NOT NULL,
            chat_id {text} NOT NULL,
            default_fidelity {real},
            auto_retouch {integer} CHECK (auto_retouch IN (0, 1)),
            daily_limit {integer} CHECK (daily_limit > 0),
            admins_only {integer} NOT NULL DEFAULT 0 CHECK (admins_only IN (0, 1)),
            locale {text},
            updated_at {real} NOT NULL,
            PRIMARY KEY (platform, chat_id)
        )""",
        """CREATE TABLE purchases (
            platform {text} NOT NULL,
            charge_id {text} NOT NULL,
            user_id {text} NOT NULL,
            credits {integer} NOT NULL CHECK (credits > 0),
            amount {integer} NOT NULL CHECK (amount >= 0),
            currency {text} NOT NULL,
            payload {text} NOT NULL,
            day {text} NOT NULL,
            created_at {real} NOT NULL,
            state {text} NOT NULL CHECK (state IN ('paid', 'refunding', 'refunded')),
            provider_charge_id {text},
            refunded_at {real},
            PRIMARY KEY (platform, charge_id)
        )""",
        "CREATE INDEX purchases_by_user ON purchases (platform, user_id, created_at)",
        "CREATE INDEX purchases_by_day ON purchases (day)",
        """CREATE TABLE payment_cursors (
            platform {text} PRIMARY KEY,
            scanned {integer} NOT NULL CHECK (scanned >= 0)
        )""",
        "ALTER TABLE jobs ADD COLUMN refs_erased_at {real}",
    ),
    # 4: the inbox (each platform update stored before it is confirmed, so none is lost and
    # none handled twice), and the platform's id of a job's sent result (recorded before `done`,
    # so a restart does not send it again).
    (
        """CREATE TABLE inbox (
            platform {text} NOT NULL,
            update_id {bigint} NOT NULL,
            payload {json} NOT NULL,
            state {text} NOT NULL CHECK (state IN ('pending', 'done')),
            received_at {real} NOT NULL,
            PRIMARY KEY (platform, update_id)
        )""",
        "CREATE INDEX inbox_by_state ON inbox (platform, state, update_id)",
        "ALTER TABLE jobs ADD COLUMN sent_ref {text}",
        # A failed or cancelled job's `sent_ref` says its user was told; earlier ones were.
        f"UPDATE jobs SET sent_ref = '{TOLD}' WHERE state IN ({ENDINGS_SQL})",  # noqa: S608
        "CREATE INDEX jobs_untold ON jobs (owner) "
        f"WHERE state IN ({ENDINGS_SQL}) AND sent_ref IS NULL",
    ),
    # 5: a user's unfinished jobs, which every reservation counts (the in-flight limit) without
    # reading their whole history.
    (
        "CREATE INDEX jobs_unfinished_by_user ON jobs (platform, user_id) "
        f"WHERE state IN ({UNFINISHED_SQL})",
    ),
]
"""Schema changes in order, as templates; the schema version is the number applied."""

JOB_COLUMNS: Final = (
    "id, platform, user_id, chat_id, reply_target, input_ref, fidelity, state, created_at, "
    "updated_at, day, paid, chat_counted, attempts, error_code, result_path, owner, heartbeat_at, "
    "sent_ref"
)
"""The columns of a `Job`, in the order of `job_params` and `job_from_row`. (The schema's
`input_path` column is left unused: inputs are never written to disk. `refs_erased_at` is the
retention sweep's own: a `Job` shows it as an empty `reply_target` and `input_ref`.)"""
JOB_COLUMN_COUNT: Final = JOB_COLUMNS.count(",") + 1
# Only constants are formatted into SQL here and in the other store modules; every value is a
# bound parameter.
SELECT_JOBS: Final = f"SELECT {JOB_COLUMNS} FROM jobs"  # noqa: S608
INSERT_JOB: Final = f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({placeholders(JOB_COLUMN_COUNT)})"  # noqa: S608
UNFINISHED_JOBS: Final = f"{SELECT_JOBS} WHERE state IN ({UNFINISHED_SQL}) ORDER BY created_at, id"
"""Queued, running and delivering jobs, oldest first."""


def job_params(job: Job, dialect: Dialect) -> tuple[Any, ...]:
    """The job as the parameters `$1...` of `INSERT_JOB`."""
    return (
        job.id,
        job.platform,
        job.user_id,
        job.chat_id,
        dialect.json_param(job.reply_target),
        dialect.json_param(job.input_ref),
        job.fidelity,
        job.state,
        job.created_at,
        job.updated_at,
        job.day,
        job.paid,
        job.chat_counted,
        job.attempts,
        job.error_code,
        job.result_path,
        job.owner,
        job.heartbeat_at,
        job.sent_ref,
    )


def job_from_row(row: Row, dialect: Dialect) -> Job:
    """A row of `JOB_COLUMNS` as a `Job`."""
    return Job(
        id=row[0],
        platform=row[1],
        user_id=row[2],
        chat_id=row[3],
        reply_target=dialect.json_value(row[4]),
        input_ref=dialect.json_value(row[5]),
        fidelity=row[6],
        state=row[7],
        created_at=row[8],
        updated_at=row[9],
        day=row[10],
        paid=row[11],
        chat_counted=bool(row[12]),
        attempts=row[13],
        error_code=row[14],
        result_path=row[15],
        owner=row[16],
        heartbeat_at=row[17],
        sent_ref=row[18],
    )


async def migrate(tx: Tx, where: str) -> None:
    """Bring the schema to the latest version; `StoreError` if the database's is newer.

    `where` names the database in that error (a path, or a URL without its password).
    """
    dialect = tx.dialect
    for statement in dialect.version_setup:
        await tx.execute(statement)
    version = await read_version(tx)
    latest = len(MIGRATIONS)
    if version > latest:
        raise StoreError(
            f"The database {where} has schema version {version}, newer than this program's "
            f"{latest}; upgrade the program.",
            version=version,
        )
    for statements in MIGRATIONS[version:]:
        for template in statements:
            await tx.execute(template.format_map(dialect.ddl))
    if version < latest:
        await tx.execute(dialect.set_version.format(version=latest))


async def read_version(tx: Tx) -> int:
    """The schema version the database is at."""
    return int(await tx.fetchval(tx.dialect.version_query))
