"""Stand-ins for an adapter and a backend, to drive `RetouchService` in tests and children."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import BackendError, DeliveryError, InputGoneError
from core.formats import PreparedImage
from core.jobs import Job
from core.service import JobEvent, RetouchRequest
from core.settings import Settings, load_settings


def service_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings with everything under `tmp_path` and no real tokens."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_path": tmp_path / "data" / "retouch.db",
        "retouch_backend": "local",
        "quota_per_user_per_day": 5,
        "quota_burst_per_minute": 0,
        "quota_max_in_flight_per_user": 100,
    }
    values.update(overrides)
    return load_settings(**values)


def request_for(user: str, image: bytes | None, *, chat: str | None = None, **kw: Any) -> Any:
    """A Telegram-like request from `user` in a private chat unless `chat` says otherwise."""
    return RetouchRequest(
        platform=kw.pop("platform", "telegram"),
        user_id=user,
        chat_id=chat or user,
        reply_target={"chat_id": chat or user, "message_id": 1},
        input_ref={"file_id": f"file-of-{user}"},
        image=image,
        **kw,
    )


class EchoBackend:
    """Returns the prepared input as the 'result'; can hold every call at a gate, or fail."""

    name = "echo"

    def __init__(self, *, gated: bool = False, fail: BaseException | None = None) -> None:
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.fail = fail
        self.started = 0
        self.finished = 0
        self.entered = asyncio.Condition()

    async def retouch(self, image: PreparedImage, fidelity: float) -> bytes:
        async with self.entered:
            self.started += 1
            self.entered.notify_all()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.finished += 1
        return image.data

    async def wait_started(self, count: int, within: float = 10) -> None:
        async with asyncio.timeout(within), self.entered:
            await self.entered.wait_for(lambda: self.started >= count)

    async def aclose(self) -> None:
        return None


class FailingBackend(EchoBackend):
    def __init__(self) -> None:
        super().__init__(fail=BackendError("upstream exploded"))


@dataclass
class RecordingHooks:
    """An adapter that records deliveries and events; deliveries can fail a set number of times."""

    inputs: dict[str, bytes] = field(default_factory=dict)
    fail_deliveries: int = 0
    permanent_failure: bool = False
    delivered: list[tuple[Job, bytes]] = field(default_factory=list)
    events: list[JobEvent] = field(default_factory=list)
    delivery_attempts: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    by_kind: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    async def fetch_input(self, job: Job) -> bytes:
        data = self.inputs.get(str(job.input_ref.get("file_id")))
        if data is None:
            raise InputGoneError("the photo is no longer available")
        return data

    async def deliver(self, job: Job, result: bytes) -> None:
        self.delivery_attempts += 1
        if self.fail_deliveries > 0:
            self.fail_deliveries -= 1
            raise DeliveryError("upload failed", permanent=self.permanent_failure)
        self.delivered.append((job, result))

    async def on_event(self, event: JobEvent) -> None:
        async with self.changed:
            self.events.append(event)
            self.by_kind[event.kind] += 1
            self.changed.notify_all()

    async def wait_for(self, kind: str, count: int = 1, within: float = 10) -> None:
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(lambda: self.by_kind[kind] >= count)

    def kinds(self, job_id: str) -> list[str]:
        return [e.kind for e in self.events if e.job.id == job_id]


async def no_sleep(_: float) -> None:
    """Delivery backoff without waiting."""
