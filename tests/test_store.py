"""The job/quota store: exact reservations under concurrency, refunds, state changes, claims.

Every test but the store-specific ones at the end runs against each store in `STORES`: SQLite in
a temporary folder, and PostgreSQL in a fresh database on the session's server (see `tests/pg.py`).
"Two stores" are two instances on one database, as two processes or replicas would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import core.store.schema
import core.store.sqlite_writer
from core.errors import RateLimitedError, TooManyInFlightError
from core.jobs import JobState, NewJob, Platform
from core.quota import QuotaPolicy
from core.store import (
    AlreadyImportedError,
    AlreadyRefundedError,
    ChatQuotaExceededError,
    ChatSettings,
    CreditsSpentError,
    JobStore,
    Purchase,
    PurchaseNotFoundError,
    PurchaseTotals,
    QuotaExceededError,
    StoreDump,
    StoreError,
    Usage,
    UserSettings,
)
from core.store.postgres import PostgresStore
from core.store.schema import MIGRATIONS
from core.store.sqlite import SqliteStore
from tests.pg import PgServer

STORES = ["sqlite", "postgresql"]
DAY = "2026-11-27"
T0 = 1_795_000_000.0  # 2026-11-18 11:06 UTC


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


StoreFactory = Callable[[], Awaitable[JobStore]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=STORES)
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[StoreFactory]:
    """Opens stores on one shared database, as separate processes would; closes them after."""
    opened: list[JobStore] = []
    server: PgServer | None = None
    url = ""
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        url = await server.create_database()

    async def factory() -> JobStore:
        store: JobStore
        if request.param == "sqlite":
            store = await SqliteStore.open(tmp_path / "data" / "jobs.db", clock=clock)
        else:
            store = await PostgresStore.open(url, clock=clock)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()
    if server is not None:
        await server.drop_database(url)


@pytest.fixture
async def store(open_store: StoreFactory) -> JobStore:
    return await open_store()


def job(
    user: str = "u1",
    chat: str | None = None,
    platform: Platform = "telegram",
    fidelity: float = 0.3,
) -> NewJob:
    return NewJob(
        platform=platform,
        user_id=user,
        chat_id=chat or user,
        reply_target={"chat_id": chat or user, "message_id": 7},
        input_ref={"file_id": "AgAD-file"},
        fidelity=fidelity,
    )


def purchase(charge_id: str, user: str, *, credits: int = 10, day: str = DAY) -> Purchase:
    """A Telegram Stars purchase of `credits` photos by `user`."""
    return Purchase(
        platform="telegram",
        charge_id=charge_id,
        user_id=user,
        credits=credits,
        amount=5 * credits,
        currency="XTR",
        payload=f"pack:{credits}:{5 * credits}",
        day=day,
        created_at=T0,
    )


async def reserve_many(
    stores: list[JobStore], n: int, *, user_limit: int | None, chat_limit: int | None = None
) -> tuple[int, int]:
    """`n` simultaneous reservations for one user, spread over `stores`: (admitted, refused)."""
    results = await asyncio.gather(
        *(
            stores[i % len(stores)].reserve(
                job(chat="group"), day=DAY, user_limit=user_limit, chat_limit=chat_limit
            )
            for i in range(n)
        ),
        return_exceptions=True,
    )
    unexpected = [r for r in results if isinstance(r, BaseException)]
    unexpected = [r for r in unexpected if not isinstance(r, QuotaExceededError)]
    assert not unexpected, unexpected[:3]
    refused = sum(isinstance(r, QuotaExceededError) for r in results)
    return n - refused, refused


# --- reservations -------------------------------------------------------------------------


async def test_reserve_inserts_a_queued_job_paid_daily(store: JobStore, clock: FakeClock) -> None:
    new = job(fidelity=0.4)
    reserved = await store.reserve(new, day=DAY, user_limit=3, chat_limit=None)
    assert reserved.id == new.id and len(new.id) == 32
    assert (reserved.state, reserved.paid, reserved.day) == ("queued", "daily", DAY)
    assert reserved.created_at == reserved.updated_at == clock.now
    assert await store.get_job(new.id) == reserved
    assert reserved.reply_target == {"chat_id": "u1", "message_id": 7}
    assert reserved.input_ref == {"file_id": "AgAD-file"} and reserved.fidelity == 0.4
    assert await store.usage("telegram", "u1", DAY) == Usage(used=1, credits=0)
    assert await store.usage("discord", "u1", DAY) == Usage()


@pytest.mark.parametrize("stores", [1, 2], ids=["one-store", "two-stores"])
async def test_200_simultaneous_reservations_with_5_left_admit_exactly_5(
    open_store: StoreFactory, stores: int
) -> None:
    instances = [await open_store() for _ in range(stores)]
    for _ in range(5):
        await instances[0].reserve(job(), day=DAY, user_limit=10, chat_limit=None)

    admitted, refused = await reserve_many(instances, 200, user_limit=10)

    assert (admitted, refused) == (5, 195)
    assert await instances[-1].usage("telegram", "u1", DAY) == Usage(used=10, credits=0)
    assert len(await instances[-1].recent_jobs(limit=1000)) == 10


async def test_simultaneous_reservations_spend_the_allowance_then_the_credits(
    open_store: StoreFactory,
) -> None:
    a, b = await open_store(), await open_store()
    assert await a.grant("telegram", "u1", 3) == 3

    admitted, _ = await reserve_many([a, b], 100, user_limit=2)

    assert admitted == 5
    assert await b.usage("telegram", "u1", DAY) == Usage(used=2, credits=0)
    paid = sorted(str(j.paid) for j in await a.recent_jobs(limit=100))
    assert paid == ["credit"] * 3 + ["daily"] * 2


async def test_simultaneous_reservations_admit_exactly_the_in_flight_limit(
    open_store: StoreFactory,
) -> None:
    a, b = await open_store(), await open_store()
    first = await a.reserve(job(), day=DAY, user_limit=None, chat_limit=None)

    results = await asyncio.gather(
        *(
            (a, b)[i % 2].reserve(job(), day=DAY, user_limit=50, chat_limit=None, max_in_flight=4)
            for i in range(100)
        ),
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 97 and all(isinstance(r, TooManyInFlightError) for r in refused)
    assert await a.usage("telegram", "u1", DAY) == Usage(used=1 + 3)  # refusals cost nothing
    # A finished job is no longer in flight; nor counts another user's, or one without limit.
    queued: tuple[JobState, ...] = ("queued",)
    assert await a.transition(first.id, "failed", expect=queued) is not None
    await b.reserve(job(), day=DAY, user_limit=50, chat_limit=None, max_in_flight=4)
    await b.reserve(job("u2"), day=DAY, user_limit=50, chat_limit=None, max_in_flight=1)
    await b.reserve(job(), day=DAY, user_limit=50, chat_limit=None)


async def test_the_burst_limit_counts_the_last_minutes_jobs(
    open_store: StoreFactory, clock: FakeClock
) -> None:
    a, b = await open_store(), await open_store()

    async def reserve(store: JobStore) -> None:
        await store.reserve(job(), day=DAY, user_limit=None, chat_limit=None, max_per_minute=3)

    results = await asyncio.gather(
        *(reserve((a, b)[i % 2]) for i in range(40)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, RateLimitedError)]
    assert len(refused) == 37 == len([r for r in results if r is not None])
    assert refused[0].params == {"retry_after": 60, "limit": 3}
    clock.advance(45)
    with pytest.raises(RateLimitedError) as caught:
        await reserve(b)
    assert caught.value.params["retry_after"] == 15
    clock.advance(15)  # exactly a minute on: the first three have left the window
    await asyncio.gather(reserve(a), reserve(b), reserve(a))
    with pytest.raises(RateLimitedError):
        await reserve(b)


async def test_refused_reservation_changes_nothing(store: JobStore) -> None:
    await store.reserve(job(), day=DAY, user_limit=1, chat_limit=None)
    with pytest.raises(QuotaExceededError) as caught:
        await store.reserve(job(), day=DAY, user_limit=1, chat_limit=None)
    error = caught.value
    assert (error.used, error.limit, error.credits) == (1, 1, 0)
    assert error.code == "quota_exceeded" and error.user_fault
    assert len(await store.recent_jobs()) == 1
    assert await store.usage("telegram", "u1", DAY) == Usage(used=1)


async def test_unlimited_users_are_paid_free_and_still_counted(store: JobStore) -> None:
    for _ in range(30):
        reserved = await store.reserve(job(), day=DAY, user_limit=None, chat_limit=None)
        assert reserved.paid == "free"
    assert await store.usage("telegram", "u1", DAY) == Usage(used=30)
    assert await store.refund(reserved.id)
    assert await store.usage("telegram", "u1", DAY) == Usage(used=29)


async def test_chat_limit_is_shared_by_the_group_and_refunded(store: JobStore) -> None:
    first = await store.reserve(job("a", chat="g"), day=DAY, user_limit=5, chat_limit=2)
    await store.reserve(job("b", chat="g"), day=DAY, user_limit=5, chat_limit=2)
    await store.grant("telegram", "c", 5)
    with pytest.raises(ChatQuotaExceededError) as caught:
        await store.reserve(job("c", chat="g"), day=DAY, user_limit=5, chat_limit=2)
    assert (caught.value.used, caught.value.limit, caught.value.code) == (
        2,
        2,
        "chat_quota_exceeded",
    )
    assert isinstance(caught.value, QuotaExceededError)
    assert await store.usage("telegram", "c", DAY) == Usage(used=0, credits=5)
    assert await store.chat_usage("telegram", "g", DAY) == 2

    assert await store.refund(first.id)
    assert await store.chat_usage("telegram", "g", DAY) == 1
    await store.reserve(job("c", chat="g"), day=DAY, user_limit=5, chat_limit=2)
    assert await store.chat_usage("telegram", "g", DAY) == 2
    # a private chat (no chat limit) leaves the chat counters alone
    await store.reserve(job("c"), day=DAY, user_limit=5, chat_limit=None)
    assert await store.chat_usage("telegram", "c", DAY) == 0


async def test_a_full_chat_refuses_a_credit_and_reports_the_balance_kept(store: JobStore) -> None:
    await store.reserve(job("a", chat="g"), day=DAY, user_limit=5, chat_limit=1)
    await store.grant("telegram", "c", 3)
    with pytest.raises(ChatQuotaExceededError) as caught:  # no allowance: a credit would pay
        await store.reserve(job("c", chat="g"), day=DAY, user_limit=0, chat_limit=1)
    assert (caught.value.used, caught.value.limit, caught.value.credits) == (1, 1, 3)
    assert await store.usage("telegram", "c", DAY) == Usage(used=0, credits=3)


async def test_chat_limit_is_exact_under_concurrency(open_store: StoreFactory) -> None:
    a, b = await open_store(), await open_store()
    results = await asyncio.gather(
        *(
            (a, b)[i % 2].reserve(job(f"user{i}", chat="g"), day=DAY, user_limit=5, chat_limit=7)
            for i in range(60)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 7
    assert all(isinstance(r, ChatQuotaExceededError) for r in results if isinstance(r, Exception))
    assert await a.chat_usage("telegram", "g", DAY) == 7


# --- refunds and credits ------------------------------------------------------------------


async def test_refund_returns_the_daily_slot_once(store: JobStore) -> None:
    reserved = await store.reserve(job(), day=DAY, user_limit=2, chat_limit=None)
    assert await store.refund(reserved.id) is True
    assert await store.usage("telegram", "u1", DAY) == Usage(used=0)
    refunded = await store.get_job(reserved.id)
    assert refunded is not None and refunded.paid is None and refunded.state == "queued"
    assert await store.refund(reserved.id) is False
    assert await store.usage("telegram", "u1", DAY) == Usage(used=0)
    assert await store.refund("no-such-job") is False


async def test_simultaneous_refunds_of_one_job_return_one_slot(open_store: StoreFactory) -> None:
    a, b = await open_store(), await open_store()
    for _ in range(3):
        reserved = await a.reserve(job(), day=DAY, user_limit=5, chat_limit=None)
    results = await asyncio.gather(*((a, b)[i % 2].refund(reserved.id) for i in range(20)))
    assert results.count(True) == 1
    assert await b.usage("telegram", "u1", DAY) == Usage(used=2)


async def test_grants_are_spent_after_the_allowance_and_refunded_to_credits(
    store: JobStore,
) -> None:
    assert await store.grant("telegram", "u1", 2) == 2
    daily = await store.reserve(job(), day=DAY, user_limit=1, chat_limit=None)
    credit = await store.reserve(job(), day=DAY, user_limit=1, chat_limit=None)
    assert (daily.paid, credit.paid) == ("daily", "credit")
    assert await store.usage("telegram", "u1", DAY) == Usage(used=1, credits=1)

    assert await store.refund(credit.id)
    assert await store.usage("telegram", "u1", DAY) == Usage(used=1, credits=2)
    assert await store.refund(daily.id)
    assert await store.usage("telegram", "u1", DAY) == Usage(used=0, credits=2)


async def test_grant_can_take_back_but_never_below_zero(store: JobStore) -> None:
    assert await store.grant("discord", "u1", 5) == 5
    assert await store.grant("discord", "u1", -2) == 3
    assert await store.grant("discord", "u1", -10) == 0
    assert await store.grant("discord", "nobody", -1) == 0
    assert await store.usage("discord", "u1", DAY) == Usage(used=0, credits=0)


async def test_quota_day_resets_at_local_midnight(store: JobStore, clock: FakeClock) -> None:
    policy = QuotaPolicy(per_user_per_day=2, tz="Asia/Shanghai")
    clock.now = 1_795_706_940.0  # 2026-11-26 23:29 in Shanghai (15:29 UTC)
    today = policy.day_key(clock())
    assert today == "2026-11-26"
    limit, chat_limit = policy.limits_for("telegram", "u1", "u1", is_group=False)
    for _ in range(2):
        await store.reserve(job(), day=today, user_limit=limit, chat_limit=chat_limit)
    with pytest.raises(QuotaExceededError):
        await store.reserve(job(), day=today, user_limit=limit, chat_limit=chat_limit)
    status = policy.status(
        await store.usage("telegram", "u1", today), clock(), platform="telegram", user_id="u1"
    )
    assert (status.used, status.left) == (2, 0)
    assert status.resets_at - clock() == 31 * 60  # midnight in Shanghai, 16:00 UTC

    clock.now = status.resets_at
    tomorrow = policy.day_key(clock())
    assert tomorrow == "2026-11-27"
    reserved = await store.reserve(job(), day=tomorrow, user_limit=limit, chat_limit=None)
    assert reserved.day == tomorrow
    assert await store.usage("telegram", "u1", tomorrow) == Usage(used=1)
    assert await store.usage("telegram", "u1", today) == Usage(used=2)


# --- jobs ---------------------------------------------------------------------------------


async def test_transition_is_compare_and_set(store: JobStore, clock: FakeClock) -> None:
    reserved = await store.reserve(job(), day=DAY, user_limit=5, chat_limit=None)
    clock.advance(10)
    running = await store.transition(reserved.id, "running", expect=["queued"], attempts=1)
    assert running is not None
    assert (running.state, running.attempts, running.updated_at) == ("running", 1, clock.now)
    assert running.created_at == reserved.created_at

    assert await store.transition(reserved.id, "running", expect=["queued"]) is None
    cancelled = await store.transition(reserved.id, "cancelled", expect=["queued", "running"])
    assert cancelled is not None and cancelled.state == "cancelled"
    # the late result of a cancelled job does not overwrite it
    late = await store.transition(
        reserved.id, "delivering", expect=["running"], result_path="results/x.jpg"
    )
    assert late is None
    stored = await store.get_job(reserved.id)
    assert stored == cancelled and stored.result_path is None
    assert await store.transition("no-such-job", "running", expect=["queued"]) is None


async def test_transition_sets_the_given_fields_and_clears_with_none(store: JobStore) -> None:
    reserved = await store.reserve(job(), day=DAY, user_limit=5, chat_limit=None)
    await store.transition(reserved.id, "running", expect=["queued"], error_code="slow")
    delivering = await store.transition(
        reserved.id,
        "delivering",
        expect=["running"],
        result_path="out/a.jpg",
        owner="replica-1",
        heartbeat_at=5.0,
    )
    assert delivering is not None
    assert (delivering.error_code, delivering.result_path) == ("slow", "out/a.jpg")
    assert (delivering.owner, delivering.heartbeat_at) == ("replica-1", 5.0)
    failed = await store.transition(
        reserved.id, "failed", expect=["delivering"], error_code="upload", result_path=None
    )
    assert failed is not None and failed.finished
    assert (failed.error_code, failed.result_path) == ("upload", None)


async def test_transition_refuses_unknown_fields_and_states(store: JobStore) -> None:
    reserved = await store.reserve(job(), day=DAY, user_limit=5, chat_limit=None)
    with pytest.raises(TypeError):
        await store.transition(reserved.id, "running", expect=["queued"], paid=None)
    with pytest.raises(ValueError, match="bad transition"):
        await store.transition(reserved.id, "exploded", expect=["queued"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad transition"):
        await store.transition(reserved.id, "running", expect=[])


async def test_recent_and_unfinished_jobs(store: JobStore, clock: FakeClock) -> None:
    ids = []
    for user in ("a", "b", "a", "c"):
        clock.advance(1)
        ids.append((await store.reserve(job(user), day=DAY, user_limit=9, chat_limit=None)).id)
    assert [j.id for j in await store.recent_jobs()] == ids[::-1]
    assert [j.id for j in await store.recent_jobs(limit=2)] == ids[:1:-1]
    assert [j.id for j in await store.recent_jobs(user=("telegram", "a"))] == [ids[2], ids[0]]
    assert await store.recent_jobs(user=("discord", "a")) == []

    await store.transition(ids[0], "running", expect=["queued"])
    await store.transition(ids[1], "done", expect=["queued"])
    await store.transition(ids[2], "delivering", expect=["queued"])
    await store.transition(ids[3], "failed", expect=["queued"])
    assert [j.id for j in await store.unfinished_jobs()] == [ids[0], ids[2]]


async def test_unfinished_jobs_survive_a_restart(
    open_store: StoreFactory, clock: FakeClock
) -> None:
    first = await open_store()
    kept = await first.reserve(job(), day=DAY, user_limit=9, chat_limit=None)
    clock.advance(1)
    running = await first.reserve(job(), day=DAY, user_limit=9, chat_limit=None)
    done = await first.reserve(job(), day=DAY, user_limit=9, chat_limit=None)
    await first.transition(running.id, "running", expect=["queued"], attempts=1)
    await first.transition(done.id, "done", expect=["queued"])
    await first.close()

    again = await open_store()
    unfinished = await again.unfinished_jobs()
    assert [(j.id, j.state) for j in unfinished] == [(kept.id, "queued"), (running.id, "running")]
    assert unfinished[0] == kept
    assert await again.usage("telegram", "u1", DAY) == Usage(used=3)


async def test_stats_count_the_day_by_state_and_platform(store: JobStore) -> None:
    a = await store.reserve(job("a"), day=DAY, user_limit=9, chat_limit=None)
    await store.reserve(job("a"), day=DAY, user_limit=9, chat_limit=None)
    await store.reserve(job("b", platform="discord"), day=DAY, user_limit=9, chat_limit=None)
    await store.reserve(job("a"), day="2026-11-26", user_limit=9, chat_limit=None)
    await store.transition(a.id, "done", expect=["queued"])

    stats = await store.stats(DAY)
    assert stats.day == DAY and stats.jobs == 3 and stats.users == 2
    assert stats.by_state == {"queued": 2, "done": 1}
    assert stats.by_platform == {"telegram": 2, "discord": 1}
    assert (await store.stats("2030-01-01")).jobs == 0


# --- users --------------------------------------------------------------------------------


async def test_default_fidelity_is_saved_and_cleared(store: JobStore) -> None:
    assert await store.get_user_settings("telegram", "u1") == UserSettings()
    await store.set_default_fidelity("telegram", "u1", 0.25)
    await store.set_default_fidelity("telegram", "u1", 0.5)
    assert await store.get_user_settings("telegram", "u1") == UserSettings(default_fidelity=0.5)
    assert await store.get_user_settings("discord", "u1") == UserSettings()
    await store.set_default_fidelity("telegram", "u1", None)
    assert await store.get_user_settings("telegram", "u1") == UserSettings()


async def test_forget_deletes_the_user_but_not_todays_quota(store: JobStore) -> None:
    await store.reserve(job("u1"), day="2026-11-25", user_limit=9, chat_limit=None)
    gone = await store.reserve(job("u1"), day=DAY, user_limit=9, chat_limit=None)
    await store.transition(gone.id, "done", expect=["queued"], result_path="out/1.jpg")
    await store.reserve(job("u1"), day=DAY, user_limit=9, chat_limit=None)
    other = await store.reserve(job("u2"), day=DAY, user_limit=9, chat_limit=None)
    await store.set_default_fidelity("telegram", "u1", 0.7)
    await store.set_default_fidelity("telegram", "u2", 0.2)
    await store.grant("telegram", "u1", 4)

    paths = await store.forget("telegram", "u1", today=DAY)

    assert paths == ["out/1.jpg"]
    assert await store.recent_jobs(user=("telegram", "u1")) == []
    assert await store.get_job(gone.id) is None
    assert await store.get_user_settings("telegram", "u1") == UserSettings()
    assert await store.usage("telegram", "u1", DAY) == Usage(used=2, credits=4)
    assert await store.usage("telegram", "u1", "2026-11-25") == Usage(used=0, credits=4)
    assert await store.get_job(other.id) == other
    assert await store.get_user_settings("telegram", "u2") == UserSettings(default_fidelity=0.2)
    assert await store.forget("telegram", "u1", today=DAY) == []


# --- claims: which replica holds which job -------------------------------------------------

STALE = 60.0


async def test_a_job_reserved_for_a_replica_is_born_claimed(
    store: JobStore, clock: FakeClock
) -> None:
    mine = await store.reserve(job(), day=DAY, user_limit=5, chat_limit=None, owner="a")
    assert (mine.owner, mine.heartbeat_at) == ("a", clock.now)
    assert await store.get_job(mine.id) == mine
    loose = await store.reserve(job(), day=DAY, user_limit=5, chat_limit=None)
    assert (loose.owner, loose.heartbeat_at) == (None, None)


async def test_a_job_is_adopted_only_once_its_holder_is_stale(
    store: JobStore, clock: FakeClock
) -> None:
    held = await store.reserve(job(), day=DAY, user_limit=5, chat_limit=None, owner="a")
    clock.advance(STALE - 1)
    assert await store.claim_stale("b", stale_after=STALE, platforms=["telegram"]) == []

    clock.advance(2)  # "a" fell silent
    taken = await store.claim_stale("b", stale_after=STALE, platforms=["telegram"])
    assert [(j.id, j.owner, j.heartbeat_at) for j in taken] == [(held.id, "b", clock.now)]
    # The old holder can no longer move it; the new one can.
    assert await store.transition(held.id, "running", expect=["queued"], expect_owner="a") is None
    running = await store.transition(
        held.id, "running", expect=["queued"], expect_owner="b", heartbeat_at=clock.now
    )
    assert running is not None and running.owner == "b"


async def test_simultaneous_adoptions_of_one_job_give_it_to_exactly_one_replica(
    open_store: StoreFactory,
) -> None:
    a, b = await open_store(), await open_store()
    reserved = await a.reserve(job(), day=DAY, user_limit=5, chat_limit=None)
    claims = await asyncio.gather(
        *(
            (a, b)[i % 2].claim_stale(f"replica-{i}", stale_after=STALE, platforms=["telegram"])
            for i in range(20)
        )
    )
    winners = [j for taken in claims for j in taken]
    assert len(winners) == 1
    stored = await b.get_job(reserved.id)
    assert stored is not None and stored.owner == winners[0].owner


async def test_claim_stale_adopts_orphans_oldest_first_and_only_once(
    open_store: StoreFactory, clock: FakeClock
) -> None:
    a, b = await open_store(), await open_store()

    async def reserve(owner: str | None, platform: Platform = "telegram") -> str:
        clock.advance(1)
        new = job(platform=platform)
        return (await a.reserve(new, day=DAY, user_limit=None, chat_limit=None, owner=owner)).id

    dead = [await reserve("dead") for _ in range(3)]
    loose = await reserve(None)
    discord = await reserve("dead", platform="discord")
    done = await reserve("dead")
    await a.transition(done, "done", expect=["queued"])
    clock.advance(STALE + 1)  # everything so far is stale now
    alive = await reserve("alive")
    own = await reserve("me")
    assert alive

    taken = await a.claim_stale("me", stale_after=STALE, platforms=["telegram"], limit=2)
    assert [j.id for j in taken] == dead[:2]
    assert all(j.owner == "me" and j.heartbeat_at == clock.now for j in taken)
    rest = await b.claim_stale("me", stale_after=STALE, platforms=["telegram"])
    assert [j.id for j in rest] == [dead[2], loose]  # not: discord, done, alive, own (fresh)
    assert await b.claim_stale("me", stale_after=STALE, platforms=["telegram"]) == []
    assert await b.claim_stale("me", stale_after=STALE, platforms=[]) == []
    restart = await b.claim_stale(
        "me", stale_after=STALE, platforms=["telegram", "discord"], include_own=True
    )
    assert {j.id for j in restart} == {*dead, loose, own, discord}
    # Gone silent, its own jobs are anybody's, its own included.
    clock.advance(STALE + 1)
    silent = await a.claim_stale("me", stale_after=STALE, platforms=["telegram"])
    assert {j.id for j in silent} == {*dead, loose, own, alive}


async def test_two_replicas_adopting_at_once_never_share_a_job(
    open_store: StoreFactory, clock: FakeClock
) -> None:
    a, b = await open_store(), await open_store()
    ids = {
        (await a.reserve(job(), day=DAY, user_limit=None, chat_limit=None, owner="dead")).id
        for _ in range(40)
    }
    clock.advance(STALE + 1)
    batches = await asyncio.gather(
        *(
            (a, b)[i % 2].claim_stale(f"r{i}", stale_after=STALE, platforms=["telegram"], limit=7)
            for i in range(10)
        )
    )
    adopted = [j.id for batch in batches for j in batch]
    assert len(adopted) == len(set(adopted)) == 40
    assert set(adopted) == ids


async def test_heartbeat_keeps_a_claim_and_reports_what_is_still_held(
    store: JobStore, clock: FakeClock
) -> None:
    first = await store.reserve(job(), day=DAY, user_limit=9, chat_limit=None, owner="a")
    second = await store.reserve(job(), day=DAY, user_limit=9, chat_limit=None, owner="a")
    finished = await store.reserve(job(), day=DAY, user_limit=9, chat_limit=None, owner="a")
    others = await store.reserve(job(), day=DAY, user_limit=9, chat_limit=None, owner="b")
    await store.transition(finished.id, "done", expect=["queued"])
    assert await store.heartbeat("a", []) == []

    for _ in range(3):
        clock.advance(STALE - 1)
        held = await store.heartbeat("a", [first.id, second.id, finished.id, others.id, "nope"])
        assert sorted(held) == sorted([first.id, second.id])
    taken = await store.claim_stale("c", stale_after=STALE, platforms=["telegram"])
    assert [j.id for j in taken] == [others.id]  # "a" is alive; "b" never beat
    stored = await store.get_job(first.id)
    assert stored is not None and stored.heartbeat_at == clock.now
    assert await store.heartbeat("b", [others.id]) == []  # "b" learns it lost the job


async def test_release_lets_anyone_take_the_job_at_once(store: JobStore) -> None:
    held = await store.reserve(job(), day=DAY, user_limit=9, chat_limit=None, owner="a")
    other = await store.reserve(job(), day=DAY, user_limit=9, chat_limit=None, owner="b")
    assert await store.release("a", [held.id, other.id]) == 1
    released = await store.get_job(held.id)
    assert released is not None and (released.owner, released.heartbeat_at) == (None, None)
    assert (await store.get_job(other.id)) == other
    taken = await store.claim_stale("c", stale_after=STALE, platforms=["telegram"])
    assert [j.id for j in taken] == [held.id]
    assert await store.release("a", []) == 0


# --- group chats, languages, purchases, retention -----------------------------------------


async def test_chat_settings_are_saved_one_field_at_a_time(store: JobStore) -> None:
    assert await store.get_chat_settings("telegram", "-100") == ChatSettings()
    await store.set_chat_setting("telegram", "-100", "default_fidelity", 0.5)
    both = await asyncio.gather(
        store.set_chat_setting("telegram", "-100", "admins_only", True),
        store.set_chat_setting("telegram", "-100", "locale", "zh"),
    )
    assert both[0].admins_only or both[1].admins_only
    saved = await store.get_chat_settings("telegram", "-100")
    assert saved == ChatSettings(default_fidelity=0.5, admins_only=True, locale="zh")
    await store.set_chat_setting("telegram", "-100", "auto_retouch", False)
    await store.set_chat_setting("telegram", "-100", "daily_limit", 50)
    assert await store.set_chat_setting("telegram", "-100", "default_fidelity", None) == (
        ChatSettings(auto_retouch=False, daily_limit=50, admins_only=True, locale="zh")
    )
    assert await store.get_chat_settings("discord", "-100") == ChatSettings()
    for field, value in [("owner", "x"), ("admins_only", None), ("daily_limit", True)]:
        with pytest.raises(TypeError):
            await store.set_chat_setting("telegram", "-100", field, value)


async def test_a_chosen_language_is_saved_beside_the_fidelity(store: JobStore) -> None:
    await store.set_default_fidelity("telegram", "u1", 0.3)
    await store.set_locale("telegram", "u1", "zh")
    assert await store.get_user_settings("telegram", "u1") == UserSettings(0.3, "zh")
    await store.set_locale("telegram", "u1", None)
    assert await store.get_user_settings("telegram", "u1") == UserSettings(0.3)


@pytest.mark.parametrize("stores", [1, 2], ids=["one-store", "two-stores"])
async def test_a_payment_reported_many_times_at_once_adds_its_credits_once(
    open_store: StoreFactory, stores: int
) -> None:
    opened = [await open_store() for _ in range(stores)]
    await opened[0].grant("telegram", "u1", 2)
    recorded = await asyncio.gather(
        *(opened[i % stores].record_purchase(purchase("charge-1", "u1")) for i in range(20))
    )
    assert sorted(recorded) == [False] * 19 + [True]
    assert await opened[-1].usage("telegram", "u1", DAY) == Usage(credits=12)
    assert await opened[0].get_purchase("telegram", "charge-1") == purchase("charge-1", "u1")


async def test_purchases_are_listed_and_summed(store: JobStore) -> None:
    await store.record_purchase(purchase("c1", "u1", credits=10))
    await store.record_purchase(replace(purchase("c2", "u1", credits=50), created_at=T0 + 5))
    await store.record_purchase(purchase("c3", "u2", credits=10, day="2026-11-28"))
    assert [p.charge_id for p in await store.purchases("telegram", "u1")] == ["c2", "c1"]
    assert await store.purchases("discord", "u1") == []
    await store.begin_refund("telegram", "c1")
    await store.finish_refund("telegram", "c1", refunded=True)
    totals = await store.purchase_totals(user=("telegram", "u1"))
    assert totals == PurchaseTotals(count=1, credits=50, amount=250, refunded=1)
    assert await store.purchase_totals(day=DAY) == totals
    assert await store.purchase_totals() == PurchaseTotals(2, 60, 300, 1)
    assert await store.purchase_totals(day="2026-01-01") == PurchaseTotals()


async def test_a_refund_takes_the_credits_back_and_happens_once(store: JobStore) -> None:
    await store.record_purchase(purchase("c1", "u1", credits=10))
    refunding = await store.begin_refund("telegram", "c1")
    assert refunding.state == "refunding"
    assert await store.usage("telegram", "u1", DAY) == Usage(credits=0)
    # Cut off before the platform answered: running it again resumes, taking nothing more.
    assert await store.begin_refund("telegram", "c1") == refunding
    done = await store.finish_refund("telegram", "c1", refunded=True)
    assert done.state == "refunded" and done.refunded_at == T0
    with pytest.raises(AlreadyRefundedError):
        await store.begin_refund("telegram", "c1")
    assert await store.finish_refund("telegram", "c1", refunded=False) == done
    assert await store.usage("telegram", "u1", DAY) == Usage(credits=0)
    with pytest.raises(PurchaseNotFoundError):
        await store.begin_refund("telegram", "nope")


async def test_spent_credits_are_not_refunded(store: JobStore) -> None:
    await store.record_purchase(purchase("c1", "u1", credits=2))
    await store.reserve(job("u1"), day=DAY, user_limit=0, chat_limit=None)  # paid by a credit
    with pytest.raises(CreditsSpentError, match="bought 2 credits and the user has 1 left"):
        await store.begin_refund("telegram", "c1")
    assert (await store.get_purchase("telegram", "c1")) == purchase("c1", "u1", credits=2)
    assert await store.usage("telegram", "u1", DAY) == Usage(used=0, credits=1)


async def test_a_refund_the_platform_refused_gives_the_credits_back(store: JobStore) -> None:
    await store.record_purchase(purchase("c1", "u1", credits=3))
    await store.begin_refund("telegram", "c1")
    paid = await store.finish_refund("telegram", "c1", refunded=False)
    assert paid == purchase("c1", "u1", credits=3)
    assert await store.usage("telegram", "u1", DAY) == Usage(credits=3)


async def test_the_payments_cursor_only_moves_forward(store: JobStore) -> None:
    assert await store.payments_cursor("telegram") == 0
    await store.set_payments_cursor("telegram", 7)
    await store.set_payments_cursor("telegram", 3)
    assert await store.payments_cursor("telegram") == 7
    assert await store.payments_cursor("discord") == 0


async def test_retention_erases_old_platform_references_of_finished_jobs(
    store: JobStore, clock: FakeClock
) -> None:
    old_done = await store.reserve(job("u1"), day=DAY, user_limit=None, chat_limit=None)
    await store.transition(old_done.id, "done", expect=["queued"], result_path="r/x.jpg")
    old_queued = await store.reserve(job("u2"), day=DAY, user_limit=None, chat_limit=None)
    clock.advance(100)
    new_done = await store.reserve(job("u3"), day=DAY, user_limit=None, chat_limit=None)
    await store.transition(new_done.id, "failed", expect=["queued"])

    assert await store.erase_platform_refs(T0 + 50) == 1
    erased = await store.get_job(old_done.id)
    assert erased is not None and erased.reply_target == {} and erased.input_ref == {}
    assert erased.user_id == "u1" and erased.result_path == "r/x.jpg" and erased.state == "done"
    assert await store.get_job(old_queued.id) == old_queued  # unfinished: still needed
    kept = await store.get_job(new_done.id)
    assert kept is not None and kept.input_ref == {"file_id": "AgAD-file"}
    assert await store.erase_platform_refs(T0 + 50) == 0
    assert await store.erase_platform_refs(T0 + 500, limit=1) == 1
    assert (await store.stats(DAY)).jobs == 3


# --- moving a store: export and import ------------------------------------------------------


FILLED = {
    "daily_usage": 4,  # u1 on two days, u2 and u3 today (d1 paid with a credit)
    "chat_usage": 2,
    "credits": 2,
    "user_settings": 2,
    "chat_settings": 1,
    "purchases": 1,
    "jobs": 3,
}
"""The rows of each kind `fill` leaves for an export (unfinished jobs only)."""


async def fill(store: JobStore, clock: FakeClock) -> dict[str, str]:
    """Counters of users and chats on two days, credits, settings, and jobs in four states."""
    ids: dict[str, str] = {}
    await store.grant("telegram", "u1", 4)
    await store.grant("discord", "d1", 2)
    for day in ("2026-11-25", DAY):
        past = await store.reserve(job("u1", chat="g"), day=day, user_limit=9, chat_limit=5)
        await store.transition(past.id, "done", expect=["queued"])
    clock.advance(1)
    queued = await store.reserve(job("u2"), day=DAY, user_limit=9, chat_limit=None, owner="old")
    clock.advance(1)
    running = await store.reserve(job("u3"), day=DAY, user_limit=1, chat_limit=None)
    await store.transition(running.id, "running", expect=["queued"], attempts=1, owner="old")
    clock.advance(1)
    # No daily allowance (limit 0): paid from a credit.
    delivering = await store.reserve(
        job("d1", platform="discord"), day=DAY, user_limit=0, chat_limit=None
    )
    await store.transition(
        delivering.id, "delivering", expect=["queued"], result_path="data/results/x.jpg"
    )
    done = await store.reserve(job("u1"), day=DAY, user_limit=9, chat_limit=None)
    await store.transition(done.id, "done", expect=["queued"])
    await store.set_default_fidelity("telegram", "u1", 0.35)
    await store.set_default_fidelity("discord", "d1", 0.7)
    await store.set_chat_setting("telegram", "g", "auto_retouch", True)
    await store.set_chat_setting("telegram", "g", "daily_limit", 30)
    await store.record_purchase(purchase("charge-1", "u1", credits=10))
    ids.update(queued=queued.id, running=running.id, delivering=delivering.id, done=done.id)
    return ids


@pytest.mark.parametrize("direction", ["sqlite-to-postgresql", "postgresql-to-sqlite"])
async def test_export_then_import_keeps_quotas_grants_settings_and_unfinished_jobs(
    direction: str, tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    sqlite = await SqliteStore.open(tmp_path / "jobs.db", clock=clock)
    postgres = await PostgresStore.open(postgres_url, clock=clock)
    source, target = (sqlite, postgres) if direction.startswith("sqlite") else (postgres, sqlite)
    try:
        ids = await fill(source, clock)
        unfinished = await source.unfinished_jobs()
        dump = await source.export_dump()
        assert dump.source == direction.split("-")[0]
        assert dump.schema_version == len(MIGRATIONS)
        assert [j.id for j in dump.jobs] == [ids["queued"], ids["running"], ids["delivering"]]

        counts = await target.import_dump(dump)
        assert counts == FILLED

        async def state(store: JobStore) -> list[object]:
            return [
                await store.usage("telegram", "u1", "2026-11-25"),
                await store.usage("telegram", "u1", DAY),
                await store.usage("telegram", "u2", DAY),
                await store.usage("telegram", "u3", DAY),
                await store.usage("discord", "d1", DAY),
                await store.chat_usage("telegram", "g", DAY),
                await store.chat_usage("telegram", "g", "2026-11-25"),
                await store.get_user_settings("telegram", "u1"),
                await store.get_user_settings("discord", "d1"),
                await store.get_chat_settings("telegram", "g"),
                await store.purchases("telegram", "u1"),
            ]

        assert await state(target) == await state(source)
        assert await target.usage("telegram", "u1", DAY) == Usage(used=2, credits=14)
        assert await target.usage("discord", "d1", DAY) == Usage(used=0, credits=1)
        assert await target.get_chat_settings("telegram", "g") == ChatSettings(
            auto_retouch=True, daily_limit=30
        )
        # The moved purchase is known there: the same payment reported again adds nothing.
        assert not await target.record_purchase(purchase("charge-1", "u1", credits=10))
        moved = await target.unfinished_jobs()
        assert moved == [replace(j, owner=None, heartbeat_at=None) for j in unfinished]
        assert await target.get_job(ids["done"]) is None  # history stays behind
        # The imported jobs are anybody's: a replica adopts them at once, and they refund.
        adopted = await target.claim_stale(
            "new", stale_after=STALE, platforms=["telegram", "discord"]
        )
        assert len(adopted) == 3
        assert await target.refund(ids["delivering"])
        assert await target.usage("discord", "d1", DAY) == Usage(used=0, credits=2)

        with pytest.raises(AlreadyImportedError, match="already imported"):
            await target.import_dump(dump)
        assert await target.usage("telegram", "u1", DAY) == Usage(used=2, credits=14)
    finally:
        await sqlite.close()
        await postgres.close()


async def test_import_adds_to_what_the_store_already_has(
    tmp_path: Path, postgres_url: str, clock: FakeClock
) -> None:
    sqlite = await SqliteStore.open(tmp_path / "jobs.db", clock=clock)
    postgres = await PostgresStore.open(postgres_url, clock=clock)
    try:
        await fill(sqlite, clock)
        await postgres.reserve(job("u1"), day=DAY, user_limit=9, chat_limit=None)
        await postgres.grant("telegram", "u1", 1)
        await postgres.set_default_fidelity("telegram", "u1", 0.9)  # newer than the export's
        counts = await postgres.import_dump(await sqlite.export_dump())
        assert counts["user_settings"] == 1
        assert await postgres.usage("telegram", "u1", DAY) == Usage(used=3, credits=15)
        assert (await postgres.get_user_settings("telegram", "u1")).default_fidelity == 0.9
    finally:
        await sqlite.close()
        await postgres.close()


# --- SQLite specifics ---------------------------------------------------------------------


async def test_schema_is_created_in_wal_mode_and_reopening_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "new" / "jobs.db"
    store = await SqliteStore.open(path)
    assert await store.schema_version() == len(MIGRATIONS)
    reserved = await store.reserve(job(), day=DAY, user_limit=1, chat_limit=None)
    await store.close()
    await store.close()

    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        schema = raw.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()

    async with await SqliteStore.open(path) as again:
        assert await again.schema_version() == len(MIGRATIONS)
        assert await again.get_job(reserved.id) == reserved
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema


LAST_RELEASE = Path(__file__).parent / "fixtures" / "sqlite-store-v2.sql"


def schema_of(path: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(path)) as raw:
        return raw.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


@pytest.mark.parametrize("version", [1, 2])
async def test_a_file_of_the_last_release_opens_and_upgrades(tmp_path: Path, version: int) -> None:
    path = tmp_path / "retouch.db"
    with contextlib.closing(sqlite3.connect(path)) as raw:
        raw.executescript(LAST_RELEASE.read_text(encoding="utf-8"))
        if version == 1:  # before `db import` existed
            raw.execute("DROP TABLE store_imports")
        raw.execute(f"PRAGMA user_version = {version}")
    async with await SqliteStore.open(tmp_path / "fresh.db") as fresh:
        assert await fresh.schema_version() == len(MIGRATIONS)
    clock = FakeClock(T0 + 3600)

    async with await SqliteStore.open(path, clock=clock) as store:
        assert await store.schema_version() == len(MIGRATIONS)
        unfinished = await store.unfinished_jobs()
        assert [(j.id[:2], j.state, j.owner, j.paid) for j in unfinished] == [
            ("1e", "queued", "old", "daily"),
            ("2d", "running", "old", "daily"),
            ("3c", "delivering", None, "free"),
        ]
        assert unfinished[0].reply_target == {"chat_id": "u2", "message_id": 7}
        assert unfinished[1].attempts == 1 and unfinished[2].result_path == "data/results/x.jpg"
        assert await store.usage("telegram", "u1", "2026-11-25") == Usage(used=1, credits=4)
        assert await store.chat_usage("telegram", "g", "2026-11-25") == 1
        assert await store.get_user_settings("telegram", "u1") == UserSettings(0.35)
        # It goes on as before: the dead replica's jobs are adopted, payments refunded.
        adopted = await store.claim_stale("new", stale_after=60, platforms=["telegram", "discord"])
        assert [j.id for j in adopted] == [j.id for j in unfinished]
        assert await store.refund(unfinished[2].id)
        assert await store.usage("discord", "d1", "2026-11-27") == Usage()
        reserved = await store.reserve(job("u1"), day=DAY, user_limit=1, chat_limit=None)
        assert await store.get_job(reserved.id) == reserved
        imported = StoreDump("4b" * 16, "sqlite", 2, T0, credits=[("telegram", "u1", 1)])
        if version == 1:
            assert await store.import_dump(imported) == {**imported.counts(), "credits": 1}
        else:  # the file remembers its import
            with pytest.raises(AlreadyImportedError):
                await store.import_dump(imported)
    assert schema_of(path) == schema_of(tmp_path / "fresh.db")


async def test_migrations_run_in_order_from_the_stored_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.db"
    async with await SqliteStore.open(path) as store:
        reserved = await store.reserve(job(), day=DAY, user_limit=1, chat_limit=None)
    upgraded = [*MIGRATIONS, ("ALTER TABLE user_settings ADD COLUMN theme TEXT",)]
    monkeypatch.setattr(core.store.schema, "MIGRATIONS", upgraded)

    async with await SqliteStore.open(path) as store:
        assert await store.schema_version() == len(upgraded)
        assert await store.get_job(reserved.id) == reserved
    with sqlite3.connect(path) as raw:
        columns = [row[1] for row in raw.execute("PRAGMA table_info(user_settings)")]
    assert "theme" in columns


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this program"):
        await SqliteStore.open(path)


async def test_a_locked_database_is_waited_for_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.db"
    store = await SqliteStore.open(path, busy_timeout=0.0)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    pauses: list[int] = []

    def pause(attempt: int) -> None:  # runs on the store's writer thread
        pauses.append(attempt)
        if attempt == 2:
            other.execute("COMMIT")

    monkeypatch.setattr(core.store.sqlite_writer, "_pause", pause)
    try:
        reserved = await store.reserve(job(), day=DAY, user_limit=1, chat_limit=None)
        assert pauses == [0, 1, 2]
        assert await store.get_job(reserved.id) == reserved
    finally:
        other.close()
        await store.close()


async def test_processes_opening_a_new_file_at_once_all_get_it(tmp_path: Path) -> None:
    for attempt in range(30):  # the race is won differently each time
        path = tmp_path / f"new-{attempt}.db"
        stores = await asyncio.gather(*(SqliteStore.open(path) for _ in range(4)))
        try:
            reserved = await stores[0].reserve(job(), day=DAY, user_limit=5, chat_limit=None)
            assert await stores[2].get_job(reserved.id) == reserved
        finally:
            for store in stores:
                await store.close()


async def test_a_reservation_cancelled_before_it_ran_never_happens(store: JobStore) -> None:
    task = asyncio.create_task(store.reserve(job(), day=DAY, user_limit=5, chat_limit=None))
    await asyncio.sleep(0)  # the request is queued, not yet written
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reserved = await store.reserve(job(), day=DAY, user_limit=5, chat_limit=None)
    assert [j.id for j in await store.recent_jobs()] == [reserved.id]
    assert await store.usage("telegram", "u1", DAY) == Usage(used=1)


async def test_a_failing_request_undoes_only_itself(store: JobStore) -> None:
    first, other = job(), job()
    results = await asyncio.gather(
        store.reserve(first, day=DAY, user_limit=5, chat_limit=3),
        store.reserve(first, day=DAY, user_limit=5, chat_limit=3),  # the same id again
        store.reserve(other, day=DAY, user_limit=5, chat_limit=3),
        return_exceptions=True,
    )
    # Which of the two requests with one id comes first is the database's choice (on
    # PostgreSQL they race on separate connections); exactly one of them fails, alone.
    failed = [r for r in results[:2] if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], StoreError) and "UNIQUE" in str(failed[0])
    reserved = [r.id for r in results if not isinstance(r, BaseException)]
    assert sorted(reserved) == sorted([first.id, other.id])
    assert await store.usage("telegram", "u1", DAY) == Usage(used=2)
    assert await store.chat_usage("telegram", "u1", DAY) == 2


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "jobs.db")
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.reserve(job(), day=DAY, user_limit=5, chat_limit=None)
    with pytest.raises(StoreError, match="closed"):
        await store.get_job("x")


# --- PostgreSQL specifics -----------------------------------------------------------------


async def test_pg_schema_is_created_once_even_by_replicas_starting_together(
    postgres_url: str,
) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(postgres_url) for _ in range(6)))
    try:
        assert [await s.schema_version() for s in stores] == [len(core.store.schema.MIGRATIONS)] * 6
        reserved = await stores[0].reserve(job(), day=DAY, user_limit=1, chat_limit=None)
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    async with await PostgresStore.open(postgres_url) as again:
        assert await again.get_job(reserved.id) == reserved


async def test_pg_migrations_run_in_order_from_the_stored_version(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await PostgresStore.open(postgres_url) as store:
        reserved = await store.reserve(job(), day=DAY, user_limit=1, chat_limit=None)
    upgraded = [
        *core.store.schema.MIGRATIONS,
        ("ALTER TABLE user_settings ADD COLUMN theme text",),
    ]
    monkeypatch.setattr(core.store.schema, "MIGRATIONS", upgraded)
    async with await PostgresStore.open(postgres_url) as store:
        assert await store.schema_version() == len(upgraded)
        assert await store.get_job(reserved.id) == reserved
        assert await store._fetch("SELECT theme FROM user_settings") == []

    monkeypatch.setattr(core.store.schema, "MIGRATIONS", upgraded[:-1])
    with pytest.raises(StoreError, match="newer than this program"):
        await PostgresStore.open(postgres_url)


async def test_pg_a_failed_migration_changes_nothing(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = [*core.store.schema.MIGRATIONS, ("CREATE TABLE extra (x int)", "NOT SQL")]
    monkeypatch.setattr(core.store.schema, "MIGRATIONS", broken)
    with pytest.raises(StoreError, match="syntax error"):
        await PostgresStore.open(postgres_url)
    monkeypatch.setattr(core.store.schema, "MIGRATIONS", broken[:-1])
    async with await PostgresStore.open(postgres_url) as store:
        assert await store.schema_version() == len(broken) - 1
        assert await store._fetch("SELECT to_regclass('extra') IS NULL") == [(True,)]


async def test_pg_a_closed_store_says_so(postgres_url: str) -> None:
    store = await PostgresStore.open(postgres_url)
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.reserve(job(), day=DAY, user_limit=5, chat_limit=None)
    with pytest.raises(StoreError, match="closed"):
        await store.get_job("x")


async def test_pg_an_unreachable_server_is_one_clear_error_without_the_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql://bot:s3cret-pw@/retouch?host={tmp_path}&port=1"
    with pytest.raises(StoreError) as caught:
        await PostgresStore.open(url, connect_timeout=2)
    assert "Cannot connect to PostgreSQL at postgresql://bot:***@/retouch" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


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


async def test_a_batch_of_updates_is_stored_at_once(store: JobStore) -> None:
    await store.store_update("telegram", 701, {"update_id": 701})
    batch: list[tuple[int, dict[str, Any]]] = [(700, UPDATE), (701, {"update_id": 701})]
    batch.append((702, {"update_id": 702}))
    assert await store.store_updates("telegram", batch) == [700, 702]  # 701 came before
    assert await store.store_updates("telegram", []) == []
    assert [u for u, _ in await store.pending_updates("telegram")] == [700, 701, 702]


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
async def test_an_ending_that_refunds_is_one_transaction(store: JobStore, end: JobState) -> None:
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
