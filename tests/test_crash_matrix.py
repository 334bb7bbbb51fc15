"""The SIGKILL matrix: the real bot process killed at every named point, then restarted.

`JOBS_CRASH_AT` (`core.crash`) makes `retouch-bot telegram` SIGKILL itself at one point: after
each job state a transition commits and between the I/O steps of a job and of an update's
arrival. Three users each send a photo (one of them at a fidelity the upstream refuses); after
the kill a second process runs on the same store until everyone is answered, then stops
cleanly. Then: every accepted photo was answered, a result was sent twice only where a kill
fell between Telegram accepting the upload and the bot recording it (the first copy went out
before the kill, and the store records the second), no reservation is stuck, every failed job
was refunded, and no stored update is left unhandled.

Jobs run concurrently, so a kill at another point can also catch another job's upload in that
window: which photos are in flight at the kill varies, the rule checked does not.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from bots.telegram.keyboards import CANCEL
from core.crash import CRASH_POINTS
from tests.crash_harness import (
    UPSTREAM_FAILED,
    FailsOnFidelity,
    bot_env,
    ended,
    kill,
    photo_messages,
    photos_of,
    read_store,
    start_bot,
    told_failure,
    unfinished,
)
from tests.fake_telegram import ChatMessage, FakeTelegram, User
from tests.test_operations import free_port
from tests.upstream_fakes import FakeUpstream, Gate

ALICE, BOB, CAROL = (User(7000 + n, name, language_code="en") for n, name in enumerate("ABC"))
DAVE = User(7010, "D", language_code="en")
SERVED = (ALICE, BOB)
"""Their photos are retouched; Carol's fails upstream."""
POINTS = sorted(CRASH_POINTS - {"state:cancelled"})
"""Every point the flow below reaches; a cancel (a user's button) has a test of its own."""


WEBHOOK_POINTS = ["update_stored", "state:queued"]
"""Where a webhook's own window lies: the update stored, the 200 not yet sent (Telegram sends
it again), and the update handled before it was answered."""


async def confirm_what_was_fetched(tg: FakeTelegram) -> None:
    """Once the bot has fetched the queued updates, give it one more (Dave's /help): the
    getUpdates that fetches it confirms the others."""
    await tg.wait_for(
        "getUpdates",
        predicate=lambda call: '"update_id"' in json.dumps(call.response),
        answered=True,
        timeout=60,
    )
    tg.send_text(DAVE.id, DAVE, "/help")


@pytest.mark.parametrize("point", POINTS)
async def test_a_kill_at_any_point_loses_no_photo(
    point: str, tmp_path: Path, portrait_bytes: bytes
) -> None:
    await kill_and_restart(point, tmp_path, portrait_bytes, webhook=False)


@pytest.mark.parametrize("point", WEBHOOK_POINTS)
async def test_a_kill_in_webhook_mode_loses_no_photo(
    point: str, tmp_path: Path, portrait_bytes: bytes
) -> None:
    await kill_and_restart(point, tmp_path, portrait_bytes, webhook=True)


async def kill_and_restart(point: str, tmp_path: Path, portrait: bytes, *, webhook: bool) -> None:
    async with FakeTelegram() as tg, FakeUpstream(default=FailsOnFidelity()) as upstream:
        for user in SERVED:
            tg.send_photo(user.id, user, portrait)
        tg.send_photo(CAROL.id, CAROL, portrait, caption="fidelity 0.7")
        env = bot_env(tg, upstream, tmp_path)
        if webhook:
            port = free_port()
            env["TELEGRAM_WEBHOOK_URL"] = f"http://127.0.0.1:{port}/hook"
            env["TELEGRAM_WEBHOOK_LISTEN"] = f"127.0.0.1:{port}"
        database = tmp_path / "data" / "retouch.db"

        first = await start_bot({**env, "JOBS_CRASH_AT": point}, tmp_path)
        try:
            if not webhook:
                await confirm_what_was_fetched(tg)
            code, err = await ended(first, 60)
        finally:
            await kill(first)
        assert code == -signal.SIGKILL, err[-3000:]
        killed_at = time.monotonic()  # every call before this came from the first process

        started = len(tg.calls_to("getMe"))
        second = await start_bot(env, tmp_path)
        try:
            # Each job's settlement is followed by a Bot API call (the status line), so the
            # store is looked at again after it. A failure committed but left untold by the
            # kill is told at the start.
            await tg.wait_until(
                lambda: (
                    len(tg.calls_to("getMe")) > started
                    and all(photos_of(tg, user.id) >= 1 for user in SERVED)
                    and told_failure(tg, CAROL.id, UPSTREAM_FAILED)
                    and unfinished(database) == 0
                ),
                timeout=60,
            )
            second.send_signal(signal.SIGTERM)
            code, err = await ended(second, 60)
        finally:
            await kill(second)
        assert code == 0, err[-3000:]

    store = read_store(database)
    for user in SERVED:
        photos = photo_messages(tg, user.id)
        assert 1 <= len(photos) <= 2, f"user {user.first_name} got {len(photos)} photos"
        [sent] = store.sent[str(user.id)]
        assert sent == str(photos[-1].message_id)
        if len(photos) == 2:  # the upload window: Telegram took the first, unrecorded at the kill
            assert photos[0].call is not None and photos[0].call.time < killed_at
    assert photos_of(tg, CAROL.id) == 0
    assert store.stuck == 0 and store.pending_updates == 0
    assert store.lost_refunds() == 0
    for user in SERVED:  # admitted once (the inbox), paid once
        assert store.jobs[str(user.id)] == [("done", "daily")]
        assert store.used[str(user.id)] == 1
    assert store.jobs[str(CAROL.id)] == [("failed", None)]
    assert store.sent[str(CAROL.id)] == ["told"]
    assert store.used.get(str(CAROL.id), 0) == 0


ERIN = User(7020, "E", language_code="en")
CANCELLED_TEXT = "Cancelled. This photo didn't count against your quota."


def cancel_button(tg: FakeTelegram) -> tuple[ChatMessage, str] | None:
    """Erin's status message and its Cancel button's data, once it shows one."""
    for message in tg.sent_to(ERIN.id):
        for data in message.callback_data:
            if data.startswith(f"{CANCEL}:"):
                return message, data
    return None


async def test_a_kill_right_after_a_cancel_refunds_it_and_says_so(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    """Erin cancels while the upstream works; the process dies as the cancel commits. The next
    start finds the job cancelled and refunded (one transaction) and tells her so."""
    gate = Gate()
    async with FakeTelegram() as tg, FakeUpstream(default=gate) as upstream:
        tg.send_photo(ERIN.id, ERIN, portrait_bytes)
        env = bot_env(tg, upstream, tmp_path)
        database = tmp_path / "data" / "retouch.db"
        first = await start_bot({**env, "JOBS_CRASH_AT": "state:cancelled"}, tmp_path)
        try:
            await gate.wait_entered()
            await tg.wait_until(lambda: cancel_button(tg) is not None, timeout=30)
            found = cancel_button(tg)
            assert found is not None
            tg.press_button(ERIN.id, ERIN, found[0], found[1])
            code, err = await ended(first, 60)
        finally:
            await kill(first)
        assert code == -signal.SIGKILL, err[-3000:]
        assert not any(CANCELLED_TEXT in (m.text or "") for m in tg.sent_to(ERIN.id))
        gate.opened.set()

        started = len(tg.calls_to("getMe"))
        second = await start_bot(env, tmp_path)
        try:
            await tg.wait_until(
                lambda: (
                    len(tg.calls_to("getMe")) > started
                    and any(CANCELLED_TEXT in (m.text or "") for m in tg.sent_to(ERIN.id))
                    and unfinished(database) == 0
                ),
                timeout=60,
            )
            second.send_signal(signal.SIGTERM)
            code, err = await ended(second, 60)
        finally:
            await kill(second)
        assert code == 0, err[-3000:]
    assert photos_of(tg, ERIN.id) == 0
    store = read_store(database)
    assert store.jobs[str(ERIN.id)] == [("cancelled", None)]
    assert store.sent[str(ERIN.id)] == ["told"]
    assert store.used.get(str(ERIN.id), 0) == 0
    assert store.stuck == 0 and store.pending_updates == 0


async def test_a_kill_while_an_album_is_gathered_loses_none_of_it(
    tmp_path: Path, portrait_bytes: bytes
) -> None:
    """An album's parts stay pending in the inbox until their jobs are admitted: a kill while
    the bot still waits for the rest of the album (the offset already past its parts) loses
    none of its photos, and the restarted bot sends them back as one album."""
    async with FakeTelegram() as tg, FakeUpstream(default=FailsOnFidelity()) as upstream:
        tg.send_album(ALICE.id, ALICE, [portrait_bytes] * 3)
        env = bot_env(tg, upstream, tmp_path)
        database = tmp_path / "data" / "retouch.db"
        first = await start_bot({**env, "TELEGRAM_ALBUM_WAIT_SECONDS": "30"}, tmp_path)
        try:
            await confirm_what_was_fetched(tg)
            await tg.wait_until(lambda: bool(tg.sent_to(DAVE.id)), timeout=60)
            assert not tg.pending_updates and unfinished(database) == 0  # no job admitted yet
        finally:
            await kill(first)

        second = await start_bot(env, tmp_path)
        try:
            await tg.wait_until(
                lambda: photos_of(tg, ALICE.id) >= 3 and unfinished(database) == 0, timeout=60
            )
            second.send_signal(signal.SIGTERM)
            code, err = await ended(second, 60)
        finally:
            await kill(second)
        assert code == 0, err[-3000:]

    photos = photo_messages(tg, ALICE.id)
    assert len(photos) == 3 and len(tg.calls_to("sendMediaGroup")) == 1
    store = read_store(database)
    assert [state for state, _ in store.jobs[str(ALICE.id)]] == ["done"] * 3
    assert store.stuck == 0 and store.pending_updates == 0
