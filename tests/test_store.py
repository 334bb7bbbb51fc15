"""The job/quota store: exact reservations under concurrency, refunds, state changes, forgetting.

Every test but the SQLite-specific ones at the end runs against each store in `STORES`, so a new
backend (PostgreSQL) proves itself by adding its name there and a branch to `open_store`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

import core.sqlite_store
from core.jobs import NewJob, Platform
from core.quota import QuotaPolicy
from core.sqlite_store import MIGRATIONS, SqliteStore
from core.store import (
    ChatQuotaExceededError,
    JobStore,
    QuotaExceededError,
    StoreError,
    Usage,
    UserSettings,
)

STORES = ["sqlite"]
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

    async def factory() -> JobStore:
        assert request.param == "sqlite"
        store = await SqliteStore.open(tmp_path / "data" / "jobs.db", clock=clock)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


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
    await store.transition(reserved.id, "running", expect=["queued"], input_path="in/a.jpg")
    delivering = await store.transition(
        reserved.id,
        "delivering",
        expect=["running"],
        result_path="out/a.jpg",
        owner="replica-1",
        heartbeat_at=5.0,
    )
    assert delivering is not None
    assert (delivering.input_path, delivering.result_path) == ("in/a.jpg", "out/a.jpg")
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
    await store.transition(
        gone.id, "done", expect=["queued"], input_path="in/1.jpg", result_path="out/1.jpg"
    )
    await store.reserve(job("u1"), day=DAY, user_limit=9, chat_limit=None)
    other = await store.reserve(job("u2"), day=DAY, user_limit=9, chat_limit=None)
    await store.set_default_fidelity("telegram", "u1", 0.7)
    await store.set_default_fidelity("telegram", "u2", 0.2)
    await store.grant("telegram", "u1", 4)

    paths = await store.forget("telegram", "u1", today=DAY)

    assert sorted(paths) == ["in/1.jpg", "out/1.jpg"]
    assert await store.recent_jobs(user=("telegram", "u1")) == []
    assert await store.get_job(gone.id) is None
    assert await store.get_user_settings("telegram", "u1") == UserSettings()
    assert await store.usage("telegram", "u1", DAY) == Usage(used=2, credits=4)
    assert await store.usage("telegram", "u1", "2026-11-25") == Usage(used=0, credits=4)
    assert await store.get_job(other.id) == other
    assert await store.get_user_settings("telegram", "u2") == UserSettings(default_fidelity=0.2)
    assert await store.forget("telegram", "u1", today=DAY) == []


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


async def test_migrations_run_in_order_from_the_stored_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.db"
    async with await SqliteStore.open(path) as store:
        reserved = await store.reserve(job(), day=DAY, user_limit=1, chat_limit=None)
    upgraded = [*MIGRATIONS, ("ALTER TABLE user_settings ADD COLUMN theme TEXT",)]
    monkeypatch.setattr(core.sqlite_store, "MIGRATIONS", upgraded)

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

    monkeypatch.setattr(core.sqlite_store, "_pause", pause)
    try:
        reserved = await store.reserve(job(), day=DAY, user_limit=1, chat_limit=None)
    finally:
        other.close()
    assert pauses == [0, 1, 2]
    assert await store.get_job(reserved.id) == reserved
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
    assert isinstance(results[1], StoreError) and "UNIQUE" in str(results[1])
    assert [r.id for r in results if not isinstance(r, BaseException)] == [first.id, other.id]
    assert await store.usage("telegram", "u1", DAY) == Usage(used=2)
    assert await store.chat_usage("telegram", "u1", DAY) == 2


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "jobs.db")
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.reserve(job(), day=DAY, user_limit=5, chat_limit=None)
    with pytest.raises(StoreError, match="closed"):
        await store.get_job("x")
