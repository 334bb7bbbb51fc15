"""The job record: one request's way through `queued -> running -> delivering -> done | failed`.

A job carries its own quota reservation (`day`, `paid`) so settling or refunding it needs nothing
else. `reply_target` and `input_ref` are platform JSON the core stores and hands back untouched.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Platform = Literal["telegram", "discord", "cli"]
JobState = Literal["queued", "running", "delivering", "done", "failed", "cancelled"]
Paid = Literal["daily", "credit", "free"]
"""How a job's quota was paid: the daily allowance, an admin grant, or not at all (unlimited)."""

PLATFORMS: Final[frozenset[Platform]] = frozenset({"telegram", "discord", "cli"})
JOB_STATES: Final[tuple[JobState, ...]] = (
    "queued",
    "running",
    "delivering",
    "done",
    "failed",
    "cancelled",
)
UNFINISHED_STATES: Final[frozenset[JobState]] = frozenset({"queued", "running", "delivering"})
FINAL_STATES: Final[frozenset[JobState]] = frozenset({"done", "failed", "cancelled"})
REFUNDED_STATES: Final[frozenset[JobState]] = frozenset({"failed", "cancelled"})
"""End states whose payment goes back, in the transaction that enters them."""


def new_job_id() -> str:
    """A fresh job id: a uuid4 as 32 hex digits."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class NewJob:
    """What admission knows about a request before the store reserves quota for it."""

    platform: Platform
    user_id: str
    chat_id: str
    reply_target: dict[str, Any]
    input_ref: dict[str, Any]
    fidelity: float
    id: str = field(default_factory=new_job_id)
    source_update: int | None = None
    """The stored platform update that asked (`core.inbox`): the reservation marks it done."""

    def reserved(
        self, *, now: float, day: str, paid: Paid, chat_counted: bool, owner: str | None
    ) -> Job:
        """The row a store inserts once it has reserved quota for this job: queued, claimed
        by `owner` (heartbeat now) when one is given."""
        return Job(
            id=self.id,
            platform=self.platform,
            user_id=self.user_id,
            chat_id=self.chat_id,
            reply_target=self.reply_target,
            input_ref=self.input_ref,
            fidelity=self.fidelity,
            state="queued",
            created_at=now,
            updated_at=now,
            day=day,
            paid=paid,
            chat_counted=chat_counted,
            owner=owner,
            heartbeat_at=now if owner is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Job:
    """A job row as stored; times are unix seconds from the store's clock."""

    id: str
    platform: Platform
    user_id: str
    chat_id: str
    reply_target: dict[str, Any]
    input_ref: dict[str, Any]
    fidelity: float
    state: JobState
    created_at: float
    updated_at: float
    day: str
    paid: Paid | None
    chat_counted: bool
    attempts: int = 0
    error_code: str | None = None
    result_path: str | None = None
    owner: str | None = None
    heartbeat_at: float | None = None
    sent_ref: str | None = None
    """The platform's id of the message that carried the result, once it was accepted."""

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def erased(self) -> bool:
        """Its platform references were erased (`JOBS_RETENTION_DAYS`): it can't be answered."""
        return not self.reply_target and not self.input_ref
