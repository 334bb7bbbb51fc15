"""The job and quota store interface every backend implements: SQLite and PostgreSQL.

Nothing above this interface knows which database runs or how many replicas share it: quota
reservations are exact because each one is a single transaction inside the store, and a job is
run by one replica at a time because a replica must hold its claim (`owner`, kept fresh by
`heartbeat`) to move it; a claim left to go stale is taken over by another (`claim_stale`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from core.jobs import JOB_STATES, Job, JobState, NewJob

TRANSITION_FIELDS: Final[frozenset[str]] = frozenset(
    {"error_code", "result_path", "attempts", "owner", "heartbeat_at"}
)
"""The columns `JobStore.transition` may set besides the state (and `updated_at`, always)."""


def check_transition(
    to_state: JobState, expect: Collection[JobState], fields: Collection[str]
) -> None:
    """Refuse a `transition` call no store can carry out (a programming error, not bad luck)."""
    unknown = set(fields) - TRANSITION_FIELDS
    if unknown:
        raise TypeError(f"transition() cannot set {', '.join(sorted(unknown))}")
    if to_state not in JOB_STATES or not expect:
        raise ValueError(f"bad transition to {to_state!r} expecting {sorted(expect)!r}")


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


@dataclass(frozen=True, slots=True)
class StoreDump:
    """What `export_dump` takes out of a store and `import_dump` puts into another.

    The quota state (usage counters of users and chats, granted credits), saved user settings
    and the unfinished jobs; finished jobs are history and stay behind. `export_id` names this
    export so that importing it twice is refused.
    """

    export_id: str
    source: str
    schema_version: int
    exported_at: float
    daily_usage: list[tuple[str, str, str, int]] = field(default_factory=list)
    """(platform, user_id, day, used)"""
    chat_usage: list[tuple[str, str, str, int]] = field(default_factory=list)
    """(platform, chat_id, day, used)"""
    credits: list[tuple[str, str, int]] = field(default_factory=list)
    """(platform, user_id, balance)"""
    user_settings: list[tuple[str, str, float | None, str | None]] = field(default_factory=list)
    """(platform, user_id, default_fidelity, locale)"""
    jobs: list[Job] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "daily_usage": len(self.daily_usage),
            "chat_usage": len(self.chat_usage),
            "credits": len(self.credits),
            "user_settings": len(self.user_settings),
            "jobs": len(self.jobs),
        }


class JobStore(Protocol):
    """Jobs, daily usage counters, granted credits and user settings, kept transactionally."""

    async def reserve(
        self,
        job: NewJob,
        *,
        day: str,
        user_limit: int | None,
        chat_limit: int | None,
        owner: str | None = None,
    ) -> Job:
        """Pay for `job` and insert it as `queued`, in one transaction.

        Paid from the daily allowance while `used < user_limit`, else from granted credits;
        `user_limit=None` is unlimited (paid "free", still counted). `chat_limit` (groups) is
        checked and counted too. Raises `QuotaExceededError` / `ChatQuotaExceededError` having
        changed nothing. With `owner`, the job is born claimed by that replica (heartbeat now).
        """
        ...

    async def refund(self, job_id: str) -> bool:
        """Give the job's payment back where it came from; False if already refunded or unknown."""
        ...

    async def transition(
        self,
        job_id: str,
        to_state: JobState,
        *,
        expect: Collection[JobState],
        expect_owner: str | None = None,
        **fields: Any,
    ) -> Job | None:
        """Move a job to `to_state` only if its state is in `expect`; None if it was not.

        With `expect_owner`, only while that replica holds the job. `fields` may set the columns
        in `TRANSITION_FIELDS`; `updated_at` is always set.
        """
        ...

    async def claim_stale(
        self,
        owner: str,
        *,
        stale_after: float,
        platforms: Collection[str],
        include_own: bool = False,
        limit: int = 100,
    ) -> list[Job]:
        """Claim up to `limit` unfinished jobs of `platforms` nobody holds any more, oldest first.

        "Nobody" is no owner, or an owner silent for `stale_after` seconds; with `include_own`
        also the jobs `owner` itself holds (a restart under the same replica id). Each job is
        returned to one caller only, however many replicas look at once.
        """
        ...

    async def heartbeat(self, owner: str, job_ids: Sequence[str]) -> list[str]:
        """Refresh `owner`'s claim on these jobs; returns the ids it still holds (unfinished)."""
        ...

    async def release(self, owner: str, job_ids: Sequence[str]) -> int:
        """Give up `owner`'s claim on these unfinished jobs, for any replica to take at once."""
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
        quota. Returns the job's result file paths for the caller to delete.
        """
        ...

    async def stats(self, day: str) -> Stats:
        """Counts of the jobs reserved on quota day `day`."""
        ...

    async def schema_version(self) -> int:
        """The version of the store's schema (the number of migrations applied)."""
        ...

    async def export_dump(self) -> StoreDump:
        """A consistent copy of the quota state, settings and unfinished jobs."""
        ...

    async def import_dump(self, dump: StoreDump) -> dict[str, int]:
        """Add a dump to this store in one transaction; returns the rows taken per kind.

        Counters and credits are added to what is there, saved settings already here win, and
        jobs come unowned (any replica adopts them). `AlreadyImportedError` when this dump's
        `export_id` was imported before; then nothing changes.
        """
        ...

    async def close(self) -> None:
        """Release the connections; the store is unusable afterwards."""
        ...
