"""Where the core meets a chat platform's adapter: the `RetouchRequest` it submits, the
`PlatformHooks` it plugs in, and the `JobEvent`s it is shown.

Below the service, so the layers under it (metrics) can speak of hooks and events too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import InputGoneError, RetouchError
from core.jobs import Job, JobState, Platform

log = logging.getLogger("retouch.service")


@dataclass(frozen=True, slots=True)
class RetouchRequest:
    """One photo to retouch: who asked, where, from what, and how strongly."""

    platform: Platform
    user_id: str
    chat_id: str
    reply_target: dict[str, Any]
    """Where the adapter answers; opaque to the core, stored as JSON."""
    input_ref: dict[str, Any]
    """How the adapter fetches the input again after a restart (a file id, an attachment URL)."""
    fidelity: float | None = None
    """None: the user's saved default, else the configured default."""
    image: bytes | None = None
    """The input when the adapter already has it; otherwise fetched through the hooks."""
    is_group: bool = False
    source_update: int | None = None
    """The stored platform update that asked (`core.inbox`); the service fills it in."""


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A step of a job the adapter may show: queue position, progress, outcome."""

    kind: JobState
    job: Job
    position: int | None = None
    error: RetouchError | None = None


class PlatformHooks(Protocol):
    """What an adapter supplies so the core can fetch inputs, deliver results and report."""

    async def fetch_input(self, job: Job) -> bytes:
        """The job's input from its `input_ref`; `InputGoneError` when it cannot be had."""
        ...

    async def deliver(self, job: Job, result: bytes) -> None:
        """Send the result to `job.reply_target`; raise `DeliveryError` (or anything) on failure."""
        ...

    async def on_event(self, event: JobEvent) -> None:
        """Show the job's progress; failures here are logged and never fail the job."""
        ...


class Adapters:
    """The adapters plugged into the service, by platform, and the one way events reach them."""

    def __init__(self) -> None:
        self._hooks: dict[str, PlatformHooks] = {}

    def register(self, platform: Platform, hooks: PlatformHooks) -> None:
        self._hooks[platform] = hooks

    def names(self) -> list[str]:
        """The platforms whose adapters run here."""
        return list(self._hooks)

    def for_job(self, job: Job) -> PlatformHooks:
        """The adapter of `job`'s platform; `InputGoneError` when it does not run here."""
        hooks = self._hooks.get(job.platform)
        if hooks is None:
            raise InputGoneError(f"no {job.platform} adapter is running")
        return hooks

    async def emit(self, event: JobEvent) -> None:
        """Show `event` to its platform's adapter; a failure there is logged, never raised."""
        hooks = self._hooks.get(event.job.platform)
        if hooks is None:
            return
        try:
            await hooks.on_event(event)
        except Exception:
            log.exception("job %s: showing %s failed", event.job.id, event.kind)
