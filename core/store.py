"""The job and quota store interface every backend implements (SQLite today, PostgreSQL later).

Nothing above this interface knows which database runs or how many replicas share it: quota
reservations are exact because each one is a single transaction inside the store.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from core.errors import RetouchError
from core.jobs import Job, JobState, NewJob

if TYPE_CHECKING:
    from core.settings import Settings

TRANSITION_FIELDS: Final[frozenset[str]] = frozenset(
    {"error_code", "result_path", "input_path", "attempts", "owner", "heartbeat_at"}
)
"""The columns `JobStore.transition` may set besides the state (and `updated_at`, always)."""


class StoreError(RetouchError):
    """The store cannot be used as it is (e.g. its schema is newer than this code)."""

    code = "store"


class QuotaExceededError(RetouchError):
    """The user's daily allowance is used up and no granted credits are left."""

    code = "quota_exceeded"
    user_fault = True

    def __init__(self, message: str, *, used: int, limit: int, credits: int) -> None:
        super().__init__(message, used=used, limit=limit, credits=credits)
        self.used = used
        self.limit = limit
        self.credits = credits


class ChatQuotaExceededError(QuotaExceededError):
    """The group chat's daily allowance is used up; personal credits do not lift it."""

    code = "chat_quota_exceeded"


@dataclass(frozen=True, slots=True)
class Usage:
    """A user's day: jobs counted against the daily allowance, and granted credits left."""

    used: int = 0
    credits: int = 0


@dataclass(frozen=True, slots=True)
class UserSettings:
    """Per-user preferences; None means "not set, use the configured default"."""

    default_fidelity: float | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class Stats:
    """The jobs of one quota day, by state and by platform, and how many users sent them."""

    day: str
    jobs: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_platform: dict[str, int] = field(default_factory=dict)
    users: int = 0


class JobStore(Protocol):
    """Jobs, daily usage counters, granted credits and user settings, kept transactionally."""

    async def reserve(
        self, job: NewJob, *, day: str, user_limit: int | None, chat_limit: int | None
    ) -> Job:
        """Pay for `job` and insert it as `queued`, in one transaction.

        Paid from the daily allowance while `used < user_limit`, else from granted credits;
        `user_limit=None` is unlimited (paid "free", still counted). `chat_limit` (groups) is
        checked and counted too. Raises `QuotaExceededError` / `ChatQuotaExceededError` having
        changed nothing.
        """
        ...

    async def refund(self, job_id: str) -> bool:
        """Give the job's payment back where it came from; False if already refunded or unknown."""
        ...

    async def transition(
        self, job_id: str, to_state: JobState, *, expect: Collection[JobState], **fields: Any
    ) -> Job | None:
        """Move a job to `to_state` only if its state is in `expect`; None if it was not.

        `fields` may set the columns in `TRANSITION_FIELDS`; `updated_at` is always set.
        """
        ...

    async def get_job(self, job_id: str) -> Job | None:
        """The job, or None if unknown (or forgotten)."""
        ...

    async def recent_jobs(self, limit: int = 20, user: tuple[str, str] | None = None) -> list[Job]:
        """The newest jobs first, all users or one `(platform, user_id)`."""
        ...

    async def unfinished_jobs(self) -> list[Job]:
        """Jobs queued, running or delivering, oldest first: what recovery must resume."""
        ...

    async def usage(self, platform: str, user_id: str, day: str) -> Usage:
        """The user's counted jobs on `day` and their credit balance."""
        ...

    async def chat_usage(self, platform: str, chat_id: str, day: str) -> int:
        """Jobs counted against the chat's allowance on `day`."""
        ...

    async def grant(self, platform: str, user_id: str, n: int) -> int:
        """Add `n` credits (negative takes back, never below 0); returns the new balance."""
        ...

    async def get_user_settings(self, platform: str, user_id: str) -> UserSettings:
        """The user's settings; all None when nothing is saved."""
        ...

    async def set_default_fidelity(
        self, platform: str, user_id: str, fidelity: float | None
    ) -> None:
        """Save the user's default fidelity; None clears it."""
        ...

    async def forget(self, platform: str, user_id: str, *, today: str) -> list[str]:
        """Delete the user's jobs, settings and usage counters older than `today`.

        Today's counter and the credit balance stay, so forgetting neither resets nor forfeits
        quota. Returns the job file paths (inputs, results) for the caller to delete.
        """
        ...

    async def stats(self, day: str) -> Stats:
        """Counts of the jobs reserved on quota day `day`."""
        ...

    async def close(self) -> None:
        """Release the connections; the store is unusable afterwards."""
        ...


async def open_store(settings: Settings) -> JobStore:
    """The store the settings name: SQLite at `DATABASE_PATH` (the embedded default)."""
    from core.sqlite_store import SqliteStore

    return await SqliteStore.open(settings.database_path)
