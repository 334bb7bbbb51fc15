"""The job and quota store interface every backend implements: SQLite and PostgreSQL.

Nothing above this interface knows which database runs or how many replicas share it: quota
reservations are exact because each one is a single transaction inside the store, and a job is
run by one replica at a time because a replica must hold its claim (`owner`, kept fresh by
`heartbeat`) to move it; a claim left to go stale is taken over by another (`claim_stale`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

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
class ChatSettings:
    """A group chat's own settings, changed by its admins; None means "the bot's default".

    On Discord the chat is the server.
    """

    default_fidelity: float | None = None
    auto_retouch: bool | None = None
    """Retouch every photo of the chat, addressed to the bot or not."""
    daily_limit: int | None = None
    """Jobs per day for the whole chat, on top of `QUOTA_PER_CHAT_PER_DAY`."""
    admins_only: bool = False
    locale: str | None = None


CHAT_SETTING_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "default_fidelity": (float, type(None)),
    "auto_retouch": (bool, type(None)),
    "daily_limit": (int, type(None)),
    "admins_only": (bool,),
    "locale": (str, type(None)),
}
"""The fields of `ChatSettings` `JobStore.set_chat_setting` may set, and the values each takes."""


def check_chat_setting(field: str, value: object) -> None:
    """Refuse a `set_chat_setting` call no store can carry out (a programming error)."""
    types = CHAT_SETTING_TYPES.get(field)
    if types is None:
        raise TypeError(f"set_chat_setting() cannot set {field}")
    wrong_bool = isinstance(value, bool) and bool not in types
    if wrong_bool or not isinstance(value, types):
        raise TypeError(f"{field} cannot be {value!r}")


PurchaseState = Literal["paid", "refunding", "refunded"]


@dataclass(frozen=True, slots=True)
class Purchase:
    """Credits a user paid for, keyed by the platform's charge id (Telegram's
    `telegram_payment_charge_id`), so a payment reported twice is recorded once."""

    platform: str
    charge_id: str
    user_id: str
    credits: int
    amount: int
    """What was paid, in `currency` units (Telegram Stars for `XTR`)."""
    currency: str
    payload: str
    """The invoice payload the payment came back with."""
    day: str
    """The quota day of the payment."""
    created_at: float
    state: PurchaseState = "paid"
    """`refunding` while the platform is asked to pay it back (its credits already taken)."""
    provider_charge_id: str | None = None
    refunded_at: float | None = None


@dataclass(frozen=True, slots=True)
class PurchaseTotals:
    """Purchases summed: how many, the credits they bought and what was paid; refunds apart."""

    count: int = 0
    credits: int = 0
    amount: int = 0
    refunded: int = 0
    """How many of them were refunded (not in the other sums)."""


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
    chat_settings: list[tuple[Any, ...]] = field(default_factory=list)
    """Rows of `chat_settings` (see `core.store.dump.DUMP_TABLES` for the columns)."""
    purchases: list[tuple[Any, ...]] = field(default_factory=list)
    """Rows of `purchases`: kept, so a payment reported again after the move counts once."""
    jobs: list[Job] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Rows per kind, in the order of the fields."""
        rows = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {name: len(value) for name, value in rows.items() if isinstance(value, list)}


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
        max_in_flight: int | None = None,
        max_per_minute: int | None = None,
    ) -> Job:
        """Pay for `job` and insert it as `queued`, in one transaction.

        First the user's load, in the same transaction: refused with `TooManyInFlightError` when
        they have `max_in_flight` jobs unfinished, `RateLimitedError` (with `retry_after`) when
        `max_per_minute` were created in the last minute; None checks nothing. Then paid from the
        daily allowance while `used < user_limit`, else from granted credits; `user_limit=None`
        is unlimited (paid "free", still counted). `chat_limit` (groups) is checked and counted
        too. Raises `QuotaExceededError` / `ChatQuotaExceededError` having changed nothing. With
        `owner`, the job is born claimed by that replica (heartbeat now).
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
        in `TRANSITION_FIELDS`; `updated_at` is always set. Entering `failed` or `cancelled`
        refunds the job in the same transaction (`refund` is then a no-op).
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

    async def record_sent(self, job_id: str, sent_ref: str) -> bool:
        """Note the platform's id of the delivering job's sent result (`Job.sent_ref`), so a
        restart does not send it again; False when the job is not delivering."""
        ...

    async def record_told(self, job_id: str) -> bool:
        """Note that the failed or cancelled job's user was told; False if it is neither, or
        this was noted before."""
        ...

    async def untold_endings(self, owner: str, limit: int = 100) -> list[Job]:
        """Failed or cancelled jobs of `owner` whose users were never told, oldest first (the
        process stopped between committing the ending and telling it)."""
        ...

    async def store_update(self, platform: str, update_id: int, payload: dict[str, Any]) -> bool:
        """Keep an incoming update as pending (`core.inbox`); False when it was stored before."""
        ...

    async def store_updates(
        self, platform: str, updates: Sequence[tuple[int, dict[str, Any]]]
    ) -> list[int]:
        """`store_update` for a batch, in one transaction; the ids of those new to the store."""
        ...

    async def pending_updates(
        self, platform: str, limit: int = 1000
    ) -> list[tuple[int, dict[str, Any]]]:
        """Stored updates not yet handled, oldest first, as (update id, payload)."""
        ...

    async def finish_update(self, platform: str, update_id: int) -> None:
        """Mark a stored update handled (a reservation with `source_update` does it itself)."""
        ...

    async def prune_updates(
        self, platform: str, *, below: int | None = None, before: float | None = None
    ) -> int:
        """Delete handled updates with an id below `below` or received before `before`."""
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

    async def set_locale(self, platform: str, user_id: str, locale: str | None) -> None:
        """Save the user's chosen language (`en`, `zh`); None goes back to the client's."""
        ...

    async def get_chat_settings(self, platform: str, chat_id: str) -> ChatSettings:
        """The chat's settings; the defaults when nothing is saved."""
        ...

    async def set_chat_setting(
        self, platform: str, chat_id: str, field: str, value: object
    ) -> ChatSettings:
        """Save one field of the chat's settings (see `CHAT_SETTING_TYPES`); all of them after."""
        ...

    async def record_purchase(self, purchase: Purchase) -> bool:
        """Record a payment and add its credits, in one transaction; False (and nothing
        changed) when its charge id was recorded before."""
        ...

    async def get_purchase(self, platform: str, charge_id: str) -> Purchase | None:
        """The purchase with this charge id, or None."""
        ...

    async def purchases(self, platform: str, user_id: str) -> list[Purchase]:
        """The user's purchases, newest first."""
        ...

    async def purchase_totals(
        self, *, day: str | None = None, user: tuple[str, str] | None = None
    ) -> PurchaseTotals:
        """Purchases summed: all, those of quota day `day`, or those of one user."""
        ...

    async def begin_refund(self, platform: str, charge_id: str) -> Purchase:
        """Take a purchase's credits back and mark it `refunding`, in one transaction.

        `CreditsSpentError` when the balance is below them, `AlreadyRefundedError`,
        `PurchaseNotFoundError`; nothing changes then. A purchase already `refunding` (a refund
        cut off midway) is returned as it is, to be finished.
        """
        ...

    async def finish_refund(self, platform: str, charge_id: str, *, refunded: bool) -> Purchase:
        """End a refund: `refunded`, or (the platform refused it) `paid` with its credits back."""
        ...

    async def payments_cursor(self, platform: str) -> int:
        """How many of the platform's payment transactions were checked against the purchases."""
        ...

    async def set_payments_cursor(self, platform: str, scanned: int) -> None:
        """Move the cursor forward to `scanned` (never back)."""
        ...

    async def erase_platform_refs(self, before: float, limit: int = 1000) -> int:
        """Blank the reply targets and input refs of up to `limit` finished jobs created before
        `before` (file ids, CDN URLs, interaction tokens); how many were blanked."""
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
