"""The durable inbox and the one-transaction endings, on both stores.

An update is stored before it is confirmed and handled once: a re-sent one is recognised, the
first job it admits marks it done in the reservation's own transaction, and a refused or
interrupted one stays pending for the next start. A failed or cancelled job is refunded by the
transition that ends it, so no kill can fall between the two.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.errors import QuotaExceededError
from core.inbox import Inbox, take_current_update
from core.jobs import NewJob
from core.store import JobStore
from tests.service_fakes import EchoBackend, FailingBackend, request_for
from tests.test_service import ServiceFactory, make_service  # noqa: F401 - fixture
from tests.test_store import (  # noqa: F401 - fixtures
    DAY,
    FakeClock,
    StoreFactory,
    clock,
    job,
    open_store,
    store,
)

UPDATE = {"update_id": 700, "message": {"message_id": 1, "text": "hi"}}


def with_update(new: NewJob, update_id: int) -> NewJob:
    return NewJob(
        new.platform, new.user_id, new.chat_id, new.reply_target, new.input_ref, new.fidelity,
        source_update=update_id,
    )  # fmt: skip


# --- the store --------------------------------------------------------------------------


async def test_an_update_is_stored_once_and_pending_until_handled(store: JobStore) -> None:
    assert await store.store_update("telegram", 700, UPDATE) is True
    assert await store.store_update("telegram", 700, UPDATE) is False  # re-sent
    assert await store.store_update("discord", 700, {"x": 1}) is True  # another platform's
    await store.store_update("telegram", 701, {"update_id": 701})
    assert await store.pending_updates("telegram") == [(700, UPDATE), (701, {"update_id": 701})]
    await store.finish_update("telegram", 700)
    await store.finish_update("telegram", 700)  # twice is fine
    await store.finish_update("telegram", 999)  # never stored: nothing happens
    assert await store.pending_updates("telegram") == [(701, {"update_id": 701})]
    # Handled, it is still known: a re-send of it is not handled again.
    assert await store.store_update("telegram", 700, UPDATE) is False


async def test_handled_updates_are_pruned_below_an_offset_or_by_age(
    store: JobStore, clock: FakeClock
) -> None:
    for update_id in (10, 11, 12):
        await store.store_update("telegram", update_id, {"update_id": update_id})
    await store.finish_update("telegram", 10)
    await store.finish_update("telegram", 12)
    assert await store.prune_updates("telegram", below=12) == 1  # 10 (11 is still pending)
    assert await store.store_update("telegram", 10, {}) is True  # forgotten
    await store.finish_update("telegram", 10)
    clock.advance(100)
    assert await store.prune_updates("telegram", before=clock() - 50) == 2  # 10 and 12
    assert await store.pending_updates("telegram") == [(11, {"update_id": 11})]
    assert await store.prune_updates("telegram", below=1000) == 0  # pending stays


async def test_the_reservation_marks_its_update_done_in_the_same_transaction(
    store: JobStore,
) -> None:
    await store.store_update("telegram", 700, UPDATE)
    await store.store_update("telegram", 701, UPDATE)
    await store.reserve(with_update(job("u1"), 700), day=DAY, user_limit=1, chat_limit=None)
    with pytest.raises(QuotaExceededError):
        await store.reserve(with_update(job("u1"), 701), day=DAY, user_limit=1, chat_limit=None)
    # The refused one rolled back entirely: its update is still pending.
    assert [u for u, _ in await store.pending_updates("telegram")] == [701]


@pytest.mark.parametrize("end", ["failed", "cancelled"])
async def test_an_ending_that_refunds_is_one_transaction(store: JobStore, end: Any) -> None:
    await store.grant("telegram", "u1", 1)
    daily = await store.reserve(job("u1"), day=DAY, user_limit=1, chat_limit=None)
    credit = await store.reserve(job("u1", chat="g1"), day=DAY, user_limit=1, chat_limit=5)
    assert (daily.paid, credit.paid) == ("daily", "credit")
    for reserved in (daily, credit):
        ended = await store.transition(reserved.id, end, expect=["queued"], error_code="x")
        assert ended is not None and ended.state == end and ended.paid is None
        stored = await store.get_job(reserved.id)
        assert stored is not None and stored.paid is None and not stored.chat_counted
        assert await store.refund(reserved.id) is False  # nothing left to give back
    usage = await store.usage("telegram", "u1", DAY)
    assert (usage.used, usage.credits) == (0, 1)
    assert await store.chat_usage("telegram", "g1", DAY) == 0


async def test_the_sent_result_is_recorded_only_while_delivering(store: JobStore) -> None:
    reserved = await store.reserve(job("u1"), day=DAY, user_limit=None, chat_limit=None)
    assert await store.record_sent(reserved.id, "55") is False
    await store.transition(reserved.id, "delivering", expect=["queued"], result_path="r.jpg")
    assert await store.record_sent(reserved.id, "55") is True
    stored = await store.get_job(reserved.id)
    assert stored is not None and stored.sent_ref == "55"


# --- the service ------------------------------------------------------------------------


async def test_a_job_admitted_while_handling_an_update_takes_it(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    service, hooks = await make_service()
    inbox = service.inbox("telegram")
    assert await inbox.receive(700, UPDATE) and await inbox.receive(701, UPDATE)
    taken: list[int | None] = []

    async with inbox.handling(700):
        await service.submit(request_for("1", portrait_bytes))
        # A second job of the same update (an album) does not take it again.
        taken.append(take_current_update("telegram"))
        assert [u for u, _ in await inbox.pending()] == [701]  # done with the reservation
    assert taken == [None]
    await hooks.wait_for("done")

    async with inbox.handling(701):  # a command: no job, done when its handlers return
        pass
    assert await inbox.pending() == []
    assert await inbox.receive(700, UPDATE) is False  # Telegram sending it again


async def test_an_update_interrupted_by_a_shutdown_stays_pending(
    make_service: ServiceFactory,
) -> None:
    service, _ = await make_service()
    inbox: Inbox = service.inbox("telegram")
    await inbox.receive(700, UPDATE)
    entered = asyncio.Event()

    async def handle() -> None:
        async with inbox.handling(700):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(handle())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [u for u, _ in await inbox.pending()] == [700]


class KilledError(BaseException):
    """The process died here: nothing after it runs (what SIGKILL does, in one process)."""


class DiesOnRefund:
    """A store that dies when asked for a separate refund: a kill between a job's ending and
    its refund, had they been two transactions."""

    def __init__(self, store: JobStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def refund(self, job_id: str) -> bool:
        raise KilledError


async def test_a_kill_after_a_failure_or_cancel_leaves_nothing_charged(
    make_service: ServiceFactory, portrait_bytes: bytes
) -> None:
    """Reproduced on main: the failed state committed, the process died before the refund's own
    transaction, and the user stayed charged for good."""
    service, hooks = await make_service(backend=FailingBackend())
    store = service.store
    service.store = service.admission._store = DiesOnRefund(store)  # type: ignore[assignment]
    failed, _ = await service.submit(request_for("1", portrait_bytes))
    await hooks.wait_for("failed")
    gated = EchoBackend(gated=True)
    service.backend = gated
    cancelled, _ = await service.submit(request_for("2", portrait_bytes))
    assert await service.cancel(cancelled.id, "telegram", "2")
    for job_id, user in ((failed.id, "1"), (cancelled.id, "2")):
        stored = await store.get_job(job_id)
        assert stored is not None and stored.state in ("failed", "cancelled")
        assert stored.paid is None
        assert (await store.usage("telegram", user, stored.day)).used == 0
